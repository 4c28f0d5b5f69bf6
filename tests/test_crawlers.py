"""Spiders, pipeline, source registry and runner against the demo site over real HTTP.

Crawls run in child processes (``crawl_once``): a Twisted reactor runs once
per process. Posts are read back from the real embedded transport.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from scrapy.exceptions import DropItem
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawlers.extract import extract_article, generic_list_links
from crawlers.pipelines import STATE_FILE, RawPostPipeline, SeenState
from crawlers.runner import CrawlReport, crawl_once, crawl_once_report
from crawlers.sources import UnknownSourceError, load_sources
from crawlers.spiders.base import CrawlContext
from crawlers.spiders.news import NewsSpider
from crawlers.spiders.weibo import weibo_text
from stream.contracts import SHANGHAI, RawPost, content_hash, decode, make_post_id
from stream.factory import open_transport, topic
from stream.topics import RAW_POSTS
from yuqing.configfile import ConfigError
from yuqing.demo_site import DemoServer
from yuqing.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("demo-news", "demo-forum", "demo-weibo")


# ---------------------------------------------------------------- helpers


def make_settings(tmp: Path, demo: DemoServer, sources_yaml: str | None = None) -> Settings:
    cfg = tmp / "config"
    shutil.copytree(ROOT / "config", cfg)
    if sources_yaml is not None:
        (cfg / "sources.yaml").write_text(sources_yaml, encoding="utf-8")
    data = tmp / "var"
    data.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YUQING_DATA_DIR", str(data))
        mp.setenv("YUQING_DEMO_PORT", str(demo.port))
        mp.delenv("YUQING_TRANSPORT", raising=False)
        return load_settings(cfg)


def read_posts(settings: Settings) -> list[tuple[bytes, RawPost]]:
    """Every message on the raw-posts topic, in partition order."""
    t = open_transport(settings)
    try:
        c = t.consumer(f"test-{uuid.uuid4().hex[:8]}", [topic(settings, RAW_POSTS)])
        out = []
        while recs := c.poll(1000, 0.3):
            out += recs
        c.close()
    finally:
        t.close()
    return [(r.key, decode(r.value, RawPost)) for r in out]  # type: ignore[misc]


def latest(posts: list[tuple[bytes, RawPost]]) -> dict[str, RawPost]:
    by_id: dict[str, RawPost] = {}
    for _, p in posts:
        if p.post_id not in by_id or p.fetched_at >= by_id[p.post_id].fetched_at:
            by_id[p.post_id] = p
    return by_id


def site_items(demo: DemoServer, kind: str | None = None) -> list[dict[str, Any]]:
    r = httpx.get(f"{demo.url}/_demo/items", params={"kind": kind} if kind else None, timeout=10)
    return r.json()["items"]


def publish(demo: DemoServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{demo.url}/_demo/publish", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def edit(demo: DemoServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{demo.url}/_demo/edit", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- one crawl of everything


@dataclass
class Crawled:
    settings: Settings
    reports: dict[str, CrawlReport]
    messages: list[tuple[bytes, RawPost]]
    posts: dict[str, RawPost]
    items: list[dict[str, Any]]


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    # Nothing new within the tests: only the posts from before start.
    with DemoServer(publish_every_s=3600, seed=7) as d:
        yield d


@pytest.fixture(scope="module")
def crawled(demo: DemoServer, tmp_path_factory: pytest.TempPathFactory) -> Crawled:
    settings = make_settings(tmp_path_factory.mktemp("crawled"), demo)
    reports = {sid: crawl_once_report(settings, sid) for sid in SOURCES}
    messages = read_posts(settings)
    return Crawled(settings, reports, messages, latest(messages), site_items(demo))


def by_source(c: Crawled, source_id: str) -> list[RawPost]:
    return [p for p in c.posts.values() if p.source_id == source_id]


def test_news_emergency_keeps_the_page_time(crawled: Crawled) -> None:
    item = next(i for i in crawled.items if i["kind"] == "news" and i["group"] == "huoshan")
    post = crawled.posts[make_post_id("demo-news", item["url"])]
    assert post.title == "霍山县一在建厂房发生坍塌事故 已造成12人死亡5人受伤"
    assert "事故已造成12人死亡、5人受伤" in post.text  # GBK page decoded
    assert "相关阅读" not in post.text and "版权所有" not in post.text  # body only
    # The site's own publication time, not the fetch time (it is 30+ minutes older).
    assert post.published_at == datetime.fromisoformat(item["published_at"]).replace(second=0)
    assert post.published_precision == "minute"
    assert post.fetched_at - post.published_at > timedelta(minutes=25)
    assert post.published_at.utcoffset() == timedelta(hours=8)
    assert post.author.endswith("汪建国")
    assert post.source_kind == "news" and post.source_name == "江淮晨讯网"
    assert post.source_region == "340000"
    assert post.url == item["url"]
    assert post.content_hash == content_hash(post.title, post.text)


def test_every_visible_item_becomes_exactly_one_post(crawled: Crawled) -> None:
    for sid, kind in zip(SOURCES, ("news", "forum", "weibo"), strict=True):
        report = crawled.reports[sid]
        assert report.finish_reason == "finished" and report.errors == 0 and report.rejected == 0
        expected = [i for i in crawled.items if i["kind"] == kind]
        n = len(expected) + (sum(len(i["reply_pids"]) for i in expected) if kind == "forum" else 0)
        assert len(by_source(crawled, sid)) == n
        assert report.emitted == n
    for key, post in crawled.messages:
        assert key == post.post_id.encode()
        assert post.published_at <= post.fetched_at
        assert post.text and "<" not in post.text


def test_forum_replies_are_their_own_posts(crawled: Crawled) -> None:
    thread = next(i for i in crawled.items if i["kind"] == "forum" and i["group"] == "huoshan")
    first = crawled.posts[make_post_id("demo-forum", f"tid:{thread['id']}")]
    assert first.title == thread["title"] and first.parent_id is None
    assert "县里通报说死了12个" in first.text
    assert first.author == "大别山下的风"
    assert first.engagement.replies == len(thread["reply_pids"]) == 5
    assert first.engagement.views and first.engagement.views > 0
    assert first.published_at == datetime.fromisoformat(thread["published_at"]).replace(second=0)
    assert first.source_region == "340100"
    replies = [crawled.posts[make_post_id("demo-forum", f"pid:{pid}")] for pid in thread["reply_pids"]]
    assert {r.parent_id for r in replies} == {first.post_id}
    assert len({r.post_id for r in replies}) == 5
    assert replies[0].author == "皖西老李" and "电话一直打不通" in replies[0].text
    assert "县里通报" not in replies[0].text  # a reply is not its thread
    times = [r.published_at for r in replies]
    assert times == sorted(times) and times[0] >= first.published_at
    assert any(r.text == "官方通报是12人死亡5人受伤，大家不要乱传别的数字。" for r in replies)


def test_weibo_posts(crawled: Crawled) -> None:
    weibo = {p.author: p for p in by_source(crawled, "demo-weibo")}
    angry = weibo["上派镇的小鱼"]
    assert angry.text == "肥西上派镇停水第三天了[怒][怒] 没有任何通知，老人孩子洗漱都成问题，@肥西供水客服 能不能给个说法？"
    assert angry.title == "" and angry.source_region is None
    origin = weibo["霍山身边事"]
    assert origin.text.startswith("【霍山一在建厂房坍塌】") and "12人遇难" in origin.text
    assert origin.text.endswith("[祈祷][祈祷] #霍山厂房坍塌#")
    item = next(i for i in crawled.items if i["kind"] == "weibo" and i["author"] == "霍山身边事")
    assert origin.published_at == datetime.fromisoformat(item["published_at"])  # "Sun Nov 22 …" form
    assert origin.published_precision == "second"
    assert origin.engagement.reposts and origin.engagement.reposts >= 40
    assert origin.url.endswith(f"/status/{item['bid']}")
    repost = weibo["皖西小陈"]
    assert repost.parent_id == origin.post_id == make_post_id("demo-weibo", item["id"])
    # "6分钟前": minute precision, within a minute of the real time.
    rep_item = next(i for i in crawled.items if i["author"] == "皖西小陈")
    assert repost.published_precision == "minute"
    assert abs(repost.published_at - datetime.fromisoformat(rep_item["published_at"])) <= timedelta(minutes=1)


def test_second_crawl_emits_nothing_new(crawled: Crawled) -> None:
    for sid in SOURCES:
        report = crawl_once_report(crawled.settings, sid)
        assert report.emitted == 0, sid
        assert report.unchanged == len(by_source(crawled, sid)), sid
    assert len(read_posts(crawled.settings)) == len(crawled.messages)
    state = SeenState(crawled.settings.data_path(STATE_FILE))
    try:
        assert state.count() == len(crawled.posts)
        assert len(state.last_runs("demo-news")) == 2
    finally:
        state.close()


# ---------------------------------------------------------------- changes and faults (own site)


def test_edited_item_is_reemitted_with_the_same_post_id(tmp_path: Path) -> None:
    with DemoServer(publish_every_s=3600, seed=11) as demo:
        settings = make_settings(tmp_path, demo)
        made = publish(demo, kind="news", title="某区通报一起道路塌陷", text="今日上午，某路段发生塌陷，无人员伤亡。")
        first = crawl_once(settings, "demo-news")
        assert first == len(site_items(demo, "news"))
        assert crawl_once(settings, "demo-news") == 0
        edit(demo, kind="news", id=made["id"], text="今日上午，某路段发生塌陷，造成1人受伤。")
        assert crawl_once(settings, "demo-news") == 1
        wb = publish(demo, kind="weibo", text="路面塌陷了，大家绕行[怒]")
        assert crawl_once(settings, "demo-weibo") == len(site_items(demo, "weibo"))
        edit(demo, kind="weibo", id=wb["id"], reposts_count=321)  # new counts only
        assert crawl_once(settings, "demo-weibo") == 1
    pid = make_post_id("demo-news", made["url"])
    versions = [p for _, p in read_posts(settings) if p.post_id == pid]
    assert [("无人员伤亡" in v.text, "1人受伤" in v.text) for v in versions] == [(True, False), (False, True)]
    assert versions[0].content_hash != versions[1].content_hash
    wb_versions = [p for _, p in read_posts(settings) if p.post_id == make_post_id("demo-weibo", wb["id"])]
    assert [v.engagement.reposts for v in wb_versions] == [0, 321]
    assert wb_versions[0].text == wb_versions[1].text == "路面塌陷了，大家绕行[怒]"


def test_broken_pages_do_not_stop_the_crawl(tmp_path: Path) -> None:
    with DemoServer(publish_every_s=3600, seed=5) as demo:
        settings = make_settings(tmp_path, demo)
        bad = publish(demo, kind="news", title="这一页会返回500", text="服务器出错" * 50, fault="error")
        cut = publish(demo, kind="news", title="这一页被截断了", text="很长的正文。" * 300, fault="truncate")
        good = publish(demo, kind="news", title="芜湖市一居民楼发生火灾 3人死亡", text="火灾造成3人死亡。")
        bad_thread = publish(demo, kind="forum", title="打不开的帖子", text="内容", fault="error")
        news = crawl_once_report(settings, "demo-news")
        forum = crawl_once_report(settings, "demo-forum")
        news_items = site_items(demo, "news")
        forum_items = site_items(demo, "forum")
    assert news.finish_reason == "finished" and forum.finish_reason == "finished"
    assert news.errors >= 1 and forum.errors >= 1
    posts = latest(read_posts(settings))
    assert make_post_id("demo-news", bad["url"]) not in posts
    assert make_post_id("demo-forum", f"tid:{bad_thread['id']}") not in posts
    assert posts[make_post_id("demo-news", good["url"])].title == good["title"]
    # Every other page still became a post.
    for i in news_items:
        if i["id"] not in (bad["id"], cut["id"]):
            assert make_post_id("demo-news", i["url"]) in posts
    for i in forum_items:
        if i["id"] != bad_thread["id"]:
            assert make_post_id("demo-forum", f"tid:{i['id']}") in posts
    # The cut page yields at most a partial post (never garbage), or a logged rejection.
    partial = posts.get(make_post_id("demo-news", cut["url"]))
    if partial is not None:
        assert partial.title == "这一页被截断了"
        assert len(partial.text) < len("很长的正文。" * 300)
        assert set(partial.text) <= set("很长的正文。")  # no half character at the cut
    else:
        assert news.rejected >= 1


def test_unknown_source_id(crawled: Crawled) -> None:
    with pytest.raises(UnknownSourceError, match="可用的信息源：demo-news"):
        crawl_once(crawled.settings, "no-such-source")


# ---------------------------------------------------------------- the scheduled loop


def test_run_loop_crawls_repeatedly_and_stops_cleanly(tmp_path: Path) -> None:
    yaml_text = (ROOT / "config" / "sources.yaml").read_text(encoding="utf-8").replace("every_s: 15", "every_s: 1")
    with DemoServer(publish_every_s=0.5, seed=9) as demo:
        settings = make_settings(tmp_path, demo, yaml_text)
        env = {**os.environ, "YUQING_DATA_DIR": settings.data_dir, "YUQING_DEMO_PORT": str(demo.port)}
        env.pop("YUQING_TRANSPORT", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "crawlers.runner", "run", "--config-dir", str(settings.config_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            seen: dict[str, RawPost] = {}
            started = datetime.now(SHANGHAI)
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if not settings.data_path("stream.db").exists():
                    continue
                seen = latest(read_posts(settings))
                sources = {p.source_id for p in seen.values()}
                # Posts published after the loop started prove it crawls again.
                fresh = [p for p in seen.values() if p.published_at > started]
                if sources == set(SOURCES) and len(fresh) >= 3:
                    break
            else:
                pytest.fail(f"the loop did not crawl repeatedly: {len(seen)} posts")
        finally:
            proc.send_signal(signal.SIGTERM)
            # A graceful stop lets in-flight downloads finish (DOWNLOAD_TIMEOUT: 20 s by default).
            out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "收到停止信号" in out
    con = sqlite3.connect(settings.data_path(STATE_FILE))
    try:
        for sid in SOURCES:
            runs = con.execute("SELECT started_at, finished_at FROM runs WHERE source_id=? ORDER BY id",
                               (sid,)).fetchall()
            assert len(runs) >= 2, sid
            # Never two crawls of one source at a time.
            for (_, end), (start, _) in zip(runs, runs[1:], strict=False):
                assert start >= end
    finally:
        con.close()


# ---------------------------------------------------------------- registry


SOURCE_YAML = """\
sources:
  - id: a
    name: 甲
    kind: news
    start_urls: ["{demo}/news/"]
    schedule: {every_s: 10}
    region: 340000
  - id: b
    name: 乙
    kind: %s
    start_urls: ["https://example.org/"]
    schedule: {every_s: 10}
    region: null
