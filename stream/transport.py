"""The transport interface: what a stage needs from a log of messages.

Two implementations honour it: :mod:`stream.kafka` (production, Apache Kafka)
and :mod:`stream.embedded` (one machine, an SQLite write-ahead log). Both give
the same at-least-once contract:

* ``Producer.send`` + ``flush`` returns only when the message is durable.
* A consumer in a group sees every message of its topics at least once;
  offsets move only when the stage calls ``commit`` with the records it has
  finished, so a crash before that replays them (consumers are idempotent by
  post id / event key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


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
