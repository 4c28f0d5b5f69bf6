"""The alert board and JSON API, over a real HTTP server on 127.0.0.1 where the address matters."""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import timedelta

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from responder import cases
from responder.service import handle_batch
from responder.store import Audit, DeadlineWarning, Store, Ticket
from tests.fixtures.auth import bearer, client_as
from tests.fixtures.common import Clock
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
EV = "https://gov.test/fabu/1.html"  # a milestone's evidence


class Officers(dict):
    """Signed-in clients by username (duty officers at the root jurisdiction), made on first use:
    the name on the record comes from the account, so each officer has its own."""

    def __init__(self, app) -> None:
        super().__init__()
        self.app = app

    def __missing__(self, name: str) -> TestClient:
        c = self[name] = client_as(self.app, name)
        return c



@pytest.fixture
def board(tmp_path, settings):
    """A store with three open tickets of different severity, one with an unknown place."""
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    handle_batch(
        store,
        settings,
        [
            assessed(
                "minor",
                title="翡翠湖畔小区物业费上涨",
                text="物业费由每平方米1.2元上涨至2.3元。",
                published_at=T0,
                place="蜀山区",
            ),
            assessed(
                "fire",
                title="居民楼火灾致12人死亡",
                text="合肥市包河区一居民楼火灾已造成12人死亡。",
                published_at=T0 + timedelta(hours=1),
                severity="重大",
                is_emergency=True,
                event_type="事故灾难",
                event_subtype="火灾",
                place="包河区",
                department="应急管理局",
                severity_reason="死亡12人，达到重大事故标准",
            ),
            assessed(
                "unknown",
                title="某地自来水发黄",
                text="家里自来水发黄好几天了，没人管。",
                source_kind="weibo",
                published_at=T0 + timedelta(hours=2),
                place="待定",
                department=None,
            ),
        ],
        now=T0 + timedelta(hours=2, minutes=5),
    )
    with store.reader() as s:
        ids = {s.get(Ticket, t).severity: t for t in s.scalars(select(Ticket.id))}
    clock = Clock(T0 + timedelta(hours=3))
    app = create_app(settings, store=store, now=clock)
    yield store, app, clock, ids
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(board):
    """The app served by uvicorn on a free port of 127.0.0.1."""
    store, app, clock, ids = board
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.02)
    assert srv.started
    yield f"http://127.0.0.1:{port}", store, clock, ids
    srv.should_exit = True
    t.join(10)


def test_list_open_tickets(board) -> None:
    _, app, _, ids = board
    r = client_as(app).get("/api/tickets")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3
    tickets = body["tickets"]
    assert [t["severity"] for t in tickets] == ["重大", "一般", "一般"]
    # Same severity: newest first.
    assert [t["event"]["title"] for t in tickets[1:]] == ["某地自来水发黄", "翡翠湖畔小区物业费上涨"]
    fire = tickets[0]
    assert fire["id"] == ids["重大"] and fire["rule"] == "major_emergency"
    assert fire["event"]["t0"] == "2026-11-02T10:00:00+08:00" and fire["event"]["post_count"] == 1
    assert fire["event"]["t0_precision"] == "minute" and fire["severity_reason"].startswith("死亡12人")
    assert fire["place"] == {
        "province": "安徽省",
        "city": "合肥市",
        "county": "包河区",
        "code": "340111",
        "label": "安徽省合肥市包河区",
    }
    assert fire["department"] == "应急管理局" and fire["primary_responder"] == "包河区应急管理局"
    dl = {d["milestone"]: d for d in fire["deadlines"]}
    assert dl["权威信息发布"]["due_at"] == "2026-11-02T15:00:00+08:00"
    assert dl["权威信息发布"]["seconds_left"] == 3 * 3600  # now is T0+3h, fire T0 is T0+1h
    assert dl["新闻发布会"]["due_at"] == "2026-11-03T10:00:00+08:00" and dl["新闻发布会"]["met_at"] is None
    assert tickets[1]["place"]["label"] == "待定" and tickets[1]["place"]["code"] is None
    assert fire["acknowledged_by"] is None and fire["acknowledged_at"] is None


