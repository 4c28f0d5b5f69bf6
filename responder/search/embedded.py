"""Embedded full-text search: SQLite FTS5 over segmented text (:mod:`segment`).

Two tables in one SQLite file:

* ``posts``: the documents as given (readable text, filters, times);
* ``posts_fts``: an FTS5 table whose columns hold the space-joined search-mode
  tokens of the title and the text (:func:`segment.segment`), tokenised by
  ``unicode61`` on those spaces; its rowid is ``posts.id``.

Ranking is FTS5's ``bm25`` (title weighted double), filters are plain SQL on
``posts``, facets are ``GROUP BY`` over the same matching set and snippets are
cut from the readable original by :func:`segment.snippet`.

Several processes may open the same file: WAL journal, a generous
``busy_timeout`` and one short ``BEGIN IMMEDIATE`` transaction per write.

The ``meta`` table records which segmenter cut the indexed text. A file cut
by another one is re-segmented from its own ``posts`` table when it is
opened, in short transactions that resume after a crash, so queries and the
index always cut text the same way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from responder.search import segment as seg
from responder.search.base import (
    FACET_FIELDS,
    PostDoc,
    SearchHit,
    SearchQuery,
    SearchResult,
    as_values,
)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCHEMA_VERSION = "1"
_RESEGMENT_CHUNK = 2000  # posts per write transaction: other processes wait at most ~1 s

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    post_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    source_id TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    url TEXT NOT NULL,
    published_at TEXT NOT NULL,      -- ISO 8601 with the offset it came with
    published_us INTEGER NOT NULL,   -- UTC epoch microseconds: filters and sorting
    place_code TEXT,
    place_label TEXT NOT NULL,
    topic TEXT,
    severity TEXT,
    event_id INTEGER
);
CREATE INDEX IF NOT EXISTS posts_published ON posts (published_us);
CREATE INDEX IF NOT EXISTS posts_place ON posts (place_code);
CREATE INDEX IF NOT EXISTS posts_event ON posts (event_id);
CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5 (
    title_seg, text_seg, tokenize = 'unicode61 remove_diacritics 0'
);
"""

_COLUMNS = (
    "post_id, title, text, source_id, source_kind, url, published_at, published_us, "
    "place_code, place_label, topic, severity, event_id"
)
# bm25 weights per FTS column: a word in the title counts double.
_BM25 = "bm25(posts_fts, 2.0, 1.0)"


def _epoch_us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _put_fts(db: sqlite3.Connection, rowid: int, title_seg: str, text_seg: str) -> None:
    db.execute("DELETE FROM posts_fts WHERE rowid = ?", (rowid,))
    db.execute("INSERT INTO posts_fts (rowid, title_seg, text_seg) VALUES (?, ?, ?)", (rowid, title_seg, text_seg))


def _put_segmenter(db: sqlite3.Connection) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('segmenter', ?)", (seg.SEGMENTER,))


def _row_values(d: PostDoc) -> tuple[Any, ...]:
    return (
        d.post_id,
        d.title,
        d.text,
        d.source_id,
        d.source_kind,
        d.url,
        d.published_at.isoformat(),
        _epoch_us(d.published_at),
        d.place_code,
        d.place_label,
        d.topic,
        d.severity,
        d.event_id,
    )


