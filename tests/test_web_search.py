"""The analyst's archive search (/search, /api/search, /api/search/export) over the embedded backend."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from responder.indexer import SearchIndexer
from responder.search import open_search
from responder.search.base import PostDoc
from responder.service import handle_batch
from responder.store import Store
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)


def _doc(pid: str, title: str, text: str, hours: float, **kw) -> PostDoc:
    base = dict(source_id="demo-news", source_kind="news", url=f"http://news.test/{pid}.html",
                place_code="340104", place_label="安徽省合肥市蜀山区", topic="城乡建设", severity="一般")
    base.update(kw)
    return PostDoc(post_id=pid, title=title, text=text, published_at=T0 + timedelta(hours=hours), **base)


DOCS = [
    _doc("p1", "蜀山区小区物业费上涨", "业主反映物业费由每平方米1.2元上涨至2.3元，物业服务没有改善。", 0),
    _doc("p2", "包河区居民楼火灾", "合肥市包河区一居民楼发生火灾，物业称消防通道被占用。", 30,
         place_code="340111", place_label="安徽省合肥市包河区", topic="公共安全", severity="重大",
         source_kind="weibo", source_id="demo-weibo", event_id=7),
    _doc("p3", "霍山县物业纠纷", "霍山县某小区物业与业主发生纠纷。", 50, place_code="341525",
         place_label="安徽省六安市霍山县", source_kind="forum", source_id="demo-forum"),
    _doc("p4", "南京市物业投诉", "南京市鼓楼区物业投诉增多。", 60, place_code="320106",
         place_label="江苏省南京市鼓楼区"),
    _doc("x1", "<script>alert(1)</script>物业", "正文里有 <b>标签</b> 和物业二字。", 70),
]


@pytest.fixture
def client(tmp_path, settings):
    backend = open_search(settings)
    backend.index(DOCS)
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    app = create_app(settings, store=store, search=backend)
    with client_as(app, "李分析", "analyst") as c:
        yield c
    backend.close()
    store.close()


def test_api_filters_facets_and_pages(client) -> None:
    r = client.get("/api/search", params={"q": "物业"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 5 and {h["post_id"] for h in body["hits"]} == {"p1", "p2", "p3", "p4", "x1"}
    assert body["facets"]["source_kind"] == {"news": 3, "weibo": 1, "forum": 1}
    # Jurisdiction: 34 is Anhui and everything in it; 3401 is Hefei only.
    anhui = client.get("/api/search", params={"q": "物业", "place": "34"}).json()
    assert {h["post_id"] for h in anhui["hits"]} == {"p1", "p2", "p3", "x1"}
    hefei = client.get("/api/search", params={"q": "物业", "place": "340100"}).json()
    assert {h["post_id"] for h in hefei["hits"]} == {"p1", "p2", "x1"}
    # Repeated values are "any of"; different filters combine.
    two = client.get("/api/search", params=[("q", "物业"), ("kind", "weibo"), ("kind", "forum")]).json()
    assert {h["post_id"] for h in two["hits"]} == {"p2", "p3"}
    assert client.get("/api/search", params={"severity": "重大"}).json()["total"] == 1
    # Dates are Shanghai days, both ends inclusive: T0 is 2026-11-02 09:00; p2 is 11-03 15:00.
    days = client.get("/api/search", params={"from": "2026-11-03", "to": "2026-11-03"}).json()
    assert [h["post_id"] for h in days["hits"]] == ["p2"]
    assert days["hits"][0]["published_at"] == "2026-11-03T15:00:00+08:00"
    # Pages of 2, newest first.
    pages = [client.get("/api/search", params={"q": "物业", "sort": "time", "size": 2, "page": n}).json()
             for n in (1, 2, 3)]
    assert [[h["post_id"] for h in p["hits"]] for p in pages] == [["x1", "p4"], ["p3", "p2"], ["p1"]]


def test_bad_parameters_get_400_naming_them(client) -> None:
    r = client.get("/api/search", params={"from": "11/02/2026"})
    assert r.status_code == 400 and "from" in r.json()["detail"] and "11/02/2026" in r.json()["detail"]
    r = client.get("/api/search", params={"place": "火星"})
    assert r.status_code == 400 and "火星" in r.json()["detail"]
    r = client.get("/api/search", params={"sort": "best"})
    assert r.status_code == 400 and "sort" in r.json()["detail"]
    assert client.get("/api/search", params={"size": 1000}).status_code == 422
    page = client.get("/search", params={"to": "昨天"})
    assert page.status_code == 400 and "检索条件有误" in page.text and "<form" in page.text
    # The query language: a syntax error is the user's, named in Chinese, never a 500.
    r = client.get("/api/search", params={"q": "(地铁 | 公交"})
    assert r.status_code == 400 and "括号没有闭合" in r.json()["detail"]
    page = client.get("/search", params={"q": "地铁 |"})
    assert page.status_code == 400 and "检索式有误" in page.text and "<form" in page.text
    assert client.get("/api/search", params={"q": "霍山 | 金寨 -厂房"}).status_code == 200


def test_page_highlights_escapes_and_links_facets(client) -> None:
    r = client.get("/search", params={"q": "物业 火灾"})
    assert r.status_code == 200
    assert "<em>火灾</em>" in r.text and "共 1 条" in r.text
    assert 'href="/events/7"' in r.text  # the hit's event → its ticket
    r = client.get("/search", params={"q": "物业"})
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text
    assert "<b>标签</b>" not in r.text
    # A facet link narrows the search to that value, keeping the words.
    assert 'href="/search?q=%E7%89%A9%E4%B8%9A&amp;kind=forum"' in r.text
    assert "论坛（1）" in r.text and "导出全部结果（CSV）" in r.text
    assert client.get("/").text.count('href="/search"') == 1  # reachable from the board


def test_export_is_every_match_as_csv_for_excel(client) -> None:
    r = client.get("/api/search/export", params={"q": "物业", "place": "34"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-total-count"] == "4" and r.headers["x-truncated"] == "false"
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["发布时间", "标题", "来源类型"]
    assert [row[1] for row in rows[1:]] == ["<script>alert(1)</script>物业", "霍山县物业纠纷", "包河区居民楼火灾",
                                           "蜀山区小区物业费上涨"]  # newest first
    fire = rows[3]
    assert fire[0] == "2026-11-03 15:00:00" and fire[2] == "微博" and fire[7] == "重大" and fire[8] == "7"
    assert "<em>" not in r.text and "物业" in rows[1][10]


def test_web_opens_the_index_the_indexer_writes(tmp_path, settings) -> None:
    """No backend passed: the app opens the configured one, where the indexer indexed the stored posts."""
    store = Store(f"sqlite:///{tmp_path / 'ticket.db'}")
    writer = open_search(settings)
    try:
        handle_batch(store, settings, [assessed("fire", title="居民楼火灾致12人死亡",
                                                text="合肥市包河区一居民楼火灾已造成12人死亡。", published_at=T0,
                                                severity="重大", is_emergency=True, event_type="事故灾难",
                                                event_subtype="火灾", place="包河区")])
        SearchIndexer(store, writer).catch_up()
    finally:
        writer.close()
    with client_as(create_app(settings, store=store), "李分析", "analyst") as c:
        hits = c.get("/api/search", params={"q": "火灾"}).json()["hits"]
        assert [h["post_id"] for h in hits] == ["fire"] and hits[0]["severity"] == "重大"
        event_page = c.get(f"/events/{hits[0]['event_id']}")
        assert event_page.status_code == 200 and "居民楼火灾致12人死亡" in event_page.text
        assert c.get("/events/999").status_code == 404
    store.close()


def test_saved_searches_count_recent_matches_and_are_audited(tmp_path, settings) -> None:
    from sqlalchemy import select

    from responder.store import Audit

    backend = open_search(settings)
    backend.index(DOCS)
    store = Store(f"sqlite:///{tmp_path / 'saved.db'}")
    app = create_app(settings, store=store, search=backend, now=lambda: T0 + timedelta(hours=71))
    with client_as(app, "李分析", "analyst") as c:
        body = {"name": "安徽物业", "params": {"q": "物业", "place": "34", "kind": []}}
        r = c.post("/api/searches", json=body)
        assert r.status_code == 201, r.text
        got = r.json()
        # Saved without empty values; 4 matches in Anhui, 2 of them published in the 24 h before T0+71h.
        assert got["params"] == {"q": "物业", "place": "34"} and got["total"] == 4 and got["last_24h"] == 2
        assert got["link"] == "/search?q=%E7%89%A9%E4%B8%9A&place=34"
        assert c.post("/api/searches", json=body).status_code == 409
        bad = c.post("/api/searches", json={**body, "name": "坏的", "params": {"from": "上周"}})
        assert bad.status_code == 400 and "from" in bad.json()["detail"]
        odd = c.post("/api/searches", json={**body, "name": "多余", "params": {"keyword": "物业"}})
        assert odd.status_code == 400 and "keyword" in odd.json()["detail"]
        assert c.post("/api/searches", json={**body, "name": "  "}).status_code == 422
        listed = c.get("/api/searches").json()["searches"]
        assert [(s["name"], s["total"], s["last_24h"]) for s in listed] == [("安徽物业", 4, 2)]
        page = c.get("/search").text
        assert "安徽物业" in page and "近24小时 2 条 / 共 4 条" in page
        sid = got["id"]
        assert c.delete(f"/api/searches/{sid}").json() == {"deleted": sid}
        assert c.delete(f"/api/searches/{sid}").status_code == 404
        assert c.get("/api/searches").json()["searches"] == []
    with store.reader() as s:
        rows = [a for a in s.scalars(select(Audit).order_by(Audit.id)) if a.action.startswith("saved_search")]
    actions = [(a.action, a.actor, a.detail["name"]) for a in rows if a.outcome == "ok"]
    assert actions == [("saved_search_created", "李分析", "安徽物业"), ("saved_search_deleted", "李分析", "安徽物业")]
    # The refusals are audited too: the taken name and two bad parameter sets failed, the second delete
    # denied (the blank name never reached the responder: 422 from the schema).
    assert [(a.action, a.outcome) for a in rows if a.outcome != "ok"] == [
        ("saved_search_created", "failed")] * 3 + [("saved_search_deleted", "denied")]
    backend.close()
    store.close()


def test_place_by_name_with_suggestions_for_ambiguous_ones(tmp_path, settings, client) -> None:
    def ids(**params) -> set[str]:
        r = client.get("/api/search", params={"q": "物业", **params})
        assert r.status_code == 200, r.text
        return {h["post_id"] for h in r.json()["hits"]}

    hefei = ids(place="3401")
    assert hefei == {"p1", "p2", "x1"}
    assert ids(place="合肥") == ids(place="合肥市") == ids(place="安徽省合肥市") == hefei
    assert ids(place="蜀山区") == ids(place="340104") == {"p1", "x1"}
    assert ids(place="安徽") == {"p1", "p2", "p3", "x1"}
    assert ids(place="霍山") == {"p3"}
    page = client.get("/search", params={"q": "物业", "place": "合肥"})
    assert page.status_code == 200 and "属地：安徽省合肥市" in page.text and "共 3 条" in page.text

    # 鼓楼区 is in 南京, 徐州, 福州 and 开封: 400 with each of them to choose from.
    r = client.get("/api/search", params={"q": "物业", "place": "鼓楼区"})
    assert r.status_code == 400 and "4 处同名" in r.json()["detail"]
    assert {x["code"]: x["label"] for x in r.json()["suggestions"]} == {
        "320106": "江苏省南京市鼓楼区", "320302": "江苏省徐州市鼓楼区",
        "350102": "福建省福州市鼓楼区", "410204": "河南省开封市鼓楼区"}
    page = client.get("/search", params={"q": "物业", "place": "鼓楼区"})
    assert page.status_code == 400 and "4 处同名" in page.text and "<form" in page.text
    assert 'href="/search?q=%E7%89%A9%E4%B8%9A&amp;place=320106"' in page.text and "江苏省南京市鼓楼区（320106）" in page.text
    chosen = client.get("/search?q=%E7%89%A9%E4%B8%9A&place=320106")
    assert chosen.status_code == 200 and "南京市<em>物业</em>投诉" in chosen.text

    # A user of 南京 means the 鼓楼区 in the own jurisdiction; scoping still holds.
    with client_as(client.app, "南京分析", "analyst", "3201") as nj:
        r = nj.get("/api/search", params={"q": "物业", "place": "鼓楼区"})
        assert r.status_code == 200 and [h["post_id"] for h in r.json()["hits"]] == ["p4"]
        assert nj.get("/api/search", params={"q": "物业", "place": "合肥"}).json()["total"] == 0

    # Unknown names and codes: 400, never 0 hits; near names are offered.
    r = client.get("/api/search", params={"place": "蜀山"})
    assert r.status_code == 200  # a short name of 蜀山区
    r = client.get("/api/search", params={"place": "火星市"})
    assert r.status_code == 400 and "没有名为“火星市”的属地" in r.json()["detail"]
    r = client.get("/api/search", params={"place": "包河"})
    assert r.status_code == 200 and {h["post_id"] for h in r.json()["hits"]} == {"p2"}
    r = client.get("/api/search", params={"place": "鼓楼"})
    assert r.status_code == 400 and "320106" in {x["code"] for x in r.json()["suggestions"]}
    for code in ("3499", "349901", "99"):
        r = client.get("/api/search", params={"place": code})
        assert r.status_code == 400 and f"属地代码 {code} 不存在" in r.json()["detail"], code


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"kind": "telegram"}, "来源类型 kind=“telegram”不存在"),
        ({"kind": ["news", "微信"]}, "“微信”不存在"),
        ({"severity": "超级重大"}, "级别 severity=“超级重大”不存在"),
        ({"topic": "宇宙开发"}, "主题 topic=“宇宙开发”不存在"),
        ({"from": "2026-11-04", "to": "2026-11-03"}, "晚于"),
        ({"from": "2026-11-03T10:00", "to": "2026-11-03T09:00"}, "晚于"),
    ],
)
def test_unknown_kind_severity_topic_or_from_after_to_get_400(client, params, needle) -> None:
    for path in ("/api/search", "/api/search/export"):
        r = client.get(path, params=params)
        assert r.status_code == 400 and needle in r.json()["detail"], (path, r.text)
    page = client.get("/search", params=params)
    assert page.status_code == 400 and needle in page.text.replace("&#34;", '"') and "<form" in page.text
    assert "没有符合条件的信息" not in page.text
    # The values that exist still work.
    ok = {"kind": "forum", "severity": "重大", "topic": "公共安全", "from": "2026-11-03", "to": "2026-11-03"}
    assert client.get("/api/search", params=ok).status_code == 200
