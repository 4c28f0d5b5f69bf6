"""The embedded search index (SQLite + tantivy) across processes, crashes and upgrades.

What every backend must do is in ``test_search_contract.py``; this file holds
what only the embedded one has: its write lock, its pending log, the
migration of an older yuqing's SQLite FTS5 file.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import patch

import pytest

from responder.search import SearchQuery
from responder.search import segment as seg
from responder.search.embedded import ENGINE, EmbeddedSearch
from tests.test_search_contract import BY_ID, DOCS

ROOT = Path(__file__).resolve().parents[1]

# An older yuqing's file: posts + an FTS5 table of the segmented text.
_FTS5_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY, post_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, text TEXT NOT NULL,
    source_id TEXT NOT NULL, source_kind TEXT NOT NULL, url TEXT NOT NULL, published_at TEXT NOT NULL,
    published_us INTEGER NOT NULL, place_code TEXT, place_label TEXT NOT NULL, topic TEXT, severity TEXT,
    event_id INTEGER
);
CREATE VIRTUAL TABLE posts_fts USING fts5 (title_seg, text_seg, tokenize = 'unicode61 remove_diacritics 0');
"""


def _fts5_file(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(_FTS5_SCHEMA)
        with db:
            db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('segmenter', ?)", (seg.SEGMENTER,))
            for d in DOCS:
                cur = db.execute(
                    "INSERT INTO posts (post_id, title, text, source_id, source_kind, url, published_at, "
                    "published_us, place_code, place_label, topic, severity, event_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (d.post_id, d.title, d.text, d.source_id, d.source_kind, d.url, d.published_at.isoformat(),
                     int(d.published_at.timestamp() * 1_000_000), d.place_code, d.place_label, d.topic,
                     d.severity, d.event_id),
                )
                db.execute(
                    "INSERT INTO posts_fts (rowid, title_seg, text_seg) VALUES (?, ?, ?)",
                    (cur.lastrowid, seg.segment(d.title), seg.segment(d.text)),
                )
    finally:
        db.close()


def _tables_and_meta(path: Path) -> tuple[set[str], dict[str, str]]:
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return tables, dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()


def test_an_fts5_index_is_rebuilt_into_tantivy_on_first_open(tmp_path: Path) -> None:
    path = tmp_path / "search.db"
    _fts5_file(path)
    b = EmbeddedSearch(path)
    try:
        assert b.count() == len(DOCS)
        assert {h.post_id for h in b.search(SearchQuery(text="坍塌")).hits} == {"p01", "p06"}
        assert b.search(SearchQuery(place_code="3415")).total == 4
        assert b.get("p06") == BY_ID["p06"]
    finally:
        b.close()
    tables, meta = _tables_and_meta(path)
    assert "posts_fts" not in tables, "the FTS5 table is dropped once tantivy holds everything"
    assert meta["engine"] == ENGINE and meta["segmenter"] == seg.SEGMENTER and "rebuilt_upto" not in meta


def test_an_interrupted_migration_resumes_after_its_last_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import responder.search.embedded as embedded

    path = tmp_path / "search.db"
    _fts5_file(path)
    monkeypatch.setattr(embedded, "_REBUILD_CHUNK", 3)
    put = EmbeddedSearch._put
    calls = []

    def dies_after_one_chunk(self: EmbeddedSearch, rids: list[int], segs: object = None) -> None:
        calls.append(rids)
        if len(calls) > 1:
            raise KeyboardInterrupt  # killed while putting the second chunk
        put(self, rids, segs)  # type: ignore[arg-type]

    with patch.object(EmbeddedSearch, "_put", dies_after_one_chunk), pytest.raises(KeyboardInterrupt):
        EmbeddedSearch(path)
    # The next open resumes after the first three posts: a segmenter that cuts
    # everything into "stale" shows which posts were put again.
    with patch.object(seg, "segment", lambda text: "stale"):
        b = EmbeddedSearch(path)
    try:
        assert b.search(SearchQuery(text="stale")).total == len(DOCS) - 3
        assert {h.post_id for h in b.search(SearchQuery(text="坍塌")).hits} == {"p01"}
        assert b.search(SearchQuery()).total == len(DOCS)
    finally:
        b.close()
    tables, meta = _tables_and_meta(path)
    assert meta["engine"] == ENGINE and "posts_fts" not in tables


