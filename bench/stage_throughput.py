"""Throughput of the classifier and responder stages on embedded defaults.

Feeds N raw posts (the demo site's stories, each copied with a unique id and
spread over time) through the real stage code: Assessor (rules, gazetteer,
casualties), then responder.service.handle_batch on an SQLite store with the
FTS5 search index, in batches as the stage loop would hand them over. Prints
posts per second for each stage and the end-to-end figure, plus the transport
(embedded SQLite log) produce+consume rate.

    .venv/bin/python bench/stage_throughput.py [--posts 2000] [--batch 100]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from classifiers.assess import Assessor
from responder.search import open_search
from responder.service import handle_batch
from responder.store import Store
from stream.contracts import SHANGHAI, AssessedPost, RawPost, content_hash, decode, encode, make_post_id
from stream.embedded import EmbeddedTransport
from yuqing.demo_site.stories import FORUM, NEWS, WEIBO
from yuqing.settings import load_settings


def make_posts(n: int) -> list[RawPost]:
    stories = [*NEWS, *FORUM, *WEIBO]
    t = datetime(2026, 11, 22, 8, 0, tzinfo=SHANGHAI)
    out = []
    for i, st in zip(range(n), itertools.cycle(stories), strict=False):
        pub = t + timedelta(minutes=i)
        out.append(
            RawPost(
                post_id=make_post_id("bench", f"{st.key}-{i}"),
                source_id=f"bench-{st.kind}",
                source_kind=st.kind,
                title=st.title,
                text=st.text,
                author=st.author,
                published_at=pub,
                fetched_at=pub + timedelta(seconds=30),
                source_region="340000",
                content_hash=content_hash(st.title, st.text),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(__file__).resolve().parents[1] / "config")
        settings.data_dir = tmp
        posts = make_posts(args.posts)

        # Transport: produce all, flush per batch, consume and commit.
        tr = EmbeddedTransport(Path(tmp) / "stream.db")
        tr.ensure_topics(["bench.raw"])
        prod = tr.producer()
        t0 = time.perf_counter()
        for i in range(0, len(posts), args.batch):
            for p in posts[i : i + args.batch]:
                prod.send("bench.raw", encode(p), key=p.post_id.encode())
            prod.flush()
        produce_s = time.perf_counter() - t0
        cons = tr.consumer("bench", ["bench.raw"])
        got = 0
        t0 = time.perf_counter()
        while got < len(posts):
            recs = cons.poll(max_records=args.batch, timeout_s=1.0)
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
        for i in range(0, len(posts), args.batch):
            batch = posts[i : i + args.batch]
            for p, a in zip(batch, assessor.assess_batch(batch), strict=True):
                assessed.append(AssessedPost(post=p, assessment=a, assessed_at=now))
        classify_s = time.perf_counter() - t0

        store = Store(settings.store_url)
        search = open_search(settings)
        t0 = time.perf_counter()
        for i in range(0, len(assessed), args.batch):
            handle_batch(store, settings, assessed[i : i + args.batch], search=search)
        respond_s = time.perf_counter() - t0
        from responder.store import Event, Ticket

        n_events, n_tickets = store.count(Event), store.count(Ticket)
        store.close()

    n = len(posts)
    relevant = sum(1 for a in assessed if a.assessment.relevant)
    print(f"posts: {n}  batch: {args.batch}  relevant: {relevant}  events: {n_events}  tickets: {n_tickets}")
    print(f"embedded log produce+flush : {n / produce_s:8.0f} posts/s")
    print(f"embedded log consume+commit: {n / consume_s:8.0f} posts/s")
    print(f"classifier load            : {load_s:8.2f} s once per process")
    print(f"classifier (rules + model): {n / classify_s:8.0f} posts/s")
    print(f"responder (SQLite + FTS5)  : {n / respond_s:8.0f} posts/s")
    print(f"classifier + responder     : {n / (classify_s + respond_s):8.0f} posts/s")


if __name__ == "__main__":
    main()
