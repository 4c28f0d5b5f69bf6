"""What no message can do to a stage loop, on both transports: crash-loop it,
stop it by failing to decode, or hold it by being too large to produce; and
the stage health it reports meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stream import topics as T
from stream.contracts import SHANGHAI, AssessedPost, Assessment, RawPost, decode, encode, make_post_id
from stream.embedded import EmbeddedTransport
from stream.health import StageHealth, metrics_text, read_stage_health
from stream.stage import Outgoing, StageOptions, TransientError, dead_letters, run_stage
from stream.transport import MessageTooLargeError, Transport, record_bytes
from tests.fixtures.broker import drain, topic_name

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


def post(n: int, text: str = "某地发生交通事故") -> RawPost:
    return RawPost(
        post_id=make_post_id("guard", f"p{n}"),
        source_id="guard",
        source_kind="news",
        text=text,
        published_at=T0 + timedelta(minutes=n),
        fetched_at=T0 + timedelta(minutes=n, seconds=30),
    )


def assess(msg: RawPost, text: str | None = None) -> AssessedPost:
    p = msg if text is None else msg.model_copy(update={"text": text})
    return AssessedPost(post=p, assessment=Assessment(relevant=True), assessed_at=msg.fetched_at)


class Crash(BaseException):
    """Stands in for the process dying inside the handler (not an Exception: nothing catches it)."""


class Run:
    """run_stage in a thread until it stops or dies."""

    def __init__(
        self,
        transport: Transport,
        group: str,
        handle: Callable[[list[BaseModel]], list[Outgoing]],
        options: StageOptions,
        health: StageHealth | None = None,
        batch_size: int = 10,
    ) -> None:
        self.stop = threading.Event()
        self.done = 0
        self.error: BaseException | None = None
        self.health = health or StageHealth("guard")

        def on_batch(n: int) -> None:
            self.done += n

        def main() -> None:
            try:
                run_stage(
                    transport=transport,
                    stage="guard",
                    group=group,
                    topics=[topic_name(transport, T.RAW_POSTS)],
                    expect=RawPost,
                    handle=handle,
                    dead_letter_topic=topic_name(transport, T.DEAD_LETTER),
                    stop=self.stop,
                    batch_size=batch_size,
                    poll_timeout_s=0.2,
                    on_batch=on_batch,
                    options=options,
                    health=self.health,
                )
            except BaseException as e:  # noqa: B036 - the test inspects it
                self.error = e

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def wait(self, cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert self.thread.is_alive() or cond(), f"stage ended early: {self.error!r}"
            assert time.monotonic() < deadline, "stage too slow"
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def _send(transport: Transport, values: list[bytes], key: bytes = b"one-key") -> None:
    p = transport.producer()
    for v in values:
        p.send(topic_name(transport, T.RAW_POSTS), v, key=key)  # one key: one partition, order known
    p.flush()
    p.close()


def _assessed(transport: Transport, at_least: int, idle_s: float = 1.0) -> list[AssessedPost]:
    """Everything on posts.assessed: at least ``at_least``, then until ``idle_s`` without news."""
    reader = transport.consumer("reader", [topic_name(transport, T.ASSESSED_POSTS)])
    try:
        got = drain(reader, at_least)
        while more := reader.poll(max_records=100, timeout_s=idle_s):
            got.extend(more)
    finally:
        reader.close()
    return [m for m in (decode(r.value, AssessedPost) for r in got) if isinstance(m, AssessedPost)]


def test_a_message_that_kills_the_process_is_dead_lettered_after_max_attempts(
    transport: Transport, tmp_path: Path
) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    assessed = topic_name(transport, T.ASSESSED_POSTS)
    transport.ensure_topics([raw, assessed])
    posts = [post(1), post(2), post(3, text="致命"), post(4), post(5)]
    _send(transport, [encode(p) for p in posts])
    options = StageOptions(max_attempts=3, state_dir=tmp_path / "stages")
    calls: list[list[str]] = []

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        ps = [m for m in msgs if isinstance(m, RawPost)]
        calls.append([p.post_id for p in ps])
        if any(p.text == "致命" for p in ps):
            raise Crash()
        return [Outgoing(assessed, assess(p), key=p.post_id) for p in ps]

    # Every run dies on the poison message, until it is dead-lettered unhandled.
    crashes = 0
    for _ in range(6):
        run = Run(transport, "killer", handle, options)
        run.wait(lambda run=run: run.error is not None or run.done >= len(posts))  # type: ignore[misc]
        if run.error is None:
            run.finish()
            break
        assert isinstance(run.error, Crash)
        crashes += 1
    assert crashes == 3  # the batch once, then the poison alone twice: max_attempts in all

    poison = posts[2].post_id
    assert calls[0] == [p.post_id for p in posts]  # first as one batch
    assert sum(c == [poison] for c in calls) == 2
    assert all(poison not in c or c == [poison] for c in calls[1:])  # after a crash, alone
    assert calls[1:4] == [[posts[0].post_id], [posts[1].post_id], [poison]]

    # At least once: what was produced before a crash may be produced again.
    got = _assessed(transport, 4)
    assert {a.post.post_id for a in got} == {p.post_id for p in posts if p.post_id != poison}
    dead = dead_letters(transport, topic_name(transport, T.DEAD_LETTER), expect=1, timeout_s=15)
    assert [r.value for r in dead] == [encode(posts[2])]
    assert "崩溃" in (dead[0].header(T.DLQ_REASON) or b"").decode()
    assert run.health.dead_lettered["crashed"] == 1
    # Nothing left in the attempt log once the batch is committed.
    import sqlite3

    with sqlite3.connect(tmp_path / "stages" / "attempts.db") as c:
        assert c.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0


CHILD = """
import os, signal, sys, threading
from pathlib import Path
from stream.contracts import RawPost
from stream.embedded import EmbeddedTransport
from stream.stage import Outgoing, StageOptions, run_stage
from tests.test_stage_guard import assess

