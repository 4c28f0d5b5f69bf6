"""The at-least-once loop every stage runs.

poll a batch -> decode each record against its contract -> records that fail
go to the dead-letter topic with their original bytes -> ``handle`` gets the
valid messages and makes its downstream write durable -> outgoing messages
are produced and flushed -> dead letters are produced and flushed -> only
then are the batch's offsets committed. A crash anywhere before the commit
replays the batch; handlers are idempotent.
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

from pydantic import BaseModel

from stream import topics as T
from stream.contracts import SHANGHAI, ContractError, decode, encode
from stream.transport import Producer, Record, Transport

log = logging.getLogger("yuqing.stream")

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 30.0


class TransientError(Exception):
    """Downstream unavailable: retry the batch later, never dead-letter."""


@dataclass
class Outgoing:
    topic: str
    value: BaseModel
    key: str | None = None


# (topic, encoded value, key, headers) ready to send
_Encoded = tuple[str, bytes, bytes | None, Sequence[tuple[str, bytes]]]


class _Stopped(Exception):
    """The stop event was set while waiting to retry: leave without committing."""


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
    return [
        *[(k, v) for k, v in record.headers if not k.startswith("yuqing.dlq.")],
        (T.DLQ_REASON, reason.encode("utf-8")),
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
) -> None:
    """Consume ``topics`` as ``group`` until ``stop`` is set; see the module doc."""
    transport.ensure_topics([*topics, dead_letter_topic])
    producer = transport.producer()
    consumer = transport.consumer(group, list(topics))
    log.info("stage %s consuming %s as %s via %s", stage, list(topics), group, transport.name)
    poll_backoff = _Backoff(stop)
    try:
        while not stop.is_set():
            try:
                records = consumer.poll(max_records=batch_size, timeout_s=poll_timeout_s)
                poll_backoff.delay = _BACKOFF_START_S
            except Exception:
                log.exception("stage %s: poll failed", stage)
                try:
                    poll_backoff.wait()
                except _Stopped:
                    break
                continue
            if not records:
                continue
            try:
                _process(records, stage, expect, handle, dead_letter_topic, producer, stop)
            except _Stopped:
                log.info("stage %s stopped with %d record(s) not committed", stage, len(records))
                break
            _fault_point(stage, records)
            try:
                consumer.commit(records)
            except Exception:
                # The records are processed; a failed commit only means they may
                # be delivered again (e.g. after a rebalance).
                log.warning("stage %s: commit of %d record(s) failed", stage, len(records), exc_info=True)
            if on_batch is not None:
                on_batch(len(records))
    finally:
        for closer in (consumer.close, producer.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                log.warning("stage %s: close failed", stage, exc_info=True)


def _process(
    records: list[Record],
    stage: str,
    expect: type[BaseModel] | None,
    handle: Callable[[list[BaseModel]], list[Outgoing]],
    dlq: str,
    producer: Producer,
    stop: threading.Event,
) -> None:
    valid: list[tuple[Record, BaseModel]] = []
    dead: list[tuple[Record, str]] = []
    for r in records:
        try:
            valid.append((r, decode(r.value, expect)))
        except ContractError as e:
            log.warning(
                "stage %s: %s[%d]@%d breaks its contract: %s", stage, r.topic, r.partition, r.offset, e
            )
            dead.append((r, str(e)))

    out: list[_Encoded] = []
    if valid:
        try:
            out = _attempt(handle, [m for _, m in valid], stop, stage)
        except _Stopped:
            raise
        except Exception as e:
            if len(valid) == 1:
                dead.append((valid[0][0], _failure(stage, valid[0][0], e)))
            else:
                # One by one: only a message that fails on its own is dead-lettered.
                log.warning("stage %s: batch of %d failed (%s); retrying one by one", stage, len(valid), e)
                for r, m in valid:
                    try:
                        out.extend(_attempt(handle, [m], stop, stage))
                    except _Stopped:
                        raise
                    except Exception as e1:
                        dead.append((r, _failure(stage, r, e1)))

    # Durable downstream first, then the dead letters, then (by the caller) the commit.
    _emit(producer, out, stop, stage)
    dead.sort(key=lambda d: (d[0].topic, d[0].partition, d[0].offset))
    _emit(
        producer, [(dlq, r.value, r.key, dead_letter_headers(r, stage, why)) for r, why in dead], stop, stage
    )


def _failure(stage: str, r: Record, e: BaseException) -> str:
    log.error(
        "stage %s: %s[%d]@%d failed: %s: %s", stage, r.topic, r.partition, r.offset, type(e).__name__, e
    )
    return f"处理失败: {type(e).__name__}: {e}"


def _attempt(
    handle: Callable[[list[BaseModel]], list[Outgoing]],
    msgs: list[BaseModel],
    stop: threading.Event,
    stage: str,
) -> list[_Encoded]:
    """Run ``handle`` until it succeeds or fails for good; TransientError only waits."""
    backoff = _Backoff(stop)
    while True:
        try:
            result = handle(msgs)
            # Encoding is part of handling: an outgoing message that breaks its
            # contract is the handler's failure, not something to send.
            return [
                (o.topic, encode(o.value), o.key.encode("utf-8") if o.key is not None else None, ())
                for o in result
            ]
        except TransientError as e:
            log.warning("stage %s: downstream unavailable (%s); retrying in %.1fs", stage, e, backoff.delay)
            backoff.wait()


def _emit(
    producer: Producer,
    msgs: Sequence[_Encoded],
    stop: threading.Event,
    stage: str,
) -> None:
    if not msgs:
        return
    backoff = _Backoff(stop)
    while True:
        try:
            for topic, value, key, headers in msgs:
                producer.send(topic, value, key=key, headers=headers)
            producer.flush()
            return
        except Exception:
            # Resending everything is safe: consumers are idempotent.
            log.warning("stage %s: producing %d message(s) failed; retrying", stage, len(msgs), exc_info=True)
            backoff.wait()


def dead_letters(
    transport: Transport,
    topic: str,
    *,
    expect: int | None = None,
    timeout_s: float = 10.0,
    idle_s: float = 1.0,
) -> list[Record]:
    """Read a dead-letter topic from the start, with a throwaway group.

    Without ``end_offsets`` (not every broker answers it) the end is guessed:
    ``expect`` records seen, or ``idle_s`` without news after the first
    record, or ``timeout_s``.
    """
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
