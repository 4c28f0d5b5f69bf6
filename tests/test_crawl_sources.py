"""Every source kind against the fixture site (tests/fixtures/sites.py) over real HTTP.

Crawls run in child processes (``crawl_once_report``); posts are read back
from the real embedded transport, health from the real ``crawl_state.db``.
Killed-and-resumed crawls, second crawls with edits, robots.txt and the proxy,
for every kind: ``test_crawl_lifecycle.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from crawlers.health import health_of
from crawlers.pipelines import STATE_FILE
from crawlers.runner import CrawlReport, crawl_once_report
from crawlers.sources import get_source
from stream.contracts import CrawlHealth, RawPost, decode, make_post_id
from stream.factory import open_transport, topic
from stream.topics import CRAWL_HEALTH, RAW_POSTS
from tests.fixtures.sites import FixtureServer
from yuqing.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]

SOURCES = """sources:
  - {id: portal, name: 皖江网, kind: news, start_urls: ["%(u)s/portal/"], schedule: {every_s: 60},
     region: "340000", selectors: {list_links: "ul.list a::attr(href)"},
     politeness: {download_delay_s: 0, concurrency: 4, retry_backoff_s: 0.1}}
  - {id: feed, name: 皖江网RSS, kind: news, start_urls: ["%(u)s/rss.xml"], schedule: {every_s: 60},
     politeness: {download_delay_s: 0, concurrency: 4}}
  - {id: atom, name: 皖江网Atom, kind: news, start_urls: ["%(u)s/atom.xml"], schedule: {every_s: 60},
     politeness: {download_delay_s: 0, concurrency: 4}}
  - {id: bbs, name: 论坛, kind: forum, start_urls: ["%(u)s/bbs/forum.php?mod=forumdisplay&fid=1"],
     schedule: {every_s: 60}, politeness: {download_delay_s: 0, concurrency: 4}}
  - {id: tieba, name: 合肥吧, kind: forum, start_urls: ["%(u)s/tieba/f?kw=合肥"], schedule: {every_s: 60},
     politeness: {download_delay_s: 0, concurrency: 4}}
  - {id: wb, name: 微博搜索, kind: weibo, start_urls: ["%(u)s/api/container/getIndex?containerid=100103type%%3D1%%26q%%3D合肥"],
     schedule: {every_s: 60}, fetch_comments: true, politeness: {download_delay_s: 0, concurrency: 2}}
  - {id: board, name: 领导留言板, kind: gov_board, start_urls: ["%(u)s/board/list"], schedule: {every_s: 60},
     region: "340100", politeness: {download_delay_s: 0, concurrency: 2}}
  - {id: cmts, name: 新闻跟帖, kind: comments, start_urls: ["%(u)s/news/"], schedule: {every_s: 60},
     parent_source: feed, politeness: {download_delay_s: 0, concurrency: 2}}
  - {id: slow, name: 慢站, kind: news, start_urls: ["%(u)s/slow/list"], schedule: {every_s: 60},
     selectors: {list_links: "li a::attr(href)"},
     politeness: {download_delay_s: 0, concurrency: 1, autothrottle: false}}
