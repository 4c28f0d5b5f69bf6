"""Item pipeline: item → validated RawPost → ``posts.raw``, at least once, without repeats.

* Each item is validated as a :class:`stream.contracts.RawPost`; a bad one is
  dropped with the reason in the log and counted (``yuqing/rejected``); the
  crawl goes on.
* Text over ``limits.max_text_chars`` (or too long for the message, assessed,
  to fit ``limits.max_message_bytes``) is cut before it is sent: the post
  records its original length (``text_length``), the full text stays in the
  seen-state (``full_texts``, compressed; :meth:`SeenState.full_text`), and
  the crawl counts it (``yuqing/truncated``). A post still too large (a
  huge title) is dropped like a bad one.
* A persistent seen-state (``crawl_state.db`` in the data dir: post_id →
  hash of what was sent) skips posts sent before unchanged, also across
  restarts. A changed hash (edited text, new counts) sends the same
  ``post_id`` again as an update.
* Messages are keyed by post_id and flushed at the end of each crawl (and
  every ``FLUSH_EVERY`` posts); a post is marked seen only after the flush
  succeeded, so a crash or a failed flush means it is sent again next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from crawlers.items import RAW_POST_FIELDS
from stream.contracts import ASSESSMENT_RESERVE_BYTES, SHANGHAI, ContractError, RawPost, encode, fit_text
from stream.transport import record_bytes
from yuqing.settings import LimitsSettings

log = logging.getLogger("yuqing.crawlers")

STATE_FILE = "crawl_state.db"
FLUSH_EVERY = 200

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS seen (
        post_id TEXT PRIMARY KEY,
        source_id TEXT NOT NULL,
        state_hash TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        emitted INTEGER NOT NULL,
        unchanged INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        finish_reason TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_source ON runs(source_id, id)",
    # The whole text of posts sent cut to the size limit (zlib of UTF-8).
    """CREATE TABLE IF NOT EXISTS full_texts (
        post_id TEXT PRIMARY KEY,
        source_id TEXT NOT NULL,
        length INTEGER NOT NULL,
        text_z BLOB NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)


