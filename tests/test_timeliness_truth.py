"""Timeliness truth (issue 15 parts 2 and 4): one ticket state machine, and
on-time figures that can be recomputed from the audit alone.

* The state machine (responder.cases.TRANSITIONS): a closed ticket refuses
  acknowledge, assign, milestones and split/merge with Conflict (audited as
  failed, nothing changed); reopen needs a closed ticket, a reason, and a
  ticket not merged away.
* A milestone needs an http(s) evidence URL; one recorded after its due time
  is late (a breach).
* Closing as 误报 / 无需回应（政务动态） cancels the open deadlines: no breach,
  the scheduler never fires them, the report and the brief count them apart
  (撤销时限) with who and why; a reopen restores them.
* THE REPLAY: a seeded month of random actions through responder.cases (and
  the clock-rule changes, extensions, milestones met at an earlier release's
  time and hand escalations of responder.clock_rules / responder.casework) on a
  store (SQLite and PostgreSQL), then every on-time figure recomputed here
  from the audit rows alone (never calling responder.report), by department
  and by region, in a jurisdiction too, and compared with ``report
  timeliness`` (function and CLI) and the brief's timeliness, exactly.
"""

from __future__ import annotations

import csv
import math
import os
import random
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from responder import cases, casework, clock_rules
from responder.brief import brief, brief_text
from responder.clocks import SHANGHAI
from responder.permissions import Actor, Role
from responder.report import timeliness, write_csv
from responder.scheduler import Scheduler
from responder.service import clocks_for, handle_batch
from responder.store import Audit, Deadline, DeadlineWarning, Event, Post, Store, Ticket
from stream.contracts import AssessedPost
from tests.fixtures.databases import assessed, sh

ROOT = Path(__file__).resolve().parents[1]
T0 = sh(2026, 11, 2, 9, 0)
EVIDENCE = "https://gov.test/fabu/1.html"


def _duty(name: str, jurisdiction: str = "", addr: str = "10.0.0.7") -> Actor:
    return Actor(username=name, display_name=name, role=Role.DUTY, jurisdiction=jurisdiction, remote_addr=addr)


def _story(key: int) -> tuple[str, str]:
    """A title and text of characters no other story uses (so stories never join)."""
    base = 0x5000 + 64 * key
    return "".join(chr(base + i) for i in range(10)), "".join(chr(base + 10 + i) for i in range(40))


@pytest.fixture
def case(store_url: str, settings):
    """A 重大 fire (5 h / 24 h clocks), an ordinary complaint (48 h) with two posts, and a third item."""
    store = Store(store_url)
    fee_title, fee_text = _story(1)
    other_title, other_text = _story(2)
    handle_batch(store, settings, [
        assessed("fire", title="居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡。",
                 published_at=T0, severity="重大", is_emergency=True, event_type="事故灾难",
                 event_subtype="火灾", place="包河区", department="应急管理局"),
        assessed("fee-1", title=fee_title, text=fee_text, published_at=T0 + timedelta(hours=1), place="蜀山区"),
        assessed("fee-2", title=fee_title, text=fee_text[:-2] + "转述", published_at=T0 + timedelta(hours=1, minutes=5),
                 place="蜀山区"),
        assessed("other", title=other_title, text=other_text, published_at=T0 + timedelta(hours=2), place="蜀山区"),
    ], now=T0 + timedelta(hours=2, minutes=5))
    with store.reader() as s:
        by_post = {p.post_id: p.event_id for p in s.scalars(select(Post))}
        tickets = {t.event_id: t.id for t in s.scalars(select(Ticket))}
    assert by_post["fee-1"] == by_post["fee-2"], "the two complaint posts are one event"
    ids = {k: (tickets[by_post[p]], by_post[p]) for k, p in (("fire", "fire"), ("fee", "fee-1"), ("other", "other"))}
    yield store, clocks_for(settings), ids
    store.close()


def _ticket(store: Store, tid: int) -> Ticket:
    with store.reader() as s:
        t = s.get(Ticket, tid)
        assert t is not None
        return t


def _deadlines(store: Store, tid: int) -> dict[str, Deadline]:
    with store.reader() as s:
        return {d.milestone: d for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid))}


def _audit(store: Store, tid: int | None = None, action: str | None = None) -> list[Audit]:
    with store.reader() as s:
        q = select(Audit).order_by(Audit.id)
        if tid is not None:
            q = q.where(Audit.ticket_id == tid)
        if action is not None:
            q = q.where(Audit.action == action)
        return list(s.scalars(q))


# --------------------------------------------------------------------------- the state machine


def test_the_transition_table_refuses_everything_it_does_not_list() -> None:
    for action, allowed in cases.TRANSITIONS.items():
        for state in ("new", "acknowledged", "closed"):
            t = Ticket(id=7, status=state)
            if state in allowed:
                assert cases.transition(action, t) == allowed[state]
            else:
                with pytest.raises(cases.Conflict) as e:
                    cases.transition(action, t)
                assert "7" in e.value.message or "未关闭" in e.value.message
    # Closing leads to closed, reopen back to acknowledged, nothing else leaves closed.
    assert {a for a, m in cases.TRANSITIONS.items() if "closed" in m} == {"reopen"}
    assert cases.TRANSITIONS["reopen"] == {"closed": "acknowledged"}


