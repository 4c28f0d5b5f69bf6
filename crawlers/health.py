"""Crawl health per source, persisted in ``crawl_state.db``.

After each crawl the runner calls :func:`record_crawl` with the crawl's report
and Scrapy stats; :func:`source_health` turns the stored rows into
:class:`stream.contracts.CrawlHealth` messages (``yuqing crawl-health``), and
the crawler stage sends the ones that need attention to ``crawl.health``.

States: ``ok``; ``failing`` (the last crawl failed, not dark yet); ``blocked``
(HTTP 418/403 or a captcha page in the last crawl); ``cookie_expired`` (the
site asked for a login); ``dark`` (see below); ``never`` (never crawled).

Pages that no encoding decodes cleanly are refused by the spider (never sent on as
mojibake) and counted per source: ``encoding_failed`` (last crawl) in the message and
the table, the total and the last such URL in the reason. They do not change the state.

Two clocks per source: ``dark_s``, since the last successful crawl, and ``lag_s``,
since the newest item the source showed (its publication time, whether the item was
new or already seen; never later than the fetch). "Dark" means the office is blind to
the source, which happens two ways:

1. No successful crawl for longer than ``dark_after_min`` (default 60): the site is
   down, blocks us, or the crawler is broken. Measured from the last success, not from
   the newest item: a quiet source (a county message board posting twice a week) that
   is crawled fine has a large lag and nothing wrong.
2. Optional ``max_lag_min``: crawls succeed, yet the newest item is older than that — a
   list page served from a stale cache, selectors that no longer match, an API that
   answers "ok" with nothing. Only the operator knows which sources are busy enough for
   silence to be a fault (a city's Weibo search, a portal's local news), so it is set
   per source and off by default.

Both thresholds should stay well under the 5 h clock: an item published at the start
of a dark spell has used that much of its 5 hours when it is finally found. A dark
spell is alerted once (``mark_dark_alerted``) and re-armed when the source is no longer
dark (``clear_dark_alerted``).
"""

from __future__ import annotations

import logging
import sqlite3
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawlers.pipelines import STATE_FILE
from stream.contracts import SHANGHAI, CrawlHealth

if TYPE_CHECKING:
    from crawlers.sources import Source
    from yuqing.settings import Settings

log = logging.getLogger("yuqing.crawlers")

_SCHEMA = """CREATE TABLE IF NOT EXISTS health (
    source_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    last_attempt_at TEXT,
    last_success_at TEXT,
    newest_item_at TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    alerted_dark_at TEXT,
    encoding_failed INTEGER NOT NULL DEFAULT 0,
    encoding_failed_total INTEGER NOT NULL DEFAULT 0,
    encoding_failed_url TEXT
)"""
# Columns added after the first release: (name, definition), added to an older file on open.
_ADDED = (("encoding_failed", "INTEGER NOT NULL DEFAULT 0"), ("encoding_failed_total", "INTEGER NOT NULL DEFAULT 0"),
          ("encoding_failed_url", "TEXT"))
# Pages and errors are kept as an exponentially weighted sum over crawls, so the
# error rate follows recent crawls without keeping each one.
_DECAY = 0.8


