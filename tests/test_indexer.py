"""The search indexer stage: it follows the store, resumes where it stopped,
loses nothing while the backend is down, and follows merges and splits."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import select

from responder.indexer import SearchIndexer, run
from responder.search import open_search
from responder.search.elastic import ElasticSearch
from responder.service import handle_batch
from responder.store import Event, Post, Store
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T = sh(2026, 11, 2, 9, 0)


def _posts(prefix: str, n: int, **kw):
    return [
        assessed(
            f"{prefix}{i}",
            title=f"第{i}号小区停车难问题{prefix}",
            text=f"第{i}号小区{prefix}车位不足，业主夜间停车困难，希望增加车位。" * (i % 3 + 1),
            published_at=T + timedelta(minutes=i),
            **kw,
        )
        for i in range(n)
    ]


def test_indexes_new_posts_in_order_and_resumes_after_a_restart(store_url, settings) -> None:
    store = Store(store_url)
    backend = open_search(settings)
    try:
        handle_batch(store, settings, _posts("a", 5))
        ix = SearchIndexer(store, backend, batch=2)
        steps = [ix.step().posts for _ in range(4)]
        assert steps == [2, 2, 1, 0] and backend.count() == 5
        with store.reader() as s:
            assert ix.progress()[0] == max(s.scalars(select(Post.id)))
        handle_batch(store, settings, _posts("b", 3))
        # A new indexer (a restarted stage) starts where the last one stopped.
        assert SearchIndexer(store, backend).catch_up() == 3 and backend.count() == 8
        assert SearchIndexer(store, backend).catch_up() == 0
    finally:
        backend.close()
        store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_backend_that_is_down_loses_nothing(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    handle_batch(store, settings, _posts("c", 4))
    # A real Elasticsearch client pointed at a port nobody listens on.
    down = ElasticSearch(f"http://127.0.0.1:{_closed_port()}", "yuqing-posts", request_timeout_s=1)
    try:
        try:
            SearchIndexer(store, down).step()
        except Exception as e:  # noqa: BLE001 - any connection error will do
            assert "onnect" in f"{type(e).__name__} {e}"
        else:
            raise AssertionError("indexing into a backend that is down must fail")
    finally:
        down.close()
    assert SearchIndexer(store, down).progress() == (0, 0)  # nothing counted as done
    backend = open_search(settings)
    try:
        assert SearchIndexer(store, backend).catch_up() == 4
    finally:
        backend.close()
        store.close()


def test_merge_and_split_move_posts_to_their_new_event_in_the_index(store_url, settings) -> None:
    store = Store(store_url)
    backend = open_search(settings)
    ix = SearchIndexer(store, backend)
    water = _posts("w", 2, place="蜀山区")
    noise = [
        assessed(
            "n0",
            title="包河区广场舞噪音扰民",
            text="包河区某广场每晚广场舞音响声音过大，影响周边居民休息。",
            published_at=T,
            place="包河区",
        )
    ]
    handle_batch(store, settings, water + noise)
    ix.catch_up()
    with store.reader() as s:
        ev = {p.post_id: p.event_id for p in s.scalars(select(Post))}
    assert ev["w0"] == ev["w1"] != ev["n0"]
    client = client_as(create_app(settings, store=store, search=backend), "王五")
    try:
        r = client.post(f"/api/events/{ev['n0']}/merge", json={"into": ev["w0"], "confirm_places": True})
        assert r.status_code == 200, r.text
        assert ix.step().reindexed == 3
        assert backend.get("n0").event_id == ev["w0"]
        r = client.post(
            f"/api/events/{ev['w0']}/split", json={"post_ids": ["n0"], "reason": "不是同一事件"}
        )
        assert r.status_code == 200, r.text
        new_event = r.json()["new_ticket"]["event"]["id"]
        done = ix.step()
        assert done.reindexed == 1 and done.posts == 0
        assert backend.get("n0").event_id == new_event != ev["w0"]
        assert backend.get("w1").event_id == ev["w0"]
    finally:
        client.close()
        backend.close()
        store.close()


def test_the_stage_follows_the_store_until_stopped(tmp_path, settings) -> None:
    settings.store.url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(settings.store_url)
    stop = threading.Event()
    t = threading.Thread(target=run, args=(settings, stop), kwargs={"poll_s": 0.05}, daemon=True)
    t.start()
    backend = open_search(settings)
    try:
        handle_batch(store, settings, _posts("d", 3))
        deadline = time.monotonic() + 20
        while backend.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.count() == 3
        with store.reader() as s:
            assert {e.id for e in s.scalars(select(Event))} == {backend.get(f"d{i}").event_id for i in range(3)}
    finally:
        stop.set()
        t.join(10)
        backend.close()
        store.close()
    assert not t.is_alive()


def test_reindex_command_fills_the_index_and_from_start_rebuilds_it(tmp_path, settings) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    store = Store(settings.store_url)
    handle_batch(store, settings, _posts("e", 3))
    store.close()

    def reindex(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "yuqing.cli", "--config", str(settings.config_dir), "reindex", *args],
            cwd=root, env={**os.environ, "YUQING_DATA_DIR": str(settings.data_dir)},
            capture_output=True, text=True, timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert reindex() == "已索引 3 条帖子（全文检索：embedded）"
    assert reindex() == "已索引 0 条帖子（全文检索：embedded）"
    assert reindex("--from-start") == "已索引 3 条帖子（全文检索：embedded）"
    backend = open_search(settings)
    try:
        assert backend.count() == 3 and backend.get("e2") is not None
    finally:
        backend.close()