def test_a_closed_ticket_refuses_every_action_and_says_so(case) -> None:
    store, clocks, ids = case
    tid, eid = ids["fee"]
    fire_t, fire_e = ids["fire"]
    at = T0 + timedelta(hours=3)
    cases.close(store, _duty("王五"), tid, "已回应办结", note="已答复网民", now=at)
    before = (_ticket(store, tid), _deadlines(store, tid))
    refusals = {
        "acknowledge": lambda: cases.acknowledge(store, _duty("王五"), tid, now=at),
        "assign": lambda: cases.assign(store, _duty("王五"), tid, "城市管理局", now=at),
        "milestone": lambda: cases.record_milestone(store, _duty("王五"), tid, "回应", clocks=clocks,
                                                    evidence_url=EVIDENCE, now=at),
        "split": lambda: cases.split(store, _duty("王五"), eid, ["fee-2"], "不是一件事", clocks=clocks, now=at),
        "merge away": lambda: cases.merge(store, _duty("王五"), eid, fire_e, clocks=clocks, now=at),
        "merge into": lambda: cases.merge(store, _duty("王五"), fire_e, eid, clocks=clocks, now=at),
    }
    for name, call in refusals.items():
        with pytest.raises(cases.Conflict) as e:
            call()
        assert "已办结" in e.value.message or "未关闭" in e.value.message, (name, e.value.message)
    # Closing again is a repeat, not a change (the first outcome stays).
    again = cases.close(store, _duty("李四"), tid, "误报", now=at)
    assert again.already and again.ticket["outcome"] == "responded" and again.ticket["closed_by"] == "王五"
    after = (_ticket(store, tid), _deadlines(store, tid))
    assert (after[0].status, after[0].department, after[0].acknowledged_at, after[0].outcome) == (
        before[0].status, before[0].department, before[0].acknowledged_at, before[0].outcome)
    assert {m: (d.met_at, d.cancelled_at) for m, d in after[1].items()} == {
        m: (d.met_at, d.cancelled_at) for m, d in before[1].items()}
    # Each refusal is audited as failed, with the reason the user saw.
    failed = [a for a in _audit(store) if a.outcome == "failed"]
    assert [a.action for a in failed] == ["acknowledged", "assigned", "milestone", "event_split", "event_merged",
                                          "event_merged"]
    assert all("已办结" in a.detail["reason"] or "未关闭" in a.detail["reason"] for a in failed)
    assert _ticket(store, fire_t).status == "new"  # the other side of the refused merges is untouched


def test_close_outcomes_come_from_a_fixed_list(case) -> None:
    store, _clocks, ids = case
    tid = ids["fee"][0]
    for bad, match in (("已处置", "无效"), ("merged", "合并功能"), ("已合并", "合并功能"), ("other", "说明"),
                       ("其他", "说明")):
        with pytest.raises(cases.Invalid, match=match):
            cases.close(store, _duty("王五"), tid, bad, note="" if bad in ("other", "其他") else None)
    assert _ticket(store, tid).status == "new"
    out = cases.close(store, _duty("王五"), tid, "其他", note="转交信访部门办理", now=T0 + timedelta(hours=3))
    assert (out.ticket["outcome"], out.ticket["outcome_label"], out.ticket["outcome_note"]) == (
        "other", "其他", "转交信访部门办理")
    row = _audit(store, tid, "closed")[-1]
    assert (row.detail["outcome_code"], row.detail["outcome"], row.detail["note"]) == ("other", "其他", "转交信访部门办理")
    # Not a cancelling outcome: the 48 h clock runs on and is a breach when due.
    assert _deadlines(store, tid)["回应"].cancelled_at is None and row.detail["open_milestones"] == ["回应"]


def test_reopen_rules(case) -> None:
    store, clocks, ids = case
    tid, eid = ids["fee"]
    at = T0 + timedelta(hours=3)
    with pytest.raises(cases.Conflict, match="尚未办结"):
        cases.reopen(store, _duty("王五"), tid, "还要处理", now=at)
    cases.close(store, _duty("王五"), tid, "false_alarm", note="政务动态，误报", now=at)
    d = _deadlines(store, tid)["回应"]
    assert (d.cancelled_at, d.cancelled_by, d.cancel_outcome, d.cancel_reason) == (
        at, "王五", "false_alarm", "误报：政务动态，误报")
    with pytest.raises(cases.Invalid, match="理由"):
        cases.reopen(store, _duty("李四"), tid, "  ", now=at)
    later = at + timedelta(hours=1)
    out = cases.reopen(store, _duty("李四"), tid, "网民继续反映，并非误报", now=later)
    t = out.ticket
    # closed → acknowledged; nobody had acknowledged it, so the reopener takes it on.
    assert (t["status"], t["acknowledged_by"], t["outcome"], t["closed_at"]) == ("acknowledged", "李四", None, None)
    assert [(x["milestone"], x["state"]) for x in t["deadlines"]] == [("回应", "open")]
    with store.reader() as s:
        assert s.get(Event, eid).status == "open"
    row = _audit(store, tid, "reopened")[-1]
    assert row.actor == "李四" and row.detail["reason"] == "网民继续反映，并非误报"
    assert row.detail["previous"]["outcome_code"] == "false_alarm"
    assert row.detail["deadlines_restored"] == [{"milestone": "回应", "starts_at": "2026-11-02T10:00:00+08:00",
                                                 "due_at": "2026-11-04T10:00:00+08:00", "overdue": False}]
    # Open again: a milestone can be recorded, and a second close is a fact of its own.
    cases.record_milestone(store, _duty("李四"), tid, "回应", clocks=clocks, evidence_url=EVIDENCE,
                           now=later + timedelta(hours=1))
    cases.close(store, _duty("李四"), tid, "responded", now=later + timedelta(hours=2))
    assert [a.detail["outcome_code"] for a in _audit(store, tid, "closed")] == ["false_alarm", "responded"]
    # A ticket merged away cannot be reopened: it names where its posts went.
    other_t, other_e = ids["other"]
    fire_t, fire_e = ids["fire"]
    cases.merge(store, _duty("王五"), other_e, fire_e, clocks=clocks, confirm_places=True, now=later)
    assert _ticket(store, other_t).outcome == "merged"
    with pytest.raises(cases.Conflict, match=f"已并入工单 #{fire_t}"):
        cases.reopen(store, _duty("王五"), other_t, "合并错了", now=later)