def test_ack_records_officer_time_address_and_leaves_deadlines(server) -> None:
    base, store, clock, ids = server
    tid = ids["重大"]
    zhang, li = bearer(store, "张三"), bearer(store, "李四")
    before = httpx.get(f"{base}/api/tickets/{tid}", headers=zhang).json()["deadlines"]
    clock.at = sh(2026, 11, 2, 12, 34, 56)
    r = httpx.post(f"{base}/api/tickets/{tid}/ack", headers=zhang)
    assert r.status_code == 200, r.text
    t = r.json()["ticket"]
    assert t["status"] == "acknowledged" and t["acknowledged_by"] == "张三"
    assert t["acknowledged_at"] == "2026-11-02T12:34:56+08:00" and t["acknowledged_from"] == "127.0.0.1"
    after = httpx.get(f"{base}/api/tickets/{tid}", headers=zhang).json()
    assert [(d["milestone"], d["due_at"], d["met_at"]) for d in after["deadlines"]] == [
        (d["milestone"], d["due_at"], d["met_at"]) for d in before
    ]
    ack = [a for a in after["audit"] if a["action"] == "acknowledged"]
    assert len(ack) == 1 and ack[0]["actor"] == "张三" and ack[0]["remote_addr"] == "127.0.0.1"
    assert ack[0]["at"] == "2026-11-02T12:34:56+08:00"
    with store.reader() as s:
        row = s.get(Ticket, tid)
        assert row.acknowledged_from == "127.0.0.1" and row.acknowledged_at == sh(2026, 11, 2, 12, 34, 56)

    # Same officer again: 200, unchanged. Another officer: 409 naming the first.
    clock.at = sh(2026, 11, 2, 12, 40)
    again = httpx.post(f"{base}/api/tickets/{tid}/ack", headers=zhang)
    assert again.status_code == 200 and again.json()["already"] is True
    assert again.json()["ticket"]["acknowledged_at"] == "2026-11-02T12:34:56+08:00"
    other = httpx.post(f"{base}/api/tickets/{tid}/ack", headers=li)
    assert other.status_code == 409 and "张三" in other.json()["detail"]
    with store.reader() as s:
        rows = s.query(Audit).filter(Audit.action == "acknowledged").order_by(Audit.id).all()
    # One acknowledgement; the refused second officer is audited as failed (role, jurisdiction, place).
    assert [(a.actor, a.outcome) for a in rows] == [("张三", "ok"), ("李四", "failed")]
    assert rows[1].actor_role == "duty" and rows[1].place_code == rows[0].place_code is not None


def test_errors_404_422(board) -> None:
    _, app, _, ids = board
    c = client_as(app, "张三")
    assert c.post("/api/tickets/9999/ack").status_code == 404
    assert c.get("/api/tickets/9999").status_code == 404
    assert c.post(f"/api/tickets/{ids['重大']}/milestones", json={}).status_code == 422
    r = c.post(f"/api/tickets/{ids['重大']}/milestones", json={"milestone": "开会"})
    assert r.status_code == 422 and "权威信息发布" in r.json()["detail"]
    # No evidence, or no web address: nothing is recorded (no milestone counts as met without proof).
    r = c.post(f"/api/tickets/{ids['重大']}/milestones", json={"milestone": "权威信息发布"})
    assert r.status_code == 422 and "须附佐证链接" in r.json()["detail"]
    r = c.post(f"/api/tickets/{ids['重大']}/milestones",
               json={"milestone": "权威信息发布", "evidence_url": "javascript:alert(1)"})
    assert r.status_code == 422 and "佐证链接无效" in r.json()["detail"]
    assert all(d["met_at"] is None for d in c.get(f"/api/tickets/{ids['重大']}").json()["deadlines"])
    with client_as(app, "李四") as c2:
        assert c2.get(f"/api/tickets/{ids['重大']}").json()["acknowledged_by"] is None


