"""The at-least-once loop every stage runs.

poll a batch -> decode each record against its contract -> records that fail
go to the dead-letter topic with their original bytes -> ``handle`` gets the
valid messages and makes its downstream write durable -> outgoing messages
are produced and flushed -> dead letters are produced and flushed -> only
then are the batch's offsets committed. A crash anywhere before the commit
replays the batch; handlers are idempotent.

No message can stop the loop:

* A record that fails to decode, for any reason (a broken contract, but also
  ``RecursionError`` on ``[[[[…``, ``MemoryError``, anything), is dead-lettered.
* A batch whose handler raises is handed over again one message at a time;
  a message is dead-lettered once it was handed over ``max_attempts`` times
  without success. Attempts are counted before the handler runs, in
  :class:`stream.attempts.AttemptLog` (on disk with ``StageOptions.state_dir``),
  so a message that kills the process is counted too: after a crash the
  messages of the unfinished batch are handed over one at a time, and the one
  that keeps killing the process ends in the dead-letter topic.
* An outgoing message that breaks its contract or is larger than the
  transport takes (``max_message_bytes``) fails its input message the same
  way; it is never sent, so it is never retried for ever.
* Only :class:`TransientError` from the handler (its store is down) and
  failures to produce (the broker is down) are retried, with backoff, for as
  long as it takes; the log and the stage health (:mod:`stream.health`) say so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from stream import topics as T
from stream.attempts import AttemptLog
from stream.contracts import SHANGHAI, ContractError, decode, encode
from stream.health import HealthFile, StageHealth
from stream.transport import (
    MessageTooLargeError,
    Producer,
    Record,
    Transport,
    max_message_bytes,
    record_bytes,
)

if TYPE_CHECKING:
    from yuqing.settings import Settings

log = logging.getLogger("yuqing.stream")

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 30.0

# Under the data dir: the attempt log and the stage health files.
STATE_DIR = "stages"
_MAX_REASON_CHARS = 2000
# A dead letter that still does not fit keeps this much of its value.
_DLQ_FALLBACK_BYTES = 65_536


class TransientError(Exception):
    """Downstream unavailable: retry the batch later, never dead-letter."""


@dataclass(frozen=True)
class StageOptions:
    """How a stage loop guards itself; :meth:`from_settings` is what the stages use."""

    max_attempts: int = 3
    # The attempt log and the health file; None: counts in memory, no health file.
    state_dir: Path | None = None
    # None: the transport's own limit (stream.transport.max_message_bytes).
    max_message_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StageOptions:
        return cls(
            max_attempts=settings.limits.max_attempts,
            state_dir=settings.data_path(STATE_DIR),
            max_message_bytes=settings.limits.max_message_bytes,
        )


@dataclass
class Outgoing:
    topic: str
    value: BaseModel
    key: str | None = None


# (topic, encoded value, key, headers) ready to send
_Encoded = tuple[str, bytes, bytes | None, Sequence[tuple[str, bytes]]]


class _Stopped(Exception):
    """The stop event was set while waiting to retry: leave without committing."""


class _Unproducible(Exception):
    """An outgoing message the transport cannot take (too large): its input fails."""


class _Backoff:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.delay = _BACKOFF_START_S

    def wait(self) -> None:
        if self.stop.wait(self.delay):
            raise _Stopped
        self.delay = min(self.delay * 2, _BACKOFF_MAX_S)


def _fault_point(stage: str, records: list[Record]) -> None:
    """Crash-test hook: with ``YUQING_FAULT_HANG_BEFORE_COMMIT=STAGE:MARKER`` the
    stage writes MARKER after its downstream write is durable and then hangs
    before committing offsets, so a test can kill -9 it in exactly the window
    where at-least-once delivery must not duplicate or lose anything."""
    spec = os.environ.get("YUQING_FAULT_HANG_BEFORE_COMMIT", "")
    target, _, marker = spec.partition(":")
    if target != stage or not marker or os.path.exists(marker):
        return
    with open(marker, "w", encoding="utf-8") as f:
        f.write(" ".join(f"{r.topic}/{r.partition}/{r.offset}" for r in records))
    log.warning("stage %s: fault hook holding %d uncommitted record(s)", stage, len(records))
    while True:
        time.sleep(3600)


def dead_letter_headers(record: Record, stage: str, reason: str) -> list[tuple[str, bytes]]:
    """The record's own headers plus where it came from and why it was refused."""
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    return [
        *[(k, v) for k, v in record.headers if not k.startswith("yuqing.dlq.")],
        (T.DLQ_REASON, reason.encode("utf-8", "replace")),
        (T.DLQ_TOPIC, record.topic.encode("utf-8")),
        (T.DLQ_PARTITION, str(record.partition).encode()),
        (T.DLQ_OFFSET, str(record.offset).encode()),
        (T.DLQ_STAGE, stage.encode("utf-8")),
        (T.DLQ_AT, datetime.now(SHANGHAI).isoformat().encode()),
    ]