def _connect(path: Path | str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(_SCHEMA)
    have = {r[1] for r in conn.execute("PRAGMA table_info(health)")}
    for name, definition in _ADDED:
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE health ADD COLUMN {name} {definition}")
            except sqlite3.OperationalError as e:  # another process added it first
                if "duplicate column" not in str(e):
                    raise
    return conn


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def crawl_state(stats: dict[str, Any], failed: bool) -> tuple[str, str]:
    """State and reason of one crawl from its Scrapy stats."""
    if stats.get("yuqing/blocked"):
        return "blocked", str(stats.get("yuqing/blocked_reason") or "被网站拦截")
    if stats.get("yuqing/cookie_expired"):
        return "cookie_expired", "网站要求登录（Cookie 失效）"
    if failed:
        return "failing", "本轮抓取失败"
    return "ok", ""


def record_crawl(state_path: Path | str, source_id: str, *, started: datetime, finished: datetime,
                 pages: int, errors: int, failed: bool, stats: dict[str, Any]) -> str:
    """Update the source's health row after a crawl; return its state.

    Pages refused because no encoding decodes them (``yuqing/encoding_failed``, see
    ``SourceSpider.fix_encoding``) are kept per crawl and in total, with the last one's URL."""
    state, reason = crawl_state(stats, failed)
    newest = stats.get("yuqing/newest_item_at")
    enc_failed = int(stats.get("yuqing/encoding_failed", 0))
    enc_url = stats.get("yuqing/encoding_failed_url") if enc_failed else None
    conn = _connect(state_path)
    try:
        with conn:
            row = conn.execute("SELECT last_success_at, newest_item_at, consecutive_failures, pages, errors"
                               " FROM health WHERE source_id=?", (source_id,)).fetchone()
            last_ok, old_newest, fails, old_pages, old_errors = row or (None, None, 0, 0, 0)
            if state == "ok":
                last_ok, fails = finished.isoformat(), 0
            else:
                fails += 1
            if newest and (old_newest is None or newest > old_newest):
                old_newest = newest
            conn.execute(
                "INSERT INTO health(source_id, state, reason, last_attempt_at, last_success_at, newest_item_at,"
                " consecutive_failures, pages, errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(source_id) DO UPDATE SET state=excluded.state, reason=excluded.reason,"
                " last_attempt_at=excluded.last_attempt_at, last_success_at=excluded.last_success_at,"
                " newest_item_at=excluded.newest_item_at, consecutive_failures=excluded.consecutive_failures,"
                " pages=excluded.pages, errors=excluded.errors",
                (source_id, state, reason, started.isoformat(), last_ok, old_newest, fails,
                 old_pages * _DECAY + pages, old_errors * _DECAY + errors),
            )
            conn.execute("UPDATE health SET encoding_failed=?, encoding_failed_total=encoding_failed_total+?,"
                         " encoding_failed_url=COALESCE(?, encoding_failed_url) WHERE source_id=?",
                         (enc_failed, enc_failed, enc_url, source_id))
    finally:
        conn.close()
    return state


def health_of(state_path: Path | str, source: Source, now: datetime | None = None,
              dark_after_s: float | None = None) -> CrawlHealth:
    now = now or datetime.now(SHANGHAI)
    limit = dark_after_s if dark_after_s is not None else source.dark_after_min * 60
    conn = _connect(state_path)
    try:
        row = conn.execute("SELECT state, reason, last_attempt_at, last_success_at, newest_item_at, pages, errors,"
                           " encoding_failed, encoding_failed_total, encoding_failed_url"
                           " FROM health WHERE source_id=?", (source.id,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return CrawlHealth(source_id=source.id, source_name=source.name, state="never", checked_at=now,
                           reason="尚未抓取")
    state, reason, attempt, ok_at, newest, pages, errors, enc_failed, enc_total, enc_url = row
    last_ok, newest_at = _dt(ok_at), _dt(newest)
    dark_s = (now - last_ok).total_seconds() if last_ok else None
    since = last_ok or _dt(attempt)
    alert = False
    lag_s = (now - newest_at).total_seconds() if newest_at else None
    if state != "ok" and since is not None and (now - since).total_seconds() > limit:
        state, alert = "dark", True
        reason = f"已 {int((now - since).total_seconds() // 60)} 分钟没有成功抓取（{reason or '原因不明'}）"
    elif (state == "ok" and source.max_lag_min is not None and lag_s is not None
          and lag_s > source.max_lag_min * 60):
        state, alert = "dark", True
        reason = (f"抓取正常，但已 {int(lag_s // 60)} 分钟没有新内容（最新一条发布于 "
                  f"{newest_at.astimezone(SHANGHAI):%m-%d %H:%M}，超过 {source.max_lag_min:g} 分钟的上限），"  # type: ignore[union-attr]
                  "请检查页面是否改版或被缓存")
    if enc_failed:
        note = (f"最近一轮有 {enc_failed} 个页面无法识别编码，未作为帖子发出（累计 {enc_total} 个，"
                f"最近一个：{enc_url}）")
        reason = f"{reason}；{note}" if reason else note
    return CrawlHealth(
        source_id=source.id, source_name=source.name, state=state, checked_at=now,
        last_success_at=last_ok, last_attempt_at=_dt(attempt), newest_item_at=newest_at,
        lag_s=lag_s, dark_s=dark_s,
        error_rate=round(errors / pages, 3) if pages else (1.0 if errors else 0.0),
        reason=reason, alert=alert or state in ("blocked", "cookie_expired"), encoding_failed=enc_failed,
    )


def source_health(settings: Settings, *, dark_after_s: float | None = None,
                  now: datetime | None = None) -> list[CrawlHealth]:
    from crawlers.sources import load_sources

    path = settings.data_path(STATE_FILE)
    return [health_of(path, s, now, dark_after_s) for s in load_sources(settings) if s.enabled]


def mark_dark_alerted(state_path: Path | str, source_id: str, now: datetime) -> bool:
    """Remember that this dark spell was reported; False if it already was."""
    conn = _connect(state_path)
    try:
        with conn:
            cur = conn.execute("UPDATE health SET alerted_dark_at=? WHERE source_id=? AND alerted_dark_at IS NULL",
                               (now.isoformat(), source_id))
            return cur.rowcount > 0
    finally:
        conn.close()


def clear_dark_alerted(state_path: Path | str, source_id: str) -> bool:
    """The source is not dark (any more): the next dark spell is alerted again."""
    conn = _connect(state_path)
    try:
        with conn:
            cur = conn.execute("UPDATE health SET alerted_dark_at=NULL WHERE source_id=? AND alerted_dark_at IS NOT NULL",
                               (source_id,))
            return cur.rowcount > 0
    finally:
        conn.close()


_STATE_CN = {"ok": "正常", "failing": "失败", "blocked": "被拦截", "cookie_expired": "Cookie失效", "dark": "失联",
             "never": "未抓取"}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m = int(seconds // 60)
    return f"{m // 60}小时{m % 60}分" if m >= 60 else f"{m}分"


def health_table(rows: list[CrawlHealth]) -> str:
    head = ("信息源", "状态", "上次成功", "距最新内容", "错误率", "编码失败", "说明")
    lines = [head]
    for r in rows:
        lines.append((r.source_id, _STATE_CN.get(r.state, r.state) + (" ⚠" if r.alert else ""),
                      r.last_success_at.strftime("%m-%d %H:%M") if r.last_success_at else "-",
                      _ago(r.lag_s), f"{r.error_rate:.0%}", str(r.encoding_failed or 0), r.reason))
    widths = [max(_width(x[i]) for x in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c + " " * (w - _width(c)) for c, w in zip(x[:-1], widths, strict=True)) + "  " + x[-1]
                     for x in lines)


def _width(s: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