def test_milestone_stops_clock_and_is_recorded(board) -> None:
    _, app, clock, ids = board
    who = Officers(app)
    c = who["王五"]
    tid = ids["重大"]
    r = c.post(
        f"/api/tickets/{tid}/milestones",
        json={"milestone": "权威信息发布", "evidence_url": "http://gov.example/notice"},
    )
    assert r.status_code == 200
    d = {x["milestone"]: x for x in r.json()["ticket"]["deadlines"]}
    assert d["权威信息发布"]["met_at"] == "2026-11-02T12:00:00+08:00"
    assert (
        d["权威信息发布"]["evidence_url"] == "http://gov.example/notice" and d["新闻发布会"]["met_at"] is None
    )
    clock.at = T0 + timedelta(hours=8)
    again = who["赵六"].post(f"/api/tickets/{tid}/milestones", json={"milestone": "权威信息发布"})
    assert again.json()["already"] is True
    detail = c.get(f"/api/tickets/{tid}").json()
    assert [p["post_id"] for p in detail["posts"]] == ["fire"]
    assert detail["posts"][0]["crawl_lag_seconds"] == 600
    events = [a for a in detail["audit"] if a["action"] == "milestone"]
    assert len(events) == 1 and events[0]["detail"]["on_time"] is True and events[0]["actor"] == "王五"


def test_html_board(board) -> None:
    _, app, clock, ids = board
    c = client_as(app)
    html = c.get("/").text
    assert "<title>舆情监测与回应</title>" in html
    for label in (
        "级别",
        "属地",
        "回应主体",
        "时限",
        "确认接收",
        "待定",
        "权威信息发布",
        "新闻发布会",
        "回应：截止",
    ):
        assert label in html, label
    # Countdowns are computed in the page from due_at; the script knows 已超时.
    assert 'data-due="2026-11-02T15:00:00+08:00"' in html
    assert html.count('class="countdown') == 4
    # The buttons carry data-* attributes; the script is a static file (no inline
    # script or onclick: the CSP will forbid them), and it knows 已超时.
    assert f'data-ack="{ids["重大"]}"' in html and "onclick" not in html
    assert '<script src="/static/board.js"></script>' in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert 'data-live="1"' in html
    js = c.get("/static/board.js").text
    assert "已超时" in js and "setInterval(tick, 1000)" in js and "prompt(" in js and "/ack'" in js
    assert "setInterval(refresh, 5000)" in js
    # 重大 in orange: a class (the CSP forbids inline style), its colour in the stylesheet.
    assert '<span class="sev sev-2">重大</span>' in html and "style=" not in html
    assert ".sev-2{background:#ef6c00}" in c.get("/static/app.css").text
    assert "精确到分钟" in html and "minute" not in html
    # Most severe first.
    assert html.index("居民楼火灾致12人死亡") < html.index("翡翠湖畔小区物业费上涨")
    # Offline: no external scripts or styles.
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html)
    # Past due: rendered overdue right away.
    clock.at = T0 + timedelta(hours=50)
    frag = c.get("/fragment/tickets").text
    assert "已超时" in frag and 'class="countdown overdue"' in frag and "data-now=" in frag


def test_acknowledged_ticket_shows_who_and_healthz(board) -> None:
    _, app, _, ids = board
    c = client_as(app, "张三")
    c.post(f"/api/tickets/{ids['重大']}/ack")
    html = c.get("/").text
    assert "已确认" in html and "张三" in html
    assert html.count("确认接收</button>") == 2
    h = c.get("/api/healthz")
    # Public (no sign-in): whether the database answers, and no figures.
    h = TestClient(app).get("/api/healthz")
    assert h.status_code == 200 and h.json() == {"status": "ok", "db": "sqlite"}


