"""The daily and weekly brief (舆情日报/周报) against a hand-computed example: function, text, page, API, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from responder.brief import brief, brief_text, period_bounds
from responder.permissions import CLI_ACTOR
from responder.service import handle_batch
from responder.store import Deadline, Event, Store, Ticket
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app
from web.routes.briefs import brief_html

ROOT = Path(__file__).resolve().parents[1]
# The ISO week of the example: Monday 2026-11-16 to Sunday 2026-11-22.
D1, D2 = date(2026, 11, 20), date(2026, 11, 21)  # Friday, Saturday
AS_OF = sh(2026, 11, 21, 12, 0)

FIRE = {
    "severity": "重大",
    "is_emergency": True,
    "event_type": "事故灾难",
    "event_subtype": "火灾",
    "place": "包河区",
    "department": "应急管理局",
    "deaths": 12,
    "severity_reason": "死亡12人，达到重大事故标准",
}

# (post_id, topic, assessed() kwargs). Each post is handled alone, 30 s after its publication
# (so its ticket, if it opens one, is created on the same Shanghai day).
POSTS = [
    # Previous week; its ticket is closed on 11-11 (below): in no period, active in none.
    (
        "old",
        "交通运输",
        dict(
            title="公交线路调整引发不满",
            text="公交12路改线后乘客换乘不便。",
            published_at=sh(2026, 11, 10, 9, 0),
            place="包河区",
            department="交通运输局",
        ),
    ),
    # Monday of the week; 回应 due 11-20 09:00 (D1), met at 10:00: late.
    (
        "water",
        "城乡建设",
        dict(
            title="小区停水三天无人回应",
            text="翡翠湖小区连续停水三天，物业电话打不通。",
            published_at=sh(2026, 11, 18, 9, 0),
            # News comments, on the 48-hour clock (on a message board it would be a
            # 咨询投诉 with 15 working days: SPEC §5, config/clocks.yaml).
            source_kind="comments",
        ),
    ),
    # D1 --------------------------------------------------------------------------------
    (
        "prop",
        "城乡建设",
        dict(
            title="物业费上涨",
            text="物业费由每平方米1.2元上涨至2.3元，业主质疑。",
            published_at=sh(2026, 11, 20, 9, 0),
            source_kind="forum",
        ),
    ),
    (
        "fire1",
        "安全生产",
        dict(
            title="居民楼火灾致12人死亡",
            text="合肥市包河区一居民楼发生火灾，已造成12人死亡。",
            published_at=sh(2026, 11, 20, 10, 0),
            **FIRE,
        ),
    ),
    (
        "fire2",
        "安全生产",
        dict(
            title="包河区火灾现场",
            text="包河区居民楼起火，浓烟滚滚，12人遇难。",
            published_at=sh(2026, 11, 20, 11, 0),
            source_kind="weibo",
            **FIRE,
        ),
    ),
    (
        "junk1",
        None,
        dict(
            text="明日天气晴，气温回升。",
            published_at=sh(2026, 11, 20, 12, 0),
            relevant=False,
            place="合肥市",
        ),
    ),
    # 23:59 Shanghai (15:59 UTC) on D1: belongs to D1. Place unknown → 待定.
    (
        "late",
        "环境保护",
        dict(
            title="河水发臭",
            text="南淝河一段河水发黑发臭，鱼虾死亡。",
            published_at=sh(2026, 11, 20, 23, 59),
            source_kind="weibo",
            place="待定",
            department=None,
        ),
    ),
    # D2 --------------------------------------------------------------------------------
    # 00:01 Shanghai on D2 (16:01 UTC on D1!): belongs to D2.
    (
        "early",
        "教育文体",
        dict(
            title="学校食堂涨价",
            text="镜湖区某中学食堂饭菜价格上涨，家长反映负担重。",
            published_at=sh(2026, 11, 21, 0, 1),
            place="镜湖区",
            department="教育局",
        ),
    ),
    (
        "fire3",
        "安全生产",
        dict(
            title="包河区火灾死亡人数确认",
            text="包河区居民楼火灾死亡12人，原因正在调查。",
            published_at=sh(2026, 11, 21, 8, 0),
            **FIRE,
        ),
    ),
    (
        "junk2",
        None,
        dict(
            text="周末去哪儿玩？推荐几个公园。",
            published_at=sh(2026, 11, 21, 9, 0),
            relevant=False,
            source_kind="forum",
        ),
    ),
]


def _post(post_id: str, topic: str | None, kw: dict):
    ap = assessed(post_id, **kw)
    ap.assessment.topic = topic
    return ap


def _fill(store: Store, settings) -> dict[str, int]:
    for post_id, topic, kw in POSTS:
        handle_batch(
            store, settings, [_post(post_id, topic, kw)], now=kw["published_at"] + timedelta(seconds=30)
        )
    with store.transaction() as s:
        tickets = {
            ev.t0_post_id: t
            for ev, t in s.execute(select(Event, Ticket).join(Ticket, Ticket.event_id == Event.id)).all()
        }
        assert sorted(tickets) == ["early", "fire1", "late", "old", "prop", "water"], sorted(tickets)

        def dl(post: str, milestone: str) -> Deadline:
            return s.scalars(
                select(Deadline).where(
                    Deadline.ticket_id == tickets[post].id, Deadline.milestone == milestone
                )
            ).one()

        dl("old", "回应").met_at = sh(2026, 11, 11, 9, 0)
        old = tickets["old"]
        old.status, old.closed_at = "closed", sh(2026, 11, 11, 10, 0)
        s.get(Event, old.event_id).status = "closed"
        dl("water", "回应").met_at = sh(2026, 11, 20, 10, 0)  # due 09:00: late
        dl("fire1", "权威信息发布").met_at = sh(2026, 11, 20, 14, 0)  # due 15:00: on time
        # 新闻发布会 due 11-21 10:00 is never met: breached at AS_OF.
        return {k: t.id for k, t in tickets.items()}


@pytest.fixture
def filled(store_url: str, settings):
    store = Store(store_url)
    ids = _fill(store, settings)
    yield store, ids
    store.close()


def _events(b) -> list[tuple]:
    return [(e.title, e.severity, e.post_count, e.posts_in_period, e.place_label) for e in b.key_events]


def test_periods_are_shanghai_days_and_iso_weeks() -> None:
    assert period_bounds("day", D1) == (sh(2026, 11, 20), sh(2026, 11, 21))
    assert period_bounds("week", D1) == (sh(2026, 11, 16), sh(2026, 11, 23))
    assert period_bounds("week", date(2026, 11, 16)) == period_bounds("week", date(2026, 11, 22))
    assert period_bounds("week", date(2026, 11, 23))[0] == sh(2026, 11, 23)
    with pytest.raises(ValueError):
        period_bounds("month", D1)


def test_day_brief_matches_hand_computed_example(filled) -> None:
    store, ids = filled
    b = brief(store, "day", D1, as_of=AS_OF, actor=CLI_ACTOR)
    o = b.overview
    # prop, fire1, junk1 (news), fire2, late (weibo); not early (00:01 on D2).
    assert o.posts == 5
    assert [(c.name, c.count) for c in o.posts_by_kind] == [("news", 2), ("weibo", 2), ("forum", 1)]
    assert (o.relevant_posts, o.emergency_posts) == (4, 2)
    assert (o.new_events, o.emergency_events) == (3, 1)  # prop, fire, late
    assert o.tickets_opened == 3
    assert o.tickets_by_severity == {"特别重大": 0, "重大": 1, "较大": 0, "一般": 2}
    assert (o.pending_place_posts, o.pending_place_events) == (1, 1)
    # Active: fire; water (opened Monday, still open); prop; late. Not old (closed 11-11), not early.
    assert b.key_events_total == 4
    assert _events(b) == [
        ("居民楼火灾致12人死亡", "重大", 3, 2, "安徽省合肥市包河区"),
        ("小区停水三天无人回应", "一般", 1, 0, "安徽省合肥市蜀山区"),
        ("物业费上涨", "一般", 1, 1, "安徽省合肥市蜀山区"),
        ("河水发臭", "一般", 1, 1, "待定"),
    ]
    fire = b.key_events[0]
    assert fire.ticket_id == ids["fire1"] and fire.ticket_status_label == "待确认"
    assert fire.t0 == sh(2026, 11, 20, 10, 0) and fire.department == "应急管理局" and fire.is_emergency
    assert [(d.milestone, d.due_at, d.state) for d in fire.deadlines] == [
        ("权威信息发布", sh(2026, 11, 20, 15, 0), "按时完成"),
        ("新闻发布会", sh(2026, 11, 21, 10, 0), "已超时未完成"),
    ]
    assert [d.state for d in b.key_events[1].deadlines] == ["超时完成"]
    assert [d.state for d in b.key_events[2].deadlines] == ["未到期"]
    assert b.key_events[3].department == "未指定"
    # Due on D1: water 回应 (late), fire 权威信息发布 (on time).
    t = b.timeliness
    assert (t.due, t.on_time, t.late, t.open_past_deadline, t.pending) == (2, 1, 1, 0, 0)
    assert [(c.name, c.count) for c in t.breach_departments] == [("住房和城乡建设局", 1)]
    d = b.distribution
    assert [(c.name, c.count) for c in d.topics] == [("安全生产", 2), ("城乡建设", 1), ("环境保护", 1)]
    assert [(c.name, c.count) for c in d.places] == [("安徽省合肥市", 3), ("待定", 1)]

    # D2: early (00:01), fire3, junk2.
    b2 = brief(store, "day", D2, as_of=AS_OF, actor=CLI_ACTOR)
    o = b2.overview
    assert o.posts == 3 and [(c.name, c.count) for c in o.posts_by_kind] == [("news", 2), ("forum", 1)]
    assert (o.relevant_posts, o.emergency_posts, o.new_events, o.emergency_events) == (2, 1, 1, 0)
    assert o.tickets_opened == 1 and o.tickets_by_severity["一般"] == 1 and o.tickets_by_severity["重大"] == 0
    assert (o.pending_place_posts, o.pending_place_events) == (0, 0)
    assert b2.key_events_total == 5
    assert [e.title for e in b2.key_events] == [
        "居民楼火灾致12人死亡",
        "小区停水三天无人回应",
        "物业费上涨",
        "河水发臭",
        "学校食堂涨价",
    ]
    assert b2.key_events[0].posts_in_period == 1
    t = b2.timeliness
    assert (t.due, t.on_time, t.late, t.open_past_deadline, t.pending) == (1, 0, 0, 1, 0)
    assert [(c.name, c.count) for c in t.breach_departments] == [("应急管理局", 1)]
    assert [(c.name, c.count) for c in b2.distribution.topics] == [("安全生产", 1), ("教育文体", 1)]
    assert [(c.name, c.count) for c in b2.distribution.places] == [("安徽省合肥市", 1), ("安徽省芜湖市", 1)]


def test_week_brief_matches_hand_computed_example(filled) -> None:
    store, ids = filled
    b = brief(store, "week", D1, as_of=AS_OF, actor=CLI_ACTOR)
    assert b.title == "舆情周报（2026年11月16日—11月22日）"
    assert (b.start, b.end) == (sh(2026, 11, 16), sh(2026, 11, 23))
    o = b.overview
    assert o.posts == 9  # everything but "old"
    assert [(c.name, c.count) for c in o.posts_by_kind] == [
        ("news", 4),
        ("forum", 2),
        ("weibo", 2),
        ("comments", 1),
    ]
    assert (o.relevant_posts, o.emergency_posts) == (7, 3)
    assert (o.new_events, o.emergency_events) == (5, 1)
    assert o.tickets_opened == 5
    assert o.tickets_by_severity == {"特别重大": 0, "重大": 1, "较大": 0, "一般": 4}
    assert (o.pending_place_posts, o.pending_place_events) == (1, 1)
    assert b.key_events_total == 5
    assert _events(b) == [
        ("居民楼火灾致12人死亡", "重大", 3, 3, "安徽省合肥市包河区"),
        ("小区停水三天无人回应", "一般", 1, 1, "安徽省合肥市蜀山区"),
        ("物业费上涨", "一般", 1, 1, "安徽省合肥市蜀山区"),
        ("河水发臭", "一般", 1, 1, "待定"),
        ("学校食堂涨价", "一般", 1, 1, "安徽省芜湖市镜湖区"),
    ]
    # Due in the week: water (late), fire 权威信息发布 (on time), fire 新闻发布会 (breached, open),
    # prop 回应 11-22 09:00 and late 回应 11-22 23:59 (pending at AS_OF); early's is due 11-23 00:01.
    t = b.timeliness
    assert (t.due, t.on_time, t.late, t.open_past_deadline, t.pending) == (5, 1, 1, 1, 2)
    assert [(c.name, c.count) for c in t.breach_departments] == [("住房和城乡建设局", 1), ("应急管理局", 1)]
    d = b.distribution
    assert [(c.name, c.count) for c in d.topics] == [
        ("安全生产", 3),
        ("城乡建设", 2),
        ("教育文体", 1),
        ("环境保护", 1),
    ]
    assert [(c.name, c.count) for c in d.places] == [("安徽省合肥市", 5), ("安徽省芜湖市", 1), ("待定", 1)]

    # Reproducible: the same archive and as_of give the same brief.
    assert brief(store, "week", D1, as_of=AS_OF, actor=CLI_ACTOR).to_dict() == b.to_dict()
    # Any day of the week gives the same week.
    sunday = brief(store, "week", date(2026, 11, 22), as_of=AS_OF, actor=CLI_ACTOR).to_dict()
    assert {**sunday, "day": None} == {**b.to_dict(), "day": None}
    # Later, the two pending ones are breached too (prop: 住建局; late: no department).
    later = brief(store, "week", D1, as_of=sh(2026, 11, 23, 12, 0), actor=CLI_ACTOR)
    t = later.timeliness
    assert (t.due, t.on_time, t.late, t.open_past_deadline, t.pending) == (5, 1, 1, 3, 0)
    assert [(c.name, c.count) for c in t.breach_departments] == [
        ("住房和城乡建设局", 2),
        ("应急管理局", 1),
        ("未指定", 1),
    ]
    # Earlier (before the 权威信息发布 was met at 14:00): a milestone met after as_of is not met yet.
    early = brief(store, "day", D1, as_of=sh(2026, 11, 20, 13, 0), actor=CLI_ACTOR)
    assert [d.state for d in early.key_events[0].deadlines] == ["未到期", "未到期"]
    # water's 回应 was met late at 10:00, before as_of; fire's 权威信息发布 (due 15:00) is still ahead.
    assert (early.timeliness.late, early.timeliness.open_past_deadline, early.timeliness.pending) == (1, 0, 1)
    # The previous week holds only "old": closed and met on time.
    prev = brief(store, "week", date(2026, 11, 10), as_of=AS_OF, actor=CLI_ACTOR)
    assert (prev.overview.posts, prev.overview.new_events, prev.key_events_total) == (1, 1, 1)
    assert prev.key_events[0].ticket_status_label == "已办结"
    assert (prev.timeliness.due, prev.timeliness.on_time) == (1, 1)


def test_text_and_json(filled) -> None:
    store, _ = filled
    b = brief(store, "day", D1, as_of=AS_OF, actor=CLI_ACTOR)
    text = brief_text(b)
    lines = text.splitlines()
    assert lines[0] == "舆情日报（2026年11月20日）"
    assert (
        lines[1] == "统计时段：2026-11-20 00:00 至 2026-11-21 00:00（北京时间）；统计时点：2026-11-21 12:00"
    )
    assert "采集帖文 5 条（新闻网站 2、微博 2、论坛 1），其中政务舆情 4 条、突发事件相关 2 条。" in lines
    assert "新建工单 3 件：特别重大 0、重大 1、较大 0、一般 2。" in lines
    assert "1. 【重大】居民楼火灾致12人死亡（安徽省合肥市包河区）" in lines
    assert "   权威信息发布：截止 2026-11-20 15:00，按时完成（2026-11-20 14:00 完成）" in lines
    assert "   新闻发布会：截止 2026-11-21 10:00，已超时未完成" in lines
    assert "本期到期节点 2 个：按时完成 1，超时完成 1，已超时未完成 0，未到期 0。" in lines
    assert "超时部门：住房和城乡建设局 1 个。" in lines
    assert "地区：安徽省合肥市 3、待定 1" in lines
    j = json.loads(json.dumps(b.to_dict(), ensure_ascii=False))
    assert j["title"] == "舆情日报（2026年11月20日）" and j["as_of"] == "2026-11-21T12:00:00+08:00"
    assert j["start"] == "2026-11-20T00:00:00+08:00" and j["end"] == "2026-11-21T00:00:00+08:00"
    assert j["key_events"][0]["deadlines"][0]["due_at"] == "2026-11-20T15:00:00+08:00"
    assert j["overview"]["tickets_by_severity"] == {"特别重大": 0, "重大": 1, "较大": 0, "一般": 2}


def test_day_boundary_is_shanghai_midnight(store_url, settings) -> None:
    store = Store(store_url)
    try:
        for pid, at in (("a", sh(2026, 11, 20, 23, 59)), ("b", sh(2026, 11, 21, 0, 1))):
            handle_batch(
                store,
                settings,
                [assessed(pid, title=f"帖子{pid}", text=f"内容{pid}{pid}", published_at=at, relevant=False)],
                now=at,
            )
        d1, d2 = brief(store, "day", D1, as_of=AS_OF, actor=CLI_ACTOR), brief(store, "day", D2, as_of=AS_OF, actor=CLI_ACTOR)
        # Both are on 11-20 in UTC (15:59 and 16:01): a UTC day would put both on D1.
        assert (d1.overview.posts, d2.overview.posts) == (1, 1)
        assert brief(store, "day", date(2026, 11, 19), as_of=AS_OF, actor=CLI_ACTOR).overview.posts == 0
        assert brief(store, "week", D1, as_of=AS_OF, actor=CLI_ACTOR).overview.posts == 2
    finally:
        store.close()


def test_archived_work_reports_are_counted_apart_and_not_key_events(store_url, settings) -> None:
    store = Store(store_url)
    try:
        at = sh(2026, 11, 20, 9, 0)
        handle_batch(store, settings, [
            assessed("meeting", title="市政府召开常务会议", text="会议研究部署冬季供暖工作。", published_at=at,
                     needs_response=False),
            assessed("heat", title="小区暖气不热", text="包河区某小区暖气一直不热，业主多次反映无果。",
                     published_at=at + timedelta(hours=1), place="包河区"),
        ], now=at + timedelta(hours=2))
        b = brief(store, "day", D1, as_of=AS_OF, actor=CLI_ACTOR)
        assert (b.overview.tickets_opened, b.overview.tickets_archived) == (2, 1)
        assert [k.title for k in b.key_events] == ["小区暖气不热"] and b.key_events_total == 1
        assert "新建工单 2 件：特别重大 0、重大 0、较大 0、一般 2；其中政务动态自动归档 1 件" in brief_text(b)
        assert brief(store, "day", D2, as_of=AS_OF, actor=CLI_ACTOR).overview.tickets_archived == 0
    finally:
        store.close()


def test_html_escapes_and_api(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        at = sh(2026, 11, 20, 9, 0)
        handle_batch(
            store,
            settings,
            [assessed("x", title="<script>alert(1)</script>标题", text="某小区物业问题。", published_at=at)],
            now=at,
        )
        page = brief_html(brief(store, "day", D1, as_of=AS_OF, actor=CLI_ACTOR))
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;标题" in page
        assert "<title>舆情日报（2026年11月20日）</title>" in page

        client = client_as(create_app(settings, store=store, now=lambda: AS_OF), "宣传办", "office")
        r = client.get("/briefs", params={"period": "day", "date": "2026-11-20"})
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
        # Defaults: today in Shanghai (AS_OF is 11-21), a day brief.
        r = client.get("/api/briefs")
        assert r.status_code == 200
        assert r.json()["title"] == "舆情日报（2026年11月21日）" and r.json()["period"] == "day"
        j = client.get("/api/briefs", params={"period": "week", "date": "2026-11-20"}).json()
        assert j["title"] == "舆情周报（2026年11月16日—11月22日）"
        assert j["overview"]["posts"] == 1 and j["key_events"][0]["title"] == "<script>alert(1)</script>标题"
        j = client.get("/api/briefs", params={"date": "2026-11-20", "as_of": "2026-11-20T10:00"}).json()
        assert j["as_of"] == "2026-11-20T10:00:00+08:00"

        for params, name in (
            ({"period": "month"}, "period"),
            ({"date": "2026-13-01"}, "date"),
            ({"date": "20261120"}, "date"),
            ({"as_of": "yesterday"}, "as_of"),
        ):
            r = client.get("/api/briefs", params=params)
            assert r.status_code == 400, (params, r.text)
            assert name in r.json()["detail"] and "参数" in r.json()["detail"]
            r = client.get("/briefs", params=params)
            assert r.status_code == 400 and f"参数 {name}" in r.text
        # The board links to the briefs.
        assert '<a href="/briefs"' in client.get("/").text
    finally:
        store.close()


def test_cli_prints_the_brief(tmp_path, settings, config_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    _fill(store, settings)
    store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_STORE_URL": url, "YUQING_DATA_DIR": str(tmp_path)}
    base = [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "report", "brief"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            base + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    p = run("--period", "week", "--date", "2026-11-20", "--as-of", "2026-11-21T12:00")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "舆情周报（2026年11月16日—11月22日）"
    assert "本期到期节点 5 个：按时完成 1，超时完成 1，已超时未完成 1，未到期 2。" in p.stdout
    p = run("--date", "2026-11-20", "--as-of", "2026-11-21T12:00+08:00", "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["title"] == "舆情日报（2026年11月20日）" and j["overview"]["posts"] == 5
    p = run("--period", "month")
    assert p.returncode != 0 and "month" in p.stderr