"""


def test_sources_registry(tmp_path: Path, demo: DemoServer) -> None:
    settings = make_settings(tmp_path, demo, SOURCE_YAML % "forum")
    a, b = load_sources(settings)
    assert a.start_urls == [f"http://127.0.0.1:{demo.port}/news/"]
    assert a.region == "340000" and b.region is None
    assert a.politeness.robots_txt is True
    default = make_settings(tmp_path / "d", demo)
    assert {s.id for s in load_sources(default)} == set(SOURCES)


def test_unknown_kind_is_a_config_error_with_file_and_line(tmp_path: Path, demo: DemoServer) -> None:
    settings = make_settings(tmp_path, demo, SOURCE_YAML % "blog")
    with pytest.raises(ConfigError) as e:
        load_sources(settings)
    msg = str(e.value)
    assert f"{settings.config_dir / 'sources.yaml'}:10: sources.1.kind:" in msg


def test_duplicate_ids_and_bad_region(tmp_path: Path, demo: DemoServer) -> None:
    dup = (SOURCE_YAML % "forum").replace("id: b", "id: a")
    settings = make_settings(tmp_path, demo, dup)
    with pytest.raises(ConfigError, match=r"sources\.yaml:8: sources\.1\.id: duplicate source id 'a'"):
        load_sources(settings)
    bad = (SOURCE_YAML % "forum").replace("region: 340000", "region: 3400")
    settings = make_settings(tmp_path / "r", demo, bad)
    with pytest.raises(ConfigError, match=r"sources\.yaml:7: sources\.0\.region: .*6-digit"):
        load_sources(settings)


# ---------------------------------------------------------------- extraction without selectors


def test_generic_extraction_on_gbk_pages(demo: DemoServer) -> None:
    now = datetime.now(SHANGHAI)
    lst = httpx.get(f"{demo.url}/news/", timeout=10)
    resp = HtmlResponse(url=f"{demo.url}/news/", body=lst.content, headers={"Content-Type": lst.headers["content-type"]})
    assert resp.encoding in ("gbk", "gb18030")  # from <meta>, the header has none
    news = site_items(demo, "news")
    assert sorted(generic_list_links(resp.selector, resp.url)) == sorted(i["url"] for i in news)
    for item in news:
        page = httpx.get(item["url"], timeout=10)
        resp = HtmlResponse(url=item["url"], body=page.content, headers={"Content-Type": page.headers["content-type"]})
        art = extract_article(resp.selector, now)  # no per-source selectors
        assert art.title == item["title"]
        assert art.published == (datetime.fromisoformat(item["published_at"]).replace(second=0), "minute")
        assert art.author == item["author"].removeprefix("记者 ")  # the person, not the role
        assert art.text and "相关阅读" not in art.text and "责任编辑" not in art.text
    plain = HtmlResponse(url="http://x.test/a/t20261122_1.html", encoding="utf-8", body="""<html><head>
        <title>市政府召开会议_某市政府网</title>
        <meta name="publishdate" content="2026-11-21 09:30"></head><body>
        <div class="nav"><a href="/">首页</a></div><h1>市政府召开会议</h1>
        <div id="zoom"><p>会议研究了冬季供暖工作。</p><p>会议要求各部门落实责任。</p></div>
        <ul><li><a href="/b.html">别的新闻</a> 2026-01-01</li></ul></body></html>""".encode())
    art = extract_article(plain.selector, now)
    assert art.title == "市政府召开会议"
    assert art.published == (datetime(2026, 11, 21, 9, 30, tzinfo=SHANGHAI), "minute")
    assert art.text == "会议研究了冬季供暖工作。\n会议要求各部门落实责任。"


def test_weibo_text_keeps_emoji_alt_and_link_text() -> None:
    html = ('气死了<span class="url-icon"><img alt=[怒] src="//x/d_nu.png" style="width:1em; height:1em;" /></span>'
            '<br />第二行 <a href=\'/n/某人\'>@某人</a> <a  href="/search?q=%23x%23" data-hide="">'
            '<span class="surl-text">#停水#</span></a> &amp; 完...<a href="/status/123">全文</a>')
    assert weibo_text(html) == "气死了[怒]\n第二行 @某人 #停水# & 完"


# ---------------------------------------------------------------- pipeline


class ListProducer:
    """Test double of our own Producer interface: keeps what was sent."""

    def __init__(self, fail_flush: bool = False) -> None:
        self.fail_flush = fail_flush
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.durable: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = ()) -> None:
        self.sent.append((topic, value, key))

    def flush(self, timeout_s: float = 30.0) -> None:
        if self.fail_flush:
            raise OSError("磁盘已满")
        self.durable = list(self.sent)

    def close(self) -> None:
        pass


def _pipeline(tmp_path: Path, producer: ListProducer, demo: DemoServer) -> tuple[RawPostPipeline, Any]:
    settings = make_settings(tmp_path / uuid.uuid4().hex[:6], demo)
    source = next(s for s in load_sources(settings) if s.id == "demo-news")
    crawler = get_crawler(NewsSpider, {"TWISTED_REACTOR_ENABLED": False})
    ctx = CrawlContext(producer=producer, topic="t.posts.raw", state_path=tmp_path / STATE_FILE)
    crawler.spider = NewsSpider.from_crawler(crawler, source=source, ctx=ctx)
    pipe = RawPostPipeline.from_crawler(crawler)
    pipe.open_spider()
    return pipe, crawler


def _item(spider: NewsSpider, **over: Any) -> Any:
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    item = spider.make_item(native_id="http://x/1.htm", url="http://x/1.htm", title="标题", text="正文",
                            author="记者", published=(now - timedelta(hours=1), "minute"), fetched_at=now)
    item.update(over)
    return item


def test_pipeline_rejects_bad_items_and_marks_seen_only_after_flush(tmp_path: Path, demo: DemoServer) -> None:
    failing = ListProducer(fail_flush=True)
    pipe, crawler = _pipeline(tmp_path, failing, demo)
    spider = crawler.spider
    with pytest.raises(DropItem, match="published_at"):
        pipe.process_item(_item(spider, published_at=datetime(2026, 11, 22, 10, 0)))  # naive time
    with pytest.raises(DropItem, match="text"):
        pipe.process_item(_item(spider, text=None))
    pipe.process_item(_item(spider))
    pipe.close_spider()
    stats = crawler.stats.get_stats()
    assert stats["yuqing/rejected"] == 2
    assert stats["yuqing/send_failed"] == 1 and "yuqing/emitted" not in stats
    assert len(failing.sent) == 1 and failing.durable == []

    # Not durable, so not marked: the next crawl sends it again.
    ok = ListProducer()
    pipe, crawler = _pipeline(tmp_path, ok, demo)
    item = _item(crawler.spider)
    pipe.process_item(item)
    pipe.process_item(_item(crawler.spider))  # same post twice in one crawl: sent once
    pipe.close_spider()
    assert crawler.stats.get_stats()["yuqing/emitted"] == 1
    assert len(ok.durable) == 1
    topic_name, value, key = ok.durable[0]
    post = decode(value, RawPost)
    assert topic_name == "t.posts.raw" and key == post.post_id.encode() == item["post_id"].encode()

    again = ListProducer()
    pipe, crawler = _pipeline(tmp_path, again, demo)
    pipe.process_item(_item(crawler.spider))
    pipe.close_spider()
    assert again.sent == [] and crawler.stats.get_stats()["yuqing/unchanged"] == 1
