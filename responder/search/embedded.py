"""Embedded full-text search: a tantivy index over segmented text (:mod:`segment`),
beside a SQLite file that holds the posts as given.

* ``<name>`` (``search.db``), SQLite: ``posts`` (the readable documents,
  filters, times; what ``get`` returns and hits are shown from), ``meta``
  (which segmenter cut the index, progress of a rebuild) and ``pending``
  (posts written to SQLite whose tantivy document is not yet committed);
* ``<name>.tantivy/``: a tantivy (Lucene-like) index, one document per post:
  the jieba search-mode tokens of title and text (space-joined, split on
  spaces: the same tokens as the Elasticsearch backend indexes), the place's
  prefixes, kind/topic/severity as raw fast fields and the publication time as
  a fast integer. Matching, filters, totals, facets (one aggregation pass) and
  the sorted page all come from it; SQLite only fills in the page's rows.

Ranking is tantivy's BM25 (a word in the title counts double); equal scores
and equal times are ordered newest first, then by ``post_id``, exactly.

Writers: one at a time per index, whichever process. A write takes an
exclusive ``flock`` on ``<name>.lock`` (released by the kernel when its
process dies, so a killed indexer never blocks the next one), writes the rows
and their ids into ``pending`` in one SQLite transaction, then puts those
documents into tantivy, commits, and clears ``pending``. A crash in between
leaves ``pending`` rows, which the next write (or open) redoes. Readers (web
processes) open the same directory without a lock and reload it when its
``meta.json`` changes, so a write is visible to every process when it returns.

The tantivy index is rebuilt from ``posts`` on open when it is missing, was
cut by another segmenter, or the file is an older yuqing's SQLite FTS5 index
(whose ``posts_fts`` table is dropped once the rebuild is done). The rebuild
runs in chunks, each committed with its progress, so a crash resumes after
the last chunk.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tantivy

from responder.search import query as qlang
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
SCHEMA_VERSION = "2"
# What the tantivy directory holds; another value (or none) means rebuild it.
ENGINE = "tantivy-1"
_REBUILD_CHUNK = 5000  # posts per tantivy commit while rebuilding: other writers wait ~2 s at most
_WRITER_HEAP = 64_000_000
_FACET_SIZE = 65_535  # every value: facets are exact, as with SQL GROUP BY
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_FAST_I64_OFFSET = 2**63  # tantivy hands back an i64 sort value as its u64 encoding
_TIE_READ_CAP = 20_000  # most documents read to order one group of equal scores
_TIE_MARGIN = 32  # hits past the page fetched at first, to see where equal scores end
_FACET_AGGS = {f: {"terms": {"field": f, "size": _FACET_SIZE, "segment_size": _FACET_SIZE}} for f in FACET_FIELDS}

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
    published_us INTEGER NOT NULL,   -- UTC epoch microseconds
    place_code TEXT,
    place_label TEXT NOT NULL,
    topic TEXT,
    severity TEXT,
    event_id INTEGER
);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY)
"""

_COLUMNS = (
    "post_id, title, text, source_id, source_kind, url, published_at, published_us, "
    "place_code, place_label, topic, severity, event_id"
)
_COLUMN_NAMES = [c.strip() for c in _COLUMNS.split(",")]
# What the tantivy document is made of: a row differing in none of these keeps it.
_INDEXED = ("title", "text", "source_kind", "published_us", "place_code", "topic", "severity", "event_id")
_TITLE_BOOST = 2.0  # a word in the title counts double


def _epoch_us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


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