def run_stage(
    *,
    transport: Transport,
    stage: str,
    group: str,
    topics: Sequence[str],
    expect: type[BaseModel] | None,
    handle: Callable[[list[BaseModel]], list[Outgoing]],
    dead_letter_topic: str,
    stop: threading.Event,
    batch_size: int = 100,
    poll_timeout_s: float = 0.5,
    on_batch: Callable[[int], None] | None = None,
    options: StageOptions | None = None,
    health: StageHealth | None = None,
) -> None:
    """Consume ``topics`` as ``group`` until ``stop`` is set; see the module doc.

    ``health`` (optional) is the record the loop keeps up to date; with
    ``options.state_dir`` it is also written to a file there.
    """
    opts = options or StageOptions()
    transport.ensure_topics([*topics, dead_letter_topic])
    producer = transport.producer()
    consumer = transport.consumer(group, list(topics))
    health = health if health is not None else StageHealth(stage)
    health.stage, health.group, health.transport, health.state = stage, group, transport.name, "running"
    limit = min(opts.max_message_bytes or max_message_bytes(transport), max_message_bytes(transport))
    loop = _Loop(
        stage=stage,
        expect=expect,
        handle=handle,
        dlq=dead_letter_topic,
        producer=producer,
        stop=stop,
        max_attempts=max(1, opts.max_attempts),
        limit=limit,
        attempts=AttemptLog(opts.state_dir, group),
        health=health,
        report=HealthFile(opts.state_dir, health),
    )
    log.info("stage %s consuming %s as %s via %s", stage, list(topics), group, transport.name)
    loop.report.write(force=True)
    poll_backoff = _Backoff(stop)
    try:
        while not stop.is_set():
            try:
                records = consumer.poll(max_records=batch_size, timeout_s=poll_timeout_s)
                poll_backoff.delay = _BACKOFF_START_S
            except Exception as e:
                health.poll_errors += 1
                loop.waiting(f"读取消息失败：{type(e).__name__}: {e}")
                log.warning("阶段 %s 读取消息失败，%.1f 秒后重试", stage, poll_backoff.delay, exc_info=True)
                try:
                    poll_backoff.wait()
                except _Stopped:
                    break
                continue
            loop.flowing()
            if not records:
                loop.report.write()
                continue
            health.consumed += len(records)
            try:
                loop.process(records)
            except _Stopped:
                log.info("stage %s stopped with %d record(s) not committed", stage, len(records))
                break
            _fault_point(stage, records)
            try:
                consumer.commit(records)
            except Exception:
                # The records are processed; a failed commit only means they may
                # be delivered again (e.g. after a rebalance). Their attempt
                # counts stay, so a dead-lettered one is not handed over again.
                log.warning("stage %s: commit of %d record(s) failed", stage, len(records), exc_info=True)
            else:
                loop.attempts.clear(records)
            loop.report.write()
            if on_batch is not None:
                on_batch(len(records))
    finally:
        health.state = "stopped"
        loop.report.write(force=True)
        for closer in (consumer.close, producer.close, loop.attempts.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                log.warning("stage %s: close failed", stage, exc_info=True)


# A record that failed for good: (record, reason, cause in stream.health.CAUSES)
_Dead = tuple[Record, str, str]


@dataclass
class _Loop:
    stage: str
    expect: type[BaseModel] | None
    handle: Callable[[list[BaseModel]], list[Outgoing]]
    dlq: str
    producer: Producer
    stop: threading.Event
    max_attempts: int
    limit: int
    attempts: AttemptLog
    health: StageHealth
    report: HealthFile

    # -- health -----------------------------------------------------------

    def waiting(self, why: str) -> None:
        if self.health.waiting(why):
            self.report.write(force=True)

    def flowing(self) -> None:
        if self.health.flowing():
            log.info("阶段 %s 恢复正常", self.stage)
            self.report.write(force=True)

    # -- one batch ----------------------------------------------------------

    def process(self, records: list[Record]) -> None:
        dead: list[_Dead] = []
        valid: list[tuple[Record, BaseModel]] = []
        for r in records:
            try:
                valid.append((r, decode(r.value, self.expect)))
            except ContractError as e:
                log.warning(
                    "stage %s: %s[%d]@%d breaks its contract: %s", self.stage, r.topic, r.partition, r.offset, e
                )
                dead.append((r, str(e), "contract"))
            except Exception as e:  # noqa: BLE001 - whatever a record does to the decoder, it alone fails
                log.warning(
                    "stage %s: %s[%d]@%d cannot be decoded: %s: %s",
                    self.stage, r.topic, r.partition, r.offset, type(e).__name__, e,
                )
                dead.append((r, f"无法解码: {type(e).__name__}: {e}", "contract"))

        # Records an earlier attempt did not finish (it failed, or the process
        # died in it) are handed over alone; the others together, in order.
        tries = self.attempts.counts([r for r, _ in valid])
        groups: list[list[tuple[Record, BaseModel]]] = []
        run: list[tuple[Record, BaseModel]] = []
        for r, m in valid:
            if (self.attempts.group, r.topic, r.partition, r.offset) in tries:
                if run:
                    groups.append(run)
                    run = []
                groups.append([(r, m)])
            else:
                run.append((r, m))
        if run:
            groups.append(run)

        for g in groups:
            if len(g) == 1:
                r = g[0][0]
                self._single(g[0], tries.get((self.attempts.group, r.topic, r.partition, r.offset), 0), dead)
            else:
                self._batch(g, dead)
        self._dead_letters(dead)

    def _batch(self, g: list[tuple[Record, BaseModel]], dead: list[_Dead]) -> None:
        recs = [r for r, _ in g]
        self.attempts.begin(recs)
        try:
            out = self._attempt(recs, [m for _, m in g])
            self._emit(out, recs)
        except _Stopped:
            self.attempts.undo(recs)  # stopped, not failed: this attempt does not count
            raise
        except Exception as e:  # noqa: BLE001 - split to find the message that fails
            # It did not crash the process: the batch attempt counts against none of them.
            self.attempts.clear(recs)
            log.warning("阶段 %s：%d 条消息一批处理失败（%s），逐条重试", self.stage, len(g), _brief(e))
            for item in g:
                self._single(item, 0, dead)
            return
        self.attempts.clear(recs)
        self.health.handled += len(g)
        self.health.produced += len(out)

    def _single(self, item: tuple[Record, BaseModel], tried: int, dead: list[_Dead]) -> None:
        r, m = item
        last: BaseException | None = None
        while tried < self.max_attempts:
            self.attempts.begin([r])
            tried += 1
            try:
                out = self._attempt([r], [m])
                self._emit(out, [r])
            except _Stopped:
                self.attempts.undo([r])
                raise
            except Exception as e:  # noqa: BLE001 - any failure of one message is that message's
                last = e
                log.warning(
                    "阶段 %s：%s[%d]@%d 第 %d 次处理失败：%s",
                    self.stage, r.topic, r.partition, r.offset, tried, _brief(e),
                )
                continue
            self.attempts.clear([r])
            self.health.handled += 1
            self.health.produced += len(out)
            return
        if isinstance(last, _Unproducible):
            why, cause = str(last), "too_large"
        elif last is not None:
            why, cause = f"处理失败: {type(last).__name__}: {last}", "failed"
        else:
            why, cause = f"处理时进程崩溃或中断 {tried} 次，不再重试", "crashed"
        log.error("stage %s: %s[%d]@%d dead-lettered: %s", self.stage, r.topic, r.partition, r.offset, why)
        self.health.error(f"{r.topic}[{r.partition}]@{r.offset}: {why}")
        dead.append((r, why, cause))

    def _attempt(self, recs: list[Record], msgs: list[BaseModel]) -> list[_Encoded]:
        """Run the handler until it succeeds or fails for good; TransientError only waits."""
        backoff = _Backoff(self.stop)
        while True:
            try:
                result = self.handle(msgs)
            except TransientError as e:
                self.health.transient_retries += 1
                self.waiting(f"下游暂不可用：{e}")
                log.warning("阶段 %s：下游暂不可用（%s），%.1f 秒后重试", self.stage, e, backoff.delay)
                self._wait_uncounted(backoff, recs)
                continue
            self.flowing()
            # Encoding is part of handling: an outgoing message that breaks its
            # contract, or that the transport would refuse, fails its input.
            out: list[_Encoded] = []
            for o in result:
                value = encode(o.value)
                key = o.key.encode("utf-8") if o.key is not None else None
                size = record_bytes(value, key)
                if size > self.limit:
                    raise _Unproducible(
                        f"输出消息过大: {o.topic} 的消息约 {size} 字节，超过上限 {self.limit} 字节"
                    )
                out.append((o.topic, value, key, ()))
            return out

    def _wait_uncounted(self, backoff: _Backoff, recs: list[Record]) -> None:
        """Wait to retry. Waiting is not handling: a process killed meanwhile (a deploy
        during a long outage) is not these messages' fault, so the attempt is not counted."""
        self.attempts.undo(recs)
        backoff.wait()
        self.attempts.begin(recs)

    def _emit(self, msgs: Sequence[_Encoded], recs: list[Record] | None = None) -> None:
        if not msgs:
            return
        backoff = _Backoff(self.stop)
        while True:
            try:
                for topic, value, key, headers in msgs:
                    self.producer.send(topic, value, key=key, headers=headers)
                self.producer.flush()
                self.flowing()
                return
            except Exception as e:
                if _too_large(e):
                    raise _Unproducible(f"传输拒收（消息过大）: {_brief(e)}") from e
                # Resending everything is safe: consumers are idempotent.
                self.health.produce_retries += 1
                self.waiting(f"消息发送失败：{_brief(e)}")
                log.warning(
                    "阶段 %s：%d 条消息发送失败，%.1f 秒后重试", self.stage, len(msgs), backoff.delay, exc_info=True
                )
                self._wait_uncounted(backoff, recs or [])

    def _dead_letters(self, dead: list[_Dead]) -> None:
        if not dead:
            return
        dead.sort(key=lambda d: (d[0].topic, d[0].partition, d[0].offset))
        msgs: list[_Encoded] = []
        for r, why, _cause in dead:
            headers = dead_letter_headers(r, self.stage, why)
            msgs.append(self._fit_dead(r.value, r.key, headers, self.limit))
        try:
            self._emit(msgs)
        except _Unproducible:
            # The transport's real limit is below ours: cut each dead letter further.
            for r, why, _cause in dead:
                headers = dead_letter_headers(r, self.stage, why)
                try:
                    self._emit([self._fit_dead(r.value, r.key, headers, _DLQ_FALLBACK_BYTES)])
                except _Unproducible as e:
                    log.error("阶段 %s：%s[%d]@%d 的死信无法写入，已丢弃：%s", self.stage, r.topic,
                              r.partition, r.offset, e)
        for _r, _why, cause in dead:
            self.health.dead(cause)

    def _fit_dead(
        self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]], limit: int
    ) -> _Encoded:
        """The original bytes, or as many of them as fit with the headers (the length noted)."""
        if record_bytes(value, key, headers) > limit:
            headers = [*headers, (T.DLQ_TRUNCATED, str(len(value)).encode())]
            value = value[: max(limit - record_bytes(b"", key, headers), 0)]
        return (self.dlq, value, key, headers)


