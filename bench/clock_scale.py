"""How punctually the due-time scheduler fires with 100,000 open tickets.

Builds an SQLite store in a temp dir with ``--tickets`` open tickets (mixed
rules: 48 h, 5 h/24 h, 7 and 15 working days; each deadline with its 50 %
and 80 % warning rows), all due well after the run, plus ``--measured``
tickets whose three due actions (warn50, warn80, breach) fall inside the
next minute. Runs :meth:`responder.scheduler.Scheduler.run` in a thread on
the real clock and records, for every due action, how late it was
committed (wall time after the firing transaction minus its due time):
p50, p99, max. Checks every action fired exactly once.

Then restart recovery: the scheduler stops, ``--overdue`` deadlines fall
due during the "downtime", and a fresh Store + Scheduler (as after a
restart) fires them; the time from opening the store to the last one
fired is the recovery time. Memory: peak RSS of this process.

Targets: p99 lateness ≤ 1 s, recovery ≤ 5 s.

    .venv/bin/python bench/clock_scale.py [--tickets 100000] [--measured 2000] [--overdue 5000]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, update  # noqa: E402

from responder.clocks import load_clocks  # noqa: E402
from responder.scheduler import Scheduler  # noqa: E402
from responder.store import Deadline, DeadlineWarning, Event, Outbox, Store, Ticket  # noqa: E402

RULES = ["response_48h", "response_48h", "major_emergency", "suggestion", "complaint"]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(
    store: Store, first: int, count: int, measured: bool, now: datetime, rng: random.Random
) -> dict[int, datetime]:
    """Insert tickets first..first+count-1; return {deadline id: due} of the measured ones."""
    clocks = load_clocks(ROOT / "config")
    fr = clocks.warnings
    chunk = 5000
    measured_due: dict[int, datetime] = {}
    with store.reader() as s:
        next_did = (s.scalar(select(func.max(Deadline.id))) or 0) + 1
    end = first + count
    for base in range(first, end, chunk):
        ids = range(base, min(end, base + chunk))
        ev_rows, t_rows, d_rows, w_rows = [], [], [], []
        for i in ids:
            is_measured = measured
            t0 = (
                now + timedelta(seconds=rng.uniform(0, 40))
                if is_measured
                else now - timedelta(seconds=rng.uniform(0, 3600))
            )
            rule = "response_48h" if is_measured else RULES[i % len(RULES)]
            ev_rows.append(
                {"id": i, "t0": t0, "t0_post_id": f"p{i}", "last_published_at": t0, "title": f"事项{i}"}
            )
            t_rows.append({"id": i, "event_id": i, "rule": rule, "created_at": now, "status": "new"})
            if is_measured:
                dl = [("回应", t0 + timedelta(seconds=20))]
            else:
                dl = clocks.deadlines_for(rule, t0)
            for m, due in dl:
                did = next_did
                next_did += 1
                d_rows.append(
                    {"id": did, "ticket_id": i, "milestone": m, "rule": rule, "starts_at": t0, "due_at": due}
                )
                for f in fr:
                    w_rows.append({"deadline_id": did, "percent": round(f * 100), "at": t0 + (due - t0) * f})
                if is_measured:
                    measured_due[did] = due
        with store.transaction() as s:
            s.execute(insert(Event), ev_rows)
            s.execute(insert(Ticket), t_rows)
            s.execute(insert(Deadline), d_rows)
            s.execute(insert(DeadlineWarning), w_rows)
    return measured_due


class Recorder(Scheduler):
    """The real scheduler; records when each firing transaction was committed."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.done: list[tuple[str, float]] = []

    def _tick(self, now: datetime):  # type: ignore[no-untyped-def]
        fired = super()._tick(now)
        t = time.time()
        self.done.extend((f.key, t) for f in fired)
        return fired


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, -int(-p * len(s) // 1) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--measured", type=int, default=2000)
    ap.add_argument("--overdue", type=int, default=5000)
    ap.add_argument(
        "--tick", type=float, default=1.0, help="scheduler tick (settings.responder.scheduler_tick_s)"
    )
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'clock.db'}"
        store = Store(url)
        t = time.perf_counter()
        build(store, 1, args.tickets, False, datetime.now(UTC), rng)
        start = datetime.now(UTC) + timedelta(seconds=3)
        measured_due = build(store, args.tickets + 1, args.measured, True, start, rng)
        with store.reader() as s:
            n_dl = s.scalar(select(func.count()).select_from(Deadline))
            n_w = s.scalar(select(func.count()).select_from(DeadlineWarning))
        print(
            f"建库：{args.tickets + args.measured} 张工单，{n_dl} 个期限，{n_w} 个预警点，"
            f"用时 {time.perf_counter() - t:.1f} s，RSS 峰值 {rss_mib():.0f} MiB"
        )
        # The due time of every action of the measured deadlines, by outbox key.
        due_by_key: dict[str, datetime] = {}
        with store.reader() as s:
            for tid, due in s.execute(
                select(Deadline.ticket_id, Deadline.due_at).where(Deadline.id.in_(list(measured_due)))
            ):
                due_by_key[f"{tid}:回应:breach"] = due
            for tid, pc, at in s.execute(
                select(Deadline.ticket_id, DeadlineWarning.percent, DeadlineWarning.at)
                .join(Deadline, Deadline.id == DeadlineWarning.deadline_id)
                .where(Deadline.id.in_(list(measured_due)))
            ):
                due_by_key[f"{tid}:回应:warn{pc}"] = at
        last_due = max(due_by_key.values())
        sch = Recorder(store)
        stop = threading.Event()
        th = threading.Thread(target=sch.run, args=(stop, args.tick), daemon=True)
        th.start()
        wait = (last_due - datetime.now(UTC)).total_seconds() + 3
        print(f"运行调度器 {wait:.0f} s（{len(due_by_key)} 个到期动作，tick={args.tick}s）…", flush=True)
        time.sleep(max(0.0, wait))
        stop.set()
        th.join(30)
        late = []
        fired_keys = [k for k, _ in sch.done]
        for k, at in sch.done:
            if k in due_by_key:
                late.append(at - due_by_key[k].timestamp())
        missing = set(due_by_key) - set(fired_keys)
        extra = [k for k in fired_keys if k not in due_by_key]
        print(
            f"迟到（提交时刻 - 到期时刻）：p50 {statistics.median(late) * 1000:.0f} ms，"
            f"p99 {pct(late, 0.99) * 1000:.0f} ms，max {max(late) * 1000:.0f} ms；"
            f"触发 {len(late)}/{len(due_by_key)}，遗漏 {len(missing)}，重复 {len(fired_keys) - len(set(fired_keys))}，"
            f"意外 {len(extra)}"
        )
        with store.reader() as s:
            n_out = s.scalar(select(func.count()).select_from(Outbox))
            n_keys = s.scalar(select(func.count(func.distinct(Outbox.key))))
        print(f"outbox：{n_out} 行，{n_keys} 个不同键")
        # Downtime: some background deadlines fall due while no scheduler runs.
        now = datetime.now(UTC)
        with store.transaction() as s:
            ids = s.scalars(
                select(Deadline.id)
                .where(Deadline.fired_at.is_(None))
                .order_by(Deadline.id)
                .limit(args.overdue)
            ).all()
            s.execute(update(Deadline).where(Deadline.id.in_(ids)).values(due_at=now - timedelta(seconds=1)))
            s.execute(
                update(DeadlineWarning)
                .where(DeadlineWarning.deadline_id.in_(ids))
                .values(at=now - timedelta(seconds=2))
            )
        store.close()
        t = time.perf_counter()
        again = Store(url)
        fired = Scheduler(again).tick()
        recovery = time.perf_counter() - t
        with again.reader() as s:
            left = s.scalar(
                select(func.count())
                .select_from(Deadline)
                .where(Deadline.fired_at.is_(None), Deadline.due_at <= now)
            )
            n_out2 = s.scalar(select(func.count()).select_from(Outbox))
            n_keys2 = s.scalar(select(func.count(func.distinct(Outbox.key))))
        print(
            f"重启恢复：{len(fired)} 个停机期间到期的期限在 {recovery:.2f} s 内全部触发（剩余 {left}）；"
            f"outbox {n_out2} 行 / {n_keys2} 个不同键"
        )
        print(f"内存：RSS 峰值 {rss_mib():.0f} MiB")
        ok = pct(late, 0.99) <= 1.0 and recovery <= 5.0 and not missing and n_out2 == n_keys2 and left == 0
        print("达标" if ok else "未达标（目标：p99 ≤ 1 s，恢复 ≤ 5 s，不漏不重）")
        again.close()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