def _tantivy_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("rid", stored=True, indexed=True, fast=True)  # posts.id
    sb.add_integer_field("pub", stored=True, indexed=True, fast=True)  # published_us
    # Pre-segmented, lower-cased tokens: split on spaces only; no positions (no phrase queries).
    sb.add_text_field("title_seg", tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("text_seg", tokenizer_name="whitespace", index_option="freq")
    for f in FACET_FIELDS:
        sb.add_text_field(f, tokenizer_name="raw", fast=True, index_option="basic")
    # Every prefix of the place code, plus @placed / @none for the scope's 待定 rule.
    sb.add_text_field("place", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("event", indexed=True)
    return sb.build()


_PLACED, _UNPLACED = "@placed", "@none"
_NO_VALUE = "\x00"  # topic / severity of a document without one: never a facet bucket


def _place_tokens(code: str | None) -> list[str]:
    if code is None:
        return [_UNPLACED]
    return [_PLACED, *(code[:i] for i in range(1, len(code) + 1))]


class EmbeddedSearch:
    """:class:`~responder.search.base.SearchBackend` on one SQLite file and one tantivy directory."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._memory = str(path) == ":memory:"
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
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
        self._schema = _tantivy_schema()
        self.index_dir = None if self._memory else self.path.with_name(self.path.name + ".tantivy")
        self._lock_path = None if self._memory else self.path.with_name(self.path.name + ".lock")
        self._index: tantivy.Index | None = None
        self._meta_stamp: tuple[int, int, int] | None = None
        with self._tx("BEGIN IMMEDIATE") as db:
            # One statement at a time: executescript() would commit the transaction.
            for stmt in _SCHEMA.split(";\n"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        if self._needs_setup():
            with self._writing():
                self._open_index()
                self._apply_pending()
        else:
            # A reader (a web process) opens without waiting for the indexer's lock.
            self._index = tantivy.Index(self._schema, str(self.index_dir), reuse=True)
        self._ensure_built()

    def _needs_setup(self) -> bool:
        if self.index_dir is None or not (self.index_dir / "meta.json").exists():
            return True
        if self._meta("engine") not in (None, ENGINE):
            return True
        with self._read() as db:
            return db.execute("SELECT 1 FROM pending LIMIT 1").fetchone() is not None

    # -- plumbing -----------------------------------------------------------

    @contextmanager
    def _tx(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self) -> Any:
        # A deferred transaction reads one WAL snapshot.
        return self._tx("BEGIN")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The index's write lock: an exclusive flock, freed by the kernel if its holder dies."""
        with self._lock:
            if self._lock_path is None:
                yield
                return
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                deadline = time.monotonic() + self._busy_timeout_s
                delay = 0.002
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as e:
                        if e.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"全文索引 {self.path} 正被另一进程写入，等待超过 {self._busy_timeout_s:.0f} 秒") from e
                        time.sleep(delay)
                        delay = min(delay * 2, 0.05)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _open_index(self) -> None:
        """Open (or create) the tantivy directory; called with the write lock held."""
        if self.index_dir is None:
            self._index = tantivy.Index(self._schema)
            self._set_meta(engine=None, rebuilt_upto=None)
            return
        engine = self._meta("engine")
        if engine is not None and engine != ENGINE and self._meta("rebuilt_upto") is None:
            # Another layout: start over (the rows in posts rebuild it).
            shutil.rmtree(self.index_dir, ignore_errors=True)
            self._set_meta(engine=None)
        if not (self.index_dir / "meta.json").exists():
            # A new (or lost) directory: everything in posts goes in, from the start.
            self._set_meta(engine=None, rebuilt_upto=None)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(self._schema, str(self.index_dir), reuse=True)

    def _meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _set_meta(self, **values: str | None) -> None:
        with self._tx("BEGIN IMMEDIATE") as db:
            for k, v in values.items():
                if v is None:
                    db.execute("DELETE FROM meta WHERE key = ?", (k,))
                else:
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, v))

    def _built(self) -> bool:
        return self._meta("engine") == ENGINE and self._meta("segmenter") == seg.SEGMENTER

    # -- the tantivy side ---------------------------------------------------

    def _doc(self, row: sqlite3.Row, segs: tuple[str, str] | None) -> tantivy.Document:
        title_seg, text_seg = segs if segs is not None else (seg.segment(row["title"]), seg.segment(row["text"]))
        d = tantivy.Document()
        d.add_integer("rid", row["id"])
        d.add_integer("pub", row["published_us"])
        d.add_text("title_seg", title_seg)
        d.add_text("text_seg", text_seg)
        for f in FACET_FIELDS:
            # A value for every document: tantivy aggregates a dense column three times faster.
            d.add_text(f, row[f] if row[f] is not None else _NO_VALUE)
        for t in _place_tokens(row["place_code"]):
            d.add_text("place", t)
        if row["event_id"] is not None:
            d.add_integer("event", row["event_id"])
        return d

    def _put(self, rids: Sequence[int], segs: dict[int, tuple[str, tuple[str, str]]] | None = None) -> None:
        """Make the tantivy documents of ``rids`` what their rows say (gone for a deleted row).

        ``segs``: rid → (title + text it was cut from, its segments), to skip re-cutting.
        Called with the write lock held; commits.
        """
        if not rids:
            return
        assert self._index is not None
        rows: dict[int, sqlite3.Row] = {}
        with self._read() as db:
            for i in range(0, len(rids), 500):
                chunk = list(rids[i : i + 500])
                for r in db.execute(
                    f"SELECT id, {_COLUMNS} FROM posts WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                ):
                    rows[r["id"]] = r
        writer = self._index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        try:
            for rid in rids:
                writer.delete_documents_by_term("rid", rid)
                row = rows.get(rid)
                if row is None:
                    continue
                known = (segs or {}).get(rid)
                cut = known[1] if known is not None and known[0] == row["title"] + "\0" + row["text"] else None
                writer.add_document(self._doc(row, cut))
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            # Lets merges finish (they would be dropped with the writer) and frees tantivy's own lock.
            writer.wait_merging_threads()
        self._reload(force=True)

    def _apply_pending(self) -> None:
        """Redo what a writer that died between SQLite and tantivy left (write lock held)."""
        with self._read() as db:
            rids = [r[0] for r in db.execute("SELECT id FROM pending ORDER BY id")]
        if rids:
            log.info("search index %s: redoing %d documents a crashed writer left", self.path, len(rids))
            self._put(rids)
            self._clear_pending(rids)

    def _clear_pending(self, rids: Sequence[int]) -> None:
        with self._tx("BEGIN IMMEDIATE") as db:
            for i in range(0, len(rids), 500):
                chunk = list(rids[i : i + 500])
                db.execute(f"DELETE FROM pending WHERE id IN ({', '.join('?' * len(chunk))})", chunk)

    def _ensure_built(self) -> None:
        """Rebuild the tantivy index from ``posts`` when it is not (wholly) cut by this segmenter."""
        if self._built():
            return
        done = 0
        while True:
            with self._writing():
                if self._built():
                    break  # finished (by us or by another process)
                # The progress key is the last posts.id put: a crash resumes after it.
                upto = int(self._meta("rebuilt_upto") or 0)
                with self._read() as db:
                    rids = [
                        r[0]
                        for r in db.execute(
                            "SELECT id FROM posts WHERE id > ? ORDER BY id LIMIT ?", (upto, _REBUILD_CHUNK)
                        )
                    ]
                if rids:
                    self._put(rids)
                    self._set_meta(rebuilt_upto=str(rids[-1]))
                    done += len(rids)
                    continue
                with self._tx("BEGIN IMMEDIATE") as db:
                    # An older yuqing's FTS5 index: its table is no longer read.
                    db.execute("DROP TABLE IF EXISTS posts_fts")
                    for old_index in ("posts_published", "posts_place", "posts_event"):  # its SQL filters'
                        db.execute(f"DROP INDEX IF EXISTS {old_index}")
                    for k in ("rebuilt_upto", "resegmented_upto"):
                        db.execute("DELETE FROM meta WHERE key = ?", (k,))
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('engine', ?)", (ENGINE,))
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('segmenter', ?)", (seg.SEGMENTER,))
                break
        if done:
            log.info("search index %s: %d posts indexed into tantivy with %s", self.path, done, seg.SEGMENTER)

    def _reload(self, *, force: bool = False) -> None:
        """See the last commit of any process: reload when tantivy's meta.json changed."""
        assert self._index is not None
        if self.index_dir is None:
            self._index.reload()
            return
        try:
            st = os.stat(self.index_dir / "meta.json")
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if force or stamp != self._meta_stamp:
            for attempt in range(5):
                try:
                    self._index.reload()
                    break
                except ValueError:
                    # A writer removed a segment file between meta.json and its opening.
                    if attempt == 4:
                        raise
                    time.sleep(0.01)
            self._meta_stamp = stamp

    def record_segmenter(self) -> None:
        """The text is cut by the current segmenter (already so once this index is open)."""
        self._set_meta(segmenter=seg.SEGMENTER)

    # -- SearchBackend ------------------------------------------------------

    def index(self, docs: Sequence[PostDoc]) -> None:
        latest: dict[str, PostDoc] = {}
        for d in docs:  # the last version of a post in the batch wins
            latest[d.post_id] = d
        if not latest:
            return
        # Segment outside the write lock, and only what changed: a replayed
        # batch costs one SELECT per post.
        stored = self._stored(list(latest))
        changed = {pid: d for pid, d in latest.items() if stored.get(pid) != _indexed_values(d)}
        cut = {pid: (d.title + "\0" + d.text, (seg.segment(d.title), seg.segment(d.text))) for pid, d in changed.items()}
        placeholders = ", ".join("?" * len(_COLUMN_NAMES))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMN_NAMES[1:])
        with self._writing():
            rids: list[int] = []
            segs: dict[int, tuple[str, tuple[str, str]]] = {}
            with self._tx("BEGIN IMMEDIATE") as db:
                for pid, d in latest.items():
                    old = db.execute(
                        f"SELECT {', '.join(_INDEXED)} FROM posts WHERE post_id = ?", (pid,)
                    ).fetchone()
                    rid = db.execute(
                        f"INSERT INTO posts ({_COLUMNS}) VALUES ({placeholders}) "
                        f"ON CONFLICT (post_id) DO UPDATE SET {updates} RETURNING id",
                        _row_values(d),
                    ).fetchone()[0]
                    if old is not None and tuple(old) == _indexed_values(d):
                        continue  # the tantivy document stands
                    db.execute("INSERT OR IGNORE INTO pending (id) VALUES (?)", (rid,))
                    rids.append(rid)
                    if pid in cut:
                        segs[rid] = cut[pid]
            self._apply(rids, segs)

    def _apply(self, rids: list[int], segs: dict[int, tuple[str, tuple[str, str]]] | None = None) -> None:
        # Rows another writer left pending (it died) go along.
        with self._read() as db:
            left = [r[0] for r in db.execute("SELECT id FROM pending")]
        todo = sorted(set(rids) | set(left))
        self._put(todo, segs)
        self._clear_pending(todo)

    def _stored(self, post_ids: list[str]) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {}
        with self._read() as db:
            for i in range(0, len(post_ids), 500):
                chunk = post_ids[i : i + 500]
                rows = db.execute(
                    f"SELECT post_id, {', '.join(_INDEXED)} FROM posts "
                    f"WHERE post_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                out.update({r["post_id"]: tuple(r)[1:] for r in rows})
        return out

    def delete(self, post_id: str) -> None:
        with self._writing():
            with self._tx("BEGIN IMMEDIATE") as db:
                row = db.execute("SELECT id FROM posts WHERE post_id = ?", (post_id,)).fetchone()
                if row is None:
                    return
                db.execute("DELETE FROM posts WHERE id = ?", (row["id"],))
                db.execute("INSERT OR IGNORE INTO pending (id) VALUES (?)", (row["id"],))
            self._apply([row["id"]])

    def get(self, post_id: str) -> PostDoc | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM posts WHERE post_id = ?", (post_id,)).fetchone()
        return PostDoc.from_stored(row) if row is not None else None

    def count(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT count(*) FROM posts").fetchone()[0])

    # -- searching ----------------------------------------------------------

    def _word(self, w: str) -> tantivy.Query:
        # The word in the title or the text; both count when both hold it (most_fields).
        Q, Occur, s = tantivy.Query, tantivy.Occur, self._schema
        return Q.boolean_query(
            [
                (Occur.Should, Q.boost_query(Q.term_query(s, "title_seg", w, index_option="freq"), _TITLE_BOOST)),
                (Occur.Should, Q.term_query(s, "text_seg", w, index_option="freq")),
            ]
        )

    def _text(self, node: qlang.Node) -> tantivy.Query:
        """The query language's tree (:mod:`responder.search.query`) as a tantivy query.

        A boolean query of only MustNot clauses matches nothing in tantivy, so a
        NOT without a positive part is "everything but": all_query minus it."""
        Q, Occur = tantivy.Query, tantivy.Occur
        if isinstance(node, qlang.Term):
            if len(node.words) == 1:
                return self._word(node.words[0])
            return Q.boolean_query([(Occur.Must, self._word(w)) for w in node.words])
        if isinstance(node, qlang.Not):
            return Q.boolean_query([(Occur.Must, Q.all_query()), (Occur.MustNot, self._text(node.part))])
        if isinstance(node, qlang.Or):
            return Q.boolean_query([(Occur.Should, self._text(p)) for p in node.parts])
        clauses = [
            (Occur.MustNot, self._text(p.part)) if isinstance(p, qlang.Not) else (Occur.Must, self._text(p))
            for p in node.parts
        ]
        if all(occur == Occur.MustNot for occur, _q in clauses):
            clauses.append((Occur.Must, Q.const_score_query(Q.all_query(), 0.0)))
        return Q.boolean_query(clauses)

    def _query(self, q: SearchQuery, node: qlang.Node | None) -> tantivy.Query:
        s = self._schema
        Q, Occur = tantivy.Query, tantivy.Occur
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        if node is not None:
            clauses.append((Occur.Must, self._text(node)))
        filters: list[tantivy.Query] = []

        def term(field: str, value: Any) -> tantivy.Query:
            return Q.term_query(s, field, value, index_option="basic")

        if q.place_code is not None:
            filters.append(term("place", q.place_code))
        if q.scope is not None and not q.scope.everything:
            placed = term("place", q.scope.prefix or _PLACED)
            filters.append(
                Q.boolean_query([(Occur.Should, placed), (Occur.Should, term("place", _UNPLACED))])
                if q.scope.unplaced
                else placed
            )
        for f, value in (("source_kind", q.source_kind), ("topic", q.topic), ("severity", q.severity)):
            values = as_values(value)
            if len(values) == 1:
                filters.append(term(f, values[0]))
            elif values:
                filters.append(Q.boolean_query([(Occur.Should, term(f, v)) for v in values]))
        if q.event_id is not None:
            filters.append(term("event", q.event_id))
        if q.published_from is not None or q.published_to is not None:
            lo = _epoch_us(q.published_from) if q.published_from is not None else _I64_MIN
            hi = _epoch_us(q.published_to) if q.published_to is not None else _I64_MAX
            filters.append(
                Q.range_query(
                    s, "pub", tantivy.FieldType.Integer, lo, hi,
                    include_lower=True, include_upper=q.published_to is None,
                )
            )
        # Filters narrow the match without touching its score.
        clauses += [(Occur.Must, Q.const_score_query(f, 0.0)) for f in filters]
        if not clauses:
            return Q.all_query()
        return Q.boolean_query(clauses)

    def _ids_of(self, searcher: tantivy.Searcher, addrs: Sequence[Any]) -> list[tuple[int, int]]:
        """(rid, published_us) of each document address (its stored fields: two integers)."""
        out = []
        for a in addrs:
            d = searcher.doc(a)
            out.append((int(d.get_first("rid")), int(d.get_first("pub"))))
        return out

    def _post_ids(self, rids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self._read() as db:
            for i in range(0, len(rids), 500):
                chunk = list(rids[i : i + 500])
                out.update(
                    (r[0], r[1])
                    for r in db.execute(
                        f"SELECT id, post_id FROM posts WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                    )
                )
        return out

    def _page_by_time(
        self, searcher: tantivy.Searcher, query: tantivy.Query, total: int, q: SearchQuery, hits: list[Any]
    ) -> list[tuple[float, int]]:
        """(score 0, rid) of the page, newest (or oldest) first, equal times by post_id.

        ``hits``: the first ``offset + limit`` by time, as tantivy ranks them."""
        n = q.offset + q.limit
        desc = q.sort != "time_asc"
        ranked = [(int(v) - _FAST_I64_OFFSET, a) for v, a in hits]
        if not ranked:
            return []
        # Every document of the last time on the list (some may have been cut off).
        last = ranked[-1][0]
        if len(ranked) == n and total > n:
            same = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.term_query(self._schema, "pub", last, index_option="basic")),
                ]
            )
            size = int(searcher.search(same, 1, count=True).count)
            tail = searcher.search(same, max(size, 1), count=False).hits
            ranked = [x for x in ranked if x[0] != last] + [(last, a) for _s, a in tail]
        return self._order_window(searcher, ranked, q, lambda v: (-v if desc else v,))

    def _page_by_score(
        self, searcher: tantivy.Searcher, query: tantivy.Query, total: int, q: SearchQuery, hits: list[Any]
    ) -> list[tuple[float, int]]:
        """(score, rid) of the page: best first, equal scores newest first, then by post_id.

        ``hits``: the first ``offset + limit + _TIE_MARGIN`` by score, as tantivy ranks them."""
        n = q.offset + q.limit
        k = len(hits)
        # Complete when the list ends below the score at position n (or holds everything).
        while not (k >= total or hits[-1][0] < hits[n - 1][0] or k > n + _TIE_READ_CAP):
            k = min(total, k * 4)
            hits = searcher.search(query, k, count=False).hits
        return self._order_window(searcher, [(float(s), a) for s, a in hits], q, lambda v: (-v,), by_score=True)

    def _order_window(
        self,
        searcher: tantivy.Searcher,
        ranked: list[tuple[float, Any]],
        q: SearchQuery,
        key: Any,
        by_score: bool = False,
    ) -> list[tuple[float, int]]:
        """The page ``[offset, offset+limit)`` of ``ranked`` (sorted on its first value),
        with each group of equal values that reaches into the page ordered exactly."""
        lo, hi = q.offset, q.offset + q.limit
        # Groups of equal sort values, in order.
        groups: list[tuple[int, int]] = []
        i = 0
        while i < len(ranked):
            j = i
            while j < len(ranked) and ranked[j][0] == ranked[i][0]:
                j += 1
            groups.append((i, j))
            i = j
        wanted = [(a, b) for a, b in groups if a < hi and b > lo]
        members = [ranked[x] for a, b in wanted for x in range(a, b)]
        fields = self._ids_of(searcher, [addr for _v, addr in members])
        pids = self._post_ids([rid for rid, _pub in fields])
        out: list[tuple[float, int]] = []
        pos = 0
        for a, b in wanted:
            group = [(members[pos + x][0], fields[pos + x]) for x in range(b - a)]
            pos += b - a
            group.sort(key=lambda g: (*key(g[0]), -g[1][1] if by_score else 0, pids.get(g[1][0], "")))
            for x, (v, (rid, _pub)) in enumerate(group):
                if lo <= a + x < hi:
                    out.append((v if by_score else 0.0, rid))
        return out

    def search(self, q: SearchQuery) -> SearchResult:
        node = qlang.parse(q.text)
        terms = qlang.positive_words(node)  # highlighted
        query = self._query(q, node)
        with self._lock:
            self._reload()
            assert self._index is not None
            searcher = self._index.searcher()
        n = q.offset + q.limit
        by_score = qlang.has_positive(node) and q.sort == "relevance"
        # One pass gives the total and the first offset + limit (+ a margin for equal scores).
        if by_score:
            first = searcher.search(query, n + _TIE_MARGIN, count=True)
        else:
            order = tantivy.Order.Asc if q.sort == "time_asc" else tantivy.Order.Desc
            first = searcher.search(query, max(n, 1), count=True, order_by_field="pub", order=order)
        total = int(first.count)
        facets: dict[str, dict[str, int]] = {f: {} for f in FACET_FIELDS}
        if total:
            aggs = searcher.aggregate(query, _FACET_AGGS)
            for f in FACET_FIELDS:
                buckets = sorted(
                    ((str(b["key"]), int(b["doc_count"])) for b in aggs[f]["buckets"] if b["key"] != _NO_VALUE),
                    key=lambda kv: (-kv[1], kv[0]),
                )
                facets[f] = dict(buckets)
        page: list[tuple[float, int]] = []
        if q.limit > 0 and q.offset < total:
            if by_score:
                page = self._page_by_score(searcher, query, total, q, first.hits)
            else:
                page = self._page_by_time(searcher, query, total, q, first.hits)
        rows: dict[int, sqlite3.Row] = {}
        if page:
            rids = [rid for _s, rid in page]
            with self._read() as db:
                for r in db.execute(
                    f"SELECT id, {_COLUMNS} FROM posts WHERE id IN ({', '.join('?' * len(rids))})", rids
                ):
                    rows[r["id"]] = r
        hits = []
        for score, rid in page:
            r = rows.get(rid)
            if r is None:
                continue  # deleted since the search ran
            hits.append(
                SearchHit(
                    post_id=r["post_id"],
                    score=score,
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
            )
        return SearchResult(total=total, hits=hits, facets=facets)

    def close(self) -> None:
        with self._lock:
            self._index = None
            try:
                self._db.close()
            except sqlite3.ProgrammingError:
                pass

    def __enter__(self) -> EmbeddedSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _indexed_values(d: PostDoc) -> tuple[Any, ...]:
    return (
        d.title, d.text, d.source_kind, _epoch_us(d.published_at), d.place_code, d.topic, d.severity, d.event_id,
    )