def _brief(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 300 else text[:299] + "…"


def _too_large(e: BaseException) -> bool:
    """Whether producing failed because a message is too large (retrying cannot help)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        # kafka-python: MessageSizeTooLargeError (client or broker), RecordListTooLargeError.
        if isinstance(cur, MessageTooLargeError) or type(cur).__name__.endswith("TooLargeError"):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def dead_letters(
    transport: Transport,
    topic: str,
    *,
    expect: int | None = None,
    timeout_s: float = 10.0,
    idle_s: float = 1.0,
) -> list[Record]:
    """Read a dead-letter topic from the start.

    Without ``expect``: what the topic holds now, from the transport's
    ``read_all`` (the embedded log: one query; Kafka: no group, read up to the
    high watermarks of the fetch responses), so an empty topic answers at once.
    With ``expect`` (tests waiting for dead letters to arrive), or a transport
    without ``read_all``: a throwaway group, until ``expect`` records are seen,
    or ``idle_s`` without news after the first record, or ``timeout_s``.
    """
    read_all = getattr(transport, "read_all", None)
    if expect is None and read_all is not None:
        return list(read_all(topic, timeout_s=timeout_s))
    consumer = transport.consumer(f"dlq-reader-{uuid.uuid4().hex}", [topic])
    out: list[Record] = []
    try:
        deadline = time.monotonic() + timeout_s
        last_news = None
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect:
                break
            if expect is None and last_news is not None and time.monotonic() - last_news >= idle_s:
                break
            got = consumer.poll(max_records=500, timeout_s=0.2)
            if got:
                out.extend(got)
                last_news = time.monotonic()
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))