def test_assign_and_close_are_audited_state_transitions(board) -> None:
    store, app, clock, ids = board
    who = Officers(app)
    client = who["张三"]
    tid = ids["一般"]
    def board_row() -> str:
        html = client.get("/fragment/tickets").text
        return html[html.index(f'data-ticket="{tid}"'):].split("</tr>")[0]

    def page_department() -> str:
        html = client.get(f"/tickets/{tid}").text
        return html.split('class="department">')[1].split("<")[0]

    assert "城市管理局" not in board_row() and page_department() != "城市管理局"
    r = who["张三"].post(f"/api/tickets/{tid}/assign", json={"department": "城市管理局"})
    assert r.status_code == 200 and r.json()["ticket"]["department"] == "城市管理局"
    # The board and the ticket page show the department the officer assigned.
    assert "城市管理局" in board_row() and page_department() == "城市管理局"
    # Also where the board's 回应主体 is a responder the classifier named.
    big = ids["重大"]
    with store.reader() as s:
        choice = next(d for d in cases.department_choices(s.get(Ticket, big)) if "城市管理" in d)
    assert choice not in client.get("/fragment/tickets").text
    assert who["张三"].post(f"/api/tickets/{big}/assign", json={"department": choice}).status_code == 200
    html = client.get("/fragment/tickets").text
    row = html[html.index(f'data-ticket="{big}"'):].split("</tr>")[0]
    assert f"责任部门 {choice}" in row and "包河区应急管理局" in row
    assert client.post(
        f"/api/tickets/{tid}/assign", json={"department": "城市管理局"}
    ).json()["already"]
    r = who["李四"].post(f"/api/tickets/{tid}/close", json={"outcome": "已回应办结", "note": "已发布处理结果"})
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "closed"
    assert (r.json()["ticket"]["outcome"], r.json()["ticket"]["closed_by"]) == ("responded", "李四")
    again = who["李四"].post(f"/api/tickets/{tid}/close", json={"outcome": "responded"})
    assert again.status_code == 200 and again.json()["already"]
    r = who["张三"].post(f"/api/tickets/{tid}/assign", json={"department": "水务局"})
    assert r.status_code == 409
    assert (
        who["李四"].post(f"/api/tickets/{tid}/close", json={"outcome": ""}).status_code == 422
    )
    # The outcome comes from a fixed list (free text goes in the note).
    bad = who["李四"].post(f"/api/tickets/{tid}/close", json={"outcome": "已处理"})
    assert bad.status_code == 422 and "已回应办结" in bad.json()["detail"]
    assert who["李四"].post("/api/tickets/999/close", json={"outcome": "responded"}).status_code == 404
    with store.reader() as s:
        audit = s.scalars(select(Audit).where(Audit.ticket_id == tid).order_by(Audit.id)).all()
        acts = [(a.action, a.actor, a.outcome) for a in audit if a.action in ("assigned", "closed")]
        closed = next(a for a in audit if a.action == "closed")
        t = s.get(Ticket, tid)
    # The refused assignment (a closed ticket) is audited as failed; the unknown outcome (refused before
    # the ticket is looked up) and the unknown ticket's refusal name no ticket, and the empty outcome
    # never reached the responder (422 from the schema).
    assert acts == [("assigned", "张三", "ok"), ("closed", "李四", "ok"), ("assigned", "张三", "failed")]
    assert (closed.detail["outcome"], closed.detail["note"]) == ("已回应办结", "已发布处理结果")
    assert closed.detail["open_milestones"] == ["回应"] and closed.detail["deadlines_cancelled"] == []
    assert t.status == "closed" and t.closed_at == clock.at
    assert tid not in [x["id"] for x in client.get("/api/tickets").json()["tickets"]]
    page = client.get(f"/tickets/{tid}")
    assert page.status_code == 200 and "已办结" in page.text
    assert client.get("/tickets/999").status_code == 404