class EmbeddedSearch:
    """:class:`~responder.search.base.SearchBackend` on one SQLite file."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL never corrupts; a power cut may drop the last commits,
        # which the stage replays (the index is derived from the stream).
        self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._write():
                # One statement at a time: executescript() would commit the
                # IMMEDIATE transaction that serialises concurrent start-ups.
                for stmt in _SCHEMA.split(";\n"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (SCHEMA_VERSION,),
                )
        except sqlite3.OperationalError as e:
            if "fts5" in str(e):
                raise RuntimeError(f"this SQLite ({sqlite3.sqlite_version}) has no FTS5: {e}") from e
            raise
        self._ensure_segmenter()

    def _ensure_segmenter(self) -> None:
        """Re-segment every post if the index was cut by another segmenter."""
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'segmenter'").fetchone()
        if row is not None and row["value"] == seg.SEGMENTER:
            return
        done = 0
        while True:
            with self._write() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'segmenter'").fetchone()
                if row is not None and row["value"] == seg.SEGMENTER:
                    break  # finished (by us or by another process)
                # The progress key is the last rowid re-cut: a crash resumes after it.
                mark = db.execute("SELECT value FROM meta WHERE key = 'resegmented_upto'").fetchone()
                upto = int(mark["value"]) if mark is not None else 0
                rows = db.execute(
                    "SELECT id, title, text FROM posts WHERE id > ? ORDER BY id LIMIT ?",
                    (upto, _RESEGMENT_CHUNK),
                ).fetchall()
                for r in rows:
                    _put_fts(db, r["id"], seg.segment(r["title"]), seg.segment(r["text"]))
                if rows:
                    db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('resegmented_upto', ?)",
                        (str(rows[-1]["id"]),),
                    )
                    done += len(rows)
                    continue
                db.execute("DELETE FROM meta WHERE key = 'resegmented_upto'")
                _put_segmenter(db)
                break
        if done:
            log.info("search index %s: %d posts re-segmented with %s", self.path, done, seg.SEGMENTER)

    def record_segmenter(self) -> None:
        """The text is cut by the current segmenter (already so once this index is open)."""
        with self._write() as db:
            _put_segmenter(db)

    # -- transactions -------------------------------------------------------

    class _Tx:
        def __init__(self, owner: EmbeddedSearch, begin: str) -> None:
            self.owner, self.begin = owner, begin

        def __enter__(self) -> sqlite3.Connection:
            self.owner._lock.acquire()
            try:
                self.owner._db.execute(self.begin)
            except BaseException:
                self.owner._lock.release()
                raise
            return self.owner._db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                self.owner._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.owner._lock.release()

    def _write(self) -> EmbeddedSearch._Tx:
        return self._Tx(self, "BEGIN IMMEDIATE")

    def _read(self) -> EmbeddedSearch._Tx:
        # A deferred transaction reads one WAL snapshot: count, facets and the
        # page agree even while another process writes.
        return self._Tx(self, "BEGIN")

    # -- SearchBackend ------------------------------------------------------

    def index(self, docs: Sequence[PostDoc]) -> None:
        latest: dict[str, PostDoc] = {}
        for d in docs:  # the last version of a post in the batch wins
            latest[d.post_id] = d
        if not latest:
            return
        # Segment outside the write lock, and only what changed: a replayed
        # batch costs one SELECT per post.
        stored = self._stored_content(list(latest))
        segs: dict[str, tuple[str, str]] = {
            pid: (seg.segment(d.title), seg.segment(d.text))
            for pid, d in latest.items()
            if stored.get(pid) != (d.title, d.text)
        }
        placeholders = ", ".join("?" * 13)
        updates = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _COLUMNS.split(",")[1:])
        with self._write() as db:
            for pid, d in latest.items():
                old = db.execute("SELECT id, title, text FROM posts WHERE post_id = ?", (pid,)).fetchone()
                rowid = db.execute(
                    f"INSERT INTO posts ({_COLUMNS}) VALUES ({placeholders}) "
                    f"ON CONFLICT (post_id) DO UPDATE SET {updates} RETURNING id",
                    _row_values(d),
                ).fetchone()[0]
                if old is not None and (old["title"], old["text"]) == (d.title, d.text):
                    continue  # same words: the FTS row stands
                title_seg, text_seg = segs.get(pid) or (seg.segment(d.title), seg.segment(d.text))
                _put_fts(db, rowid, title_seg, text_seg)

    def _stored_content(self, post_ids: list[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        with self._read() as db:
            for i in range(0, len(post_ids), 500):
                chunk = post_ids[i : i + 500]
                rows = db.execute(
                    f"SELECT post_id, title, text FROM posts WHERE post_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                out.update({r["post_id"]: (r["title"], r["text"]) for r in rows})
        return out

    def delete(self, post_id: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT id FROM posts WHERE post_id = ?", (post_id,)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM posts_fts WHERE rowid = ?", (row["id"],))
            db.execute("DELETE FROM posts WHERE id = ?", (row["id"],))

    def get(self, post_id: str) -> PostDoc | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM posts WHERE post_id = ?", (post_id,)).fetchone()
        return PostDoc.from_stored(row) if row is not None else None

    def count(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT count(*) FROM posts").fetchone()[0])

    def search(self, q: SearchQuery) -> SearchResult:
        terms = seg.query_terms(q.text)
        where: list[str] = []
        params: list[Any] = []
        if terms:
            source = "posts_fts JOIN posts p ON p.id = posts_fts.rowid"
            where.append("posts_fts MATCH ?")
            # Quoted strings: tokens are letters/digits only, so no escaping.
            params.append(" ".join(f'"{t}"' for t in terms))
        else:
            source = "posts p"
        if q.place_code is not None:
            lo = q.place_code
            hi = lo[:-1] + chr(ord(lo[-1]) + 1)  # "34" → ["34", "35"): uses the index
            where.append("p.place_code >= ? AND p.place_code < ?")
            params += [lo, hi]
        if q.scope is not None and not q.scope.everything:
            if q.scope.prefix:
                lo = q.scope.prefix
                placed = "(p.place_code >= ? AND p.place_code < ?)"
                params += [lo, lo[:-1] + chr(ord(lo[-1]) + 1)]
            else:
                placed = "p.place_code IS NOT NULL"
            where.append(f"({placed} OR p.place_code IS NULL)" if q.scope.unplaced else placed)
        for column, value in (("source_kind", q.source_kind), ("topic", q.topic), ("severity", q.severity)):
            values = as_values(value)
            if values:
                where.append(f"p.{column} IN ({', '.join('?' * len(values))})")
                params += values
        if q.event_id is not None:
            where.append("p.event_id = ?")
            params.append(q.event_id)
        if q.published_from is not None:
            where.append("p.published_us >= ?")
            params.append(_epoch_us(q.published_from))
        if q.published_to is not None:
            where.append("p.published_us < ?")
            params.append(_epoch_us(q.published_to))
        cond = " AND ".join(where) or "1"

        score = f"-{_BM25}" if terms else "0.0"
        if q.sort == "time_asc":
            order = "p.published_us ASC, p.post_id ASC"
        elif q.sort == "time" or not terms:
            order = "p.published_us DESC, p.post_id ASC"
        else:
            order = "score DESC, p.published_us DESC, p.post_id ASC"

        with self._read() as db:
            total = int(db.execute(f"SELECT count(*) FROM {source} WHERE {cond}", params).fetchone()[0])
            facets: dict[str, dict[str, int]] = {}
            for f in FACET_FIELDS:
                rows = db.execute(
                    f"SELECT p.{f} AS v, count(*) AS n FROM {source} WHERE {cond} AND p.{f} IS NOT NULL "
                    "GROUP BY p.{f} ORDER BY n DESC, v ASC".replace("{f}", f),
                    params,
                ).fetchall()
                facets[f] = {r["v"]: int(r["n"]) for r in rows}
            rows = (
                db.execute(
                    f"SELECT {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))}, {score} AS score "
                    f"FROM {source} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
                    [*params, q.limit, q.offset],
                ).fetchall()
                if q.limit > 0
                else []
            )
        hits = [
            SearchHit(
                post_id=r["post_id"],
                score=float(r["score"]),
                title=r["title"],
                title_html=seg.highlight(r["title"], terms),
                snippet=seg.snippet(r["text"], terms),
                published_at=datetime.fromisoformat(r["published_at"]),
                source_id=r["source_id"],
                source_kind=r["source_kind"],
                url=r["url"],
                place_code=r["place_code"],
                place_label=r["place_label"],
                topic=r["topic"],
                severity=r["severity"],
                event_id=r["event_id"],
            )
            for r in rows
        ]
        return SearchResult(total=total, hits=hits, facets=facets)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.ProgrammingError:
                pass

    def __enter__(self) -> EmbeddedSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
