"""The due-time scheduler on SQLite and PostgreSQL: exactly once, across restarts and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from responder.scheduler import Scheduler
from responder.service import handle_batch
from responder.store import Audit, Deadline, DeadlineWarning, Outbox, Store, Ticket, TicketEventRow
from stream.contracts import TicketEvent
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
T0 = sh(2026, 11, 2, 9, 0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set(self, **delta: float) -> None:
        self.at = T0 + timedelta(**delta)


def _major(store: Store, settings, post_id: str = "fire") -> int:
    handle_batch(
        store,
        settings,
        [
            assessed(
                post_id,
                title="蜀山区居民楼火灾致12人死亡",
                text="合肥市蜀山区井岗镇一居民楼火灾已造成12人死亡。",
                published_at=T0,
                fetched_at=T0 + timedelta(minutes=20),
                severity="重大",
                is_emergency=True,
                event_type="事故灾难",
                event_subtype="火灾",
            ),
        ],
        now=T0 + timedelta(minutes=21),
    )
    with store.reader() as s:
        return s.scalars(select(Ticket.id)).one()


def _keys(store: Store) -> list[str]:
    with store.reader() as s:
        return sorted(s.scalars(select(Outbox.key)))


def test_deadlines_and_warnings_fire_once(store_url, settings) -> None:
    store = Store(store_url)
    tid = _major(store, settings)
    clock = Clock(T0)
    sch = Scheduler(store, now=clock)
    a, b = "权威信息发布", "新闻发布会"
    steps = [
        (1, []),
        (2.5, [(a, "warn50")]),  # 50 % of 5 h
        (3.9, []),
        (4, [(a, "warn80")]),
        (5, [(a, "breach")]),
        (11.9, []),
        (12, [(b, "warn50")]),  # 50 % of 24 h
        (19.2, [(b, "warn80")]),
        (24, [(b, "breach")]),
        (100, []),
    ]
    for hours, want in steps:
        clock.set(hours=hours)
        got = [(f.milestone, f.kind) for f in sch.tick()]
        assert got == want, f"T0+{hours}h"
        assert sch.tick() == []  # the same moment again: nothing twice
    assert _keys(store) == sorted(
        f"{tid}:{m}:{k}"
        for m, k in [(a, "warn50"), (a, "warn80"), (a, "breach"), (b, "warn50"), (b, "warn80"), (b, "breach")]
    )
    with store.reader() as s:
        rows = s.scalars(select(Outbox).order_by(Outbox.id)).all()
        assert all(r.sent_at is None for r in rows)
        msgs = [TicketEvent.model_validate(r.payload) for r in rows]
        assert [m.kind for m in msgs] == ["deadline_warning", "deadline_warning", "deadline_breached"] * 2
        breach = msgs[2]
        assert (
            breach.detail["due_at"] == "2026-11-02T14:00:00+08:00" and breach.detail["overdue_seconds"] == 0
        )
        assert "本级政府办公厅" in breach.detail["escalate_to"] and "宣传部门" in breach.detail["escalate_to"]
        assert s.scalar(select(Deadline.fired_at).where(Deadline.milestone == a)) == T0 + timedelta(hours=5)
        audits = s.scalars(select(Audit.action).where(Audit.action.like("deadline_%"))).all()
        assert sorted(audits) == sorted(["deadline_warn50", "deadline_warn80", "deadline_breach"] * 2)
        assert s.query(TicketEventRow).filter(TicketEventRow.kind.like("deadline_%")).count() == 6
    store.close()


def test_after_downtime_each_overdue_fires_once(store_url, settings) -> None:
    store = Store(store_url)
    tid = _major(store, settings)
    clock = Clock(T0 + timedelta(hours=30))  # the scheduler was down the whole time
    fired = Scheduler(store, now=clock).tick()
    assert sorted((f.milestone, f.kind) for f in fired) == [
        ("新闻发布会", "breach"),
        ("权威信息发布", "breach"),
    ]
    assert _keys(store) == sorted([f"{tid}:权威信息发布:breach", f"{tid}:新闻发布会:breach"])
    with store.reader() as s:
        outcomes = s.scalars(select(DeadlineWarning.outcome)).all()
    assert outcomes == ["superseded"] * 4  # stale warnings are not sent after the breach
    assert Scheduler(Store(store_url), now=clock).tick() == []  # a restart finds nothing left
    store.close()


def test_two_schedulers_and_restart_do_not_double_fire(store_url, settings) -> None:
    store = Store(store_url)
    # Eight separate events (a week apart, so outside the grouping window).
    handle_batch(
        store,
        settings,
        [
            assessed(
                f"p{i}", title=f"事项{i}", text=f"第{i}件事项的内容", published_at=T0 + timedelta(days=7 * i)
            )
            for i in range(8)
        ],
    )
    assert store.count(Deadline) == 8
    late = Clock(T0 + timedelta(days=100))
    stores = [Store(store_url), Store(store_url)]
    schedulers = [Scheduler(st, now=late) for st in stores]
    barrier = threading.Barrier(2)
    results: list[list] = [[], []]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[i].extend(schedulers[i].tick())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    keys = [f.key for r in results for f in r]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert store.count(Outbox) == 8
    # Restart: a fresh store and scheduler at the same time fire nothing.
    for st in stores:
        st.close()
    again = Store(store_url)
    assert Scheduler(again, now=late).tick() == []
    assert again.count(Outbox) == 8
    again.close()
    store.close()


KILLER = r"""
import os, signal, sys
from datetime import datetime, timezone
from sqlalchemy import event
from responder.store import Store
from responder.scheduler import Scheduler

url, kill_at = sys.argv[1], int(sys.argv[2])
store = Store(url)
seen = 0

