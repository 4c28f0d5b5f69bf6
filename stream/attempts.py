"""How many times each record in flight was handed to a stage's handler.

The stage loop counts an attempt *before* it calls the handler and forgets
the record once its output is durable, so a count that survives is a record
whose handling failed or killed the process: the loop hands it over alone
next time and dead-letters it once the count reaches ``max_attempts``. That
is what stops a message that crashes the process (segfault, out of memory,
kill -9 by the kernel) from crash-looping the stage.

With a directory the counts live in ``attempts.db`` there (SQLite, WAL,
``synchronous=NORMAL``: it survives the process, not necessarily a power
cut), so they survive the crash they are meant to count. Without one they
live in this process's memory: they cover failures, not crashes.

A row is keyed by consumer group, topic, partition and offset and holds a
fingerprint of the value, so an offset reused by a re-created topic starts
from zero. Rows of records committed by another consumer are dropped after
``KEEP_DAYS``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from stream.transport import Record

log = logging.getLogger("yuqing.stream")

KEEP_DAYS = 7
FILE = "attempts.db"

_Key = tuple[str, str, int, int]

# In-memory counts, per process (a stage restarted in the same process keeps them).
_MEMORY: dict[_Key, tuple[int, int]] = {}
_MEMORY_LOCK = threading.Lock()


_UPSERT = (
    'INSERT INTO attempts(grp, topic, partition, "offset", fp, n, at) VALUES (?, ?, ?, ?, ?, 1, ?)'
    ' ON CONFLICT(grp, topic, partition, "offset") DO UPDATE SET'
    " n = CASE WHEN fp = excluded.fp THEN n + 1 ELSE 1 END, fp = excluded.fp, at = excluded.at"
)
_DELETE = 'DELETE FROM attempts WHERE grp=? AND topic=? AND partition=? AND "offset"=?'
_UNDO = 'UPDATE attempts SET n = n - 1 WHERE grp=? AND topic=? AND partition=? AND "offset"=?'
_DROP_ZERO = "DELETE FROM attempts WHERE n <= 0"


def _fp(r: Record) -> int:
    return zlib.crc32(r.value) ^ (len(r.value) << 32)


class AttemptLog:
    def __init__(self, directory: Path | str | None, group: str) -> None:
        self.group = group
        self._conn: sqlite3.Connection | None = None
        self._open_keys: set[_Key] = set()  # counted here or found counted: clear() forgets them
        self._inflight: set[_Key] = set()  # counted by begin() and not yet cleared or undone
        if directory is not None:
            try:
                self._conn = self._open(Path(directory) / FILE)
            except (OSError, sqlite3.Error) as e:
                log.error("处理次数记录 %s 无法打开（%s）：只在内存中计数，进程崩溃不计入", directory, e)

    @property
    def durable(self) -> bool:
        return self._conn is not None

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        c = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA busy_timeout=30000")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute(
            "CREATE TABLE IF NOT EXISTS attempts (grp TEXT NOT NULL, topic TEXT NOT NULL,"
            ' partition INTEGER NOT NULL, "offset" INTEGER NOT NULL, fp INTEGER NOT NULL,'
            ' n INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (grp, topic, partition, "offset")) WITHOUT ROWID'
        )
        c.execute("DELETE FROM attempts WHERE at < ?", (time.time() - KEEP_DAYS * 86400,))
        return c

    def _key(self, r: Record) -> _Key:
        return (self.group, r.topic, r.partition, r.offset)

    def _degrade(self, e: Exception) -> None:
        log.error("处理次数记录写入失败（%s）：改为只在内存中计数，进程崩溃不再计入", e)
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        except sqlite3.Error:
            pass

    def counts(self, records: Sequence[Record]) -> dict[_Key, int]:
        """Attempts so far of each record that has any (records of the same value only)."""
        if not records:
            return {}
        want = {self._key(r): _fp(r) for r in records}
        rows: list[tuple[_Key, int, int]] = []
        if self._conn is not None:
            try:
                by_tp: dict[tuple[str, int], list[int]] = {}
                for r in records:
                    by_tp.setdefault((r.topic, r.partition), []).append(r.offset)
                for (topic, part), offs in by_tp.items():
                    for off, fp, n in self._conn.execute(
                        'SELECT "offset", fp, n FROM attempts WHERE grp=? AND topic=? AND partition=?'
                        ' AND "offset" BETWEEN ? AND ?',
                        (self.group, topic, part, min(offs), max(offs)),
                    ):
                        rows.append(((self.group, topic, part, int(off)), int(fp), int(n)))
            except sqlite3.Error as e:
                self._degrade(e)
        if self._conn is None:
            with _MEMORY_LOCK:
                rows = [(k, *_MEMORY[k]) for k in want if k in _MEMORY]
        found = {k: n for k, fp, n in rows if want.get(k) == fp and n > 0}
        self._open_keys.update(found)
        return found

    def begin(self, records: Sequence[Record]) -> None:
        """Count one more attempt of each record, durably, before the handler runs."""
        if not records:
            return
        now = time.time()
        self._open_keys.update(self._key(r) for r in records)
        self._inflight.update(self._key(r) for r in records)
        if self._conn is not None:
            try:
                rows = [(*self._key(r), _fp(r), now) for r in records]
                self._write(lambda c: c.executemany(_UPSERT, rows))
                return
            except sqlite3.Error as e:
                self._degrade(e)
        with _MEMORY_LOCK:
            for r in records:
                k, fp = self._key(r), _fp(r)
                old = _MEMORY.get(k)
                _MEMORY[k] = (fp, old[1] + 1 if old is not None and old[0] == fp else 1)

    def clear(self, records: Sequence[Record]) -> None:
        """Forget the records: their output is durable (or they are dead-lettered and committed)."""
        keys = [k for k in (self._key(r) for r in records) if k in self._open_keys]
        self._inflight.difference_update(keys)
        if not keys:
            return
        self._open_keys.difference_update(keys)
        if self._conn is not None:
            try:
                self._write(lambda c: c.executemany(_DELETE, keys))
                return
            except sqlite3.Error as e:
                self._degrade(e)
        with _MEMORY_LOCK:
            for k in keys:
                _MEMORY.pop(k, None)

    def undo(self, records: Sequence[Record]) -> None:
        """Take back the attempt begin() counted (the handler did not fail: the stage stopped or waits)."""
        keys = [k for k in (self._key(r) for r in records) if k in self._inflight]
        if not keys:
            return
        self._inflight.difference_update(keys)
        if self._conn is not None:
            try:
                self._write(lambda c: (c.executemany(_UNDO, keys), c.execute(_DROP_ZERO)))
                return
            except sqlite3.Error as e:
                self._degrade(e)
        with _MEMORY_LOCK:
            for k in keys:
                old = _MEMORY.get(k)
                if old is not None:
                    if old[1] <= 1:
                        del _MEMORY[k]
                    else:
                        _MEMORY[k] = (old[0], old[1] - 1)

    def _write(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        c = self._conn
        assert c is not None
        c.execute("BEGIN IMMEDIATE")
        try:
            fn(c)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
