"""The Kafka transport (kafka-python).

Only plain Kafka APIs that any compatible broker answers correctly are used:
produce, fetch, group membership, offset commit/fetch and CreateTopics. No
``end_offsets``, ``describe_groups``, ``create_partitions`` or
``delete_records`` (the tansu test broker answers these wrongly).

Broker restarts are survived without restarting the stage:

* A producer whose client cannot deliver any more is closed and a fresh client
  takes its place: a fatal client error (its idempotence state no longer
  matches the broker's: ``UnknownProducerIdError`` and a failed epoch bump,
  which kafka-python makes fatal), a topic that got a new id (its producer id
  and sequence numbers mean nothing there), a flush that timed out, or several
  failed flushes in a row. The failed ``flush`` still raises: callers send the
  whole batch again (the stage loop, the crawler and the outbox relay all do),
  and consumers are idempotent.
* After any failed flush the topics are ensured again before the next send:
  a broker that keeps its data in memory comes back without them. Clients
  never let the broker auto-create a topic, so partition counts stay ours.
* A consumer re-creates a subscribed topic that disappeared, and reads a topic
  that was re-created (a new topic id: the old offsets mean nothing there)
  from its beginning. A consumer whose ``poll`` or ``commit`` keeps failing is
  replaced by a fresh one, which resumes from the committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    AuthorizationError,
    CommitFailedError,
    IllegalStateError,
    IncompatibleBrokerVersion,
    InvalidProducerEpochError,
    InvalidProducerIdMappingError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    PolicyViolationError,
    ProducerFencedError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
    for_code,
)
from kafka.structs import OffsetAndMetadata

from stream.factory import partition_count
from stream.transport import Record
from yuqing.settings import KafkaSettings

log = logging.getLogger("yuqing.stream")

_COMMIT_ATTEMPTS = 5
# Consecutive failures after which a client is replaced even without a fatal error.
_RESET_AFTER_FAILURES = 3
# How often a consumer looks for subscribed topics that vanished (seconds).
_TOPIC_CHECK_EVERY_S = 5.0
# Longest a send may block waiting for metadata or buffer space (ms).
_MAX_BLOCK_MS = 15000

# Errors that leave a producer's idempotence state out of step with the broker.
_PRODUCER_STATE_ERRORS = (
    UnknownProducerIdError,
    OutOfOrderSequenceNumberError,
    InvalidProducerEpochError,
    InvalidProducerIdMappingError,
    ProducerFencedError,
    IllegalStateError,
)


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
                try:
                    res = self._create(admin, wanted, replication=-1)  # -1: the broker's default
                except IncompatibleBrokerVersion:
                    res = self._create(admin, wanted, replication=1)  # brokers before 2.4
            except Exception:
                # Build a new admin client next time: this one may be stuck on a
                # connection to a broker that went away.
                self._admin = None
                _close_quietly(admin.close)
                raise
        for t in res.get("topics", []):
            code = t.get("error_code", 0)
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            # The error's own class, so that callers can tell e.g. a missing right.
            raise for_code(code)(f"creating topic {t.get('name')!r} failed: {code} {t.get('error_message')}")
        with self._lock:
            self._known.update(wanted)

    def _ensure_known(self, topic: str) -> None:
        """Create a topic before its first use, so it always has our partition count
        (clients never let the broker auto-create it)."""
        if topic in self._known:
            return
        try:
            self.ensure_topics([topic])
        except (AuthorizationError, PolicyViolationError) as e:
            # No right to create topics where operations pre-create them: go on
            # and let the broker answer for the topic itself.
            log.warning("could not ensure topic %s: %s", topic, e)
            with self._lock:
                self._known.add(topic)

    def _forget_topics(self) -> None:
        """Ensure topics again before their next use (the broker may have lost them)."""
        with self._lock:
            self._known.clear()

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

    def read_all(self, topic: str, *, timeout_s: float = 10.0, idle_s: float = 2.0) -> list[Record]:
        """Every message on ``topic`` now, without a consumer group (no join, no
        rebalance wait): assign every partition, read from the beginning until
        each position reaches the high watermark that fetch responses carry
        (not ``end_offsets``); a missing topic has none. Should a broker not
        report the watermark, ``idle_s`` without a record ends it; ``timeout_s``
        in any case."""
        deadline = time.monotonic() + timeout_s
        c = KafkaConsumer(
            **self._common(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            fetch_max_wait_ms=100,
        )
        out: list[Record] = []
        try:
            parts = c.partitions_for_topic(topic)  # a metadata request for this topic
            if not parts:
                return []
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            last_news = time.monotonic()
            while time.monotonic() < deadline:
                batch = c.poll(timeout_ms=200, max_records=500)
                for recs in batch.values():
                    for r in recs:
                        headers = tuple((k, v if v is not None else b"") for k, v in (r.headers or ()))
                        out.append(Record(r.topic, r.partition, r.offset, r.key,
                                          r.value if r.value is not None else b"", headers, r.timestamp))
                if batch:
                    last_news = time.monotonic()
                marks = [c.highwater(tp) for tp in tps]
                if all(m is not None for m in marks) and all(
                    c.position(tp) >= m for tp, m in zip(tps, marks, strict=True)
                ):
                    break
                if time.monotonic() - last_news >= idle_s:
                    break
        finally:
            _close_quietly(c.close, autocommit=False)
        return sorted(out, key=lambda r: (r.partition, r.offset))

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


def _close_quietly(close: Any, *args: Any, **kwargs: Any) -> None:
    try:
        close(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a client being thrown away may fail to close
        log.debug("closing a kafka client failed", exc_info=True)


def _producer_broken(p: KafkaProducer) -> bool:
    """True when kafka-python will fail every further send of ``p``."""
    if getattr(p, "_closed", False):
        return True
    tm = getattr(p, "_transaction_manager", None)
    return bool(tm is not None and tm.has_fatal_error())


def _discard_producer(p: KafkaProducer) -> None:
    """Close ``p`` without waiting for its pending records (they are failed)."""
    try:
        p.close(timeout=0)
        return
    except Exception:  # noqa: BLE001 - close(0) raises while batches are pending
        pass
    sender = getattr(p, "_sender", None)
    if sender is not None:
        sender.force_close()  # fails the pending batches
        sender.join(5)
    _close_quietly(p.close, timeout=0)


class KafkaTransportProducer:
    def __init__(self, transport: KafkaTransport) -> None:
        self._t = transport
        self._lock = threading.Lock()
        self._futures: list[Any] = []
        self._closed = False
        self._failures = 0  # consecutive failed flushes
        self.resets = 0  # clients replaced so far
        # Topic id of each topic this client sent to, when it first knew it.
        self._topic_ids: dict[str, Any] = {}
        self._p: KafkaProducer | None = self._new_client()

    def _new_client(self) -> KafkaProducer:
        return KafkaProducer(
            **self._t._common(),
            acks="all",
            retries=10,
            retry_backoff_ms=200,
            linger_ms=5,
            max_block_ms=_MAX_BLOCK_MS,
            allow_auto_create_topics=False,
        )

    def _client(self) -> KafkaProducer:
        with self._lock:
            p = self._p
        if p is not None:
            why = self._unusable(p)
            if why is None:
                return p
            self._reset(p, why)
        fresh = self._new_client()
        with self._lock:
            if self._p is None:
                self._p = fresh
                return fresh
            current = self._p  # another thread was quicker
        _discard_producer(fresh)
        return current

    def _unusable(self, p: KafkaProducer) -> str | None:
        """Why ``p`` cannot deliver any more, or None.

        A topic that got a new id was deleted and created again (a broker that
        kept it in memory restarted): the client's producer id and sequence
        numbers mean nothing there, and kafka-python would retry them forever.
        """
        if _producer_broken(p):
            return "a fatal client error"
        cluster = getattr(p, "_metadata", None)
        if cluster is None:
            return None
        with self._lock:
            known = list(self._topic_ids.items())
        for topic, tid in known:
            now = cluster.topic_id(topic)
            if tid is None:
                if now is not None:
                    with self._lock:
                        self._topic_ids[topic] = now
            elif now is not None and now != tid:
                return f"topic {topic} was re-created"
        return None

    def _reset(self, p: KafkaProducer, why: str) -> None:
        with self._lock:
            if self._p is not p:
                return
            self._p = None
            self._topic_ids = {}
            self.resets += 1
        log.warning("kafka producer replaced after %s", why)
        _discard_producer(p)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._t._ensure_known(topic)
        p = self._client()
        try:
            fut = p.send(topic, value=value, key=key, headers=list(headers) or None)
        except KafkaError:
            self._t._forget_topics()
            raise
        with self._lock:
            if self._p is p:
                cluster = getattr(p, "_metadata", None)
                self._topic_ids.setdefault(topic, cluster.topic_id(topic) if cluster is not None else None)
            self._futures.append(fut)

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            futures, self._futures = self._futures, []
            p = self._p
        why = self._wait(p, timeout_s) if p is not None else None
        errors: list[BaseException] = []
        for f in futures:
            if not f.is_done:
                errors.append(KafkaTimeoutError("message not acknowledged"))
            elif f.failed():
                errors.append(f.exception)
        if why is None and not errors:
            self._failures = 0
            return
        self._failed(p, errors, why)
        if why is not None:
            raise KafkaTimeoutError(f"flush: {len(futures)} message(s) not acknowledged: {why}")
        raise KafkaError(f"{len(errors)} of {len(futures)} message(s) failed: {errors[0]!r}") from errors[0]

    def _wait(self, p: KafkaProducer, timeout_s: float) -> str | None:
        """Wait for ``p`` to finish its sends: None when it did, else why not. Gives up
        early on a client that can no longer deliver."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                p.flush(timeout=max(0.0, min(left, 1.0)))
                return None
            except KafkaTimeoutError:
                pass
            why = self._unusable(p)
            if why is not None:
                return why
            if time.monotonic() >= deadline:
                return f"not acknowledged in {timeout_s}s"

    def _failed(self, p: KafkaProducer | None, errors: list[BaseException], why: str | None) -> None:
        """After a failed flush: the broker may have lost its topics, and a client
        that cannot recover is replaced (the caller sends the batch again)."""
        self._t._forget_topics()
        self._failures += 1
        if p is None:
            return
        state = next((e for e in errors if isinstance(e, _PRODUCER_STATE_ERRORS)), None)
        why = why or self._unusable(p) or (type(state).__name__ if state is not None else None)
        if why is None and self._failures >= _RESET_AFTER_FAILURES:
            why = f"{self._failures} failed flushes in a row"
        if why is not None:
            # What it still holds is failed; the caller sends the batch again
            # through the new client (a copy the old one got through is a
            # duplicate, which consumers drop by its key).
            self._reset(p, why)
            self._failures = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            p, self._p = self._p, None
        if p is not None:
            try:
                p.flush(timeout=10)
                p.close(timeout=10)
            except KafkaError:
                log.warning("kafka producer closed with unsent messages")
                _discard_producer(p)
        with self._t._lock:
            self._t._producers.discard(self)