@event.listens_for(store.engine, "after_cursor_execute")
def _after(conn, cursor, statement, params, context, executemany):
    global seen
    if statement.lstrip().lower().startswith("insert into outbox"):
        seen += 1
        if seen == kill_at:  # the outbox row is written, the transaction not committed
            os.kill(os.getpid(), signal.SIGKILL)

Scheduler(store, now=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc), batch_size=int(sys.argv[3])).tick()
print("finished without being killed")
"""


@pytest.mark.parametrize("batch", [1, 100])
def test_kill_9_mid_fire_then_restart_fires_each_exactly_once(store_url, settings, batch) -> None:
    store = Store(store_url)
    handle_batch(
        store,
        settings,
        [
            assessed(f"k{i}", title=f"事项{i}", text=f"第{i}件事项", published_at=T0 + timedelta(days=7 * i))
            for i in range(6)
        ],
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, store_url, "4" if batch == 1 else "1", str(batch)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # One row per transaction: three fired and committed; the fourth died inside its
    # transaction and nothing of it is kept. One batch: the whole batch rolled back.
    done = 3 if batch == 1 else 0
    with store.reader() as s:
        assert s.query(Deadline).filter(Deadline.fired_at.is_not(None)).count() == done
    assert store.count(Outbox) == done and store.count(TicketEventRow) == 6 + done
    fired = Scheduler(Store(store_url), now=lambda: sh(2030, 1, 1, 8)).tick()
    assert len(fired) == 6 - done
    with store.reader() as s:
        assert s.query(Deadline).filter(Deadline.fired_at.is_(None)).count() == 0
        keys = s.scalars(select(Outbox.key)).all()
    assert len(keys) == 6 and len(set(keys)) == 6
    store.close()


def test_acknowledge_does_not_stop_clock_but_milestone_does(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ack.db'}")
    tid = _major(store, settings)
    clock = Clock(T0 + timedelta(hours=1))
    app = create_app(settings, store=store, now=clock)
    client = client_as(app, "张三")
    r = client.post(f"/api/tickets/{tid}/ack")
    assert r.status_code == 200
    with store.reader() as s:
        assert s.scalars(select(Deadline.fired_at)).all() == [None, None]
        assert all(d.met_at is None for d in s.scalars(select(Deadline)))
    # 新闻发布会 is held at T0+3h: its clock stops; 权威信息发布 is still open.
    clock.set(hours=3)
    r = client_as(app, "李四").post(
        f"/api/tickets/{tid}/milestones",
        json={"milestone": "新闻发布会", "evidence_url": "http://gov.example/fbh"},
    )
    assert r.status_code == 200
    sch = Scheduler(store, now=clock)
    clock.set(hours=30)
    fired = sch.tick()
    assert [(f.milestone, f.kind) for f in fired] == [("权威信息发布", "breach")]
    assert sch.tick() == []
    with store.reader() as s:
        met = s.scalars(select(Deadline).where(Deadline.milestone == "新闻发布会")).one()
        assert met.fired_at is None and met.met_at == T0 + timedelta(hours=3) and met.met_by == "李四"
        pending = s.scalars(select(DeadlineWarning).where(DeadlineWarning.deadline_id == met.id)).all()
        # Its warnings never fire either: closed as moot when the milestone was met, nothing sent.
        assert [(w.outcome, w.fired_at) for w in pending] == [("moot", T0 + timedelta(hours=3))] * 2
        assert not s.scalars(select(Outbox.key).where(Outbox.key.like("%新闻发布会:warn%"))).all()
    store.close()


@pytest.mark.parametrize("tick_s", [0.05])
def test_run_loop_stops_and_fires(tmp_path, settings, tick_s) -> None:
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}")
    _major(store, settings)
    stop = threading.Event()
    sch = Scheduler(store, now=lambda: T0 + timedelta(hours=6))
    t = threading.Thread(target=sch.run, args=(stop, tick_s))
    t.start()
    try:
        for _ in range(100):
            if store.count(Outbox) >= 1:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    assert _keys(store) == ["1:权威信息发布:breach"]
    store.close()


def test_run_sleeps_until_next_due_time(tmp_path, settings) -> None:
    """With a 30 s tick, a row due in 0.3 s still fires at once, not at the next tick."""
    import time

    from responder.store import utcnow

    store = Store(f"sqlite:///{tmp_path / 'wake.db'}")
    _major(store, settings)
    due = utcnow() + timedelta(seconds=0.3)
    with store.transaction() as s:
        d = s.scalars(select(Deadline).where(Deadline.milestone == "权威信息发布")).one()
        d.starts_at, d.due_at = due - timedelta(hours=5), due
        # T0 is a fixed date: move the 24 h deadline past the test, or it is
        # already breached on the first tick and the count races the one under test.
        later = s.scalars(select(Deadline).where(Deadline.milestone == "新闻发布会")).one()
        later.starts_at, later.due_at = due - timedelta(hours=5), due + timedelta(hours=19)
        for w in s.scalars(select(DeadlineWarning)):
            w.fired_at, w.outcome = due, "superseded"
    sch = Scheduler(store)
    assert sch.next_due_at(utcnow()) == due
    stop = threading.Event()
    t = threading.Thread(target=sch.run, args=(stop, 30.0))
    t.start()
    try:
        for _ in range(100):
            if store.count(Outbox):
                break
            time.sleep(0.02)
        took = (utcnow() - due).total_seconds()
    finally:
        stop.set()
        t.join(5)
    assert _keys(store) == ["1:权威信息发布:breach"], _keys(store)
    assert took < 5.0, took  # not the 30 s tick
    store.close()
