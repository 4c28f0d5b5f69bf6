"""Throughput of the stages, one at a time and as the running pipeline.

    .venv/bin/python bench/stage_throughput.py [--posts 10000] [--corpus demo|messages] [--batch 100]
                                               [--serial-only | --pipeline-only]

**Serial** (one process, one core): N raw posts (``bench/workloads.py``)
through the real stage code — the Assessor (rules, gazetteer, casualties,
topic model), ``responder.service.handle_batch`` on an SQLite store in
batches as the stage loop hands them over, the search indexer
(``responder.indexer``) into the embedded tantivy index — plus the embedded
log's produce and consume. Prints each stage's posts/s and what one core
doing all of it would reach.

**Pipeline** (the deployed shape): the classifier, responder and indexer run
as their own processes (``yuqing stage …``, as ``yuqing up`` starts them) on
the embedded defaults in a temporary directory. After warm-up posts have
gone all the way through, N raw posts are produced to ``posts.raw``; the
clock stops when the last one is in the store (responder) and in the
full-text index (indexer). (The warm-up posts are copies of the first
:data:`WARM_UP` posts under other ids.) Prints end-to-end posts/s and each process's CPU
seconds per 1,000 posts (how the work would spread over more cores). The
posts' times end at the moment of the run, as a live stream's would.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import ROOT, raw_posts  # noqa: E402

from stream.contracts import SHANGHAI, AssessedPost, RawPost, decode, encode  # noqa: E402


def serial(posts: list[RawPost], batch: int) -> None:
    from classifiers.assess import Assessor
    from responder.indexer import SearchIndexer
    from responder.search import open_search
    from responder.service import handle_batch
    from responder.store import Event, Store, Ticket
    from stream.embedded import EmbeddedTransport
    from yuqing.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(ROOT / "config")
        settings.data_dir = tmp

        tr = EmbeddedTransport(Path(tmp) / "stream.db")
        tr.ensure_topics(["bench.raw"])
        prod = tr.producer()
        t0 = time.perf_counter()
        for i in range(0, len(posts), batch):
            for p in posts[i : i + batch]:
                prod.send("bench.raw", encode(p), key=p.post_id.encode())
            prod.flush()
        produce_s = time.perf_counter() - t0
        cons = tr.consumer("bench", ["bench.raw"])
        got = 0
        t0 = time.perf_counter()
        while got < len(posts):
            recs = cons.poll(max_records=batch, timeout_s=1.0)
            for r in recs:
                decode(r.value, RawPost)
            cons.commit(recs)
            got += len(recs)
        consume_s = time.perf_counter() - t0
        tr.close()

        t_load = time.perf_counter()
        assessor = Assessor(settings)
        load_s = time.perf_counter() - t_load
        t0 = time.perf_counter()
        assessed = []
        now = datetime.now(SHANGHAI)
        for i in range(0, len(posts), batch):
            chunk = posts[i : i + batch]
            for p, a in zip(chunk, assessor.assess_batch(chunk), strict=True):
                assessed.append(AssessedPost(post=p, assessment=a, assessed_at=now))
        classify_s = time.perf_counter() - t0

        store = Store(settings.store_url)
        t0 = time.perf_counter()
        for i in range(0, len(assessed), batch):
            handle_batch(store, settings, assessed[i : i + batch])
        respond_s = time.perf_counter() - t0

        search = open_search(settings)
        t0 = time.perf_counter()
        indexed = SearchIndexer(store, search).catch_up()
        index_s = time.perf_counter() - t0
        n_events, n_tickets = store.count(Event), store.count(Ticket)
        search.close()
        store.close()

    n = len(posts)
    assert indexed == n, f"indexed {indexed} of {n}"
    relevant = sum(1 for a in assessed if a.assessment.relevant)
    print(f"serial, one process: posts {n}  batch {batch}  relevant {relevant}  events {n_events}  tickets {n_tickets}")
    print(f"  embedded log produce+flush  : {n / produce_s:8.0f} posts/s")
    print(f"  embedded log consume+commit : {n / consume_s:8.0f} posts/s")
    print(f"  classifier load             : {load_s:8.2f} s once per process")
    print(f"  classifier (rules + model)  : {n / classify_s:8.0f} posts/s")
    print(f"  responder (SQLite)          : {n / respond_s:8.0f} posts/s")
    print(f"  indexer (rjieba + tantivy)   : {n / index_s:8.0f} posts/s")
    print(f"  all three on one core       : {n / (classify_s + respond_s + index_s):8.0f} posts/s")


WARM_UP = 50


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline(posts: list[RawPost], timeout_s: float) -> None:
    from responder.search import open_search
    from responder.store import Post, Store
    from stream.factory import open_transport, topic
    from stream.topics import RAW_POSTS
    from yuqing.settings import load_settings

    n = len(posts)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, YUQING_DATA_DIR=tmp, YUQING_CONFIG_DIR=str(ROOT / "config"), PYTHONUNBUFFERED="1")
        env.pop("YUQING_ES_URL", None)
        settings = load_settings(ROOT / "config")
        settings.data_dir = tmp
        tr = open_transport(settings)
        raw_topic = topic(settings, RAW_POSTS)
        tr.ensure_topics([raw_topic])
        prod = tr.producer()
        store = Store(settings.store_url)  # creates the schema before the stages start
        logs = open(Path(tmp) / "stages.log", "w")  # noqa: SIM115 - closed below
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "yuqing.cli", "stage", name],
                env=env,
                cwd=ROOT,
                stdout=logs,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for name in ("classifier", "responder", "indexer")
        }
        search = None
        try:
            # Warm-up: a few posts all the way through (model and dictionary loads, group joins).
            warm = [p.model_copy(update={"post_id": f"warm-up-{i}"}) for i, p in enumerate(posts[:WARM_UP])]
            for p in warm:
                prod.send(raw_topic, encode(p), key=p.post_id.encode())
            prod.flush()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    search = search or open_search(settings)
                    if search.count() >= len(warm):
                        break
                except Exception:  # noqa: BLE001 - the index file may not exist yet
                    pass
                time.sleep(0.2)
            else:
                raise SystemExit(f"warm-up posts not indexed in 120 s; see {tmp}/stages.log")
            cpu0 = {k: _cpu_s(p.pid) for k, p in procs.items()}
            t0 = time.perf_counter()
            for i in range(0, n, 500):
                for p in posts[i : i + 500]:
                    prod.send(raw_topic, encode(p), key=p.post_id.encode())
                prod.flush()
            produced_s = time.perf_counter() - t0
            stored_s = indexed_s = None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and indexed_s is None:
                time.sleep(0.2)
                if stored_s is None and store.count(Post) >= n + len(warm):
                    stored_s = time.perf_counter() - t0
                if search.count() >= n + len(warm):
                    indexed_s = time.perf_counter() - t0
            cpu = {k: _cpu_s(p.pid) - cpu0[k] for k, p in procs.items()}
            if indexed_s is None:
                raise SystemExit(
                    f"not done in {timeout_s:.0f} s: stored {store.count(Post) - len(warm)}, "
                    f"indexed {search.count() - len(warm)}"
                )
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            if search is not None:
                search.close()
            store.close()
            prod.close()
            tr.close()
            logs.close()

    assert stored_s is not None
    print(f"pipeline, one process per stage ({os.cpu_count()} CPUs): posts {n}")
    print(f"  produced to posts.raw in    : {produced_s:8.1f} s")
    print(f"  stored by the responder     : {n / stored_s:8.0f} posts/s  ({stored_s:.1f} s)")
    print(f"  end to end, indexed         : {n / indexed_s:8.0f} posts/s  ({indexed_s:.1f} s)")
    print("  CPU s per 1,000 posts       : " + "  ".join(f"{k} {v / n * 1000:.2f}" for k, v in cpu.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=10000)
    ap.add_argument("--corpus", choices=["demo", "messages"], default="demo")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=1800, help="pipeline: give up after this many seconds")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--serial-only", action="store_true")
    g.add_argument("--pipeline-only", action="store_true")
    args = ap.parse_args()

    if not args.pipeline_only:
        serial(raw_posts(args.corpus, args.posts), args.batch)
    if not args.serial_only:
        # A live stream: the newest post is from now (its deadlines lie ahead).
        span = timedelta(minutes=args.posts) if args.corpus == "demo" else timedelta(seconds=30 * args.posts)
        start = datetime.now(SHANGHAI) - span
        pipeline(raw_posts(args.corpus, args.posts, start=start), args.timeout)


if __name__ == "__main__":
    main()
