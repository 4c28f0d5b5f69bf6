"""One contract, both transports: what every stage relies on from the log."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from stream import topics as T
from stream.factory import open_transport
from stream.transport import Record, Transport
from tests.fixtures.broker import drain, topic_name
from yuqing.settings import Settings


def _by_key(records: list[Record]) -> dict[bytes | None, list[Record]]:
    out: dict[bytes | None, list[Record]] = defaultdict(list)
    for r in records:
        out[r.key].append(r)
    return out


def test_round_trip_order_groups_and_visibility(transport: Transport, transport_settings: Settings) -> None:
    raw = topic_name(transport, T.RAW_POSTS)  # 3 partitions
    transport.ensure_topics([raw])
    p = transport.producer()
    keys = [f"帖子-{k}".encode() for k in range(5)]
    for i in range(30):
        key = keys[i % 5]
        p.send(
            raw, f"{key.decode()}:{i}".encode(), key=key, headers=[("seq", str(i).encode()), ("empty", b"")]
        )
    p.send(raw, b"no key", key=None)
    p.flush()

    # Two groups, created before either polls: each sees everything.
    a = transport.consumer("group-a", [raw])
    b = transport.consumer("group-b", [raw])
    got_a = drain(a, 31)
    got_b = drain(b, 31)
    for got in (got_a, got_b):
        assert len(got) == 31
        assert sorted(r.value for r in got) == sorted(
            [f"{keys[i % 5].decode()}:{i}".encode() for i in range(30)] + [b"no key"]
        )
        nokey = [r for r in got if r.key is None]
        assert [r.value for r in nokey] == [b"no key"] and nokey[0].headers == ()
        for key, recs in _by_key(got).items():
            if key is None:
                continue
            # Same key -> same partition, in the order sent, headers intact.
            assert len({r.partition for r in recs}) == 1
            seqs = [int(r.header("seq") or b"-1") for r in recs]
            assert seqs == sorted(seqs) and len(seqs) == 6
            assert [r.value for r in recs] == [f"{key.decode()}:{s}".encode() for s in seqs]
            assert all(r.header("empty") == b"" for r in recs)
            assert all(r.topic == raw for r in recs)
        by_part: dict[int, list[int]] = defaultdict(list)
        for r in got:
            by_part[r.partition].append(r.offset)
        for offs in by_part.values():
            assert offs == list(range(len(offs)))  # offsets from 0, no gaps
    assert {r.partition for r in got_a} <= {0, 1, 2}

    # A message flushed through another connection (another process in real
    # life) becomes visible to consumers that are already running.
    other = open_transport(transport_settings)
    try:
        op = other.producer()
        op.send(raw, b"late", key=keys[0])
        op.flush()
        op.close()
    finally:
        other.close()
    assert [r.value for r in drain(a, 1)] == [b"late"]
    assert [r.value for r in drain(b, 1)] == [b"late"]
    a.close()
    b.close()


def test_resume_from_commit_and_redeliver_uncommitted(
    transport: Transport, transport_settings: Settings
) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    transport.ensure_topics([raw])
    p = transport.producer()
    for i in range(24):
        p.send(raw, f"m{i}".encode(), key=f"k{i % 7}".encode())
    p.flush()

    c1 = transport.consumer("resume", [raw])
    first = drain(c1, 24)
    assert len(first) == 24
    done = [r for r in first if r.offset < 2]  # the first two of each partition
    c1.commit(done)
    c1.close()
    transport.close()

    # Close and reopen (a restarted process): the group goes on exactly from
    # its committed offsets; what was polled but not committed comes again.
    t2 = open_transport(transport_settings)
    try:
        c2 = t2.consumer("resume", [raw])
        second = drain(c2, 24 - len(done))
        assert sorted(r.value for r in second) == sorted(r.value for r in first if r.offset >= 2)
        c2.commit(second)
        c2.close()

        p2 = t2.producer()
        for i in range(24, 29):
            p2.send(raw, f"m{i}".encode(), key=f"k{i % 7}".encode())
        p2.flush()
        c3 = t2.consumer("resume", [raw])
        third = drain(c3, 5)
        assert sorted(r.value for r in third) == sorted(f"m{i}".encode() for i in range(24, 29))
        assert c3.poll(timeout_s=0.5) == []  # nothing committed comes back
        c3.close()
    finally:
        t2.close()


def test_factory_names_topics_and_picks_the_transport(tmp_path: Path) -> None:
    from stream.embedded import EmbeddedTransport
    from stream.factory import partition_count, topic

    s = Settings(data_dir=str(tmp_path))
    assert topic(s, T.RAW_POSTS) == "yuqing.posts.raw"
    s.transport.topic_prefix = "staging-"
    assert topic(s, T.DEAD_LETTER) == "staging-deadletter"
    assert partition_count("staging-posts.raw", "staging-") == 3
    assert partition_count("x.tickets.events") == 1
    assert partition_count("x.posts.assessed") == 3
    assert partition_count("something.else", "x.") == 1

    s.transport.embedded_path = "sub/stream.db"
    t = open_transport(s)
    try:
        assert isinstance(t, EmbeddedTransport) and t.name == "embedded"
        assert t.path == tmp_path / "sub" / "stream.db" and t.path.exists()
        t.ensure_topics([topic(s, T.RAW_POSTS)])
        p = t.producer()
        for i in range(9):
            p.send(topic(s, T.RAW_POSTS), b"x", key=str(i).encode())
        p.flush()
        c = t.consumer("g", [topic(s, T.RAW_POSTS)])
        assert {r.partition for r in drain(c, 9)} == {0, 1, 2}
    finally:
        t.close()


def test_member_joining_mid_stream_loses_nothing(transport: Transport) -> None:
    """A second member joins a busy group (a rebalance while the first one polls
    and commits): every message is handled at least once, the newcomer takes
    over partitions, and once both have committed nothing is left for the group."""
    import threading
    import time

    raw = topic_name(transport, T.RAW_POSTS)  # 3 partitions
    transport.ensure_topics([raw])
    producer = transport.producer()
    sent: list[bytes] = []
    lock = threading.Lock()
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    pending = {"a": 0, "b": 0}  # handled but not (yet) committed
    failed_commits = {"a": 0, "b": 0}
    stop = threading.Event()
    slow_once = threading.Event()  # set when the newcomer joins: the next batch of "a" is slow

    def send(n: int) -> None:
        for _ in range(n):
            v = f"m{len(sent)}".encode()
            producer.send(raw, v, key=f"k{len(sent) % 11}".encode())
            sent.append(v)
        producer.flush()

    def worker(name: str, consumer) -> None:
        while not stop.is_set():
            recs = consumer.poll(max_records=4, timeout_s=0.2)
            if not recs:
                continue
            with lock:
                seen[name].extend(r.value for r in recs)
                pending[name] = len(recs)
            if name == "a" and slow_once.is_set():
                slow_once.clear()
                time.sleep(1.5)  # a slow handler: the group rebalances before this batch is committed
            try:
                consumer.commit(recs)
                with lock:
                    pending[name] = 0
            except Exception:  # as the stage does: redelivered to whoever owns the partition next
                with lock:
                    failed_commits[name] += 1

    def wait_for(cond, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with lock:
                if cond():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out: sent {len(sent)}, seen {({k: len(v) for k, v in seen.items()})}")

    send(30)
    a = transport.consumer("shared", [raw])
    ta = threading.Thread(target=worker, args=("a", a))
    ta.start()
    b = None
    try:
        wait_for(lambda: len(seen["a"]) >= 5)
        b = transport.consumer("shared", [raw])
        tb = threading.Thread(target=worker, args=("b", b))
        slow_once.set()
        tb.start()
        # Keep the log busy while the group rebalances, until the newcomer has work.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            send(3)
            with lock:
                if len(seen["b"]) >= 6:
                    break
            time.sleep(0.1)
        send(10)
        wait_for(lambda: set(sent) <= set(seen["a"]) | set(seen["b"]) and not any(pending.values()))
    finally:
        stop.set()
        ta.join(10)
        if b is not None:
            tb.join(10)
        a.close()
        if b is not None:
            b.close()
    assert len(seen["b"]) >= 6, "the second member never got a partition"
    assert set(seen["a"]) | set(seen["b"]) == set(sent), failed_commits  # nothing lost
    late = transport.consumer("shared", [raw])
    try:
        left = drain(late, 1, timeout_s=8.0)
    finally:
        late.close()
    assert left == [], f"uncommitted after both members committed: {left}"