def test_a_milestone_needs_evidence_and_one_after_its_deadline_is_late(case) -> None:
    store, clocks, ids = case
    tid = ids["fire"][0]
    at = T0 + timedelta(hours=3)
    for url, match in ((None, "须附佐证链接"), ("  ", "须附佐证链接"), ("javascript:alert(1)", "无效"),
                       ("//evil.test/x", "无效"), ("ftp://gov.test/a", "无效")):
        with pytest.raises(cases.Invalid, match=match):
            cases.record_milestone(store, _duty("赵六"), tid, "权威信息发布", clocks=clocks, evidence_url=url, now=at)
    assert _deadlines(store, tid)["权威信息发布"].met_at is None
    ok = cases.record_milestone(store, _duty("赵六"), tid, "权威信息发布", clocks=clocks,
                                evidence_url=f"  {EVIDENCE}  ", now=at)
    d = {x["milestone"]: x for x in ok.ticket["deadlines"]}["权威信息发布"]
    assert (d["evidence_url"], d["on_time"], d["state"]) == (EVIDENCE, True, "met")
    # The press conference was due 24 h after T0: recorded a day late, it is late.
    late_at = T0 + timedelta(hours=48)
    late = cases.record_milestone(store, _duty("赵六"), tid, "新闻发布会", clocks=clocks, evidence_url=EVIDENCE,
                                  now=late_at)
    assert {x["milestone"]: x for x in late.ticket["deadlines"]}["新闻发布会"]["on_time"] is False
    row = [a for a in _audit(store, tid, "milestone") if a.outcome == "ok"][-1]
    assert row.detail["on_time"] is False and row.detail["overdue_seconds"] == 24 * 3600
    rep = timeliness(store, date(2026, 11, 2), date(2026, 11, 2), as_of=late_at, actor=_duty("x"))
    rows = {(r.group, r.milestone): r for r in rep.rows}
    assert (rows["应急管理局", "权威信息发布"].on_time, rows["应急管理局", "新闻发布会"].breaches) == (1, 1)
    # Refusals for want of evidence are audited as failed.
    assert sum(1 for a in _audit(store, tid, "milestone") if a.outcome == "failed") == 5


# --------------------------------------------------------------------------- cancelled deadlines


def test_false_alarm_and_no_response_cancel_the_clocks_and_are_counted_apart(case, settings) -> None:
    store, clocks, ids = case
    fire_t = ids["fire"][0]
    fee_t = ids["fee"][0]
    other_t = ids["other"][0]
    # The fire is a false alarm, closed within the hour; the complaint needed no response, closed after its
    # 48 h had passed (its breach had fired); the third item is closed as answered but its clock ran out.
    sched_at = [T0]
    sched = Scheduler(store, now=lambda: sched_at[0])
    closed_at = T0 + timedelta(hours=1)
    cases.record_milestone(store, _duty("赵六"), fire_t, "权威信息发布", clocks=clocks, evidence_url=EVIDENCE,
                           now=closed_at - timedelta(minutes=30))
    cases.close(store, _duty("赵六"), fire_t, "误报", note="网传视频系外地旧闻", now=closed_at)
    sched_at[0] = T0 + timedelta(hours=60)
    fired = sched.tick()
    assert {(f.ticket_id, f.milestone) for f in fired if f.kind == "breach"} == {(fee_t, "回应"), (other_t, "回应")}
    late_close = T0 + timedelta(hours=61)
    cases.close(store, _duty("钱七"), fee_t, "no_response_needed", now=late_close)
    cases.close(store, _duty("钱七"), other_t, "responded", note="已电话答复", now=late_close)
    # The scheduler never fires a cancelled deadline, however late it looks.
    sched_at[0] = T0 + timedelta(days=30)
    assert sched.tick() == [] and sched.next_due_at(T0) is None
    fire_d = _deadlines(store, fire_t)
    assert fire_d["新闻发布会"].fired_at is None and fire_d["新闻发布会"].cancelled_by == "赵六"
    assert "持续发布（第1次）" not in fire_d  # the follow-up was dropped at the close
    with store.reader() as s:
        ws = s.scalars(select(DeadlineWarning).where(DeadlineWarning.deadline_id == fire_d["新闻发布会"].id)).all()
    assert ws and {w.outcome for w in ws} == {"cancelled"}
    breaches = [(a.ticket_id, a.detail["milestone"]) for a in _audit(store, action="deadline_breach")]
    assert sorted(breaches) == sorted([(fee_t, "回应"), (other_t, "回应")])  # fired before the cancel, never after

    as_of = T0 + timedelta(days=10)
    rep = timeliness(store, date(2026, 11, 1), date(2026, 11, 30), as_of=as_of, actor=_duty("x"))
    total = {r.milestone: r for r in rep.rows if r.group == "合计"}
    assert (total["回应"].cancelled, total["回应"].breaches, total["回应"].on_time_rate) == (1, 1, 0.0)
    assert (total["新闻发布会"].cancelled, total["新闻发布会"].breaches, total["新闻发布会"].on_time_rate) == (1, 0, None)
    assert (total["权威信息发布"].on_time, total["权威信息发布"].on_time_rate) == (1, 1.0)
    assert [(c.ticket_id, c.milestone, c.cancelled_by, c.reason, c.overdue) for c in rep.cancellations] == [
        (fire_t, "新闻发布会", "赵六", "误报：网传视频系外地旧闻", False),
        (fee_t, "回应", "钱七", "无需回应（政务动态）", True),
    ]
    out = rep.to_text()
    assert "撤销时限 2 件：" in out and "由 钱七 于 2026-11-04 22:00 撤销（撤销时已超时），理由：无需回应（政务动态）" in out
    assert "\t100.0%\t0:30\t0:30" in out  # 权威信息发布 met 30 min after T0
    assert rep.to_dict()["cancellations"][0]["cancelled_by"] == "赵六"

    b = brief(store, "week", date(2026, 11, 2), as_of=as_of, actor=_duty("x"))
    t = b.timeliness
    assert (t.due, t.on_time, t.late, t.open_past_deadline, t.pending, t.cancelled) == (4, 1, 0, 1, 0, 2)
    assert [c.name for c in t.breach_departments] == ["住房和城乡建设局"]
    text_ = brief_text(b)
    assert "撤销时限 2 件（无需回应（政务动态） 1 件、误报 1 件，不计超时）：" in text_
    assert "由 赵六 于 2026-11-02 10:00 撤销，理由：误报：网传视频系外地旧闻" in text_
    assert "已撤销 2" in text_


