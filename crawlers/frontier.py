"""The crawl frontier of each source, in ``crawl_state.db``, so that it survives ``kill -9``.

Two tables per source:

* ``frontier_seen`` — fingerprints of every request scheduled in the current crawl
  (Scrapy's duplicate filter, made durable);
* ``frontier_pending`` — every request scheduled and not yet finished, serialised.
  A request is written when it is scheduled (in the same transaction as its
  fingerprint) and deleted only when Scrapy is done with it: its response went
  through the callback and every item from it through the pipeline (which makes
  the post durable and marks it seen first), or its failure through the errback,
  or it was replaced by a retry or a redirect (written before the original is
  deleted). So a request popped from the queue and in flight at the kill is still
  in the table.

A crawl that finishes clears both tables for its source. A crawl that does not
(killed, stopped, timed out) leaves them, and the next crawl of that source starts
with the fingerprints loaded and every pending request queued again: the pages
in flight at the kill are fetched again (their posts, if already sent, are
"unchanged" to the seen-state), the pages already done are not.

Commits use ``synchronous=NORMAL`` in WAL mode: durable against the process being
killed (what this is for); a power cut may lose the last few transactions, which
only means those pages are fetched again.

:class:`DurableScheduler` is Scrapy's scheduler with this journal (setting
``SCHEDULER``); :class:`FrontierCrawler` is the crawler whose engine tells the
scheduler when a request is finished (Scrapy has no public signal for "the
response and everything it produced is processed"; the hook is the engine's
``_remove_request``, checked at start so a Scrapy upgrade that renames it fails
loudly instead of silently losing the in-flight pages).
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

from scrapy import Request, Spider
from scrapy.core.engine import ExecutionEngine
from scrapy.core.scheduler import Scheduler
from scrapy.crawler import Crawler
from scrapy.dupefilters import BaseDupeFilter
from scrapy.utils.misc import load_object
from scrapy.utils.request import request_from_dict

log = logging.getLogger("yuqing.crawlers")

META_ID = "yuqing_frontier_id"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS frontier_pending (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id TEXT NOT NULL,
        rid TEXT NOT NULL UNIQUE,
        request BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS frontier_pending_by_source ON frontier_pending(source_id, seq)",
    """CREATE TABLE IF NOT EXISTS frontier_seen (
        source_id TEXT NOT NULL,
        fp BLOB NOT NULL,
        PRIMARY KEY (source_id, fp)
    ) WITHOUT ROWID""",
)


class FrontierStore:
    """One source's frontier rows in ``crawl_state.db``."""

    def __init__(self, path: Path | str, source_id: str) -> None:
        self.source_id = source_id
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._conn:
            for stmt in _SCHEMA:
                self._conn.execute(stmt)

    def seen(self) -> set[bytes]:
        with self._lock:
            rows = self._conn.execute("SELECT fp FROM frontier_seen WHERE source_id=?", (self.source_id,))
            return {bytes(r[0]) for r in rows}

    def pending(self) -> list[bytes]:
        """Serialised requests not finished, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT request FROM frontier_pending WHERE source_id=? ORDER BY seq",
                                      (self.source_id,))
            return [bytes(r[0]) for r in rows]

    def add(self, rid: str, fp: bytes, request: bytes | None) -> None:
        """A request scheduled: its fingerprint is seen and, when it could be serialised, it is pending."""
        with self._lock, self._conn:
            self._conn.execute("INSERT OR IGNORE INTO frontier_seen(source_id, fp) VALUES (?, ?)",
                               (self.source_id, fp))
            if request is not None:
                self._conn.execute("INSERT OR REPLACE INTO frontier_pending(source_id, rid, request) VALUES (?, ?, ?)",
                                   (self.source_id, rid, request))

    def done(self, rid: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM frontier_pending WHERE rid=?", (rid,))

    def clear(self) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM frontier_pending WHERE source_id=?", (self.source_id,))
            self._conn.execute("DELETE FROM frontier_seen WHERE source_id=?", (self.source_id,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def pending_count(path: Path | str, source_id: str) -> int:
    """How many requests of ``source_id`` a killed or stopped crawl left unfinished."""
    if not Path(path).exists():
        return 0
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        row = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='frontier_pending'").fetchone()
        if not row[0]:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM frontier_pending WHERE source_id=?", (source_id,)).fetchone()[0])
    finally:
        conn.close()


class DurableScheduler(Scheduler):
    """Scrapy's scheduler (memory queues) with the frontier journalled in ``crawl_state.db``.

    Settings: ``YUQING_STATE_PATH`` (the state DB; without it this is a plain in-memory
    scheduler with a duplicate filter) and ``YUQING_SOURCE_ID``.
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DurableScheduler:
        s = crawler.settings
        sched = cls(
            dupefilter=BaseDupeFilter(),  # duplicates are filtered here, against the durable set
            jobdir=None,
            dqclass=None,
            mqclass=load_object(s["SCHEDULER_MEMORY_QUEUE"]),
            logunser=s.getbool("SCHEDULER_DEBUG"),
            stats=crawler.stats,
            pqclass=load_object(s["SCHEDULER_PRIORITY_QUEUE"]),
            crawler=crawler,
        )
        sched.state_path = s.get("YUQING_STATE_PATH")
        sched.source_id = s.get("YUQING_SOURCE_ID") or ""
        return sched

    state_path: str | None = None
    source_id: str = ""
    store: FrontierStore | None = None

    def open(self, spider: Spider) -> Any:
        result = super().open(spider)
        self._seen: set[bytes] = set()
        self._warned_unserializable = False
        if self.state_path:
            self.store = FrontierStore(self.state_path, self.source_id or spider.name)
            self._seen = self.store.seen()
            resumed = 0
            for blob in self.store.pending():
                try:
                    request = request_from_dict(pickle.loads(blob), spider=spider)  # noqa: S301 - our own DB
                except Exception:  # noqa: BLE001 - a row from another code version: drop it, say so
                    log.warning("信息源 %s 的一个待抓取请求无法恢复，已跳过", self.source_id, exc_info=True)
                    continue
                self._mqpush(request)
                resumed += 1
            if resumed:
                log.info("信息源 %s 上次抓取未完成，恢复 %d 个待抓取请求", self.source_id, resumed)
                if self.stats is not None:
                    self.stats.set_value("yuqing/frontier_resumed", resumed)
        return result

    def enqueue_request(self, request: Request) -> bool:
        assert self.crawler is not None and self.stats is not None
        fp = self.crawler.request_fingerprinter.fingerprint(request)
        if not request.dont_filter and fp in self._seen:
            self.stats.inc_value("scheduler/filtered")
            return False
        # A retry or redirect copies the meta of the request it replaces: give it its own id,
        # so finishing the replaced one does not delete it.
        rid = uuid.uuid4().hex
        request.meta[META_ID] = rid
        if self.store is not None:
            self.store.add(rid, fp, self._serialise(request))
        self._seen.add(fp)
        self._mqpush(request)
        self.stats.inc_value("scheduler/enqueued/memory")
        self.stats.inc_value("scheduler/enqueued")
        return True

    def _serialise(self, request: Request) -> bytes | None:
        try:
            return pickle.dumps(request.to_dict(spider=self.spider), protocol=4)
        except Exception as e:  # noqa: BLE001 - a callback that is not a spider method, an unpicklable meta
            assert self.stats is not None
            self.stats.inc_value("scheduler/unserializable")
            if not self._warned_unserializable:
                self._warned_unserializable = True
                log.warning("请求无法持久化（中断后不能恢复）：%s（%s）", request, e)
            return None

    def request_done(self, request: Request) -> None:
        """The engine is done with ``request`` (see :class:`FrontierEngine`)."""
        rid = request.meta.get(META_ID)
        if self.store is not None and rid:
            self.store.done(rid)

    def close(self, reason: str) -> Any:
        try:
            if self.store is not None:
                if reason == "finished":
                    self.store.clear()  # nothing pending: the next crawl starts afresh
                else:
                    log.info("信息源 %s 的抓取未完成（%s），待抓取请求已保存，下次继续", self.source_id, reason)
                self.store.close()
                self.store = None
        finally:
            result = super().close(reason)
        return result


class FrontierEngine(ExecutionEngine):
    """Scrapy's engine, telling the scheduler when a request is finished."""

    def _remove_request(self, _: Any, request: Request) -> None:
        try:
            sched = self._slot.scheduler if self._slot is not None else None
            done = getattr(sched, "request_done", None)
            if done is not None:
                done(request)
        except Exception:  # noqa: BLE001 - bookkeeping: worst case the page is fetched again
            log.exception("记录请求完成失败：%s", request)
        super()._remove_request(_, request)


if not callable(getattr(ExecutionEngine, "_remove_request", None)):  # pragma: no cover - Scrapy changed
    raise ImportError("scrapy.core.engine.ExecutionEngine._remove_request is gone: crawlers.frontier needs a new hook")


class FrontierCrawler(Crawler):
    """A Crawler whose engine is :class:`FrontierEngine`."""

    def _create_engine(self) -> ExecutionEngine:
        return FrontierEngine(self, lambda _: self.stop_async())
