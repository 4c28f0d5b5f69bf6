"""The demo source site, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from stream.contracts import SHANGHAI
from yuqing.demo_site import DemoServer
from yuqing.demo_site.model import DemoSite
from yuqing.demo_site.stories import INITIAL

ABSOLUTE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \+0800 \d{4}$")


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    with DemoServer(publish_every_s=3600, seed=7) as d:
        yield d


@pytest.fixture
def client(demo: DemoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as c:
        yield c


def items(c: httpx.Client, kind: str | None = None) -> list[dict]:
    r = c.get("/_demo/items", params={"kind": kind} if kind else None)
    r.raise_for_status()
    return r.json()["items"]


def test_items_appear_over_time() -> None:
    with DemoServer(publish_every_s=0.5, seed=3) as d, httpx.Client(base_url=d.url, timeout=10) as c:
        first = items(c)
        # The initial stories were published before start, so nothing is empty.
        assert len(first) >= len(INITIAL)
        assert all(datetime.fromisoformat(i["published_at"]) <= datetime.now(SHANGHAI) for i in first)
        time.sleep(1.6)
        later = items(c)
        assert len(later) >= len(first) + 2
        new = {i["id"] for i in later} - {i["id"] for i in first}
        # What became visible is on the source pages too.
        news_list = c.get("/news/").content.decode("gbk")
        forum_list = c.get("/forum/forum.php", params={"mod": "forumdisplay", "fid": 2}).text
        cards = c.get("/api/container/getIndex", params={"containerid": "102803"}).json()["data"]["cards"]
        mids = {card["mblog"]["id"] for card in cards}
        for i in later:
            if i["id"] not in new:
                continue
            if i["kind"] == "news":
                assert i["url"].removeprefix(d.url) in news_list
            elif i["kind"] == "forum":
                assert f"tid={i['id']}&amp;" in forum_list
            else:
                assert i["id"] in mids


def test_schedule_is_deterministic_per_seed() -> None:
    start = datetime(2026, 11, 22, 14, 0, tzinfo=SHANGHAI)

    def plan(seed: int) -> list[tuple[str, str, datetime]]:
        site = DemoSite(publish_every_s=20, seed=seed, start=start)
        far = start + timedelta(days=1)
        return [(i.kind, i.title, i.published_at) for i in site.visible(now=far)]

    assert plan(7) == plan(7)
    assert plan(7) != plan(8)
    everything = plan(7)
    assert len(everything) >= 40
    # One new item every publish_every_s after start.
    after = sorted(t for _, _, t in everything if t > start)
    gaps = {(b - a).total_seconds() for a, b in zip(after, after[1:], strict=False)}
    assert gaps == {20.0}


def test_major_emergency_is_visible_at_start_in_all_three_sources(client: httpx.Client) -> None:
    hits = [i for i in items(client) if i["group"] == "huoshan"]
    assert {i["kind"] for i in hits} == {"news", "forum", "weibo"}
    news = next(i for i in hits if i["kind"] == "news")
    assert "12人死亡" in news["title"]


def test_news_pages_are_gbk(client: httpx.Client) -> None:
    lst = client.get("/news/")
    assert lst.status_code == 200
    # The list declares its charset only in <meta>.
    assert "charset" not in lst.headers["content-type"].lower()
    assert b'charset=gbk' in lst.content
    with pytest.raises(UnicodeDecodeError):
        lst.content.decode("utf-8")
    text = lst.content.decode("gbk")
    links = re.findall(r'href="(/news/\d{4}-\d\d/\d\d/content_\d+\.htm)"', text)
    assert links
    news = {urlsplit(i["url"]).path: i for i in items(client, "news")}
    for link in links:
        page = client.get(link)
        assert page.status_code == 200
        charset = page.headers["content-type"].split("charset=")[1].lower()
        assert charset in ("gbk", "gb2312")
        assert f"charset={charset}".encode() in page.content
        html = page.content.decode("gbk")
        item = news[link]
        assert f'<h1 class="article-title">{item["title"]}</h1>' in html
        assert '<div class="article-content">' in html
        shown = datetime.fromisoformat(item["published_at"]).astimezone(SHANGHAI)
        assert (f"{shown:%Y-%m-%d %H:%M}" in html) or (f"{shown.year}年{shown.month:02d}月{shown.day:02d}日 {shown:%H:%M}" in html)


def test_forum_markup_is_discuz_like(client: httpx.Client) -> None:
    thread = next(i for i in items(client, "forum") if i["group"] == "huoshan")
    r = client.get("/forum/forum.php", params={"mod": "viewthread", "tid": thread["id"]})
    assert r.status_code == 200
    html = r.text
    assert f'<span id="thread_subject">{thread["title"]}</span>' in html
    pids = [thread["first_pid"], *thread["reply_pids"]]
    assert len(pids) >= 5
    for pid in pids:
        assert f'<div class="t_f" id="postmessage_{pid}">' in html
        m = re.search(rf'<em id="authorposton{pid}">发表于 (.*?)</em>', html)
        assert m, pid
        # Recent posts: relative text, exact time in title, as Discuz! prints them.
        assert re.search(r'\d{4}-\d\d-\d\d \d\d:\d\d', m.group(1))
    assert client.get("/forum/forum.php", params={"mod": "viewthread", "tid": 999999}).text.count("主题不存在") == 1


def test_weibo_json_shape(client: httpx.Client) -> None:
    r = client.get("/api/container/getIndex", params={"containerid": "102803"})
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert data["ok"] == 1
    cards = data["data"]["cards"]
    assert cards and all(c["card_type"] == 9 for c in cards)
    for c in cards:
        m = c["mblog"]
        for key in ("id", "mid", "text", "created_at", "reposts_count", "comments_count", "attitudes_count", "user"):
            assert key in m
        assert {"screen_name", "id"} <= m["user"].keys()
        assert isinstance(m["reposts_count"], int)
    created = [c["mblog"]["created_at"] for c in cards]
    assert any(ABSOLUTE.match(x) for x in created)
    assert any(re.fullmatch(r"刚刚|\d+分钟前|\d+小时前|昨天 \d\d:\d\d", x) for x in created)
    texts = " ".join(c["mblog"]["text"] for c in cards)
    assert '<span class="url-icon"><img alt=[怒]' in texts
    reposts = [c["mblog"] for c in cards if "retweeted_status" in c["mblog"]]
    assert reposts and reposts[0]["retweeted_status"]["user"]["screen_name"] == "霍山身边事"
    assert client.get("/api/container/getIndex", params={"containerid": "nope"}).json()["ok"] == 0


def test_publish_and_long_weibo(client: httpx.Client) -> None:
    body = "池州市东至县一化工厂发生爆炸，造成3人死亡。" * 12
    r = client.post("/_demo/publish", json={"kind": "weibo", "text": body, "author": "测试账号"})
    assert r.status_code == 201
    mid = r.json()["id"]
    cards = client.get("/api/container/getIndex", params={"containerid": "102803"}).json()["data"]["cards"]
    mblog = next(c["mblog"] for c in cards if c["mblog"]["id"] == mid)
    assert mblog["isLongText"] is True and "全文" in mblog["text"]
    assert mblog["created_at"] in ("刚刚",) or ABSOLUTE.match(mblog["created_at"])
    full = client.get("/statuses/extend", params={"id": mid}).json()
    assert full["ok"] == 1 and full["data"]["longTextContent"] == body


def test_publish_endpoint(client: httpx.Client) -> None:
    at = (datetime.now(SHANGHAI) - timedelta(days=2)).replace(second=0, microsecond=0)
    r = client.post("/_demo/publish", json={
        "kind": "news", "title": "测试：某县一仓库起火", "text": "第一段。\n\n第二段，造成2人受伤。",
        "published_at": at.isoformat(), "author": "记者 测试"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert datetime.fromisoformat(made["published_at"]) == at
    page = client.get(made["url"])
    assert page.status_code == 200
    html = page.content.decode("gbk")
    assert "测试：某县一仓库起火" in html and "记者 测试" in html and f"{at:%Y-%m-%d %H:%M}" in html
    assert made["url"].removeprefix(str(client.base_url).rstrip("/")) in client.get("/news/").content.decode("gbk")

    r = client.post("/_demo/publish", json={
        "kind": "forum", "title": "测试主题", "text": "主楼内容",
        "replies": [{"author": f"网友{n}", "text": f"第{n}条回复", "after_min": n + 1} for n in range(12)],
        "published_at": (datetime.now(SHANGHAI) - timedelta(hours=2)).isoformat()})
    assert r.status_code == 201
    tid = r.json()["id"]
    page1 = client.get("/forum/forum.php", params={"mod": "viewthread", "tid": tid}).text
    assert 'class="nxt"' in page1  # 13 posts, 10 a page
    page2 = client.get("/forum/forum.php", params={"mod": "viewthread", "tid": tid, "page": 2}).text
    assert "第11条回复" in page2 and "第11条回复" not in page1

    future = (datetime.now(SHANGHAI) + timedelta(hours=1)).isoformat()
    r = client.post("/_demo/publish", json={"kind": "news", "title": "未来", "text": "尚未发布", "published_at": future})
    assert client.get(r.json()["url"]).status_code == 404

    bad = client.post("/_demo/publish", json={"kind": "blog", "text": "x"})
    assert bad.status_code == 422 and "请求不合法" in bad.json()["error"]


def test_faults_and_edit(client: httpx.Client) -> None:
    r = client.post("/_demo/publish", json={"kind": "news", "title": "会出错的页面", "text": "正文" * 200,
                                             "fault": "error"})
    assert client.get(r.json()["url"]).status_code == 500
    r = client.post("/_demo/publish", json={"kind": "news", "title": "被截断的页面", "text": "正文" * 200,
                                             "fault": "truncate"})
    cut = client.get(r.json()["url"])
    assert cut.status_code == 200 and b"</html>" not in cut.content
    fixed = client.post("/_demo/edit", json={"kind": "news", "id": r.json()["id"], "fault": None,
                                             "text": "修改后的正文"})
    assert fixed.status_code == 200
    whole = client.get(r.json()["url"]).content.decode("gbk")
    assert "修改后的正文" in whole and whole.rstrip().endswith("</html>")
    assert client.post("/_demo/edit", json={"kind": "news", "id": "1", "text": "x"}).status_code == 404


def test_index_and_robots(client: httpx.Client) -> None:
    index = client.get("/").text
    for href in ("/news/", "/forum/forum.php?mod=forumdisplay&amp;fid=2", "/api/container/getIndex?containerid=102803"):
        assert f'href="{href}"' in index
    assert "演示" in index
    assert "Disallow: /_demo/" in client.get("/robots.txt").text