def test_duty_officer_merges_two_events(board) -> None:
    from responder.store import Deadline, Event, Post

    store, app, clock, _ids = board
    who = Officers(app)
    with store.reader() as s:
        ev = {e.title: e for e in s.scalars(select(Event))}
        src, dst = ev["翡翠湖畔小区物业费上涨"], ev["某地自来水发黄"]
        src_t = s.scalar(select(Ticket.id).where(Ticket.event_id == src.id))
        dst_t = s.scalar(select(Ticket.id).where(Ticket.event_id == dst.id))
    r = who["王五"].post(f"/api/events/{src.id}/merge", json={"into": dst.id, "confirm_places": True})
    assert r.status_code == 200, r.text
    view = r.json()["ticket"]
    assert view["id"] == dst_t and view["event"]["t0"] == "2026-11-02T09:00:00+08:00"
    assert [d["due_at"] for d in view["deadlines"]] == ["2026-11-04T09:00:00+08:00"]  # T0 moved back 2 h
    with store.reader() as s:
        assert sorted(s.scalars(select(Post.post_id).where(Post.event_id == dst.id))) == ["minor", "unknown"]
        assert s.get(Ticket, src_t).status == "closed" and s.get(Event, src.id).status == "merged"
        assert s.get(Ticket, src_t).outcome == "merged"
        # The merged ticket's clock is cancelled (已合并: no breach, counted apart), not deleted.
        (gone,) = s.scalars(select(Deadline).where(Deadline.ticket_id == src_t)).all()
        assert (gone.milestone, gone.cancelled_by, gone.cancel_outcome) == ("回应", "王五", "merged")
        audit = s.scalars(select(Audit).where(Audit.action == "event_merged").order_by(Audit.id)).all()
    assert [(a.ticket_id, a.actor) for a in audit] == [(dst_t, "王五"), (src_t, "王五")]
    assert audit[0].detail["deadlines_cancelled"] == [
        {"milestone": "回应", "starts_at": "2026-11-02T09:00:00+08:00", "due_at": "2026-11-04T09:00:00+08:00",
         "overdue": False}
    ]
    assert (
        who["王五"].post(f"/api/events/{src.id}/merge", json={"into": dst.id, "confirm_places": True}).status_code
        == 409
    )
    assert (
        who["王五"].post(f"/api/events/{dst.id}/merge", json={"into": dst.id, "confirm_places": True}).status_code
        == 422
    )
    assert who["王五"].post("/api/events/999/merge", json={"into": dst.id, "confirm_places": True}).status_code == 404


def test_merging_an_emergency_in_applies_the_stricter_clock_from_the_merged_t0(board) -> None:
    """A 重大 fire merged into an ordinary complaint gets the 5 h / 24 h deadlines,
    counted from the merged event's T0 (the complaint's earlier post)."""
    from responder.store import Event

    store, app, _clock, _ids = board
    who = Officers(app)
    with store.reader() as s:
        ev = {e.title: e for e in s.scalars(select(Event))}
        src, dst = ev["居民楼火灾致12人死亡"], ev["翡翠湖畔小区物业费上涨"]
    r = who["王五"].post(f"/api/events/{src.id}/merge", json={"into": dst.id, "confirm_places": True})
    assert r.status_code == 200, r.text
    view = r.json()["ticket"]
    assert view["severity"] == "重大" and view["rule"] == "major_emergency"
    assert view["event"]["t0"] == "2026-11-02T09:00:00+08:00"
    due = {d["milestone"]: d["due_at"] for d in view["deadlines"]}
    assert due["权威信息发布"] == "2026-11-02T14:00:00+08:00"
    assert due["新闻发布会"] == "2026-11-03T09:00:00+08:00"
    with store.reader() as s:
        audit = s.scalars(select(Audit).where(Audit.action == "event_merged", Audit.actor == "王五")).first()
    assert [d["milestone"] for d in audit.detail["deadlines_added"]] == ["权威信息发布", "新闻发布会"]


