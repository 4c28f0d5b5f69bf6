"""The embedded log under kill -9: nothing flushed or committed is lost, and
a restarted consumer takes its partitions back at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from stream.embedded import EmbeddedTransport
from stream.transport import Record
from tests.fixtures.broker import drain

ROOT = Path(__file__).resolve().parents[1]

PRODUCER = """
import sys
from stream.embedded import EmbeddedTransport
t = EmbeddedTransport(sys.argv[1])
p = t.producer()
i = 0
while True:
    for _ in range(5):
        p.send("crash.log", ("m%d" % i).encode())
        i += 1
    p.flush()
    print(i, flush=True)
"""

CONSUMER = """
import sys, time
from stream.embedded import EmbeddedTransport
t = EmbeddedTransport(sys.argv[1], lease_ttl_s=float(sys.argv[3]))
c = t.consumer("workers", [sys.argv[2]])
print("ready", flush=True)
while True:
    recs = c.poll(max_records=7, timeout_s=1.0)
    if recs:
        c.commit(recs)
        for r in recs:
            print("C", r.partition, r.offset, r.value.decode(), flush=True)
    time.sleep(float(sys.argv[4]))
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def _read_until(proc: subprocess.Popen[str], done, timeout_s: float = 30.0) -> list[str]:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"child exited early with {proc.wait()}: {lines[-3:]}")
        lines.append(line.strip())
        if done(lines):
            return lines
    pytest.fail("child too slow")


def test_flushed_messages_survive_kill_9_of_the_producer(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    proc = _spawn(PRODUCER, str(db))
    try:
        lines = _read_until(proc, lambda ls: int(ls[-1]) >= 150)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    flushed = int(lines[-1])

    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with EmbeddedTransport(db) as t:
        c = t.consumer("audit", ["crash.log"])
        got: list[Record] = []
        while batch := c.poll(max_records=1000, timeout_s=0.3):
            got.extend(batch)
    # Everything acknowledged by flush() is there, in order, with no gaps;
    # a flush interrupted by the kill is all or nothing (batches of 5).
    assert len(got) >= flushed
    assert len(got) % 5 == 0
    assert [r.offset for r in got] == list(range(len(got)))
    assert [r.value for r in got] == [f"m{i}".encode() for i in range(len(got))]


def test_consumer_killed_mid_batch_resumes_from_commit_at_once(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    topic = "c.posts.raw"  # 3 partitions under prefix "c."
    n = 400
    with EmbeddedTransport(db, topic_prefix="c.") as t:
        t.ensure_topics([topic])
        p = t.producer()
        for i in range(n):
            p.send(topic, f"v{i}".encode(), key=f"k{i}".encode())
        p.flush()

    # A long TTL: only the dead pid can explain a quick takeover.
    proc = _spawn(CONSUMER, str(db), topic, "60", "0.002")
    try:
        lines = _read_until(proc, lambda ls: sum(x.startswith("C ") for x in ls) >= 60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    # Not reaped yet: a zombie must count as dead too.
    try:
        seen_committed: dict[int, int] = defaultdict(lambda: 0)
        child_values: set[bytes] = set()
        for line in lines:
            if line.startswith("C "):
                _, part, off, value = line.split()
                seen_committed[int(part)] = max(seen_committed[int(part)], int(off) + 1)
                child_values.add(value.encode())

        with EmbeddedTransport(db, lease_ttl_s=60, topic_prefix="c.") as t:
            c = t.consumer("workers", [topic])
            start = time.monotonic()
            first = c.poll(max_records=50, timeout_s=5.0)
            took = time.monotonic() - start
            assert first, "dead owner's leases were not taken over"
            assert took < 2.0, f"takeover took {took:.1f}s"
            assert set(c.assignment) == {(topic, 0), (topic, 1), (topic, 2)}
            committed = {p: c.committed(topic, p) or 0 for p in range(3)}
            rest = list(first)
            while batch := c.poll(max_records=500, timeout_s=0.3):
                rest.extend(batch)
    finally:
        proc.wait()

    by_part: dict[int, list[int]] = defaultdict(list)
    for r in rest:
        by_part[r.partition].append(r.offset)
    for part in range(3):
        # The child may have committed once more after its last print, never less.
        assert committed[part] >= seen_committed[part]
        offs = sorted(by_part[part])
        # Delivered now: exactly the offsets from the committed one, without gaps.
        assert offs == list(range(committed[part], committed[part] + len(offs)))
    new_values = {r.value for r in rest}
    assert not (new_values & child_values)  # committed work is not replayed
    assert len(rest) == len(new_values)
    # No loss: with the contiguity above, everything not committed by the child is delivered now.
    assert sum(committed.values()) + len(rest) == n
    assert sum(seen_committed.values()) >= 60


def test_leases_split_a_group_and_move_when_a_member_goes(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    topic = "x.posts.raw"
    with EmbeddedTransport(db, topic_prefix="x.") as t1, EmbeddedTransport(db, topic_prefix="x.") as t2:
        p = t1.producer()
        for i in range(60):
            p.send(topic, f"v{i}".encode(), key=f"k{i}".encode())
        p.flush()
        a = t1.consumer("split", [topic])
        b = t2.consumer("split", [topic])
        got_a: list[Record] = []
        got_b: list[Record] = []
        deadline = time.monotonic() + 10
        while len(got_a) + len(got_b) < 60 and time.monotonic() < deadline:
            got_a += a.poll(timeout_s=0.1)
            got_b += b.poll(timeout_s=0.1)
        # Both members hold partitions, never the same one, and every
        # message went to exactly one of them.
        assert a.assignment and b.assignment
        assert not set(a.assignment) & set(b.assignment)
        assert set(a.assignment) | set(b.assignment) == {(topic, 0), (topic, 1), (topic, 2)}
        values = [r.value for r in got_a + got_b]
        assert sorted(values) == sorted(f"v{i}".encode() for i in range(60))
        a.commit(got_a)  # b commits nothing

        # b leaves without committing: a takes its partitions and gets b's records again.
        b_parts = set(b.assignment)
        b.close()
        again = drain(a, len(got_b), timeout_s=5.0)
        assert set(a.assignment) == {(topic, 0), (topic, 1), (topic, 2)}
        assert sorted(r.value for r in again) == sorted(r.value for r in got_b)
        assert {(r.topic, r.partition) for r in again} <= b_parts


def test_a_stuck_owner_loses_its_lease_after_the_ttl(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    with EmbeddedTransport(db) as t:
        p = t.producer()
        for i in range(20):
            p.send("stuck.log", f"s{i}".encode())
        p.flush()
    proc = _spawn(CONSUMER, str(db), "stuck.log", "1.0", "0.5")
    try:
        _read_until(proc, lambda ls: any(x.startswith("C ") for x in ls))
        os.kill(proc.pid, signal.SIGSTOP)  # alive (os.kill(pid, 0) works) but silent
        with EmbeddedTransport(db, lease_ttl_s=1.0) as t:
            c = t.consumer("workers", ["stuck.log"])
            assert c.poll(timeout_s=0.3) == []  # the live owner still holds the only partition
            start = time.monotonic()
            got = drain(c, 1, timeout_s=5.0)
            assert got, "a stale lease was never taken over"
            assert time.monotonic() - start < 4.0
            assert got[0].offset == c.committed("stuck.log", 0) >= 7
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
