"""Embedded log retention: old messages go, a group's unconsumed backlog and the
newest message of each partition stay, and offsets keep counting up."""

from __future__ import annotations

import time
from pathlib import Path

from stream.embedded import EmbeddedTransport

HOUR_MS = 3_600_000


def _send(t: EmbeddedTransport, topic: str, n: int, start: int = 0) -> None:
    p = t.producer()
    for i in range(start, start + n):
        p.send(topic, f"m{i}".encode(), key=b"k")
    p.flush()
    p.close()


def _offsets(t: EmbeddedTransport, topic: str) -> list[int]:
    with t._read() as c:
        return [r[0] for r in c.execute('SELECT "offset" FROM messages WHERE topic=? ORDER BY 1', (topic,))]


def test_prune_keeps_unconsumed_backlog_and_newest_message(tmp_path: Path) -> None:
    later = int(time.time() * 1000) + 200 * HOUR_MS  # 200 h from now: past the 168 h retention
    with EmbeddedTransport(tmp_path / "log.db", retention_hours=168, topic_prefix="r.") as t:
        t.ensure_topics(["r.work", "r.dead"])
        _send(t, "r.work", 10)
        _send(t, "r.dead", 5)
        c = t.consumer("stage", ["r.work"])
        got: list = []
        deadline = time.monotonic() + 10
        while len(got) < 6 and time.monotonic() < deadline:
            got += c.poll(max_records=6 - len(got), timeout_s=0.5)
        c.commit(got[:6])
        assert c.committed("r.work", 0) == 6

        assert t.prune() == 0  # nothing is old yet
        assert _offsets(t, "r.work") == list(range(10))
        assert t.prune(now_ms=later) == 6 + 4
        assert _offsets(t, "r.work") == [6, 7, 8, 9]  # the group has not committed 6..9 yet
        assert _offsets(t, "r.dead") == [4]  # no group reads it: by age, but the newest stays

        rest: list = []
        deadline = time.monotonic() + 10
        while len(rest) < 4 and time.monotonic() < deadline:
            rest += c.poll(max_records=10, timeout_s=0.5)
        assert [r.value for r in rest] == [b"m6", b"m7", b"m8", b"m9"]
        c.commit(rest)
        c.close()

        _send(t, "r.dead", 1, start=5)
        assert _offsets(t, "r.dead") == [4, 5]  # offsets continue after pruning
        assert t.prune(now_ms=later) == 3 + 1  # work 6..8 now consumed (9 is the newest); dead 4
        assert _offsets(t, "r.work") == [9] and _offsets(t, "r.dead") == [5]


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    with EmbeddedTransport(tmp_path / "log.db", retention_hours=0, topic_prefix="r.") as t:
        t.ensure_topics(["r.dead"])
        _send(t, "r.dead", 3)
        assert t.prune(now_ms=int(time.time() * 1000) + 10_000 * HOUR_MS) == 0
        assert _offsets(t, "r.dead") == [0, 1, 2]


def test_settings_carry_the_retention(settings) -> None:
    from stream.factory import open_transport

    assert settings.transport.embedded_retention_hours == 168
    t = open_transport(settings)
    try:
        assert t.retention_hours == 168
    finally:
        t.close()