"""


def make_settings(tmp: Path, site: FixtureServer) -> Settings:
    cfg = tmp / "config"
    shutil.copytree(ROOT / "config", cfg)
    (cfg / "sources.yaml").write_text(SOURCES % {"u": site.url}, encoding="utf-8")
    data = tmp / "var"
    data.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YUQING_DATA_DIR", str(data))
        mp.delenv("YUQING_TRANSPORT", raising=False)
        return load_settings(cfg)


def read_topic(settings: Settings, name: str) -> list[bytes]:
    t = open_transport(settings)
    try:
        c = t.consumer(f"test-{time.monotonic_ns()}", [topic(settings, name)])
        out = []
        while recs := c.poll(1000, 0.3):
            out += recs
        c.close()
    finally:
        t.close()
    return [r.value for r in out]


def posts_of(settings: Settings) -> list[RawPost]:
    return [decode(v, RawPost) for v in read_topic(settings, RAW_POSTS)]  # type: ignore[misc]


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureServer]:
    with FixtureServer() as s:
        yield s


@pytest.fixture(scope="module")
def env(site: FixtureServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("kinds"), site)


def crawl(settings: Settings, sid: str) -> CrawlReport:
    return crawl_once_report(settings, sid, timeout_s=120)


def test_gbk_portal_relative_dates_retry_and_truncated_page(env: Settings, site: FixtureServer) -> None:
    r = crawl(env, "portal")
    assert r.health == "ok" and r.errors == 0, r
    posts = {p.url: p for p in posts_of(env) if p.source_id == "portal"}
    a1 = posts[f"{site.url}/portal/a/1.html"]
    assert a1.title == "合肥市蜀山区一小区凌晨发生火灾 消防及时扑救无人员伤亡"
    assert "消防救援人员接警后迅速到场处置" in a1.text and "相关阅读" not in a1.text
    assert a1.author == "王晓明" and a1.source_region == "340000"
    # "3小时前" resolved against the fetch time: hour precision, about 3 h before it.
    assert a1.published_precision == "hour"
    assert abs(a1.fetched_at - a1.published_at - timedelta(hours=3)) < timedelta(hours=1)
    a2 = posts[f"{site.url}/portal/a/2.html"]  # "昨天 HH:MM"
    assert a2.published_precision == "minute"
    assert a2.published_at.date() == (a2.fetched_at - timedelta(days=1)).date()
    # 500, 500, then 200: retried with back-off, extracted.
    flaky = posts[f"{site.url}/portal/b/7.html"]
    assert flaky.title == "市区部分路段今晚起临时交通管制" and "请过往车辆提前绕行" in flaky.text
    assert site.state.hits.count("/portal/b/7.html") == 3
    # Cut off before </html>: used, the body it has kept.
    cut = posts[f"{site.url}/portal/t/8.html"]
    assert "请市民注意防范" in cut.text


def test_rss_and_atom_feeds(env: Settings, site: FixtureServer) -> None:
    for sid in ("feed", "atom"):
        r = crawl(env, sid)
        assert r.emitted == 2 and r.errors == 0, r
    posts = [p for p in posts_of(env) if p.source_id in ("feed", "atom")]
    assert len(posts) == 4
    art = site.state.articles[0]
    for p in posts:
        if p.url.endswith("/portal/a/1.html"):
            assert p.title == art.title
            # The feed's own date (second precision) wins over the page's "3小时前".
            assert p.published_at == art.published and p.published_precision == "second"
            assert "消防救援人员接警后迅速到场处置" in p.text


def test_discuz_multi_page_thread_and_tieba(env: Settings, site: FixtureServer) -> None:
    crawl(env, "bbs")
    crawl(env, "tieba")
    posts = posts_of(env)
    bbs = [p for p in posts if p.source_id == "bbs"]
    thread = site.state.threads[0]
    assert len(bbs) == 1 + len(thread.replies)  # 23 posts over 3 pages
    head = next(p for p in bbs if p.parent_id is None)
    assert head.title == thread.title and head.author == "老张"
    assert all(p.parent_id == head.post_id for p in bbs if p is not head)
    last = next(p for p in bbs if p.text.startswith("第22楼"))
    assert last.published_at == thread.replies[-1].at and last.author == "网友22"
    tb = [p for p in posts if p.source_id == "tieba"]
    t = site.state.tieba[0]
    first = next(p for p in tb if p.parent_id is None)
    assert first.post_id == make_post_id("tieba", f"tieba:{t.tid}")
    assert (first.title, first.author, first.text) == (t.title, "吧友甲", t.text)
    assert first.published_at == t.at and first.published_precision == "minute"
    replies = [p for p in tb if p.parent_id == first.post_id]
    assert [(p.author, p.text) for p in replies] == [("吧友乙", "已经打了12345热线。")]


def test_weibo_search_long_text_retweet_and_comments(env: Settings, site: FixtureServer) -> None:
    r = crawl(env, "wb")
    assert r.errors == 0, r
    wb = {p.post_id: p for p in posts_of(env) if p.source_id == "wb"}
    orig = wb[make_post_id("wb", "5001")]
    assert orig.text == site.state.weibo[0]["long"]  # completed from statuses/extend
    assert orig.engagement.reposts == 3 and orig.author == "合肥身边事"
    rt = wb[make_post_id("wb", "5002")]
    assert rt.parent_id == orig.post_id and rt.text.startswith("转发微博")
    comments = [p for p in wb.values() if p.post_id not in (orig.post_id, rt.post_id)]
    assert sorted(p.text for p in comments) == ["评论1：注意安全[心]", "评论2：注意安全[心]"]
    assert all(p.parent_id == orig.post_id for p in comments)


def test_gov_board_message_then_official_reply(env: Settings, site: FixtureServer) -> None:
    crawl(env, "board")
    msg = site.state.messages[0]
    posts = [p for p in posts_of(env) if p.source_id == "board"]
    assert len(posts) == 1
    m = posts[0]
    assert (m.title, m.author, m.source_kind, m.parent_id) == (msg.title, "市民王先生", "gov_board", None)
    assert m.published_at == msg.at and m.text == msg.text
    # The reply comes later: its own post, marked official, with the reply's time.
    msg.reply_org, msg.reply_text = "某某区城市管理局", "已安排维修人员更换路灯，现已恢复照明。"
    msg.reply_at = msg.at + timedelta(hours=20)
    r = crawl(env, "board")
    assert r.emitted == 1 and r.unchanged == 1, r
    posts = [p for p in posts_of(env) if p.source_id == "board"]
    reply = posts[-1]
    assert reply.source_kind == "official" and reply.parent_id == m.post_id
    assert reply.author == "某某区城市管理局" and reply.published_at == msg.reply_at
    assert reply.text == msg.reply_text


def test_news_comment_api(env: Settings, site: FixtureServer) -> None:
    r = crawl(env, "cmts")
    assert r.emitted == 1, r
    c = next(p for p in posts_of(env) if p.source_id == "cmts")
    assert c.source_kind == "comments" and c.text == "希望早日查明原因。" and c.author == "网友A"
    assert c.engagement.likes == 5
    # The parent is the article as the news source that crawls it identifies it.
    assert c.parent_id == make_post_id("feed", f"{site.url}/news/1.html")


def test_captcha_page_turns_health_blocked(env: Settings, site: FixtureServer) -> None:
    site.state.captcha = True
    try:
        r = crawl(env, "portal")
    finally:
        site.state.captcha = False
    assert r.health == "blocked", r
    h = health_of(env.data_path(STATE_FILE), get_source(env, "portal"))
    assert h.state == "blocked" and h.alert and "验证码" in h.reason
    msgs = [decode(v, CrawlHealth) for v in read_topic(env, CRAWL_HEALTH)]
    assert any(m.source_id == "portal" and m.state == "blocked" for m in msgs)  # type: ignore[attr-defined]
    # Recovers on the next clean crawl, and says so on crawl.health (the responder tells admins).
    assert crawl(env, "portal").health == "ok"
    assert health_of(env.data_path(STATE_FILE), get_source(env, "portal")).state == "ok"
    msgs = [decode(v, CrawlHealth) for v in read_topic(env, CRAWL_HEALTH)]
    portal = [m.state for m in msgs if m.source_id == "portal"]  # type: ignore[attr-defined]
    assert portal[-2:] == ["blocked", "ok"], portal


def test_weibo_418_is_blocked_and_dark_after_threshold(env: Settings, site: FixtureServer) -> None:
    site.state.weibo_calls, site.state.weibo_limit = 0, 1
    try:
        r = crawl(env, "wb")
    finally:
        site.state.weibo_limit = 1000
    assert r.health == "blocked", r
    h = health_of(env.data_path(STATE_FILE), get_source(env, "wb"))
    assert h.state == "blocked" and "HTTP 418" in h.reason
    later = h.checked_at + timedelta(minutes=61)
    dark = health_of(env.data_path(STATE_FILE), get_source(env, "wb"), now=later)
    assert dark.state == "dark" and dark.alert
    assert health_of(env.data_path(STATE_FILE), get_source(env, "feed"), now=later).state == "ok"


def test_crawl_health_cli_json(env: Settings) -> None:
    out = subprocess.run([sys.executable, "-m", "yuqing.cli", "--config", str(env.config_dir), "crawl-health", "--json"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "YUQING_DATA_DIR": str(env.data_dir)})
    assert out.returncode in (0, 1), out.stderr
    import json

    rows = {r["source_id"]: r for r in json.loads(out.stdout)}
    assert rows["feed"]["state"] == "ok" and rows["slow"]["state"] == "never"
    assert rows["wb"]["state"] == "blocked"
