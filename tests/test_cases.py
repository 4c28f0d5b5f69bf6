"""The duty officer's actions as plain functions (responder.cases), without the web:
the acting user is an Actor, failures are NotFound / Conflict / Invalid."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from responder import cases
from responder.archive import SearchParamError
from responder.permissions import Actor
from responder.service import clocks_for, handle_batch
from responder.store import Audit, SavedSearch, Store, Ticket
from tests.fixtures.databases import assessed, sh

T0 = sh(2026, 11, 2, 9, 0)


def _actor(name: str, addr: str = "10.0.0.7") -> Actor:
    return Actor(username=name, display_name=name, role=None, jurisdiction="", remote_addr=addr)


@pytest.fixture
def filled(tmp_path, settings):
    store = Store(f"sqlite:///{tmp_path / 'cases.db'}")
    handle_batch(store, settings, [
        assessed("fire", title="居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡。",
                 published_at=T0, severity="重大", is_emergency=True, event_type="事故灾难",
                 event_subtype="火灾", place="包河区", department="应急管理局"),
        assessed("fee", title="翡翠湖畔小区物业费上涨", text="物业费由每平方米1.2元上涨至2.3元。",
                 published_at=T0 + timedelta(hours=1), place="蜀山区"),
    ], now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        ids = {t.severity: (t.id, t.event_id) for t in s.scalars(select(Ticket))}
    yield store, ids
    store.close()


def test_acknowledge_records_the_actor_and_a_second_officer_conflicts(filled) -> None:
    store, ids = filled
    tid = ids["重大"][0]
    at = T0 + timedelta(hours=1)
    first = cases.acknowledge(store, _actor("张三"), tid, now=at)
    assert not first.already and first.ticket["acknowledged_by"] == "张三"
    assert first.ticket["status"] == "acknowledged" and first.ticket["acknowledged_from"] == "10.0.0.7"
    again = cases.acknowledge(store, _actor("张三"), tid, now=at + timedelta(minutes=1))
    assert again.already and again.ticket["acknowledged_at"] == first.ticket["acknowledged_at"]
    with pytest.raises(cases.Conflict, match="已由 张三"):
        cases.acknowledge(store, _actor("李四"), tid, now=at)
    with store.reader() as s:
        audit = s.scalars(select(Audit).where(Audit.ticket_id == tid, Audit.action == "acknowledged")).all()
    # The second officer's refused attempt is audited too, as failed, in its own transaction.
    assert [(a.actor, a.remote_addr, a.outcome) for a in audit] == [
        ("张三", "10.0.0.7", "ok"), ("李四", "10.0.0.7", "failed")]
    assert "已由 张三" in audit[1].detail["reason"] and audit[1].detail["request"] == {"ticket_id": tid}


def test_unknown_ids_are_not_found_and_bad_requests_invalid(filled, settings) -> None:
    store, ids = filled
    clocks = clocks_for(settings)
    for call in (
        lambda: cases.acknowledge(store, _actor("张三"), 999_999),
        lambda: cases.close(store, _actor("张三"), 2**70, "responded"),
        lambda: cases.merge(store, _actor("张三"), ids["重大"][1], 999_999, clocks=clocks),
        lambda: cases.split(store, _actor("张三"), 999_999, ["fire"], "分错了", clocks=clocks),
        lambda: cases.delete_saved_search(store, _actor("张三"), 999_999),
    ):
        with pytest.raises(cases.NotFound):
            call()
    with pytest.raises(cases.Invalid, match="没有节点"):
        cases.record_milestone(store, _actor("张三"), ids["重大"][0], "不存在的节点", clocks=clocks)
    with pytest.raises(cases.Invalid, match="自身"):
        cases.merge(store, _actor("张三"), ids["重大"][1], ids["重大"][1], clocks=clocks)
    with pytest.raises(cases.Invalid, match="全部帖子"):
        cases.split(store, _actor("张三"), ids["重大"][1], ["fire"], "分错了", clocks=clocks)


def test_close_then_assign_conflicts_and_merge_needs_open_events(filled, settings) -> None:
    store, ids = filled
    tid, eid = ids["一般"]
    closed = cases.close(store, _actor("王五"), tid, " 已回应办结 ", note=" 已答复 ", now=T0 + timedelta(hours=2))
    assert closed.ticket["status"] == "closed" and not closed.already
    assert (closed.ticket["outcome"], closed.ticket["outcome_note"], closed.ticket["closed_by"]) == (
        "responded", "已答复", "王五")
    assert cases.close(store, _actor("王五"), tid, "other", note="again").already
    with pytest.raises(cases.Conflict, match="已办结"):
        cases.assign(store, _actor("王五"), tid, "住房城乡建设局")
    with pytest.raises(cases.Conflict, match="未关闭"):
        cases.merge(store, _actor("王五"), eid, ids["重大"][1], clocks=clocks_for(settings))
    with store.reader() as s:
        row = s.scalars(select(Audit).where(Audit.ticket_id == tid, Audit.action == "closed")).one()
    assert row.actor == "王五" and row.detail["outcome"] == "已回应办结" and row.detail["note"] == "已答复"


def test_saved_searches_are_audited_and_checked(filled) -> None:
    store, _ = filled
    sid = cases.save_search(store, _actor("李分析"), " 物业 ", {"q": "物业", "place": "3401"})
    with pytest.raises(cases.Conflict, match="已有名为"):
        cases.save_search(store, _actor("李分析"), "物业", {"q": "别的"})
    with pytest.raises(SearchParamError, match="未知的检索参数"):
        cases.save_search(store, _actor("李分析"), "坏的", {"nope": 1})
    with pytest.raises(SearchParamError, match="from"):
        cases.save_search(store, _actor("李分析"), "坏日期", {"from": "昨天"})
    # Only its creator (or an admin) deletes it.
    with pytest.raises(cases.Forbidden, match="只有创建者或系统管理员"):
        cases.delete_saved_search(store, _actor("赵六", "10.0.0.8"), sid)
    cases.delete_saved_search(store, _actor("李分析", "10.0.0.9"), sid)
    with store.reader() as s:
        assert s.scalars(select(SavedSearch)).all() == []
        audit = s.scalars(select(Audit).where(Audit.action.like("saved_search_%")).order_by(Audit.id)).all()
    assert [(a.action, a.actor, a.remote_addr, a.detail["name"]) for a in audit if a.outcome == "ok"] == [
        ("saved_search_created", "李分析", "10.0.0.7", "物业"),
        ("saved_search_deleted", "李分析", "10.0.0.9", "物业"),
    ]
    # The refusals between them: the taken name and the bad parameters failed, the stranger's delete denied.
    assert [(a.action, a.outcome, a.actor) for a in audit if a.outcome != "ok"] == [
        ("saved_search_created", "failed", "李分析"),
        ("saved_search_created", "failed", "李分析"),
        ("saved_search_created", "failed", "李分析"),
        ("saved_search_deleted", "denied", "赵六"),
    ]