def test_followup_releases_fall_due_one_interval_after_each_release(board) -> None:
    """持续发布: the 24 h interval of config/clocks.yaml counts from each release,
    not from T0, and a closed ticket owes no further follow-up."""
    store, app, clock, ids = board
    who = Officers(app)
    tid = ids["重大"]

    def due(view: dict) -> dict[str, str]:
        return {d["milestone"]: d["due_at"] for d in view["deadlines"]}

    r = who["赵六"].post(f"/api/tickets/{tid}/milestones", json={"milestone": "权威信息发布", "evidence_url": EV})
    assert r.status_code == 200, r.text
    assert due(r.json()["ticket"])["持续发布（第1次）"] == "2026-11-03T12:00:00+08:00"  # met 11-02 12:00 + 24 h

    clock.at = clock.at + timedelta(hours=20)
    view = who["赵六"].post(f"/api/tickets/{tid}/milestones",
                           json={"milestone": "持续发布（第1次）", "evidence_url": EV}).json()
    assert due(view["ticket"])["持续发布（第2次）"] == "2026-11-04T08:00:00+08:00"
    # The press conference is no release in the chain: no third follow-up.
    view = who["赵六"].post(f"/api/tickets/{tid}/milestones", json={"milestone": "新闻发布会", "evidence_url": EV}).json()
    assert sorted(m for m in due(view["ticket"]) if m.startswith("持续发布")) == ["持续发布（第1次）", "持续发布（第2次）"]

    closed = who["赵六"].post(f"/api/tickets/{tid}/close", json={"outcome": "responded", "note": "已妥善处置"})
    assert closed.status_code == 200, closed.text
    assert "持续发布（第2次）" not in due(closed.json()["ticket"])
    # An ordinary 48 h item has no follow-up interval.
    other = ids["一般"]
    view = who["赵六"].post(f"/api/tickets/{other}/milestones", json={"milestone": "回应", "evidence_url": EV}).json()
    assert not [m for m in due(view["ticket"]) if m.startswith("持续发布")]


# --------------------------------------------------------------------------- split


def _split_board(store_url, settings, posts, at):
    store = Store(store_url)
    handle_batch(store, settings, posts, now=at)
    clock = Clock(at + timedelta(minutes=5))
    return store, Officers(create_app(settings, store=store, now=clock)), clock


def _fire(post_id, at, **kw):
    kw.setdefault("title", "包河区居民楼火灾致12人死亡")
    kw.setdefault("text", "合肥市包河区一居民楼发生火灾，已造成12人死亡。")
    return assessed(
        post_id,
        published_at=at,
        severity="重大",
        is_emergency=True,
        event_type="事故灾难",
        event_subtype="火灾",
        place="包河区",
        department="应急管理局",
        **kw,
    )


