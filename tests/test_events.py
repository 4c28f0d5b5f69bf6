"""Event grouping and the responder handler: one incident → one event → one ticket."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from responder.events import PLAIN_TEXT, places_compatible, similarity
from responder.indexer import SearchIndexer
from responder.search import open_search
from responder.service import handle_batch, run
from responder.store import Audit, Deadline, Event, Outbox, Post, Store, Ticket, TicketEventRow
from stream import topics as TP
from stream.contracts import TicketEvent, encode
from stream.contracts import decode as decode_msg
from stream.factory import open_transport, topic
from tests.fixtures.databases import SH, assessed, sh

# Demo-style texts: one story told by a news site, a forum and a government
# message board; then other stories from the same city.
FEE_NEWS = (
    "蜀山区某小区物业费上涨近一倍 业主质疑未经听证",
    "近日，合肥市蜀山区翡翠湖畔小区物业公司发布通知，自11月起物业费由每平方米1.2元上涨至2.3元，涨幅近一倍。"
    "多名业主表示，此次涨价未经业主大会表决，也未公示成本，质疑物业擅自涨价，希望有关部门介入调查。",
)
FEE_FORUM = (
    "合肥翡翠湖畔小区物业费涨近一倍 业主质疑",
    "合肥市蜀山区翡翠湖畔小区物业公司近日通知，物业费将从每平方米1.2元涨到2.3元，涨幅近一倍。"
    "业主称涨价未经业主大会表决、成本也未公示，希望有关部门介入调查。",
)
FEE_BOARD = (
    "翡翠湖畔小区物业乱涨价，请领导管管",
    "尊敬的领导：我是蜀山区翡翠湖畔小区业主，物业公司通知物业费从每平方米1.2元涨到2.3元，涨幅近一倍，"
    "没有经过业主大会表决，也没有公示成本，请有关部门介入调查，谢谢！",
)
LIFT = (
    "包河区一小区电梯频繁故障 业主被困",
    "近日，合肥市包河区滨湖世纪城一小区电梯频繁发生故障，多名业主被困电梯内，业主反映物业维修不及时，希望有关部门督促整改。",
)
TRAFFIC = (
    "蜀山区一学校门口交通拥堵严重",
    "每天早晚高峰，合肥市蜀山区一小学门口车辆乱停乱放，交通拥堵严重，家长希望交警部门加强疏导。",
)

T = sh(2026, 11, 2, 9, 0)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'events.db'}")
    yield s
    s.close()


def _fee_batch():
    return [
        assessed("fee-news", title=FEE_NEWS[0], text=FEE_NEWS[1], published_at=T, source_id="hefei-daily"),
        assessed(
            "fee-forum",
            title=FEE_FORUM[0],
            text=FEE_FORUM[1],
            published_at=T + timedelta(hours=2),
            source_id="hefei-bbs",
            source_kind="forum",
        ),
        assessed(
            "fee-board",
            title=FEE_BOARD[0],
            text=FEE_BOARD[1],
            published_at=T + timedelta(hours=5),
            source_id="gov-board",
            source_kind="gov_board",
            place="合肥市",
        ),
    ]


def test_similarity_measure_separates_demo_texts() -> None:
    thr = 0.35
    same = [(FEE_NEWS, FEE_FORUM), (FEE_NEWS, FEE_BOARD), (FEE_FORUM, FEE_BOARD)]
    other = [(FEE_NEWS, LIFT), (FEE_NEWS, TRAFFIC), (FEE_BOARD, LIFT), (FEE_BOARD, TRAFFIC), (LIFT, TRAFFIC)]
    for a, b in same:
        assert similarity(*a, *b) >= thr + 0.1
    for a, b in other:
        assert similarity(*a, *b) < thr - 0.1
    assert similarity("", "完全相同的文本内容", "", "完全相同的文本内容") == pytest.approx(1.0)


def test_place_compatibility() -> None:
    assert places_compatible("340104", "340104")
    assert places_compatible("340104", None)  # unknown joins known
    assert places_compatible("340100", "340104")  # city contains its district
    assert places_compatible("340000", "340202")
    assert not places_compatible("340104", "340111")  # sibling districts
    assert not places_compatible("340100", "340202")  # another city


def test_three_sources_one_event_one_ticket(store_url, settings) -> None:
    store = Store(store_url)
    out = handle_batch(store, settings, _fee_batch(), now=T + timedelta(hours=6))
    with store.reader() as s:
        events = s.scalars(select(Event)).all()
        tickets = s.scalars(select(Ticket)).all()
        posts = s.scalars(select(Post)).all()
        deadlines = s.scalars(select(Deadline)).all()
    assert len(events) == 1 and len(tickets) == 1
    ev = events[0]
    assert ev.post_count == 3 and {p.event_id for p in posts} == {ev.id}
    assert ev.t0 == T and ev.t0_post_id == "fee-news"
    assert ev.place_code == "340104"  # the board's city-level place did not coarsen it
    assert [(d.milestone, d.due_at) for d in deadlines] == [("回应", T + timedelta(hours=48))]
    kinds = [(o.value.kind, o.value.event_key) for o in out]
    tid = tickets[0].id
    assert kinds == [
        ("opened", f"{tid}:opened"),
        ("post_added", f"{tid}:post:fee-forum"),
        ("post_added", f"{tid}:post:fee-board"),
    ]
    assert all(o.topic == "yuqing.tickets.events" and o.key == str(tid) for o in out)

    # Redelivery of the whole batch changes nothing and re-emits the same facts.
    again = handle_batch(store, settings, _fee_batch(), now=T + timedelta(hours=7))
    assert [o.value.event_key for o in again] == [o.value.event_key for o in out]
    assert [o.value.at for o in again] == [o.value.at for o in out]
    assert store.count(Post) == 3 and store.count(Event) == 1 and store.count(Ticket) == 1
    assert store.count(TicketEventRow) == 3
    store.close()


def test_different_county_and_different_story_are_separate(store, settings) -> None:
    msgs = [
        *_fee_batch()[:1],
        # Same story text but another county: a different incident.
        assessed(
            "fee-wuhu",
            title=FEE_FORUM[0],
            text=FEE_FORUM[1],
            published_at=T + timedelta(hours=1),
            place="镜湖区",
        ),
        # Same county, different story.
        assessed("traffic", title=TRAFFIC[0], text=TRAFFIC[1], published_at=T + timedelta(hours=1)),
        # Same story, same place, but outside the 72 h window.
        assessed("fee-late", title=FEE_FORUM[0], text=FEE_FORUM[1], published_at=T + timedelta(days=5)),
    ]
    handle_batch(store, settings, msgs)
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
    assert len(set(owner.values())) == 4
    assert store.count(Ticket) == 4


def test_irrelevant_post_archived_without_ticket(store, settings) -> None:
    out = handle_batch(
        store,
        settings,
        [
            assessed("ad", title="双十一促销", text="全场五折，欢迎选购。", published_at=T, relevant=False),
        ],
    )
    assert out == []
    with store.reader() as s:
        p = s.scalars(select(Post)).one()
    assert p.relevant is False and p.event_id is None and p.raw["post"]["post_id"] == "ad"
    assert store.count(Ticket) == 0 and store.count(Event) == 0


def test_work_report_is_archived_without_clock_but_a_complaint_is_not(store, settings) -> None:
    """政务动态 that asks for nothing: kept and grouped, its ticket archived at once with
    no deadline and no notice; a message-board post and a citizen complaint about the
    same matter still get a response clock."""
    from responder.events import ARCHIVED_OUTCOME
    from tests.fixtures.auth import client_as
    from web.app import create_app

    report = assessed("meeting", title="合肥市政府召开常务会议 研究部署冬季安全生产", published_at=T,
                      text="市政府召开常务会议，研究部署冬季安全生产等工作。", needs_response=False)
    board = assessed("board", title="召开业主大会的通知为何不张贴", published_at=T, source_kind="gov_board",
                     source_id="board", text="小区召开业主大会，物业不张贴通知。", needs_response=False,
                     place="包河区")
    complaint = assessed("complaint", title="冬季安全生产检查走过场", published_at=T + timedelta(hours=2),
                         text="网友反映合肥冬季安全生产检查走过场，希望市政府认真落实常务会议部署。",
                         source_id="forum")
    out = handle_batch(store, settings, [report, board, complaint], now=T + timedelta(hours=3))
    with store.reader() as s:
        tickets = {s.get(Event, t.event_id).t0_post_id: t for t in s.scalars(select(Ticket))}
        archived = tickets["meeting"]
        assert (archived.status, archived.rule, archived.closed_at is not None) == ("closed", "none", True)
        assert s.get(Event, archived.event_id).status == "closed"
        assert s.scalars(select(Deadline).where(Deadline.ticket_id == archived.id)).all() == []
        audit = s.scalars(select(Audit).where(Audit.ticket_id == archived.id)).one()
        assert audit.action == "archived_no_response" and audit.detail["outcome"] == ARCHIVED_OUTCOME
        # A message board always gets a reply (a 咨询投诉 there: 15 working days, SPEC §5);
        # a forum complaint is its own event, on the 48-hour clock.
        for pid, rule, milestone in (("board", "complaint", "答复"), ("complaint", "response_48h", "回应")):
            t = tickets[pid]
            assert t.status == "new" and t.rule == rule
            assert [d.milestone for d in s.scalars(select(Deadline).where(Deadline.ticket_id == t.id))] == [milestone]
        assert tickets["board"].rule_reason.startswith("来源为政府留言板/问政平台")
        assert archived.rule_reason.startswith("政务动态")
    assert store.count(Outbox) == 0
    facts = [o.value for o in out if isinstance(o.value, TicketEvent)]
    assert sorted(f.kind for f in facts) == ["closed", "opened", "opened"]
    with client_as(create_app(settings, store=store, now=lambda: T + timedelta(hours=3))) as c:
        board_ids = {t["event"]["title"] for t in c.get("/api/tickets").json()["tickets"]}
    assert board_ids == {"召开业主大会的通知为何不张贴", "冬季安全生产检查走过场"}  # the report is not on the board


def test_earlier_post_moves_t0_and_deadlines_with_audit(store, settings) -> None:
    first, forum, _ = _fee_batch()
    handle_batch(store, settings, [forum])  # found first, published at T+2h
    with store.reader() as s:
        assert s.scalars(select(Deadline.due_at)).one() == T + timedelta(hours=50)
    out = handle_batch(store, settings, [first])  # crawled later, published at T
    with store.reader() as s:
        ev = s.scalars(select(Event)).one()
        d = s.scalars(select(Deadline)).one()
        audit = s.scalars(select(Audit).where(Audit.action == "t0_moved")).one()
    assert ev.t0 == T and ev.t0_post_id == "fee-news" and ev.post_count == 2
    assert d.due_at == T + timedelta(hours=48) and d.starts_at == T
    assert "更早发布" in audit.detail["reason"] and audit.detail["post_id"] == "fee-news"
    assert audit.detail["deadlines"] == [
        {"milestone": "回应", "from": "2026-11-04T11:00:00+08:00", "to": "2026-11-04T09:00:00+08:00"}
    ]
    assert [o.value.kind for o in out] == ["post_added", "t0_moved"]


def test_severity_raise_adds_major_emergency_deadlines(store, settings) -> None:
    base = dict(event_type="事故灾难", event_subtype="火灾", is_emergency=True, department="应急管理局")
    early = assessed(
        "fire-1",
        title="蜀山区井岗镇一居民楼起火",
        source_id="hefei-bbs",
        source_kind="forum",
        text="井岗镇一居民楼起火，浓烟很大，消防车已经到了。",
        published_at=T,
        severity="一般",
        **base,
    )
    later = assessed(
        "fire-2",
        title="合肥居民楼火灾已致12人死亡",
        source_kind="news",
        text="记者从合肥市蜀山区获悉，井岗镇居民楼火灾已造成12人死亡，另有多人受伤。",
        published_at=T + timedelta(hours=3),
        severity="重大",
        severity_reason="死亡12人，达到重大事故标准（10-29人）",
        **base,
    )
    handle_batch(store, settings, [early])
    with store.reader() as s:
        assert s.scalars(select(Ticket.rule)).one() == "response_48h"
    out = handle_batch(store, settings, [later])
    with store.reader() as s:
        t = s.scalars(select(Ticket)).one()
        due = {d.milestone: d.due_at for d in s.scalars(select(Deadline))}
        ev = s.get(Event, t.event_id)
    assert (
        ev.post_count == 2 and t.severity == "重大" and ev.severity == "重大" and t.rule == "major_emergency"
    )
    assert "12人" in t.severity_reason
    # From the event's T0 (the first post), not the later post that raised it.
    assert due == {
        "回应": T + timedelta(hours=48),
        "权威信息发布": T + timedelta(hours=5),
        "新闻发布会": T + timedelta(hours=24),
    }
    sev = [o.value for o in out if o.value.kind == "severity_changed"]
    assert len(sev) == 1 and sev[0].detail["from"] == "一般" and sev[0].detail["to"] == "重大"
    assert {d["milestone"] for d in sev[0].detail["deadlines_added"]} == {"权威信息发布", "新闻发布会"}
    # A lower-severity member later does not lower it.
    handle_batch(
        store,
        settings,
        [
            assessed(
                "fire-3",
                title="井岗镇火灾现场",
                text="现场已经控制住了。",
                published_at=T + timedelta(hours=4),
                severity="一般",
                **base,
            )
        ],
    )
    with store.reader() as s:
        assert s.scalars(select(Ticket.severity)).one() == "重大"
        assert s.scalars(select(Event.post_count)).one() == 3


def test_same_emergency_same_county_joins_despite_different_words(store, settings) -> None:
    base = dict(event_type="事故灾难", event_subtype="火灾", is_emergency=True)
    handle_batch(
        store,
        settings,
        [
            assessed(
                "f-news",
                title="合肥市蜀山区一居民楼发生火灾",
                text="今天下午，合肥市蜀山区一居民楼起火，消防部门正在扑救。",
                published_at=T,
                **base,
            ),
            assessed(
                "f-weibo",
                text="#合肥# 家门口着火了好大的烟，救火车来了好几辆",
                source_kind="weibo",
                published_at=T + timedelta(minutes=30),
                **base,
            ),
            # Another fire in another county at the same time stays apart.
            assessed(
                "f-baohe",
                title="包河区一仓库起火",
                text="包河区一仓库起火，无人员伤亡。",
                place="包河区",
                published_at=T + timedelta(minutes=40),
                **base,
            ),
        ],
    )
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
    assert owner["f-news"] == owner["f-weibo"] != owner["f-baohe"]


SCHOOL_NEWS = (
    "宿州市埇桥区通报一起学生疑似食源性疾病事件",
    "11月22日，宿州市埇桥区某小学部分学生午餐后出现呕吐、腹痛等症状，区卫健委、市场监管局已介入调查，"
    "学生均已送医观察，目前情况稳定。",
)
SCHOOL_WEIBO = (
    "#宿州# 埇桥区一小学30多名学生午饭后出现呕吐腹痛，已经送医院了，家长都急坏了，希望尽快查明原因！"
)


def test_same_county_same_death_toll_joins(store, settings) -> None:
    """A forum post the classifier gave no subtype still joins when county and death toll agree."""
    handle_batch(
        store,
        settings,
        [
            assessed(
                "collapse-news",
                title="霍山县一在建厂房发生坍塌事故 已造成12人死亡",
                text="11月22日上午，霍山县经济开发区一在建厂房发生坍塌事故，已造成12人死亡、5人受伤。",
                published_at=T,
                is_emergency=True,
                event_type="事故灾难",
                event_subtype="坍塌",
                severity="重大",
                deaths=12,
            ),
            assessed(
                "collapse-forum",
                title="开发区那边厂房塌了",
                text="刚从开发区过来，路都封了，听说新盖的钢结构厂房一下子就塌下来了，县里通报说死了12个。",
                published_at=T + timedelta(hours=1),
                source_kind="forum",
                severity="重大",
                deaths=12,
            ),
            # Same county, another toll, other words: another incident.
            assessed(
                "other-accident",
                title="一货车与电动车相撞",
                text="县城一路口货车与电动车相撞，造成3人死亡。",
                published_at=T + timedelta(hours=2),
                deaths=3,
            ),
        ],
    )
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
        reason = s.scalars(
            select(TicketEventRow.detail).where(TicketEventRow.post_id == "collapse-forum")
        ).one()
    assert owner["collapse-news"] == owner["collapse-forum"] != owner["other-accident"]
    assert "死亡人数一致" in reason["reason"]


def test_one_kind_of_emergency_in_one_county_needs_evidence_of_one_incident(store, settings) -> None:
    """The school's own notice (no subtype found) joins the parents' Weibo post
    three hours later: one kind of emergency in one county, reported in a burst.
    The same kind two days later, in other words, is another incident; so is
    a collapse in the burst of another whose toll it is below (tolls only rise),
    while a higher toll may be an update and an equal one joins at any time."""
    settings.responder.similarity_threshold = 0.35
    assert similarity(*SCHOOL_NEWS, "", SCHOOL_WEIBO, "340104", "340104") < 0.35  # no text evidence
    health = dict(is_emergency=True, event_type="公共卫生事件", place="蜀山区")
    accident = dict(is_emergency=True, event_type="事故灾难", event_subtype="坍塌", place="蜀山区")
    handle_batch(store, settings, [
        assessed("school-weibo", text=SCHOOL_WEIBO, source_kind="weibo", published_at=T, event_subtype="食物中毒",
                 **health),
        assessed("school-news", title=SCHOOL_NEWS[0], text=SCHOOL_NEWS[1], published_at=T + timedelta(hours=3),
                 **health),
        assessed("canteen-later", title="一工厂食堂数十名工人就餐后不适", text="工人们午饭后陆续感到头晕恶心，已送医。",
                 published_at=T + timedelta(days=2), event_subtype="食物中毒", **health),
        assessed("plant", title="一在建厂房坍塌 5人遇难", text="在建厂房钢结构突然垮下，5名工人遇难。", deaths=5,
                 published_at=T, **accident),
        assessed("house", title="老旧民房倒塌", text="一栋无人居住的老房子塌了，1人经过时被砸身亡。", deaths=1,
                 published_at=T + timedelta(hours=1), **accident),
        assessed("plant-update", title="厂房事故遇难人数升至7人", text="又有两名被困工人被找到，已无生命体征。", deaths=7,
                 published_at=T + timedelta(hours=4), **accident),
        assessed("plant-days-later", title="厂房事故7名遇难者善后", text="善后工作有序推进，家属情绪稳定。", deaths=7,
                 published_at=T + timedelta(days=2), **accident),
    ])
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
        reason = s.scalars(select(TicketEventRow.detail).where(TicketEventRow.post_id == "school-news")).one()
    assert owner["school-news"] == owner["school-weibo"] and "相隔不足6小时" in reason["reason"]
    assert owner["canteen-later"] != owner["school-weibo"]
    assert owner["house"] != owner["plant"]  # 1 death, in the burst of a 5-death collapse: another incident
    assert owner["plant-update"] == owner["plant"] == owner["plant-days-later"]  # a rising toll, then that toll


JINGHU_FIRE = (
    "芜湖市镜湖区一商场发生火灾 已造成12人死亡",
    "今天上午10时许，芜湖市镜湖区一商场发生火灾，消防救援人员迅速赶到现场扑救。截至目前，火灾已造成12人死亡、"
    "7人受伤，伤者已送医救治，起火原因正在调查。",
)
FLOOD_COMPLAINTS = [
    ("芜湖市镜湖区锦绣路积水严重", "镜湖区锦绣路一下雨就积水严重，车辆无法通行，行人只能蹚水，希望有关部门尽快疏通排水管道。"),
    ("芜湖市镜湖区锦绣路积水何时解决", "锦绣路积水问题反映多次了，每次下雨都淹，请镜湖区政府重视。"),
    ("镜湖区锦绣路又淹了", "昨晚一场暴雨，锦绣路又成了河，电动车都泡水了，排水管网什么时候改造？"),
    ("芜湖市镜湖区锦绣路排水不畅", "锦绣路排水口被垃圾堵住，积水几天不退，蚊虫滋生，请环卫部门清理。"),
]


def test_a_complaint_never_joins_a_fire_in_its_district_and_the_fire_keeps_its_title(store, settings) -> None:
    """镜湖区: waterlogging complaints before and after a shopping-mall fire with
    casualties, all titled with the district's name, some classified as a flood.
    The fire is its own event, with its own title and its 重大 clock; its own
    later reports join it; no complaint does."""
    fire = dict(is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="镜湖区",
                department="应急管理局")
    msgs = []
    for i in range(44):
        title, text = FLOOD_COMPLAINTS[i % len(FLOOD_COMPLAINTS)]
        flood = i % 3 == 0  # the classifier may call 暴雨…淹 a flood
        msgs.append(assessed(
            f"water-{i}", title=title, text=f"{text}（第{i}次反映）", published_at=T + timedelta(minutes=20 * i - 30),
            source_kind="gov_board", source_id="board", place="镜湖区",
            **(dict(is_emergency=True, event_type="自然灾害", event_subtype="洪涝") if flood else {}),
        ))
    msgs.append(assessed("fire-news", title=JINGHU_FIRE[0], text=JINGHU_FIRE[1], published_at=T, severity="重大",
                         severity_reason="死亡12人，达到重大事故标准（10-29人）", deaths=12, **fire))
    msgs.append(assessed("fire-forum", title="镜湖区那个商场着火了", text="黑烟好大，消防车一辆接一辆，听说里面还有人。",
                         source_kind="forum", published_at=T + timedelta(minutes=50), **fire))
    msgs.append(assessed("fire-weibo", text="商场大火已致12人遇难，愿逝者安息[蜡烛]", source_kind="weibo",
                         published_at=T + timedelta(hours=20), deaths=12, severity="重大", **fire))
    for i in range(0, len(msgs), 10):
        handle_batch(store, settings, msgs[i : i + 10], now=T + timedelta(days=1))
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
        fire_ev = s.get(Event, owner["fire-news"])
        ticket = s.scalars(select(Ticket).where(Ticket.event_id == fire_ev.id)).one()
        milestones = {d.milestone for d in s.scalars(select(Deadline).where(Deadline.ticket_id == ticket.id))}
        others = s.scalars(select(Event).where(Event.id != fire_ev.id)).all()
    members = {pid for pid, eid in owner.items() if eid == fire_ev.id}
    assert members == {"fire-news", "fire-forum", "fire-weibo"}
    assert fire_ev.title == JINGHU_FIRE[0] and fire_ev.severity == "重大" and ticket.rule == "major_emergency"
    assert {"权威信息发布", "新闻发布会"} <= milestones
    assert others and all(e.severity == "一般" and re.search("积水|淹|排水", e.title) for e in others)


COMPLAINT_WITH_CASE_NO = (
    "镜湖区锦绣路积水严重",
    "芜湖市镜湖区锦绣路一下雨就积水，12号门口水深过膝，车辆熄火，希望有关部门尽快处理。 编号 FM7A2C-00012 。",
)
FIRE_WITH_CASE_NO = (
    "镜湖区一商场发生火灾 造成12人死亡",
    "芜湖市镜湖区一商场今日发生火灾，造成12人死亡、5人受伤，消防部门正在全力救援。 编号 FM7A2C-00010 。",
)


def test_an_emergency_and_a_complaint_join_only_on_plain_text(store, settings) -> None:
    """Found by bench/fault_matrix.py: posts of one district that share a
    boilerplate ("编号 …", "希望有关部门尽快处理") score above the threshold
    between a 12-death fire and a waterlogging complaint. A fire that joined
    the complaint's event took its ticket to 重大 and kept the complaints in
    it; neither way round may they join on such text."""
    threshold = settings.responder.similarity_threshold
    sim = similarity(*COMPLAINT_WITH_CASE_NO, *FIRE_WITH_CASE_NO, "340202", "340202")
    assert threshold <= sim < PLAIN_TEXT * threshold  # the case the rule is for
    fire = dict(is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="镜湖区", deaths=12,
                severity="重大")
    handle_batch(store, settings, [
        assessed("water-1", title=COMPLAINT_WITH_CASE_NO[0], text=COMPLAINT_WITH_CASE_NO[1], published_at=T,
                 source_kind="forum", place="镜湖区"),
    ])
    handle_batch(store, settings, [
        assessed("fire", title=FIRE_WITH_CASE_NO[0], text=FIRE_WITH_CASE_NO[1], published_at=T + timedelta(minutes=5),
                 **fire),
    ])
    handle_batch(store, settings, [
        assessed("water-2", title=COMPLAINT_WITH_CASE_NO[0], text=COMPLAINT_WITH_CASE_NO[1].replace("00012", "00013"),
                 published_at=T + timedelta(minutes=10), source_kind="forum", place="镜湖区"),
    ])
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
        water_ev = s.get(Event, owner["water-1"])
    assert owner["fire"] != owner["water-1"] == owner["water-2"]
    assert water_ev.severity == "一般" and not water_ev.is_emergency and "积水" in water_ev.title


FURNITURE_FIRE = (
    "蜀山区一家具厂发生火灾 已造成11人死亡",
    "11月2日凌晨3时许，合肥市蜀山区南岗镇一家具厂发生火灾，消防救援人员赶到现场扑救，火灾已造成11人死亡、4人受伤，"
    "伤者已送医救治，起火原因正在调查。",
)
FURNITURE_FOLLOW_UP = (
    "蜀山区南岗镇家具厂火灾11名遇难者身份确认",
    "记者从蜀山区获悉，11月2日凌晨南岗镇一家具厂发生火灾，造成11人死亡、4人受伤，11名遇难者身份已全部确认，起火原因正在调查。",
)
RESTAURANT_FIRE = (
    "蜀山区一餐馆发生火灾",
    "11月3日中午12时许，合肥市蜀山区一餐馆发生火灾，消防救援人员赶到现场扑救，起火原因正在调查。",
)


def test_an_emergency_joins_only_reports_of_the_same_incident(store, settings) -> None:
    """A fatal fire in 蜀山区. A road accident with the same toll, a fire with
    "无人员伤亡" in its burst, and a restaurant fire the next day told in the
    same stock words are other incidents; a follow-up that repeats the fire's
    particulars is the same one, however late in the window. (On the CEC reports each of these
    once pulled another incident into an emergency event.)"""
    threshold = settings.responder.similarity_threshold
    restaurant = similarity(*FURNITURE_FIRE, *RESTAURANT_FIRE, "340104", "340104")
    follow_up = similarity(*FURNITURE_FIRE, *FURNITURE_FOLLOW_UP, "340104", "340104")
    assert threshold <= restaurant < PLAIN_TEXT * threshold <= follow_up  # the case the rule is for
    fire = dict(is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="蜀山区")
    handle_batch(store, settings, [
        assessed("fire", title=FURNITURE_FIRE[0], text=FURNITURE_FIRE[1], published_at=T, deaths=11, severity="较大",
                 **fire),
        assessed("no-casualties", title="一仓库起火 无人员伤亡", text="蜀山区一仓库起火，火势很快被扑灭，无人员伤亡。",
                 published_at=T + timedelta(hours=1), deaths=0, **fire),
        assessed("road", title="蜀山区一客车与货车相撞 11人死亡", text="一客车与货车相撞，造成11人死亡。", deaths=11,
                 published_at=T + timedelta(hours=3), is_emergency=True, event_type="事故灾难",
                 event_subtype="交通事故", place="蜀山区"),
        assessed("restaurant", title=RESTAURANT_FIRE[0], text=RESTAURANT_FIRE[1], published_at=T + timedelta(hours=30),
                 **fire),
        assessed("follow-up", title=FURNITURE_FOLLOW_UP[0], text=FURNITURE_FOLLOW_UP[1],
                 published_at=T + timedelta(hours=40), **fire),
    ])
    with store.reader() as s:
        owner = dict(s.execute(select(Post.post_id, Post.event_id)).all())
        reason = s.scalars(select(TicketEventRow.detail).where(TicketEventRow.post_id == "follow-up")).one()
        title = s.scalars(select(Event.title).where(Event.id == owner["fire"])).one()
    assert {p for p, e in owner.items() if e == owner["fire"]} == {"fire", "follow-up"}
    assert len(set(owner.values())) == 4  # the follow-up's event, and one each for the other three
    assert "文本相似度" in reason["reason"] and title == FURNITURE_FIRE[0]


def test_a_late_joiner_never_renames_the_event(store, settings) -> None:
    """The event's title is its lead post's: the first report, until a member
    raises its severity; then that member's. Later members of no higher rank,
    and an earlier report found late, leave it."""
    fire = dict(is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="蜀山区")
    handle_batch(store, settings, [assessed("first", title="蜀山区井岗镇一居民楼起火", source_kind="forum",
                                            text="居民楼起火，浓烟很大，消防车已经到了。", published_at=T, **fire)])
    handle_batch(store, settings, [assessed("raise", title="合肥居民楼火灾已致12人死亡", published_at=T + timedelta(hours=2),
                                            text="井岗镇居民楼火灾已造成12人死亡。", severity="重大", deaths=12, **fire)])
    with store.reader() as s:
        ev = s.scalars(select(Event)).one()
        renamed = s.scalars(select(Audit).where(Audit.action == "title_changed")).one()
    assert ev.title == "合肥居民楼火灾已致12人死亡"
    assert renamed.detail["from"] == "蜀山区井岗镇一居民楼起火" and renamed.detail["post_id"] == "raise"
    handle_batch(store, settings, [
        assessed("same-rank", title="井岗镇火灾遇难者名单公布", text="火灾12名遇难者身份已确认。", severity="重大",
                 deaths=12, published_at=T + timedelta(hours=9), **fire),
        assessed("lower", title="井岗镇火灾现场", text="现场已经控制住了。", published_at=T + timedelta(hours=3), **fire),
        assessed("earlier", title="井岗镇冒黑烟了", text="好像哪里着火了", source_kind="weibo",
                 published_at=T - timedelta(minutes=30), **fire),
    ])
    with store.reader() as s:
        ev = s.scalars(select(Event)).one()
        assert len(s.scalars(select(Audit).where(Audit.action == "title_changed")).all()) == 1
    assert ev.post_count == 5 and ev.t0 == T - timedelta(minutes=30) and ev.t0_post_id == "earlier"
    assert ev.title == "合肥居民楼火灾已致12人死亡"


def test_reply_in_thread_joins_and_unknown_place_is_pending(store, settings) -> None:
    handle_batch(
        store,
        settings,
        [
            assessed(
                "thread",
                title="翡翠湖畔小区物业费的事有人管吗",
                text=FEE_BOARD[1],
                published_at=T,
                source_kind="forum",
                place="待定",
            ),
            assessed(
                "reply-1",
                text="顶一下，我们楼也是这样",
                parent_id="thread",
                source_kind="forum",
                place="待定",
                published_at=T + timedelta(hours=1),
            ),
        ],
    )
    with store.reader() as s:
        t = s.scalars(select(Ticket)).one()
        ev = s.get(Event, t.event_id)
    assert ev.post_count == 2 and t.place_label == "待定" and t.place_code is None
    # A member that names the place moves the event out of the 待定 queue.
    handle_batch(
        store,
        settings,
        [assessed("fee-news", title=FEE_NEWS[0], text=FEE_NEWS[1], published_at=T + timedelta(hours=2))],
    )
    with store.reader() as s:
        t = s.scalars(select(Ticket)).one()
        refined = s.scalars(select(Audit).where(Audit.action == "place_refined")).one()
    assert t.place_code == "340104" and t.place_label == "安徽省合肥市蜀山区"
    assert refined.detail["from"] == "待定"


def test_indexer_indexes_what_the_responder_stored(store, settings) -> None:
    backend = open_search(settings)
    try:
        msgs = [*_fee_batch(), assessed("ad", title="促销", text="全场五折", published_at=T, relevant=False)]
        handle_batch(store, settings, msgs)
        assert backend.count() == 0  # the responder only stores
        assert SearchIndexer(store, backend).catch_up() == 4
        doc = backend.get("fee-forum")
        assert doc is not None and doc.event_id is not None and doc.place_code == "340104"
        assert backend.get("ad").severity is None
        # The index is rebuildable from the store.
        backend.delete("fee-forum")
        ix = SearchIndexer(store, backend)
        assert ix.catch_up() == 0 and backend.get("fee-forum") is None
        ix.reset()
        assert ix.catch_up() == 4 and backend.get("fee-forum") is not None
    finally:
        backend.close()


def test_run_consumes_stream_schedules_and_relays(settings) -> None:
    """The responder process: stage loop + scheduler thread + outbox relay over the embedded log."""
    settings.responder.scheduler_tick_s = 0.05
    published = datetime.now(SH) - timedelta(hours=6)  # 权威信息发布 (T0+5h) is already overdue
    transport = open_transport(settings)
    events_topic = topic(settings, TP.TICKET_EVENTS)
    transport.ensure_topics([topic(settings, TP.ASSESSED_POSTS), events_topic])
    producer = transport.producer()
    fire = assessed(
        "run-fire",
        title="居民楼火灾致12人死亡",
        text="合肥市蜀山区一居民楼火灾已造成12人死亡。",
        published_at=published,
        severity="重大",
        is_emergency=True,
        event_type="事故灾难",
        event_subtype="火灾",
    )
    producer.send(topic(settings, TP.ASSESSED_POSTS), encode(fire), key=b"run-fire")
    producer.flush()
    reader = transport.consumer("test-reader", [events_topic])
    stop = threading.Event()
    th = threading.Thread(target=run, args=(settings, stop), daemon=True)
    th.start()
    seen: list[TicketEvent] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for rec in reader.poll(max_records=100, timeout_s=0.2):
                seen.append(decode_msg(rec.value, TicketEvent))  # type: ignore[arg-type]
            if {"opened", "deadline_breached"} <= {e.kind for e in seen}:
                break
    finally:
        stop.set()
        th.join(15)
        reader.close()
        producer.close()
        transport.close()
    assert not th.is_alive()
    kinds = [e.kind for e in seen]
    assert "opened" in kinds and "deadline_breached" in kinds, kinds
    breach = next(e for e in seen if e.kind == "deadline_breached")
    assert breach.detail["milestone"] == "权威信息发布" and breach.event_key.endswith(":权威信息发布:breach")
    store = Store(settings.store_url)
    try:
        with store.reader() as s:
            assert all(o.sent_at is not None for o in s.scalars(select(Outbox)))
    finally:
        store.close()


def test_concurrent_handlers_group_into_one_event(store_url, settings) -> None:
    """Two responder workers handling copies of one story at once still make one event."""
    stores = [Store(store_url), Store(store_url)]
    batches = [_fee_batch()[:2], _fee_batch()[2:]]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        try:
            barrier.wait()
            handle_batch(stores[i], settings, batches[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert stores[0].count(Event) == 1 and stores[0].count(Ticket) == 1 and stores[0].count(Post) == 3
    for st in stores:
        st.close()


def test_official_reply_on_a_message_board_is_a_milestone_candidate(store, settings) -> None:
    t0 = sh(2026, 11, 2, 9, 0)
    handle_batch(
        store,
        settings,
        [
            assessed(
                "msg",
                title="小区路灯坏了一个月",
                text="翡翠湖小区路灯坏了一个月没人修。",
                published_at=t0,
                source_kind="gov_board",
                source_id="board",
            )
        ],
        now=t0 + timedelta(minutes=5),
    )
    reply = assessed(
        "reply",
        title="",
        text="已安排维修人员更换路灯，现已恢复照明。",
        published_at=t0 + timedelta(hours=20),
        source_kind="official",
        source_id="board",
        parent_id="msg",
    )
    handle_batch(store, settings, [reply], now=t0 + timedelta(hours=21))
    handle_batch(store, settings, [reply], now=t0 + timedelta(hours=22))  # redelivered: nothing twice
    with store.reader() as s:
        (cand,) = s.scalars(select(Audit).where(Audit.action == "milestone_candidate")).all()
        d = s.scalars(select(Deadline)).one()
        assert s.scalar(select(Post.event_id).where(Post.post_id == "reply")) == d.ticket_id
    assert cand.detail["evidence_url"] == "http://127.0.0.1:8100/board/reply"
    # A complaint to a message board: 答复 within 15 working days (Mon 2 Nov → Mon 23 Nov).
    assert cand.detail["milestones"] == [
        {"milestone": "答复", "due_at": "2026-11-23T23:59:59+08:00", "on_time_if_confirmed": True}
    ]
    assert d.met_at is None  # a candidate never stops the clock by itself