def test_report_csv_and_xlsx_show_percentages_and_hours_minutes(case, tmp_path) -> None:
    from openpyxl import load_workbook

    from responder.report import write_xlsx

    store, clocks, ids = case
    fire_t = ids["fire"][0]
    cases.record_milestone(store, _duty("赵六"), fire_t, "权威信息发布", clocks=clocks, evidence_url=EVIDENCE,
                           now=T0 + timedelta(hours=2, minutes=5, seconds=29))
    cases.close(store, _duty("赵六"), ids["fee"][0], "false_alarm", now=T0 + timedelta(hours=4))
    rep = timeliness(store, date(2026, 11, 1), date(2026, 11, 30), as_of=T0 + timedelta(days=3), actor=_duty("x"))
    write_csv(rep, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    assert head[8:] == ["撤销", "临界完成", "按时率", "用时中位数(小时:分)", "用时90分位(小时:分)"]
    body = {(r[0], r[1]): dict(zip(head, r, strict=True)) for r in rows[1:]}
    fire = body["应急管理局", "权威信息发布"]
    assert (fire["按时率"], fire["用时中位数(小时:分)"], fire["用时90分位(小时:分)"]) == ("100.0%", "2:05", "2:05")
    assert body["应急管理局", "新闻发布会"]["按时率"] == "0.0%"
    # The complaint's clock cancelled, the third item's breached: 0 of 1 decided.
    housing = body["住房和城乡建设局", "回应"]
    assert (housing["总数"], housing["撤销"], housing["超时"], housing["按时率"], housing["用时中位数(小时:分)"]) == (
        "2", "1", "1", "0.0%", "")
    write_xlsx(rep, tmp_path / "r.xlsx")
    wb = load_workbook(tmp_path / "r.xlsx")
    cells = list(wb["回应及时性"].iter_rows(values_only=True))
    assert cells[1][10] == "按时率" and any(r[:2] == ("应急管理局", "权威信息发布") and r[10] == "100.0%" for r in cells)
    gone = list(wb["撤销时限"].iter_rows(values_only=True))
    assert gone[0][0].startswith("撤销时限 1 件") and gone[2][0] == ids["fee"][0] and gone[2][6] == "赵六"


def test_existing_databases_gain_the_new_columns(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    added = {"tickets": ["outcome", "outcome_note", "closed_by"],
             "deadlines": ["cancelled_at", "cancelled_by", "cancel_outcome", "cancel_reason"]}
    store = Store(url)
    with store.engine.begin() as c:  # a database from before them (and before Alembic: no version)
        for table, cols in added.items():
            for col in cols:
                c.execute(text(f"ALTER TABLE {table} DROP COLUMN {col}"))
        c.execute(text("DROP TABLE alembic_version"))
        # ... and before what later revisions added (0002: monitoring-scheme alerts).
        c.execute(text("DROP TABLE scheme_matches"))
        c.execute(text("DROP TABLE scheme_seen"))
        c.execute(text("ALTER TABLE saved_searches DROP COLUMN watch_from"))
    store.close()
    store = Store(url)
    with store.engine.connect() as c:
        for table, cols in added.items():
            have = {r[1] for r in c.execute(text(f"PRAGMA table_info({table})"))}
            assert set(cols) <= have, (table, have)
    store.close()


# --------------------------------------------------------------------------- the replay

MONTH_START = sh(2026, 11, 1, 0, 0)
MONTH_END = sh(2026, 12, 1, 0, 0)
PLACES = ("蜀山区", "包河区", "合肥市", "镜湖区")
DEPARTMENTS = ("住房和城乡建设局", "城市管理局", "应急管理局", "交通运输局", "市场监督管理局")
OFFICERS = ("张三", "李四", "王五", "赵六")


@dataclass
class Replay:
    """What the random month did (to check it did a bit of everything)."""

    done: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    end: datetime = MONTH_END


def _post(pid: str, key: int, at: datetime, rng: random.Random, *, emergency: bool, variant: int = 0) -> AssessedPost:
    title, body = _story(key)
    if variant:
        body = body[:-2] + "转述"
    place = PLACES[key % len(PLACES)]
    dept = DEPARTMENTS[key % len(DEPARTMENTS)]
    if emergency:
        return assessed(pid, title=title, text=body, published_at=at, severity="重大", is_emergency=True,
                        event_type="事故灾难", event_subtype="火灾", place=place, department="应急管理局")
    # Every post names a department (grouping copies one into a ticket without one silently).
    return assessed(pid, title=title, text=body, published_at=at, place=place, department=dept)


def run_month(store: Store, settings: Any, seed: int) -> Replay:
    """Posts arrive over November; duty officers act at random between them."""
    rng = random.Random(seed)
    clocks = clocks_for(settings)
    out = Replay()
    # The stories: when each post is published and when it reaches the responder.
    arrivals: list[tuple[datetime, AssessedPost]] = []
    for key in range(10, 10 + 46):
        first = MONTH_START + timedelta(minutes=rng.randrange(0, 27 * 24 * 60))
        emergency = key % 6 == 0
        arrivals.append((first + timedelta(minutes=10), _post(f"s{key}-0", key, first, rng, emergency=emergency)))
        if not emergency:
            for i in range(1, rng.choice((1, 1, 2, 3))):
                # Sometimes a report published before the first one arrives later (T0 moves back).
                pub = first + timedelta(minutes=rng.choice((-90, -30, 20, 60, 300)))
                arrivals.append((max(first, pub) + timedelta(minutes=rng.randrange(15, 600)),
                                 _post(f"s{key}-{i}", key, pub, rng, emergency=False, variant=i)))
    arrivals.sort(key=lambda x: (x[0], x[1].post.post_id))
    sched_at = [MONTH_START]
    sched = Scheduler(store, now=lambda: sched_at[0])

    def tickets(status: str | None = None) -> list[Ticket]:
        with store.reader() as s:
            q = select(Ticket).order_by(Ticket.id)
            return list(s.scalars(q if status is None else q.where(Ticket.status == status)))

    def act(name: str, call: Any, *args: Any, **kw: Any) -> None:
        try:
            call(store, who, *args, now=now, **kw)
        except cases.CaseError:
            out.refused[name] += 1
        else:
            out.done[name] += 1

    now = MONTH_START
    i = 0
    while now < MONTH_END - timedelta(hours=2):
        now += timedelta(minutes=rng.randrange(20, 140))
        batch = []
        while i < len(arrivals) and arrivals[i][0] <= now:
            batch.append(arrivals[i][1])
            i += 1
        if batch:
            handle_batch(store, settings, batch, now=now)
        who = _duty(rng.choice(OFFICERS))
        everyone = tickets()
        if not everyone:
            continue
        open_ = [t for t in everyone if t.status != "closed"]
        closed = [t for t in everyone if t.status == "closed"]
        pick = rng.random()
        # Mostly actions on open tickets; now and then one on a closed ticket (refused) or a stray id.
        target = rng.choice(open_ if open_ and rng.random() < 0.9 else everyone)
        if pick < 0.14:
            act("acknowledge", cases.acknowledge, target.id)
        elif pick < 0.22:
            act("assign", cases.assign, target.id, rng.choice(DEPARTMENTS))
        elif pick < 0.50:
            with store.reader() as s:
                ds = list(s.scalars(select(Deadline).where(Deadline.ticket_id == target.id).order_by(Deadline.id)))
            open_ds = [d for d in ds if d.met_at is None]
            if open_ds:
                d = rng.choice(open_ds)
                url = None if rng.random() < 0.08 else f"https://gov.test/{target.id}/{rng.randrange(10**6)}.html"
                act("milestone", cases.record_milestone, target.id, d.milestone, clocks=clocks, evidence_url=url)
        elif pick < 0.66:
            outcome = rng.choice(("responded", "已回应办结", "no_response_needed", "false_alarm", "误报", "other"))
            note = rng.choice(("", "已答复", "经核实不属实")) if outcome != "other" else "转信访"
            act("close", cases.close, target.id, outcome, note=note)
        elif pick < 0.74 and closed:
            act("reopen", cases.reopen, rng.choice(closed).id, "网民继续反映")
        elif pick < 0.80 and len(open_) >= 2:
            a, b = rng.sample(open_, 2)
            act("merge", cases.merge, a.event_id, b.event_id, clocks=clocks)
        elif pick < 0.87:
            with store.reader() as s:
                posts = list(s.scalars(select(Post.post_id).where(Post.event_id == target.event_id)
                                       .order_by(Post.post_id)))
            if len(posts) >= 2:
                moved = rng.sample(posts, rng.randrange(1, len(posts)))
                act("split", cases.split, target.event_id, moved, "不是同一件事", clocks=clocks)
        elif pick < 0.90:
            act("unknown", cases.acknowledge, 10**6)
        elif pick < 0.93:
            # The clock rule changed by hand (a suggestion's clock may then be extended).
            rule = rng.choice(("suggestion", "suggestion", "complaint", "response_48h"))
            act("rule", clock_rules.change_rule, target.id, rule, "值班员更正时限规则", clocks=clocks)
        elif pick < 0.96:
            # Mostly a suggestion's clock (extendable once), now and then another (refused).
            suggestions = [t for t in open_ if t.rule == "suggestion"]
            if suggestions and rng.random() < 0.8:
                target = rng.choice(suggestions)
            with store.reader() as s:
                ds = list(s.scalars(select(Deadline.milestone).where(Deadline.ticket_id == target.id,
                                                                     Deadline.met_at.is_(None))))
            if ds:
                act("extend", casework.extend_deadline, target.id, rng.choice(ds), "涉及多部门", clocks=clocks)
        elif pick < 0.985:
            # A milestone met by an earlier release (a candidate confirmed later): on time or late by met_at.
            with store.reader() as s:
                t0 = s.get(Event, target.event_id).t0
                ds = list(s.scalars(select(Deadline.milestone).where(Deadline.ticket_id == target.id,
                                                                     Deadline.met_at.is_(None))))
            if ds:
                back = now - timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
                act("milestone_at", cases.record_milestone, target.id, rng.choice(ds), clocks=clocks,
                    evidence_url=f"https://gov.test/{target.id}/release.html", met_at=max(back, t0 - timedelta(
                        minutes=rng.choice((0, 0, 0, 5)))))
        else:
            act("escalate", casework.escalate, target.id, "督促尽快回应")
        sched_at[0] = now
        sched.tick()
    out.end = now
    return out


# ---- the independent computation: the audit rows, replayed


def _t(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


@dataclass
class DL:
    starts_at: datetime
    due_at: datetime
    met_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    reason: str | None = None
    outcome: str | None = None


@dataclass
class TK:
    department: str | None
    place: str
    code: str | None
    t0: datetime
    deadlines: dict[str, DL] = field(default_factory=dict)


def replay_audit(rows: list[Audit]) -> dict[int, TK]:
    """Every ticket's department, place and deadlines, from the audit rows alone."""
    tk: dict[int, TK] = {}

    def opened(tid: int, d: dict[str, Any]) -> None:
        t0 = _t(d["t0"])
        assert t0 is not None
        tk[tid] = TK(d.get("department"), d.get("place") or "待定", d.get("place_code"), t0,
                     {x["milestone"]: DL(t0, _t(x["due_at"])) for x in d.get("deadlines", [])})  # type: ignore[arg-type]

    def moved(t: TK, t0: datetime, changes: list[dict[str, Any]]) -> None:
        for c in changes:
            t.deadlines[c["milestone"]].starts_at = t0
            t.deadlines[c["milestone"]].due_at = _t(c["to"])  # type: ignore[assignment]

    def cancel(t: TK, at: datetime, who: str, outcome: str, reason: str, d: dict[str, Any]) -> None:
        for m in d.get("followups_dropped", []):
            del t.deadlines[m]
        for x in d.get("deadlines_cancelled", []):
            dl = t.deadlines[x["milestone"]]
            assert (dl.starts_at, dl.due_at) == (_t(x["starts_at"]), _t(x["due_at"])), (x, dl)
            dl.cancelled_at, dl.cancelled_by, dl.outcome, dl.reason = at, who, outcome, reason

    for a in rows:
        if a.outcome != "ok" or a.ticket_id is None:
            continue
        d, tid = a.detail or {}, a.ticket_id
        if a.action in ("opened", "archived_no_response") or (a.action == "event_split" and d.get("new_ticket") == tid):
            opened(tid, d)
            continue
        t = tk[tid]
        if a.action == "t0_moved":
            t.t0 = _t(d["to"])  # type: ignore[assignment]
            moved(t, t.t0, d["deadlines"])
        elif a.action == "severity_changed":
            for x in d.get("deadlines_added", []):
                t.deadlines[x["milestone"]] = DL(t.t0, _t(x["due_at"]))  # type: ignore[arg-type]
        elif a.action == "assigned":
            t.department = d["to"]
        elif a.action == "place_refined":
            t.place, t.code = d["to"], d["code"]
        elif a.action == "milestone":
            dl = t.deadlines[d["milestone"]]
            assert dl.met_at is None and dl.cancelled_at is None and _t(d["due_at"]) == dl.due_at
            dl.met_at = _t(d["met_at"])  # when it was met (a release's publication), not when recorded
            nxt = d.get("next_followup")
            if nxt:
                t.deadlines[nxt["milestone"]] = DL(_t(nxt["starts_at"]), _t(nxt["due_at"]))  # type: ignore[arg-type]
        elif a.action == "closed":
            reason = f"{d['outcome']}：{d['note']}" if d.get("note") else d["outcome"]
            cancel(t, a.at, a.actor, d["outcome_code"], reason, d)
        elif a.action == "reopened":
            for x in d["deadlines_restored"]:
                dl = t.deadlines[x["milestone"]]
                dl.cancelled_at = dl.cancelled_by = dl.reason = dl.outcome = None
        elif a.action == "event_merged" and d["from_ticket"] == tid:
            cancel(t, a.at, a.actor, "merged", f"{d['outcome']}：{d['note']}", d)
        elif a.action == "event_merged":  # the ticket merged into
            t.t0 = _t(d["t0"])  # type: ignore[assignment]
            moved(t, t.t0, d["deadlines_moved"])
            for x in d["deadlines_added"]:
                t.deadlines[x["milestone"]] = DL(t.t0, _t(x["due_at"]))  # type: ignore[arg-type]
        elif a.action == "clock_rule_changed":
            for x in d["deadlines_removed"]:
                dl = t.deadlines.pop(x["milestone"])
                assert dl.met_at is None and (dl.starts_at, dl.due_at) == (_t(x["starts_at"]), _t(x["due_at"]))
            for x in d["deadlines_added"]:
                t.deadlines[x["milestone"]] = DL(_t(x["starts_at"]), _t(x["due_at"]))  # type: ignore[arg-type]
        elif a.action == "deadline_extended":
            dl = t.deadlines[d["milestone"]]
            assert (dl.starts_at, dl.due_at) == (_t(d["starts_at"]), _t(d["from_due_at"])) and dl.met_at is None
            dl.due_at = _t(d["due_at"])  # type: ignore[assignment]
        elif a.action == "event_split":  # the ticket split from
            t.t0 = _t(d["t0_change"]["to"])  # type: ignore[assignment]
            moved(t, t.t0, d["deadlines"])
    return tk


LABEL = {"responded": "已回应办结", "no_response_needed": "无需回应（政务动态）", "false_alarm": "误报",
         "merged": "已合并", "other": "其他"}


def expected_report(tk: dict[int, TK], first: date, last: date, by: str, as_of: datetime,
                    prefix: str = "") -> tuple[dict[tuple[str, str], tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The report's rows (group, milestone) → figures, and its cancellations, computed here."""
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    cells: dict[tuple[str, str], list[tuple[DL, int]]] = defaultdict(list)
    gone = []
    for tid, t in tk.items():
        if prefix and not (t.code or "").startswith(prefix):
            continue
        g = (t.department or "未指定") if by == "department" else (t.place or "待定")
        for m, dl in t.deadlines.items():
            if start <= dl.starts_at < end:
                cells[g, m].append((dl, tid))
                cells["合计", m].append((dl, tid))
                if dl.cancelled_at is not None and dl.met_at is None and dl.cancelled_at <= as_of:
                    gone.append((tid, g, m, dl.due_at, dl.cancelled_at, dl.cancelled_by, LABEL[dl.outcome or ""],
                                 dl.reason, dl.due_at <= dl.cancelled_at))
    out = {}
    for key, items in cells.items():
        met = [dl for dl, _ in items if dl.met_at is not None and dl.met_at <= as_of]
        on_time = [dl for dl in met if dl.met_at <= dl.due_at]  # type: ignore[operator]
        cancelled = [dl for dl, _ in items if dl not in met and dl.cancelled_at is not None and dl.cancelled_at <= as_of]
        rest = [dl for dl, _ in items if dl not in met and dl not in cancelled]
        open_past = [dl for dl in rest if dl.due_at <= as_of]
        breaches = len(met) - len(on_time) + len(open_past)
        near = [dl for dl in on_time if dl.met_at > dl.due_at - (dl.due_at - dl.starts_at) * 0.1]  # type: ignore[operator]
        secs = sorted((dl.met_at - dl.starts_at).total_seconds() for dl in met)  # type: ignore[operator]
        decided = len(on_time) + breaches
        out[key] = (
            len(items), len(met), len(on_time), breaches, len(open_past), len(rest) - len(open_past), len(cancelled),
            len(near), round(len(on_time) / decided, 6) if decided else None,
            round(statistics.median(secs) / 3600, 4) if secs else None,
            round(secs[math.ceil(0.9 * len(secs)) - 1] / 3600, 4) if secs else None,
            f"{len(on_time) * 100 / decided:.1f}%" if decided else None,
            _hm(statistics.median(secs)) if secs else None,
            _hm(secs[math.ceil(0.9 * len(secs)) - 1]) if secs else None,
        )
    gone.sort(key=lambda c: (c[4], c[0], c[2]))
    return out, gone


FIELDS = ("total", "met", "on_time", "breaches", "open_past_deadline", "pending", "cancelled", "near_misses",
          "on_time_rate", "median_hours", "p90_hours")


def got_report(store: Store, first: date, last: date, by: str, as_of: datetime, actor: Actor) -> tuple[Any, Any]:
    from responder.report import shown

    rep = timeliness(store, first, last, by=by, as_of=as_of, actor=actor)
    rows = {(r.group, r.milestone): tuple(getattr(r, f) for f in FIELDS)
            + tuple(shown(r, k) for k in ("on_time_rate", "median_hours", "p90_hours")) for r in rep.rows}
    gone = [(c.ticket_id, c.group, c.milestone, c.due_at, c.cancelled_at, c.cancelled_by, c.outcome, c.reason,
             c.overdue) for c in rep.cancellations]
    return rows, gone


def expected_brief(tk: dict[int, TK], day: date, as_of: datetime) -> tuple[Any, ...]:
    first = day - timedelta(days=day.isoweekday() - 1)
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI)
    end = start + timedelta(days=7)
    c: Counter[str] = Counter()
    depts: Counter[str] = Counter()
    gone = []
    for tid, t in tk.items():
        for m, dl in t.deadlines.items():
            if not start <= dl.due_at < end:
                continue
            c["due"] += 1
            if dl.met_at is not None and dl.met_at <= as_of:
                state = "on_time" if dl.met_at <= dl.due_at else "late"
            elif dl.cancelled_at is not None and dl.cancelled_at <= as_of:
                state = "cancelled"
                gone.append((dl.cancelled_at, tid, m, dl.cancelled_by, dl.reason))
            else:
                state = "open_past_deadline" if dl.due_at <= as_of else "pending"
            c[state] += 1
            if state in ("late", "open_past_deadline"):
                depts[t.department or "未指定"] += 1
    gone.sort(key=lambda g: (g[0], g[1], g[2]))
    return (c["due"], c["on_time"], c["late"], c["open_past_deadline"], c["pending"], c["cancelled"],
            sorted(depts.items(), key=lambda kv: (-kv[1], kv[0])), gone)


def got_brief(store: Store, day: date, as_of: datetime) -> tuple[Any, ...]:
    t = brief(store, "week", day, as_of=as_of, actor=_duty("x")).timeliness
    return (t.due, t.on_time, t.late, t.open_past_deadline, t.pending, t.cancelled,
            [(x.name, x.count) for x in t.breach_departments],
            [(x.cancelled_at, x.ticket_id, x.milestone, x.cancelled_by, x.reason) for x in t.cancellations])


def test_replay_a_month_and_recompute_every_figure_from_the_audit(store_url: str, settings, tmp_path) -> None:
    store = Store(store_url)
    try:
        done = run_month(store, settings, seed=20261101)
        # The month did a bit of everything, refusals included.
        for name, least in (("acknowledge", 10), ("assign", 5), ("milestone", 25), ("close", 15), ("reopen", 4),
                            ("merge", 3), ("split", 2), ("rule", 2), ("extend", 1), ("milestone_at", 2),
                            ("escalate", 1)):
            assert done.done[name] >= least, (name, done.done, done.refused)
        assert done.refused["milestone"] and done.refused["unknown"] and done.refused["acknowledge"], done.refused
        rows = _audit(store)
        kinds = Counter(a.action for a in rows if a.outcome == "ok")
        closes = Counter(a.detail["outcome_code"] for a in rows if a.action == "closed" and a.outcome == "ok")
        assert set(closes) == {"responded", "no_response_needed", "false_alarm", "other"}, closes
        milestones = [a.detail["on_time"] for a in rows if a.action == "milestone" and a.outcome == "ok"]
        assert True in milestones and False in milestones, "milestones on time and late"
        assert kinds["t0_moved"] and kinds["event_merged"] and kinds["event_split"], kinds

        tk = replay_audit(rows)
        # The replayed deadlines are the stored ones (a sanity check of the replay, not of the report).
        with store.reader() as s:
            stored = {(d.ticket_id, d.milestone): (d.starts_at, d.due_at, d.met_at, d.cancelled_at)
                      for d in s.scalars(select(Deadline))}
        assert {(tid, m): (dl.starts_at, dl.due_at, dl.met_at, dl.cancelled_at)
                for tid, t in tk.items() for m, dl in t.deadlines.items()} == stored
        n_cancelled = sum(1 for v in stored.values() if v[3] is not None and v[2] is None)
        assert n_cancelled >= 3

        # Cancelled deadlines never fired after their cancellation.
        cancelled_at = {k: v[3] for k, v in stored.items() if v[3] is not None}
        for a in rows:
            if a.action == "deadline_breach":
                at = cancelled_at.get((a.ticket_id, a.detail["milestone"]))
                assert at is None or a.at < at, (a.ticket_id, a.detail["milestone"])

        checks = 0
        for as_of in (done.end, done.end + timedelta(days=20)):
            for first, last in ((date(2026, 11, 1), date(2026, 11, 30)), (date(2026, 11, 9), date(2026, 11, 22))):
                for by in ("department", "region"):
                    for prefix in ("", "3401"):
                        want = expected_report(tk, first, last, by, as_of, prefix)
                        got = got_report(store, first, last, by, as_of, _duty("x", prefix))
                        assert got[0] == want[0], (by, first, last, as_of, prefix)
                        assert got[1] == want[1], (by, first, last, as_of, prefix)
                        checks += 1
            for day in (date(2026, 11, 4), date(2026, 11, 18), date(2026, 11, 27)):
                assert got_brief(store, day, as_of) == expected_brief(tk, day, as_of), (day, as_of)
        assert checks == 16
        full = expected_report(tk, date(2026, 11, 1), date(2026, 11, 30), "department", done.end)[0]
        assert sum(v[6] for k, v in full.items() if k[0] == "合计") >= 1, "cancelled deadlines in the figures"

        # `yuqing report timeliness` (the CLI, its CSV) says the same (SQLite: the CLI opens the file).
        if store_url.startswith("sqlite"):
            want = expected_report(tk, date(2026, 11, 1), date(2026, 11, 30), "region", done.end)[0]
            out_csv = tmp_path / "t.csv"
            env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_STORE_URL": store_url,
                   "YUQING_DATA_DIR": str(tmp_path)}
            p = subprocess.run(
                [sys.executable, "-m", "yuqing.cli", "--config", str(ROOT / "config"), "report", "timeliness",
                 "--from", "2026-11-01", "--to", "2026-11-30", "--by", "region", "--as-of", done.end.isoformat(),
                 "--csv", str(out_csv)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            with open(out_csv, encoding="utf-8-sig") as f:
                lines = list(csv.reader(f))
            for r in lines[1:]:
                w = want[r[0], r[1]]
                assert [int(x) for x in r[2:10]] == list(w[:8]), r
                assert r[10:] == [w[11] or "", w[12] or "", w[13] or ""], (r, w)
            assert len(lines) - 1 == len(want)
    finally:
        store.close()


def _hm(seconds: float) -> str:
    """Seconds as 小时:分, to the nearest minute (half a minute up)."""
    minutes = int((seconds + 30) // 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def test_the_web_api_closes_reopens_and_shows_cancelled_clocks(tmp_path, settings) -> None:
    from tests.fixtures.auth import client_as
    from web.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    title, body = _story(3)
    handle_batch(store, settings, [assessed("x", title=title, text=body, published_at=T0, place="蜀山区")],
                 now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid = s.scalars(select(Ticket.id)).one()
    app = create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1))
    duty, analyst = client_as(app, "值班甲"), client_as(app, "分析乙", "analyst")
    r = duty.post(f"/api/tickets/{tid}/close", json={"outcome": "误报", "note": "网传不实"})
    assert r.status_code == 200, r.text
    d = r.json()["ticket"]["deadlines"][0]
    assert (d["state"], d["state_label"], d["cancelled_by"], d["cancel_reason"], d["overdue"]) == (
        "cancelled", "已撤销", "值班甲", "误报：网传不实", False)
    page = duty.get(f"/tickets/{tid}").text
    assert "已撤销（值班甲" in page and "误报：网传不实" in page and "data-milestone" not in page
    refused = duty.post(f"/api/tickets/{tid}/milestones", json={"milestone": "回应", "evidence_url": EVIDENCE})
    assert refused.status_code == 409 and "已办结" in refused.json()["detail"]
    assert duty.post(f"/api/tickets/{tid}/ack").status_code == 409
    assert analyst.post(f"/api/tickets/{tid}/reopen", json={"reason": "再看看"}).status_code == 403
    assert duty.post(f"/api/tickets/{tid}/reopen", json={"reason": ""}).status_code == 422
    r = duty.post(f"/api/tickets/{tid}/reopen", json={"reason": "网民继续反映"})
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "acknowledged"
    assert r.json()["ticket"]["deadlines"][0]["state"] == "open"
    assert duty.post(f"/api/tickets/{tid}/reopen", json={"reason": "再开"}).status_code == 409
    assert duty.get(f"/api/tickets/{tid}").json()["audit"][-1]["action"] == "reopened"
    store.close()