def state_hash(post: RawPost) -> str:
    """What makes a post "changed": its content and counts, not when it was fetched.

    ``published_at`` is left out on purpose: a relative time ("5分钟前") read
    a minute later gives another value for the same post.
    """
    data = {
        "title": post.title,
        "text": post.text,
        "author": post.author,
        "url": post.url,
        "parent_id": post.parent_id,
        "engagement": post.engagement.model_dump(),
    }
    return hashlib.sha1(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class SeenState:
    """post_id → hash of the last version sent; one small SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            for stmt in _SCHEMA:
                self._conn.execute(stmt)

    def get(self, post_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT state_hash FROM seen WHERE post_id=?", (post_id,)).fetchone()
        return row[0] if row else None

    def mark(self, rows: dict[str, tuple[str, str]]) -> None:
        """``rows``: post_id → (source_id, state_hash); one transaction."""
        now = datetime.now(SHANGHAI).isoformat()
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO seen(post_id, source_id, state_hash, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(post_id) DO UPDATE SET state_hash=excluded.state_hash, updated_at=excluded.updated_at",
                [(pid, src, h, now) for pid, (src, h) in rows.items()],
            )

    def keep_full_text(self, post_id: str, source_id: str, text: str) -> None:
        """Keep the whole text of a post that is sent cut."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO full_texts(post_id, source_id, length, text_z, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(post_id) DO UPDATE SET length=excluded.length, text_z=excluded.text_z,"
                " updated_at=excluded.updated_at",
                (post_id, source_id, len(text), zlib.compress(text.encode("utf-8")),
                 datetime.now(SHANGHAI).isoformat()),
            )

    def full_text(self, post_id: str) -> str | None:
        """The whole text of a post that was sent cut (None if it was not)."""
        with self._lock:
            row = self._conn.execute("SELECT text_z FROM full_texts WHERE post_id=?", (post_id,)).fetchone()
        return zlib.decompress(row[0]).decode("utf-8") if row else None

    def count(self, source_id: str | None = None) -> int:
        with self._lock:
            if source_id is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0])
            return int(self._conn.execute("SELECT COUNT(*) FROM seen WHERE source_id=?", (source_id,)).fetchone()[0])

    def record_run(self, source_id: str, started_at: datetime, finished_at: datetime, emitted: int,
                   unchanged: int, rejected: int, errors: int, finish_reason: str) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO runs(source_id, started_at, finished_at, emitted, unchanged, rejected, errors,"
                " finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (source_id, started_at.isoformat(), finished_at.isoformat(), emitted, unchanged, rejected, errors,
                 finish_reason),
            )
            # Keep the last 200 runs per source.
            self._conn.execute(
                "DELETE FROM runs WHERE source_id=? AND id NOT IN"
                " (SELECT id FROM runs WHERE source_id=? ORDER BY id DESC LIMIT 200)",
                (source_id, source_id),
            )

    def last_runs(self, source_id: str, n: int = 10) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(
                "SELECT started_at, finished_at, emitted, unchanged, rejected, errors, finish_reason FROM runs"
                " WHERE source_id=? ORDER BY id DESC LIMIT ?", (source_id, n))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RawPostPipeline:
    """Validate, de-duplicate and send. Needs ``crawler.spider.ctx`` (a CrawlContext)."""

    def __init__(self, crawler: Crawler | None = None) -> None:
        self.crawler = crawler
        self.state: SeenState | None = None
        self.pending: dict[str, tuple[str, str]] = {}
        self.this_crawl: dict[str, str] = {}
        self.flush_every = FLUSH_EVERY
        if crawler is not None:
            self.flush_every = max(1, crawler.settings.getint("YUQING_FLUSH_EVERY", FLUSH_EVERY))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawPostPipeline:
        return cls(crawler)

    @property
    def ctx(self) -> Any:
        spider = self.crawler.spider if self.crawler is not None else None
        return getattr(spider, "ctx", None)

    def open_spider(self) -> None:
        if self.ctx is not None:
            self.state = SeenState(self.ctx.state_path)

    def _stats(self, key: str, n: int = 1) -> None:
        if self.crawler is not None and self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"yuqing/{key}", n)

    def process_item(self, item: Any) -> Any:
        fields = {k: item.get(k) for k in RAW_POST_FIELDS if item.get(k) is not None}
        where = item.get("url") or item.get("native_id") or "?"
        limits = getattr(self.ctx, "limits", None) or LimitsSettings()
        full_text: str | None = None
        try:
            post = RawPost.model_validate(fields)
            # Room for the post in its message, leaving the assessment's share.
            room = limits.max_message_bytes - ASSESSMENT_RESERVE_BYTES - record_bytes(b"", post.post_id.encode())
            fitted = fit_text(post, limits.max_text_chars, room)
            if fitted.truncated:
                full_text, post = post.text, fitted.post
            data = encode(post)
        except ValidationError as e:
            self._stats("rejected")
            reason = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:5])
            raise DropItem(f"不合格的内容 {where}：{reason}", log_level="WARNING") from None
        except ContractError as e:
            self._stats("rejected")
            raise DropItem(f"不合格的内容 {where}：{e}", log_level="WARNING") from None
        size = record_bytes(data, post.post_id.encode("utf-8"))
        if size > limits.max_message_bytes - ASSESSMENT_RESERVE_BYTES:
            self._stats("rejected")
            raise DropItem(f"内容过大 {where}：正文截短后仍有 {size} 字节（标题等字段过长）", log_level="WARNING")
        if full_text is not None:
            self._stats("truncated")
            log.info("内容 %s 正文过长（%d 字），发送前 %d 字", where, len(full_text), len(post.text))
        self._newest(post)
        h = state_hash(post)
        # The same post twice in one crawl (a Weibo original also embedded in
        # its reposts, a thread listed on two pages): handled once.
        if self.this_crawl.get(post.post_id) == h:
            self._stats("duplicate_in_crawl")
            return item
        self.this_crawl[post.post_id] = h
        ctx = self.ctx
        if ctx is None or self.state is None:
            return item  # validation only (e.g. ``scrapy parse`` while developing)
        if self.state.get(post.post_id) == h:
            self._stats("unchanged")
            return item
        if full_text is not None:
            self.state.keep_full_text(post.post_id, post.source_id, full_text)
        try:
            ctx.producer.send(ctx.topic, data, key=post.post_id.encode("ascii"))
        except Exception as e:  # noqa: BLE001 - the broker said no: retried next crawl
            self._stats("send_failed")
            raise DropItem(f"发送失败 {where}：{e}（下次抓取重发）", log_level="ERROR") from None
        self.pending[post.post_id] = (post.source_id, h)
        if len(self.pending) >= self.flush_every:
            self._flush()
        return item

    def _newest(self, post: RawPost) -> None:
        """Newest publication time seen in this crawl (for the source's lag in crawl health)."""
        if post.published_precision == "unknown" or self.crawler is None or self.crawler.stats is None:
            return
        # Never later than the fetch: one item with a wrong future date must not hide a stall.
        at = min(post.published_at, post.fetched_at).astimezone(SHANGHAI).isoformat()
        old = self.crawler.stats.get_value("yuqing/newest_item_at")
        if old is None or at > old:
            self.crawler.stats.set_value("yuqing/newest_item_at", at)

    def _flush(self) -> None:
        ctx = self.ctx
        if ctx is None or self.state is None or not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            ctx.producer.flush()
        except Exception:  # noqa: BLE001 - not durable: not marked, sent again next crawl
            log.exception("%d 条内容发送后未能确认写入，未标记为已见，下次抓取会重发", len(batch))
            self._stats("send_failed", len(batch))
            return
        self.state.mark(batch)
        self._stats("emitted", len(batch))

    def close_spider(self) -> None:
        try:
            self._flush()
        finally:
            if self.state is not None:
                self.state.close()
                self.state = None