t = EmbeddedTransport(sys.argv[1], topic_prefix="k.")
def handle(msgs):
    if any(m.text == "致命" for m in msgs):
        os.kill(os.getpid(), signal.SIGKILL)
    return [Outgoing("k.posts.assessed", assess(m), key=m.post_id) for m in msgs]
run_stage(transport=t, stage="killed", group="killed", topics=["k.posts.raw"], expect=RawPost,
          handle=handle, dead_letter_topic="k.deadletter", stop=threading.Event(), batch_size=10,
          poll_timeout_s=0.2, options=StageOptions(max_attempts=int(sys.argv[3]), state_dir=Path(sys.argv[2])))
"""


def test_kill_9_inside_the_handler_is_counted_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    t = EmbeddedTransport(db, topic_prefix="k.")
    t.ensure_topics(["k.posts.raw", "k.posts.assessed", "k.deadletter"])
    posts = [post(1), post(2, text="致命"), post(3)]
    p = t.producer()
    for m in posts:
        p.send("k.posts.raw", encode(m), key=b"k")
    p.flush()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    deaths = 0
    reader = t.consumer("reader", ["k.posts.assessed"])
    out: list[str] = []
    try:
        for _ in range(6):
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(tmp_path / "stages"), "2"],
                                     cwd=ROOT, env=env)
            deadline = time.monotonic() + 60
            while child.poll() is None and len(set(out)) < 2 and time.monotonic() < deadline:
                out.extend(r.key.decode() for r in reader.poll(max_records=10, timeout_s=0.2) if r.key)
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=30)
                break
            assert child.returncode == -9
            deaths += 1
        dead = dead_letters(t, "k.deadletter", expect=1, timeout_s=10)
    finally:
        reader.close()
        t.close()
    assert deaths == 2  # max_attempts=2
    assert set(out) == {posts[0].post_id, posts[2].post_id}
    assert [r.value for r in dead] == [encode(posts[1])]
    assert "崩溃" in (dead[0].header(T.DLQ_REASON) or b"").decode()


def test_undecodable_records_of_any_kind_are_dead_lettered(transport: Transport, tmp_path: Path) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    assessed = topic_name(transport, T.ASSESSED_POSTS)
    transport.ensure_topics([raw, assessed])
    brackets = b"[" * 100_000  # json.loads: RecursionError, not a ValueError
    nested = b'{"schema": "raw_post", "v": 1, "text": ' + b'{"a": ' * 50_000
    bad_utf8 = b'{"schema": "raw_post", "v": 1, "text": "\xff\xfe"}'
    values = [brackets, encode(post(1)), nested, bad_utf8, encode(post(2))]
    _send(transport, values)

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        return [Outgoing(assessed, assess(m), key=m.post_id) for m in msgs if isinstance(m, RawPost)]

    run = Run(transport, "decoder", handle, StageOptions(state_dir=tmp_path / "stages"))
    run.wait(lambda: run.done >= len(values))
    run.finish()
    assert run.error is None
    assert sorted(a.post.post_id for a in _assessed(transport, 2)) == sorted([post(1).post_id, post(2).post_id])

    dead = dead_letters(transport, topic_name(transport, T.DEAD_LETTER), expect=3, timeout_s=15)
    assert [r.value for r in dead] == [brackets, nested, bad_utf8]
    reasons = [(r.header(T.DLQ_REASON) or b"").decode() for r in dead]
    assert "nested too deep" in reasons[0] and "nested too deep" in reasons[1]
    assert reasons[2].startswith("not UTF-8")
    assert run.health.dead_lettered["contract"] == 3 and run.health.consumed == 5 and run.health.handled == 2


def test_an_output_too_large_to_produce_fails_its_input_only(transport: Transport, tmp_path: Path) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    assessed = topic_name(transport, T.ASSESSED_POSTS)
    transport.ensure_topics([raw, assessed])
    limit = 100_000
    posts = [post(1), post(2, text="膨胀"), post(3)]
    _send(transport, [encode(p) for p in posts])
    calls: list[int] = []

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        calls.append(len(msgs))
        ps = [m for m in msgs if isinstance(m, RawPost)]
        # The handler makes one message larger than the transport takes.
        return [Outgoing(assessed, assess(p, "胀" * limit if p.text == "膨胀" else None), key=p.post_id) for p in ps]

    run = Run(transport, "grower", handle, StageOptions(max_attempts=2, state_dir=tmp_path / "s",
                                                        max_message_bytes=limit))
    run.wait(lambda: run.done >= len(posts))
    run.finish()
    assert run.error is None
    assert calls == [3, 1, 1, 1, 1]  # the batch, then each alone; the large one max_attempts times
    assert sorted(a.post.post_id for a in _assessed(transport, 2)) == sorted([posts[0].post_id, posts[2].post_id])
    dead = dead_letters(transport, topic_name(transport, T.DEAD_LETTER), expect=1, timeout_s=15)
    assert [r.value for r in dead] == [encode(posts[1])]
    reason = (dead[0].header(T.DLQ_REASON) or b"").decode()
    assert reason.startswith("输出消息过大") and str(limit) in reason
    assert run.health.dead_lettered["too_large"] == 1


def test_embedded_refuses_what_kafka_would_and_dead_letters_are_cut_to_fit(tmp_path: Path) -> None:
    t = EmbeddedTransport(tmp_path / "s.db", topic_prefix="e.", max_message_bytes=70_000)
    try:
        t.ensure_topics(["e.posts.raw", "e.posts.assessed"])
        p = t.producer()
        fits = b"x" * (70_000 - record_bytes(b"", b"k"))
        with pytest.raises(MessageTooLargeError):
            p.send("e.posts.raw", fits + b"x", key=b"k")
        p.send("e.posts.raw", fits, key=b"k")
        p.send("e.posts.raw", encode(post(1)), key=b"k")
        p.flush()

        def handle(msgs: list[BaseModel]) -> list[Outgoing]:
            return [Outgoing("e.posts.assessed", assess(m), key=m.post_id) for m in msgs if isinstance(m, RawPost)]

        run = Run(t, "cut", handle, StageOptions(state_dir=tmp_path / "st"))
        run.wait(lambda: run.done >= 2)
        run.finish()
        assert run.error is None
        # The garbage record fitted; with the dead-letter headers it no longer
        # does, so its value is cut and its original length noted.
        dead = dead_letters(t, "e.deadletter", expect=1, timeout_s=10)
        assert len(dead) == 1 and fits.startswith(dead[0].value) and len(dead[0].value) < len(fits)
        assert dead[0].header(T.DLQ_TRUNCATED) == str(len(fits)).encode()
        assert record_bytes(dead[0].value, dead[0].key, dead[0].headers) <= 70_000
        assert [a.post.post_id for a in _assessed(t, 1)] == [post(1).post_id]
    finally:
        t.close()


def test_a_transport_that_refuses_below_the_configured_limit(tmp_path: Path) -> None:
    t = EmbeddedTransport(tmp_path / "s.db", topic_prefix="e.", max_message_bytes=200_000)
    try:
        t.ensure_topics(["e.posts.raw", "e.posts.assessed"])
        _send(t, [encode(post(1, text="膨胀")), encode(post(2))])

        def handle(msgs: list[BaseModel]) -> list[Outgoing]:
            # As if the broker's limit were lower than the stage was told:
            # the stage's own check passes, the producer refuses.
            t.max_message_bytes = 30_000
            return [
                Outgoing("e.posts.assessed", assess(m, "中" * 12_000 if m.text == "膨胀" else None), key=m.post_id)
                for m in msgs
                if isinstance(m, RawPost)
            ]

        run = Run(t, "refused", handle, StageOptions(max_attempts=1, state_dir=tmp_path / "st"))
        run.wait(lambda: run.done >= 2)
        run.finish()
        assert run.error is None
        dead = dead_letters(t, "e.deadletter", expect=1, timeout_s=10)
        assert [r.value for r in dead] == [encode(post(1, text="膨胀"))]
        assert (dead[0].header(T.DLQ_REASON) or b"").decode().startswith("传输拒收")
        assert [a.post.post_id for a in _assessed(t, 1)] == [post(2).post_id]
        assert run.health.dead_lettered["too_large"] == 1
    finally:
        t.close()


def test_transient_failures_wait_and_say_so_in_stage_health(transport: Transport, tmp_path: Path) -> None:
    raw = topic_name(transport, T.RAW_POSTS)
    transport.ensure_topics([raw])
    _send(transport, [encode(post(1)), b"garbage"])
    state = tmp_path / "stages"
    down = threading.Event()
    down.set()
    seen: list[str] = []

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        if down.is_set():
            raise TransientError("数据库不可用")
        seen.extend(m.post_id for m in msgs if isinstance(m, RawPost))
        return []

    run = Run(transport, "waiter", handle, StageOptions(state_dir=state))
    run.wait(lambda: run.health.transient_retries >= 2)
    views = read_stage_health(state)
    assert len(views) == 1 and views[0]["state"] == "waiting"
    assert "数据库不可用" in views[0]["waiting_for"] and views[0]["transient_retries"] >= 1
    text = metrics_text(state)
    assert 'yuqing_stage_waiting{stage="guard",host=' in text and text.count("yuqing_stage_waiting{") == 1
    assert [ln for ln in text.splitlines() if ln.startswith("yuqing_stage_waiting{")][0].endswith(" 1")
    down.clear()
    run.wait(lambda: run.done >= 2)
    assert seen == [post(1).post_id]
    assert run.health.state == "running"
    run.finish()
    views = read_stage_health(state)
    assert views[0]["state"] == "stopped" and views[0]["consumed"] == 2 and views[0]["handled"] == 1
    assert views[0]["dead_lettered"]["contract"] == 1
    text = metrics_text(state)
    assert 'yuqing_stage_dead_letters_total{stage="guard",host="' in text
    dead_line = next(ln for ln in text.splitlines() if "dead_letters_total" in ln and 'cause="contract"' in ln)
    assert dead_line.endswith(" 1.0")
    assert json.loads((next(state.glob("guard@*.json"))).read_text(encoding="utf-8"))["transport"] == transport.name


def test_metrics_page_shows_each_stage_health(settings: Any, tmp_path: Path) -> None:
    from responder.store import Store
    from stream.health import HealthFile
    from stream.stage import STATE_DIR
    from tests.fixtures.auth import client_as
    from web.app import create_app

    h = StageHealth("classifier", group="classifier", transport="embedded", consumed=7, handled=5)
    h.dead("contract", 2)
    h.waiting("下游暂不可用：数据库不可用")
    HealthFile(settings.data_path(STATE_DIR), h).write(force=True)
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with client_as(create_app(settings, store=store), "管理员", "admin") as c:
            text = c.get("/metrics").text
    finally:
        store.close()
    assert 'yuqing_tickets{status="new"} 0' in text  # what was there stays
    lines = {ln.rsplit(" ", 1)[0]: ln.rsplit(" ", 1)[1] for ln in text.splitlines() if ln.startswith("yuqing_stage")}
    host = h.host
    assert lines[f'yuqing_stage_consumed_total{{stage="classifier",host="{host}"}}'] == "7.0"
    assert lines[f'yuqing_stage_dead_letters_total{{stage="classifier",host="{host}",cause="contract"}}'] == "2.0"
    assert lines[f'yuqing_stage_dead_letters_total{{stage="classifier",host="{host}",cause="crashed"}}'] == "0.0"
    assert lines[f'yuqing_stage_waiting{{stage="classifier",host="{host}"}}'] == "1"
    assert float(lines[f'yuqing_stage_report_age_seconds{{stage="classifier",host="{host}"}}']) < 60


def test_stopping_while_waiting_on_a_store_that_is_down_counts_no_attempt(tmp_path: Path) -> None:
    t = EmbeddedTransport(tmp_path / "s.db", topic_prefix="w.")
    try:
        t.ensure_topics(["w.posts.raw"])
        _send(t, [encode(post(1)), encode(post(2))])
        options = StageOptions(max_attempts=1, state_dir=tmp_path / "st")
        calls: list[int] = []

        def down(msgs: list[BaseModel]) -> list[Outgoing]:
            calls.append(len(msgs))
            raise TransientError("数据库不可用")

        for _ in range(3):  # e.g. restarts during a long outage
            run = Run(t, "patient", down, options)
            run.wait(lambda run=run: run.health.transient_retries >= 2)  # type: ignore[misc]
            run.finish()
            assert run.error is None and run.done == 0
        assert calls and all(n == 2 for n in calls)  # still one batch: no attempt was counted

        handled: list[str] = []

        def up(msgs: list[BaseModel]) -> list[Outgoing]:
            handled.extend(m.post_id for m in msgs if isinstance(m, RawPost))
            return []

        run = Run(t, "patient", up, options)
        run.wait(lambda: run.done >= 2)
        run.finish()
        assert sorted(handled) == sorted([post(1).post_id, post(2).post_id])
        assert run.health.dead_lettered == dict.fromkeys(run.health.dead_lettered, 0)
    finally:
        t.close()