def test_split_moves_wrongly_grouped_posts_to_a_new_ticket(store_url, settings) -> None:
    from responder.service import clocks_for
    from responder.store import Deadline, Event, Post, TicketEventRow

    posts = [
        _fire("fire-1", T0),
        _fire("fire-2", T0 + timedelta(minutes=30), parent_id="fire-1"),
        # Replies in the thread about something else: the elevator of another district.
        assessed(
            "lift-1",
            title="小区电梯频繁故障",
            text="我们小区电梯又坏了，业主被困。",
            published_at=T0 + timedelta(hours=1),
            parent_id="fire-1",
            place="合肥市",
        ),
        assessed(
            "lift-2",
            title="蜀山区小区电梯故障多名业主被困",
            text="蜀山区一小区电梯故障，多名业主被困一小时。",
            published_at=T0 + timedelta(hours=3),
            parent_id="fire-1",
            place="蜀山区",
            severity="较大",
        ),
    ]
    store, who, clock = _split_board(store_url, settings, posts, T0 + timedelta(hours=3))
    client = who["赵六"]
    try:
        with store.reader() as s:
            (ev,) = s.scalars(select(Event)).all()
            (tid,) = s.scalars(select(Ticket.id)).all()
            before = {
                d.milestone: d.due_at for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid))
            }
        assert ev.post_count == 4

        url = f"/api/events/{ev.id}/split"
        body = {"post_ids": ["lift-2", "lift-1"], "reason": "电梯故障与火灾无关"}
        # 422: all posts, posts of no / another event, blank reason; 404: unknown event.
        every = {**body, "post_ids": ["fire-1", "fire-2", "lift-1", "lift-2"]}
        r = client.post(url, json=every)
        assert r.status_code == 422 and "全部帖子" in r.json()["detail"]
        r = client.post(url, json={**body, "post_ids": ["lift-1", "nope"]})
        assert r.status_code == 422 and "nope" in r.json()["detail"] and "不属于" in r.json()["detail"]
        assert client.post(url, json={**body, "reason": "  "}).status_code == 422
        assert client.post(url, json={**body, "post_ids": []}).status_code == 422
        assert client.post("/api/events/999/split", json=body).status_code == 404

        r = client.post(url, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        old, new = out["ticket"], out["new_ticket"]
        assert out["moved_post_ids"] == ["lift-1", "lift-2"]
        # The new ticket: T0 from its earliest post, the highest severity, the most
        # specific place, the title of the earliest post, deadlines of its rule.
        assert new["id"] != tid and new["status"] == "new"
        assert new["event"]["t0"] == "2026-11-02T10:00:00+08:00" and new["event"]["t0_post_id"] == "lift-1"
        assert new["event"]["title"] == "小区电梯频繁故障" and new["event"]["post_count"] == 2
        assert (
            new["severity"] == "较大"
            and new["place"]["code"] == "340104"
            and new["place"]["county"] == "蜀山区"
        )
        assert new["rule"] == "response_48h"
        want = clocks_for(settings).deadlines_for("response_48h", T0 + timedelta(hours=1))
        assert [(d["milestone"], d["due_at"]) for d in new["deadlines"]] == [
            (m, due.astimezone(T0.tzinfo).isoformat()) for m, due in want
        ]
        assert new["deadlines"][0]["due_at"] == "2026-11-04T10:00:00+08:00"
        # The original: same T0 (its earliest post stayed), fewer posts, clocks untouched.
        assert old["id"] == tid and old["event"]["t0"] == "2026-11-02T09:00:00+08:00"
        assert old["event"]["post_count"] == 2 and old["severity"] == "重大"
        assert old["event"]["title"] == "包河区居民楼火灾致12人死亡"
        with store.reader() as s:
            assert {
                d.milestone: d.due_at for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid))
            } == before
            assert sorted(s.scalars(select(Post.post_id).where(Post.event_id == ev.id))) == [
                "fire-1",
                "fire-2",
            ]
            audit = s.scalars(
                select(Audit).where(Audit.action == "event_split", Audit.outcome == "ok").order_by(Audit.id)
            ).all()
            facts = {
                f.ticket_id: f.kind
                for f in s.scalars(select(TicketEventRow).where(TicketEventRow.actor == "赵六"))
            }
        assert sorted(a.ticket_id for a in audit) == sorted([tid, new["id"]])
        for a in audit:
            assert a.actor == "赵六" and a.remote_addr == "testclient" and a.at == clock.at
            assert a.detail["reason"] == "电梯故障与火灾无关" and a.detail["post_ids"] == ["lift-1", "lift-2"]
            assert a.detail["from_ticket"] == tid and a.detail["new_ticket"] == new["id"]
        assert facts == {new["id"]: "opened", tid: "event_split"}
        # The split-off ticket and its posts are visible through the API.
        got = client.get(f"/api/tickets/{new['id']}").json()
        assert [p["post_id"] for p in got["posts"]] == ["lift-1", "lift-2"]
        assert [a["action"] for a in got["audit"]] == ["event_split"]
    finally:
        store.close()


