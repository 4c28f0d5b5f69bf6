"""The stage loop on both transports: contracts, dead letters, retries, commits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel

from stream import topics as T
from stream.contracts import SHANGHAI, AssessedPost, Assessment, RawPost, decode, encode, make_post_id
from stream.stage import Outgoing, TransientError, dead_letters, run_stage
from stream.transport import Transport
from tests.fixtures.broker import drain, topic_name

T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


def post(n: int, text: str = "某地发生交通事故") -> RawPost:
    return RawPost(
        post_id=make_post_id("demo", f"p{n}"),
        source_id="demo",
        source_kind="news",
        text=text,
        published_at=T0 + timedelta(minutes=n),
        fetched_at=T0 + timedelta(minutes=n, seconds=30),
    )


class Stage:
    """run_stage in a thread, with what it did recorded."""

    def __init__(self, transport: Transport, group: str, handle: Callable[[list[BaseModel]], list[Outgoing]]):
        self.raw = topic_name(transport, T.RAW_POSTS)
        self.dlq = topic_name(transport, T.DEAD_LETTER)
        self.stop = threading.Event()
        self.done = 0  # records committed, from on_batch
        self.error: BaseException | None = None

        def on_batch(n: int) -> None:
            self.done += n

        def main() -> None:
            try:
                run_stage(
                    transport=transport,
                    stage="test-stage",
                    group=group,
                    topics=[self.raw],
                    expect=RawPost,
                    handle=handle,
                    dead_letter_topic=self.dlq,
                    stop=self.stop,
                    batch_size=3,
                    poll_timeout_s=0.2,
                    on_batch=on_batch,
                )
            except BaseException as e:  # noqa: B036 - the test inspects it
                self.error = e

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def wait(self, cond: Callable[[], bool], timeout_s: float = 25.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert self.thread.is_alive() or cond(), f"stage ended early: {self.error!r}"
            assert time.monotonic() < deadline, "stage too slow"
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def assess(msg: RawPost) -> AssessedPost:
    return AssessedPost(post=msg, assessment=Assessment(relevant=True), assessed_at=msg.fetched_at)


def test_valid_malformed_and_failing_messages(transport: Transport) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    assessed = topic_name(transport, T.ASSESSED_POSTS)
    transport.ensure_topics([raw, assessed])
    bad_field = json.loads(encode(post(2)))
    bad_field["source_kind"] = "blog"
    bad_field_bytes = json.dumps(bad_field, ensure_ascii=False).encode()
    poison = post(3, text="炸弹")
    wrong_schema = encode(assess(post(9)))
    sent = [
        encode(post(1)),
        b"not json",
        bad_field_bytes,
        encode(post(4)),
        encode(poison),
        wrong_schema,
        encode(post(5)),
        encode(post(6)),
    ]
    p = transport.producer()
    for v in sent:
        p.send(raw, v, key=b"one-key", headers=[("trace", b"t-1")])  # one partition: order is known
    p.flush()

    calls: list[list[str]] = []

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        posts = [m for m in msgs if isinstance(m, RawPost)]
        assert len(posts) == len(msgs)
        calls.append([m.post_id for m in posts])
        if any(m.text == "炸弹" for m in posts):
            raise ValueError("坏消息")  # nothing is written: the whole call fails
        return [Outgoing(assessed, assess(m), key=m.post_id) for m in posts]

    st = Stage(transport, "assessor", handle)
    st.wait(lambda: st.done >= len(sent))
    st.finish()
    assert st.error is None

    # Valid messages were handled, also those after the bad ones; the poison
    # one failed in its batch, then alone, and only it was dead-lettered.
    good = [post(n).post_id for n in (1, 4, 5, 6)]
    handled_ok = [pid for call in calls if poison.post_id not in call for pid in call]
    assert sorted(handled_ok) == sorted(good)
    assert [poison.post_id] in calls
    assert any(poison.post_id in call and len(call) > 1 for call in calls)

    reader = transport.consumer("reader", [assessed])
    out = drain(reader, 4)
    reader.close()
    decoded = [decode(r.value, AssessedPost) for r in out]
    assert sorted(d.post.post_id for d in decoded if isinstance(d, AssessedPost)) == sorted(good)
    assert all(r.key == decode(r.value).post.post_id.encode() for r in out)  # type: ignore[attr-defined]

    dead = dead_letters(transport, st.dlq, expect=4, timeout_s=20)
    assert [r.value for r in dead] == [b"not json", bad_field_bytes, encode(poison), wrong_schema]
    reasons = [(r.header(T.DLQ_REASON) or b"").decode() for r in dead]
    assert reasons[0].startswith("not JSON")
    assert "source_kind" in reasons[1]
    assert reasons[2] == "处理失败: ValueError: 坏消息"
    assert "expected schema 'raw_post', got 'assessed_post'" in reasons[3]
    offsets = {v: i for i, v in enumerate(sent)}
    for r in dead:
        assert r.header(T.DLQ_TOPIC) == raw.encode()
        assert r.header(T.DLQ_STAGE) == b"test-stage"
        assert r.header("trace") == b"t-1"
        assert r.key == b"one-key"
        assert int(r.header(T.DLQ_OFFSET) or b"-1") == offsets[r.value]  # one partition: offset = index
        assert int(r.header(T.DLQ_PARTITION) or b"-1") >= 0
        at = datetime.fromisoformat((r.header(T.DLQ_AT) or b"").decode())
        assert at.tzinfo is not None and abs(at - datetime.now(SHANGHAI)) < timedelta(minutes=5)


class Crash(BaseException):
    """Stands in for the process dying inside the handler."""


def test_transient_errors_retry_and_uncommitted_batches_come_back(transport: Transport) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    transport.ensure_topics([raw])
    p = transport.producer()
    first = [post(n) for n in range(5)]
    for m in first:
        p.send(raw, encode(m), key=m.post_id.encode())
    p.flush()

    # 1. The database is down twice: the same batch is retried, then goes through.
    calls: list[list[str]] = []
    handled: list[str] = []
    failures = iter([True, True])

    def flaky(msgs: list[BaseModel]) -> list[Outgoing]:
        ids = [m.post_id for m in msgs if isinstance(m, RawPost)]
        calls.append(ids)
        if next(failures, False):
            raise TransientError("数据库不可用")
        handled.extend(ids)
        return []

    st = Stage(transport, "writer", flaky)
    st.wait(lambda: st.done >= 5)
    st.finish()
    assert st.error is None
    assert calls[0] == calls[1] == calls[2]  # kept in hand, not re-polled past
    assert sorted(handled) == sorted(m.post_id for m in first)

    second = [post(n) for n in range(10, 13)]
    for m in second:
        p.send(raw, encode(m), key=m.post_id.encode())
    p.flush()
    new_ids = sorted(m.post_id for m in second)

    # 2. Stopped while still retrying: nothing is committed.
    seen2: list[str] = []

    def down(msgs: list[BaseModel]) -> list[Outgoing]:
        seen2.extend(m.post_id for m in msgs if isinstance(m, RawPost))
        raise TransientError("还是不可用")

    st = Stage(transport, "writer", down)
    st.wait(lambda: len(seen2) > 0)
    st.finish()
    assert st.error is None and st.done == 0
    assert set(seen2) <= set(new_ids)  # resumed after the committed first five

    # 3. The process dies inside the handler: nothing is committed either.
    seen3: list[str] = []

    def crash(msgs: list[BaseModel]) -> list[Outgoing]:
        seen3.extend(m.post_id for m in msgs if isinstance(m, RawPost))
        raise Crash()

    st = Stage(transport, "writer", crash)
    st.thread.join(timeout=30)
    assert isinstance(st.error, Crash) and st.done == 0
    assert seen3 and set(seen3) <= set(new_ids)

    # 4. The next run gets all three again, and none of the committed five.
    seen4: list[str] = []

    def ok(msgs: list[BaseModel]) -> list[Outgoing]:
        seen4.extend(m.post_id for m in msgs if isinstance(m, RawPost))
        return []

    st = Stage(transport, "writer", ok)
    st.wait(lambda: st.done >= 3)
    time.sleep(0.3)
    st.finish()
    assert sorted(seen4) == new_ids


def test_dead_letters_answers_at_once_when_there_are_none(transport: Transport) -> None:
    """An empty dead-letter topic (or none at all) answers in well under a second
    or two, not after the timeout; one with letters gives every one, in order."""
    dlq = topic_name(transport, T.DEAD_LETTER)
    transport.ensure_topics([dlq])
    t0 = time.monotonic()
    assert dead_letters(transport, dlq, timeout_s=15) == []
    assert time.monotonic() - t0 < 3.0
    t0 = time.monotonic()
    assert dead_letters(transport, topic_name(transport, "never.created"), timeout_s=15) == []
    assert time.monotonic() - t0 < 3.0

    p = transport.producer()
    for i in range(7):
        p.send(dlq, f"bad {i}".encode(), headers=[(T.DLQ_REASON, f"reason {i}".encode())])
    p.flush()
    p.close()
    t0 = time.monotonic()
    dead = dead_letters(transport, dlq, timeout_s=15)
    assert time.monotonic() - t0 < 3.0
    assert [r.value for r in dead] == [f"bad {i}".encode() for i in range(7)]
    assert [r.offset for r in dead] == list(range(7))
    assert dead[3].header(T.DLQ_REASON) == b"reason 3"


def test_cli_dead_letters_says_none_at_once_on_both_transports(tmp_path, config_dir, tansu) -> None:
    """`yuqing dead-letters` prints 无 when there are none, without waiting for a timeout."""
    import os
    import subprocess
    import sys
    import uuid

    settings = config_dir / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace('topic_prefix: "yuqing."', f'topic_prefix: "d{uuid.uuid4().hex[:8]}."'),
                        encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    base.update(YUQING_CONFIG_DIR=str(config_dir), YUQING_DATA_DIR=str(tmp_path / "var"))
    for extra in ({}, {"YUQING_TRANSPORT": "kafka", "YUQING_KAFKA_BOOTSTRAP": tansu.bootstrap}):
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "yuqing.cli", "dead-letters"], env={**base, **extra},
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stdout == "无\n"
        assert took < 8.0, f"{extra or 'embedded'}: {took:.1f} s"  # the old wait alone was 10 s