def test_a_lost_tantivy_directory_is_rebuilt_from_the_posts(tmp_path: Path) -> None:
    path = tmp_path / "search.db"
    b = EmbeddedSearch(path)
    b.index(DOCS)
    b.close()
    shutil.rmtree(b.index_dir)
    b = EmbeddedSearch(path)
    try:
        assert b.search(SearchQuery()).total == len(DOCS)
        assert {h.post_id for h in b.search(SearchQuery(text="霍山")).hits} == {"p01", "p06"}
    finally:
        b.close()


def test_a_write_is_visible_at_once_to_another_open_index(tmp_path: Path) -> None:
    writer, reader = EmbeddedSearch(tmp_path / "s.db"), EmbeddedSearch(tmp_path / "s.db")
    try:
        assert reader.search(SearchQuery(text="坍塌")).total == 0
        writer.index(DOCS)
        assert reader.search(SearchQuery(text="坍塌")).total == 2
        writer.delete("p01")
        assert [h.post_id for h in reader.search(SearchQuery(text="坍塌")).hits] == ["p06"]
        # A change of a filter field alone (the words stay) reaches the index too.
        writer.index([BY_ID["p06"].__class__(**{**BY_ID["p06"].__dict__, "place_code": "340104"})])
        assert reader.search(SearchQuery(text="坍塌", place_code="3401")).total == 1
        assert reader.search(SearchQuery(text="坍塌", place_code="3415")).total == 0
    finally:
        writer.close()
        reader.close()


def test_rows_a_crashed_writer_left_pending_are_redone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    b = EmbeddedSearch(path)
    b.index(DOCS)
    b.close()
    # A writer committed SQLite (new text, the id pending) and died before tantivy's commit.
    db = sqlite3.connect(path)
    with db:
        rid = db.execute("SELECT id FROM posts WHERE post_id = 'p08'").fetchone()[0]
        db.execute("UPDATE posts SET title = '六安市举办小龙虾美食节', text = '小龙虾美食节开幕。' WHERE id = ?", (rid,))
        db.execute("INSERT INTO pending (id) VALUES (?)", (rid,))
    db.close()
    b = EmbeddedSearch(path)
    try:
        assert [h.post_id for h in b.search(SearchQuery(text="龙虾")).hits] == ["p08"]
        assert b.search(SearchQuery(text="茶叶")).total == 0
    finally:
        b.close()
    assert _tables_and_meta(path)[0] >= {"pending"}
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM pending").fetchone()[0] == 0
    db.close()


_HOLD = """
import sys, time
from responder.search.embedded import EmbeddedSearch
b = EmbeddedSearch(sys.argv[1])
with b._writing():
    w = b._index.writer(heap_size=15_000_000, num_threads=1)  # tantivy's own lock too
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_holding_the_lock_does_not_block_the_next(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    EmbeddedSearch(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        # While it lives, a writer waits, then gives up with a message.
        waiting = EmbeddedSearch(path, busy_timeout_s=0.3)
        with pytest.raises(TimeoutError, match="正被另一进程写入"):
            waiting.index(DOCS[:1])
        assert waiting.count() == 0
        waiting.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        t0 = time.monotonic()
        b = EmbeddedSearch(path, busy_timeout_s=5)
        try:
            b.index(DOCS)
            assert time.monotonic() - t0 < 5
            assert b.search(SearchQuery(text="坍塌")).total == 2
        finally:
            b.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