def test_split_of_the_earliest_post_moves_t0_and_keeps_met_milestones(store_url, settings) -> None:
    from responder.store import Deadline, Event

    posts = [
        # An older fire report wrongly threaded into this one.
        _fire("old-fire", T0, title="蜀山区仓库起火", text="蜀山区一仓库起火，造成12人死亡。"),
        _fire("fire-1", T0 + timedelta(hours=2), parent_id="old-fire"),
        _fire("fire-2", T0 + timedelta(hours=3), parent_id="old-fire"),
    ]
    store, who, clock = _split_board(store_url, settings, posts, T0 + timedelta(hours=3))
    try:
        with store.reader() as s:
            (ev,) = s.scalars(select(Event)).all()
            (tid,) = s.scalars(select(Ticket.id)).all()
        r = who["张三"].post(
            f"/api/tickets/{tid}/milestones",
            json={"milestone": "权威信息发布", "evidence_url": "http://gov/1"},
        )
        assert r.status_code == 200, r.text
        r = who["李四"].post(
            f"/api/events/{ev.id}/split",
            json={"post_ids": ["old-fire"], "reason": "另一起火灾"},
        )
        assert r.status_code == 200, r.text
        old, new = r.json()["ticket"], r.json()["new_ticket"]
        assert old["event"]["t0"] == "2026-11-02T11:00:00+08:00" and old["event"]["t0_post_id"] == "fire-1"
        assert old["event"]["title"] == "包河区居民楼火灾致12人死亡" and old["event"]["post_count"] == 2
        dl = {d["milestone"]: d for d in old["deadlines"]}
        # Met stays met (its due time as it was); the open one follows the later T0.
        assert (
            dl["权威信息发布"]["met_by"] == "张三"
            and dl["权威信息发布"]["due_at"] == "2026-11-02T14:00:00+08:00"
        )
        assert (
            dl["新闻发布会"]["met_at"] is None and dl["新闻发布会"]["due_at"] == "2026-11-03T11:00:00+08:00"
        )
        assert r.json()["deadlines_moved"] == [
            {
                "milestone": "新闻发布会",
                "from": "2026-11-03T09:00:00+08:00",
                "to": "2026-11-03T11:00:00+08:00",
            }
        ]
        # The split-off fire keeps the original T0 and gets its own emergency clocks.
        assert new["event"]["t0"] == "2026-11-02T09:00:00+08:00" and new["rule"] == "major_emergency"
        assert new["event"]["title"] == "蜀山区仓库起火" and new["severity"] == "重大"
        assert [(d["milestone"], d["due_at"], d["met_at"]) for d in new["deadlines"]] == [
            ("权威信息发布", "2026-11-02T14:00:00+08:00", None),
            ("新闻发布会", "2026-11-03T09:00:00+08:00", None),
        ]
        with store.reader() as s:
            audit = s.scalars(
                select(Audit).where(Audit.ticket_id == tid, Audit.action == "event_split")
            ).one()
            warn_at = sorted(
                w.at
                for d in s.scalars(
                    select(Deadline).where(Deadline.ticket_id == tid, Deadline.milestone == "新闻发布会")
                )
                for w in s.scalars(select(DeadlineWarning).where(DeadlineWarning.deadline_id == d.id))
            )
        assert (
            audit.actor == "李四"
            and audit.detail["reason"] == "另一起火灾"
            and audit.remote_addr == "testclient"
        )
        assert audit.detail["t0_change"] == {
            "from": "2026-11-02T09:00:00+08:00",
            "to": "2026-11-02T11:00:00+08:00",
        }
        # The open deadline's warnings moved with it (50 % and 80 % of 24 h after 11:00).
        assert warn_at == [T0 + timedelta(hours=14), T0 + timedelta(hours=2 + 19.2)]
        # The 持续发布 follow-up counts from the release it follows, so T0 moving leaves it.
        # (released at 12:05, so due 24 h later; it is not in deadlines_moved above).
        assert dl["持续发布（第1次）"]["due_at"] == "2026-11-03T12:05:00+08:00"
    finally:
        store.close()
