"""The transport interface: what a stage needs from a log of messages.

Two implementations honour it: :mod:`stream.kafka` (production, Apache Kafka)
and :mod:`stream.embedded` (one machine, an SQLite write-ahead log). Both give
the same at-least-once contract:

* ``Producer.send`` + ``flush`` returns only when the message is durable.
* A consumer in a group sees every message of its topics at least once;
  offsets move only when the stage calls ``commit`` with the records it has
  finished, so a crash before that replays them (consumers are idempotent by
  post id / event key).
* Neither takes a message larger than the transport's maximum
  (``max_message_bytes``; Kafka's producer default, 1 MiB): the embedded
  log refuses it with :class:`MessageTooLargeError` as Kafka's client does,
  so a stage that checks with :func:`record_bytes` first never sees that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Kafka's producer default (max.request.size). A transport may have a lower
# limit (``max_message_bytes`` attribute); nothing above this is ever sent.
MAX_MESSAGE_BYTES = 1_048_576

# Room for Kafka's batch header and per-record framing (82 bytes plus
# varints in kafka-python's estimate), with plenty to spare.
RECORD_OVERHEAD_BYTES = 512


class MessageTooLargeError(ValueError):
    """A message over the transport's maximum: sending it again cannot succeed."""


def record_bytes(value: bytes, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()) -> int:
    """What a record costs against ``max_message_bytes``: an upper bound of Kafka's own estimate."""
    return (
        len(value)
        + (len(key) if key else 0)
        + sum(len(k.encode("utf-8")) + len(v) for k, v in headers)
        + RECORD_OVERHEAD_BYTES
    )


def max_message_bytes(transport: object) -> int:
    """The largest record ``transport`` takes (its ``max_message_bytes``, else Kafka's default)."""
    limit = getattr(transport, "max_message_bytes", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Producer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every message sent so far is durable; raise on failure."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int = 100, timeout_s: float = 1.0) -> list[Record]: ...

    def commit(self, records: Sequence[Record]) -> None:
        """Mark ``records`` (and everything before them per partition) done."""

    def close(self) -> None: ...


class Transport(Protocol):
    name: str

    def ensure_topics(self, topics: Sequence[str]) -> None: ...

    def producer(self) -> Producer: ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    def close(self) -> None: ...