class KafkaTransportConsumer:
    def __init__(self, transport: KafkaTransport, group: str, topics: list[str]) -> None:
        self._t = transport
        self.group = group
        self.topics = topics
        self._closed = False
        self._failures = 0  # consecutive failed polls
        self._commit_failures = 0  # consecutive failed commits
        self.resets = 0  # clients replaced so far
        # Topic id each assigned partition's position belongs to.
        self._topic_ids: dict[TopicPartition, Any] = {}
        # The first look waits for the client's first metadata.
        self._next_topic_check = time.monotonic() + _TOPIC_CHECK_EVERY_S
        self._c: KafkaConsumer | None = self._new_client()

    def _new_client(self) -> KafkaConsumer:
        session = self._t.settings.session_timeout_ms
        return KafkaConsumer(
            *self.topics,
            **self._t._common(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session,
            heartbeat_interval_ms=max(session // 3, 100),
            allow_auto_create_topics=False,
        )

    def _client(self) -> KafkaConsumer:
        if self._c is None:
            self._c = self._new_client()
            self._topic_ids = {}
        return self._c

    def _reset(self, why: str) -> None:
        c, self._c = self._c, None
        self._failures = self._commit_failures = 0
        self.resets += 1
        log.warning("kafka consumer of %s replaced after %s", self.group, why)
        if c is not None:
            _close_quietly(c.close, autocommit=False)

    def _failed(self, e: BaseException) -> None:
        self._failures += 1
        if isinstance(e, IllegalStateError) or self._failures >= _RESET_AFTER_FAILURES:
            self._reset(f"{self._failures} failed poll(s), the last {type(e).__name__}: {e}")

    def poll(self, max_records: int = 100, timeout_s: float = 1.0) -> list[Record]:
        try:
            c = self._client()
            batch = c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except Exception as e:
            self._failed(e)
            raise
        self._failures = 0
        try:
            renewed = self._check_topics(c)
        except Exception:  # noqa: BLE001 - the batch is in hand: never lose it to a check
            log.warning("consumer %s: checking its topics failed", self.group, exc_info=True)
            renewed = set()
        out: list[Record] = []
        for recs in batch.values():
            for r in recs:
                if TopicPartition(r.topic, r.partition) in renewed:
                    continue  # read again from the start of the new topic
                headers = tuple((k, v if v is not None else b"") for k, v in (r.headers or ()))
                value = r.value if r.value is not None else b""
                out.append(Record(r.topic, r.partition, r.offset, r.key, value, headers, r.timestamp))
        return out

    def _check_topics(self, c: KafkaConsumer) -> set[TopicPartition]:
        """Assigned partitions whose topic was re-created since this consumer last
        looked (a new topic id), now read from their start; also re-creates
        subscribed topics the broker no longer has."""
        cluster = getattr(c, "_cluster", None)
        if cluster is None:
            return set()
        renewed: set[TopicPartition] = set()
        for tp in c.assignment():
            tid = cluster.topic_id(tp.topic)
            if tid is None:
                continue
            old = self._topic_ids.setdefault(tp, tid)
            if old != tid:
                renewed.add(tp)
        if renewed:
            # The position (kept across a rejoin) counts in the old topic's
            # offsets: it would skip the start of the new one.
            log.warning(
                "consumer %s: %d partition(s) of re-created topic(s) %s read again from the start",
                self.group, len(renewed), sorted({tp.topic for tp in renewed}),
            )
            try:
                c.seek_to_beginning(*renewed)
            except (ValueError, IllegalStateError) as e:
                # Revoked meanwhile: the old ids stay, so a partition that comes
                # back with its old position is caught next time.
                log.info("consumer %s: seek skipped: %s", self.group, e)
            else:
                for tp in renewed:
                    self._topic_ids[tp] = cluster.topic_id(tp.topic)
        now = time.monotonic()
        if now >= self._next_topic_check:
            self._next_topic_check = now + _TOPIC_CHECK_EVERY_S
            missing = [t for t in self.topics if cluster.partitions_for_topic(t) is None]
            if missing:
                log.warning("consumer %s: topic(s) %s missing on the broker; creating them", self.group, missing)
                try:
                    self._t.ensure_topics(missing)
                except KafkaError as e:
                    log.warning("consumer %s: creating %s failed: %s", self.group, missing, e)
                cluster.request_update()
        return renewed

    def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        upto: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            upto[tp] = max(upto.get(tp, -1), r.offset + 1)
        # leader_epoch -1: unknown; the broker then skips the fencing check.
        offsets = {tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in upto.items()}
        c = self._c
        if c is None:
            # The client that delivered them is gone: its successor gets them again.
            raise KafkaError(f"consumer of {self.group} was replaced; {len(records)} record(s) will be redelivered")
        try:
            self._commit(c, offsets)
        except Exception as e:
            # One failed commit is normal (a rebalance); failing batch after
            # batch means the client is stuck.
            self._commit_failures += 1
            if isinstance(e, IllegalStateError) or self._commit_failures >= _RESET_AFTER_FAILURES:
                self._reset(f"{self._commit_failures} failed commit(s), the last {type(e).__name__}: {e}")
            raise
        self._commit_failures = 0

    def _commit(self, c: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                c.commit(offsets)
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
        c, self._c = self._c, None
        try:
            if c is not None:
                c.close(autocommit=False)
        finally:
            with self._t._lock:
                self._t._consumers.discard(self)
