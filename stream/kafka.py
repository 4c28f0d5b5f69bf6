"""The Kafka transport (kafka-python).

Only plain Kafka APIs that any compatible broker answers correctly are used:
produce, fetch, group membership, offset commit/fetch and CreateTopics. No
``end_offsets``, ``describe_groups``, ``create_partitions`` or
``delete_records`` (the tansu test broker answers these wrongly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IncompatibleBrokerVersion,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from stream.factory import partition_count
from stream.transport import Record
from yuqing.settings import KafkaSettings

log = logging.getLogger("yuqing.stream")

_COMMIT_ATTEMPTS = 5


class KafkaTransport:
    name = "kafka"

    def __init__(self, settings: KafkaSettings, *, topic_prefix: str | None = None) -> None:
        self.settings = settings
        self.topic_prefix = topic_prefix
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()
        self._producers: set[KafkaTransportProducer] = set()
        self._consumers: set[KafkaTransportConsumer] = set()
        self._known: set[str] = set()  # topics ensured by this process

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.bootstrap_servers.split(","),
            "client_id": self.settings.client_id,
            "request_timeout_ms": self.settings.request_timeout_ms,
        }

    def ensure_topics(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        with self._lock:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self._common())
            admin = self._admin
            wanted = {t: partition_count(t, self.topic_prefix) for t in dict.fromkeys(topics)}
            try:
                res = self._create(admin, wanted, replication=-1)  # -1: the broker's default
            except IncompatibleBrokerVersion:
                res = self._create(admin, wanted, replication=1)  # brokers before 2.4
        for t in res.get("topics", []):
            code = t.get("error_code", 0)
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            raise KafkaError(f"creating topic {t.get('name')!r} failed: {code} {t.get('error_message')}")
        with self._lock:
            self._known.update(wanted)

    def _ensure_known(self, topic: str) -> None:
        """Create a topic before its first use, so the broker never auto-creates it
        with its default partition count."""
        if topic in self._known:
            return
        try:
            self.ensure_topics([topic])
        except KafkaError as e:
            # E.g. no right to create topics where operations pre-create them:
            # go on and let the broker answer for the topic itself.
            log.warning("could not ensure topic %s: %s", topic, e)
            with self._lock:
                self._known.add(topic)

    @staticmethod
    def _create(admin: KafkaAdminClient, wanted: dict[str, int], replication: int) -> dict[str, Any]:
        spec = {t: {"num_partitions": n, "replication_factor": replication} for t, n in wanted.items()}
        # raise_errors=False: one existing topic must not hide errors of the others.
        return admin.create_topics(spec, raise_errors=False)

    def producer(self) -> KafkaTransportProducer:
        p = KafkaTransportProducer(self)
        with self._lock:
            self._producers.add(p)
        return p

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaTransportConsumer:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        for t in topics:
            self._ensure_known(t)
        c = KafkaTransportConsumer(self, group, list(dict.fromkeys(topics)))
        with self._lock:
            self._consumers.add(c)
        return c

    def close(self) -> None:
        with self._lock:
            producers, consumers = list(self._producers), list(self._consumers)
        for c in consumers:
            c.close()
        for p in producers:
            p.close()
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    def __enter__(self) -> KafkaTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KafkaTransportProducer:
    def __init__(self, transport: KafkaTransport) -> None:
        self._t = transport
        self._lock = threading.Lock()
        self._futures: list[Any] = []
        self._closed = False
        self._p = KafkaProducer(
            **transport._common(),
            acks="all",
            retries=10,
            retry_backoff_ms=200,
            linger_ms=5,
        )

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._t._ensure_known(topic)
        fut = self._p.send(topic, value=value, key=key, headers=list(headers) or None)
        with self._lock:
            self._futures.append(fut)

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            futures, self._futures = self._futures, []
        try:
            self._p.flush(timeout=timeout_s)
        except KafkaTimeoutError as e:
            raise KafkaTimeoutError(
                f"flush: {len(futures)} message(s) not acknowledged in {timeout_s}s"
            ) from e
        errors = []
        for f in futures:
            if not f.is_done:
                errors.append(KafkaTimeoutError("message not acknowledged"))
            elif f.failed():
                errors.append(f.exception)
        if errors:
            raise KafkaError(f"{len(errors)} of {len(futures)} message(s) failed: {errors[0]!r}") from errors[
                0
            ]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._p.flush(timeout=10)
        except KafkaError:
            log.warning("kafka producer closed with unsent messages")
        self._p.close(timeout=10)
        with self._t._lock:
            self._t._producers.discard(self)


class KafkaTransportConsumer:
    def __init__(self, transport: KafkaTransport, group: str, topics: list[str]) -> None:
        self._t = transport
        self.group = group
        self.topics = topics
        self._closed = False
        session = transport.settings.session_timeout_ms
        self._c = KafkaConsumer(
            *topics,
            **transport._common(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session,
            heartbeat_interval_ms=max(session // 3, 100),
        )

    def poll(self, max_records: int = 100, timeout_s: float = 1.0) -> list[Record]:
        batch = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[Record] = []
        for recs in batch.values():
            for r in recs:
                headers = tuple((k, v if v is not None else b"") for k, v in (r.headers or ()))
                value = r.value if r.value is not None else b""
                out.append(Record(r.topic, r.partition, r.offset, r.key, value, headers, r.timestamp))
        return out

    def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        upto: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            upto[tp] = max(upto.get(tp, -1), r.offset + 1)
        # leader_epoch -1: unknown; the broker then skips the fencing check.
        offsets = {tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in upto.items()}
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                self._c.commit(offsets)
                return
            except (RebalanceInProgressError, CommitFailedError) as e:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                # After a real rebalance these records are redelivered to the
                # new owner; the handlers are idempotent, so that is harmless.
                log.info("commit for %s retried after %s", self.group, type(e).__name__)
                time.sleep(0.2 * (2**attempt))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._c.close(autocommit=False)
        finally:
            with self._t._lock:
                self._t._consumers.discard(self)
