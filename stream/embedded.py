"""The embedded transport: a partitioned, append-only log in one SQLite file.

Made for one machine where several processes (the stages) share the file:

* WAL mode, ``busy_timeout`` and short ``BEGIN IMMEDIATE`` write transactions,
  so a process killed with SIGKILL leaves either the whole transaction or
  nothing; ``synchronous=FULL`` so a committed transaction also survives a
  power cut.
* Messages: ``(topic, partition, offset)`` with offsets from 0 per partition.
  Partition = crc32(key) mod count, round robin for ``key=None``.
* Consumer groups keep committed offsets per ``(group, topic, partition)``.
  Partitions are handed out through lease rows (owner id, host, pid, process
  start time, heartbeat). A lease whose owner process is gone on this host,
  or whose heartbeat is older than ``lease_ttl_s``, is taken over at once, so
  a stage restarted after ``kill -9`` resumes immediately from its committed
  offset. Nothing that matters lives only in memory: a consumer's position is
  re-read from the committed offset whenever it (re)acquires a partition.
* Retention (``retention_hours``, 0 = keep forever): like Kafka's
  ``retention.ms``, messages older than that are deleted — but, unlike
  Kafka, only once every consumer group that has committed on the partition
  is past them, so a stage that was down for a week still gets its backlog.
  A topic no group reads (the dead-letter topic) is pruned by age alone.
  The newest message of a partition is always kept: offsets continue from it.
  The heartbeat thread prunes every ``prune_every_s``; :meth:`prune` does it now.
* Size: a record over ``max_message_bytes`` (counted by
  :func:`stream.transport.record_bytes`, as Kafka's client would refuse it)
  is refused at ``send`` with :class:`stream.transport.MessageTooLargeError`,
  so the embedded log takes nothing the Kafka transport would not.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import zlib
from base64 import b64decode, b64encode
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from stream.factory import partition_count
from stream.transport import MAX_MESSAGE_BYTES, MessageTooLargeError, Record, record_bytes

log = logging.getLogger("yuqing.stream")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers TEXT,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    topics TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (grp, owner)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""

_HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` (Linux), to tell a reused pid from the original owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are plain.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :]
    return rest[:1] or None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` on this host is still the one that took the lease."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    except OSError:
        return False
    # A killed child not yet reaped by its parent is a zombie: it holds nothing.
    if _proc_state(pid) in ("Z", "X"):
        return False
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False  # pid reused by another process
    return True


_MY_START = _proc_start(os.getpid())


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> str | None:
    if not headers:
        return None
    return json.dumps([[k, b64encode(v).decode("ascii")] for k, v in headers])


def _decode_headers(raw: str | None) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    return tuple((k, b64decode(v)) for k, v in json.loads(raw))


class EmbeddedTransport:
    """Transport on an SQLite file shared by the processes of one machine."""

    name = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        poll_interval_s: float = 0.05,
        lease_ttl_s: float = 10.0,
        topic_prefix: str | None = None,
        busy_timeout_ms: int = 30000,
        retention_hours: float = 0.0,
        prune_every_s: float = 600.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.max_message_bytes = max_message_bytes
        self.retention_hours = retention_hours
        self.prune_every_s = prune_every_s
        self._last_prune = time.monotonic()
        self.poll_interval_s = poll_interval_s
        self.lease_ttl_s = lease_ttl_s
        self.topic_prefix = topic_prefix
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection behind a lock: simple and safe for several threads;
        # every transaction is short, so the lock is never held for long.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._write() as c:
            # Statement by statement: executescript() would commit on its own.
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
        self._closed = False
        self._consumers: set[EmbeddedConsumer] = set()
        self._producers: set[EmbeddedProducer] = set()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; taken with IMMEDIATE so it never deadlocks on upgrade."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT, or the next BEGIN would fail.
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                yield c
            finally:
                if c.in_transaction:
                    c.execute("COMMIT")

    def _partitions(self, c: sqlite3.Connection, topic: str, create: bool = True) -> int:
        row = c.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
        if row is not None:
            return int(row[0])
        n = partition_count(topic, self.topic_prefix)
        if create:
            c.execute("INSERT OR IGNORE INTO topics(name, partitions) VALUES (?, ?)", (topic, n))
        return n

    # -- Transport --------------------------------------------------------

    def ensure_topics(self, topics: Sequence[str]) -> None:
        self._check_open()
        with self._write() as c:
            for t in topics:
                self._partitions(c, t)

    def producer(self) -> EmbeddedProducer:
        self._check_open()
        p = EmbeddedProducer(self)
        self._producers.add(p)
        return p

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        self._check_open()
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.ensure_topics(topics)
        cons = EmbeddedConsumer(self, group, list(dict.fromkeys(topics)))
        with self._lock:
            self._consumers.add(cons)
        self._start_heartbeat()
        return cons

    def read_all(self, topic: str, *, timeout_s: float = 10.0) -> list[Record]:
        """Every message the log holds on ``topic`` now, by partition and offset,
        without a consumer group (``yuqing dead-letters``): one query."""
        self._check_open()
        with self._read() as c:
            rows = c.execute(
                'SELECT partition, "offset", key, value, headers, ts_ms FROM messages'
                ' WHERE topic=? ORDER BY partition, "offset"',
                (topic,),
            ).fetchall()
        return [Record(topic, p, off, key, value, _decode_headers(h), ts) for p, off, key, value, h, ts in rows]

    def close(self) -> None:
        if self._closed:
            return
        for p in list(self._producers):
            try:
                p.close()
            except Exception:  # noqa: BLE001 - close the rest anyway
                log.exception("closing embedded producer")
        for cons in list(self._consumers):
            cons.close()
        self._hb_stop.set()
        if self._hb_thread is not None and self._hb_thread is not threading.current_thread():
            self._hb_thread.join(timeout=5)
        with self._lock:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> EmbeddedTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise RuntimeError("transport is closed")

    # -- heartbeats ------------------------------------------------------

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._hb_thread is not None:
                return
            # A background heartbeat keeps leases while a handler is busy or
            # backing off, like Kafka's heartbeat thread.
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, name="embedded-heartbeat", daemon=True
            )
            self._hb_thread.start()

    def prune(self, now_ms: int | None = None) -> int:
        """Delete messages past retention that every committed group has consumed; the count deleted."""
        if self.retention_hours <= 0:
            return 0
        cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - int(self.retention_hours * 3_600_000)
        n = 0
        with self._write() as c:
            # Per partition, so that each DELETE is a range scan of the primary key.
            parts = c.execute('SELECT topic, partition, MAX("offset") FROM messages GROUP BY topic, partition').fetchall()
            for topic, part, newest in parts:
                row = c.execute(
                    "SELECT MIN(next_offset) FROM group_offsets WHERE topic=? AND partition=?", (topic, part)
                ).fetchone()
                bound = newest if row[0] is None else min(newest, int(row[0]))
                n += c.execute(
                    'DELETE FROM messages WHERE topic=? AND partition=? AND "offset" < ? AND ts_ms < ?',
                    (topic, part, bound, cutoff),
                ).rowcount
        if n:
            log.info("embedded log: pruned %d messages older than %s h", n, self.retention_hours)
        return n

    def _maybe_prune(self) -> None:
        if self.retention_hours <= 0 or time.monotonic() - self._last_prune < self.prune_every_s:
            return
        self._last_prune = time.monotonic()
        self.prune()

    def _heartbeat_loop(self) -> None:
        interval = max(self.lease_ttl_s / 3, 0.05)
        while not self._hb_stop.wait(interval):
            try:
                self._maybe_prune()
            except sqlite3.Error:
                if self._closed:
                    return
                log.exception("embedded log pruning failed")
            with self._lock:
                owners = [(cons.group, cons.owner) for cons in self._consumers]
            if not owners:
                continue
            try:
                now = time.time()
                with self._write() as c:
                    for grp, owner in owners:
                        c.execute("UPDATE members SET heartbeat=? WHERE grp=? AND owner=?", (now, grp, owner))
                        c.execute("UPDATE leases SET heartbeat=? WHERE grp=? AND owner=?", (now, grp, owner))
            except sqlite3.Error:
                if self._closed:
                    return
                log.exception("embedded transport heartbeat failed")


class EmbeddedProducer:
    """Buffers sends; ``flush`` writes them in one transaction."""

    def __init__(self, transport: EmbeddedTransport, max_buffer: int = 1000) -> None:
        self._t = transport
        self._lock = threading.Lock()
        self._buf: list[tuple[str, bytes | None, bytes, str | None, int]] = []
        self._rr = 0
        self._max_buffer = max_buffer

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError("value must be bytes")
        for k, v in headers:
            if not isinstance(k, str) or not isinstance(v, bytes | bytearray):
                raise TypeError("headers must be (str, bytes) pairs")
        size = record_bytes(value, key, headers)
        if size > self._t.max_message_bytes:
            raise MessageTooLargeError(
                f"message of {size} bytes for {topic} is over the limit of {self._t.max_message_bytes} bytes"
            )
        with self._lock:
            self._buf.append(
                (
                    topic,
                    key,
                    bytes(value),
                    _encode_headers([(k, bytes(v)) for k, v in headers]),
                    int(time.time() * 1000),
                )
            )
            full = len(self._buf) >= self._max_buffer
        if full:
            self.flush()

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            if not self._buf:
                return
            buf = self._buf
            # Partition choice and offsets are decided inside the transaction,
            # where this process is the only writer.
            with self._t._write() as c:
                nparts: dict[str, int] = {}
                nexts: dict[tuple[str, int], int] = {}
                for topic, key, value, headers, ts in buf:
                    n = nparts.get(topic)
                    if n is None:
                        n = nparts[topic] = self._t._partitions(c, topic)
                    if key is None:
                        part = self._rr % n
                        self._rr += 1
                    else:
                        part = zlib.crc32(key) % n
                    off = nexts.get((topic, part))
                    if off is None:
                        row = c.execute(
                            'SELECT MAX("offset") FROM messages WHERE topic=? AND partition=?', (topic, part)
                        ).fetchone()
                        off = 0 if row[0] is None else int(row[0]) + 1
                    c.execute(
                        'INSERT INTO messages(topic, partition, "offset", key, value, headers, ts_ms)'
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (topic, part, off, key, value, headers, ts),
                    )
                    nexts[(topic, part)] = off + 1
            self._buf = []

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._t._producers.discard(self)


class EmbeddedConsumer:
    """A member of a consumer group; owns the partitions it holds a lease on."""

    def __init__(self, transport: EmbeddedTransport, group: str, topics: list[str]) -> None:
        self._t = transport
        self.group = group
        self.topics = topics
        self.owner = uuid.uuid4().hex
        self._positions: dict[tuple[str, int], int] = {}  # owned partition -> next offset to read
        self._rotation = 0
        self._last_sync = float("-inf")
        self._sync_every = min(0.5, transport.lease_ttl_s / 4)
        self._closed = False
        now = time.time()
        with transport._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO members(grp, owner, host, pid, pid_start, topics, heartbeat)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (group, self.owner, _HOST, os.getpid(), _MY_START, json.dumps(topics), now),
            )

    @property
    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._positions)

    def _dead(self, host: str, pid: int, start: str | None, heartbeat: float, now: float) -> bool:
        if now - heartbeat > self._t.lease_ttl_s:
            return True
        return host == _HOST and not pid_alive(pid, start)

    def _sync(self) -> None:
        """Rebalance: drop dead members, take free or orphaned leases meant for us, give back the rest."""
        t = self._t
        now = time.time()
        with t._write() as c:
            c.execute("UPDATE members SET heartbeat=? WHERE grp=? AND owner=?", (now, self.group, self.owner))
            if c.execute("SELECT changes()").fetchone()[0] == 0:
                # Our row was removed (we looked dead, e.g. the process was stopped): rejoin.
                c.execute(
                    "INSERT INTO members(grp, owner, host, pid, pid_start, topics, heartbeat)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.group, self.owner, _HOST, os.getpid(), _MY_START, json.dumps(self.topics), now),
                )
            members: dict[str, list[str]] = {}
            for owner, host, pid, start, topics, hb in c.execute(
                "SELECT owner, host, pid, pid_start, topics, heartbeat FROM members WHERE grp=?",
                (self.group,),
            ).fetchall():
                if owner != self.owner and self._dead(host, pid, start, hb, now):
                    c.execute("DELETE FROM members WHERE grp=? AND owner=?", (self.group, owner))
                    c.execute("DELETE FROM leases WHERE grp=? AND owner=?", (self.group, owner))
                    continue
                members[owner] = json.loads(topics)

            # Everyone computes the same plan from the same member list: every
            # partition of the group's topics, round robin over the members
            # that subscribe to its topic, ordered by owner id.
            group_topics = sorted({tp for ts in members.values() for tp in ts})
            wanted: set[tuple[str, int]] = set()
            i = 0
            for topic in group_topics:
                subs = sorted(o for o, ts in members.items() if topic in ts)
                for p in range(t._partitions(c, topic)):
                    if subs[i % len(subs)] == self.owner:
                        wanted.add((topic, p))
                    i += 1

            leases = {
                (topic, p): (owner, hb)
                for topic, p, owner, hb in c.execute(
                    "SELECT topic, partition, owner, heartbeat FROM leases WHERE grp=?", (self.group,)
                ).fetchall()
            }
            held: set[tuple[str, int]] = set()  # still ours since the last sync
            fresh: set[tuple[str, int]] = set()  # (re)acquired now
            for tp, (owner, _hb) in leases.items():
                if owner == self.owner:
                    if tp in wanted:
                        held.add(tp)
                        c.execute(
                            "UPDATE leases SET heartbeat=? WHERE grp=? AND topic=? AND partition=?",
                            (now, self.group, *tp),
                        )
                    else:
                        c.execute(
                            "DELETE FROM leases WHERE grp=? AND topic=? AND partition=? AND owner=?",
                            (self.group, *tp, self.owner),
                        )
            for tp in wanted - held:
                cur = leases.get(tp)
                if cur is not None and cur[0] in members:
                    continue  # a live member still holds it; it gives it back on its next sync
                c.execute(
                    "INSERT OR REPLACE INTO leases(grp, topic, partition, owner, host, pid, pid_start, heartbeat)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.group, *tp, self.owner, _HOST, os.getpid(), _MY_START, now),
                )
                fresh.add(tp)

            # A partition we kept goes on from where we are; one (re)acquired
            # starts from the committed offset, whatever we read before.
            positions = {tp: self._positions[tp] for tp in held if tp in self._positions}
            for tp in fresh | (held - set(positions)):
                row = c.execute(
                    "SELECT next_offset FROM group_offsets WHERE grp=? AND topic=? AND partition=?",
                    (self.group, *tp),
                ).fetchone()
                positions[tp] = int(row[0]) if row else 0
        lost = set(self._positions) - set(positions)
        if lost:
            log.info("embedded consumer %s of %s gave up %s", self.owner[:8], self.group, sorted(lost))
        self._positions = positions
        self._last_sync = time.monotonic()

    def poll(self, max_records: int = 100, timeout_s: float = 1.0) -> list[Record]:
        if self._closed:
            raise RuntimeError("consumer is closed")
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            if time.monotonic() - self._last_sync >= self._sync_every:
                self._sync()
            records = self._fetch(max_records)
            if records:
                return records
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(self._t.poll_interval_s, left))

    def _fetch(self, max_records: int) -> list[Record]:
        parts = sorted(self._positions)
        if not parts or max_records <= 0:
            return []
        # Rotate the starting partition so one busy partition cannot starve the others.
        self._rotation = (self._rotation + 1) % len(parts)
        parts = parts[self._rotation :] + parts[: self._rotation]
        out: list[Record] = []
        with self._t._read() as c:
            for topic, p in parts:
                room = max_records - len(out)
                if room <= 0:
                    break
                rows = c.execute(
                    'SELECT "offset", key, value, headers, ts_ms FROM messages'
                    ' WHERE topic=? AND partition=? AND "offset">=? ORDER BY "offset" LIMIT ?',
                    (topic, p, self._positions[(topic, p)], room),
                ).fetchall()
                for off, key, value, headers, ts in rows:
                    out.append(Record(topic, p, off, key, value, _decode_headers(headers), ts))
                if rows:
                    self._positions[(topic, p)] = rows[-1][0] + 1
        return out

    def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        upto: dict[tuple[str, int], int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            upto[tp] = max(upto.get(tp, -1), r.offset + 1)
        skipped = []
        with self._t._write() as c:
            for (topic, p), nxt in upto.items():
                row = c.execute(
                    "SELECT owner FROM leases WHERE grp=? AND topic=? AND partition=?", (self.group, topic, p)
                ).fetchone()
                if row is None or row[0] != self.owner:
                    # Another member owns it now and starts from the committed
                    # offset: these records will be redelivered there.
                    skipped.append((topic, p))
                    continue
                # Never move backwards: records from an earlier lease may be
                # committed after a newer owner already went further.
                c.execute(
                    "INSERT INTO group_offsets(grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(grp, topic, partition)"
                    " DO UPDATE SET next_offset=MAX(next_offset, excluded.next_offset)",
                    (self.group, topic, p, nxt),
                )
        if skipped:
            log.warning("commit skipped for partitions no longer owned by this consumer: %s", skipped)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed next offset (for tests and tools)."""
        with self._t._lock:
            row = self._t._conn.execute(
                "SELECT next_offset FROM group_offsets WHERE grp=? AND topic=? AND partition=?",
                (self.group, topic, partition),
            ).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._t._write() as c:
                c.execute("DELETE FROM leases WHERE grp=? AND owner=?", (self.group, self.owner))
                c.execute("DELETE FROM members WHERE grp=? AND owner=?", (self.group, self.owner))
        finally:
            with self._t._lock:
                self._t._consumers.discard(self)
