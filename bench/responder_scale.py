"""Responder at scale: posts/s at 10k and 100k posts, and a saved equivalence check.

    .venv/bin/python bench/responder_scale.py workload --corpus demo --posts 100000 --out /tmp/w-demo-100k.jsonl.gz
    .venv/bin/python bench/responder_scale.py run /tmp/w-demo-100k.jsonl.gz [--search] [--dump /tmp/new.json.gz]
    .venv/bin/python bench/responder_scale.py compare /tmp/base.json.gz /tmp/new.json.gz

``workload`` builds raw posts, assesses them with the real Assessor (rules and
the committed topic model, as the classifier stage does) and writes the
``AssessedPost`` messages in arrival order (by fetch time), so every run of
the responder sees exactly the same input. Two corpora:

* ``demo`` — the demo site's stories, each copied with a unique id, one a
  minute, cycled (what ``bench/stage_throughput.py`` feeds; the issue's
  figures were taken on it). Few stories, long-lived events with many members.
* ``messages`` — real texts from ``../shared/data`` (never committed): the
  TipDM citizen messages (附件3 hot messages, 测试数据, 附件4 with their official
  replies), CEC emergency reports and CCTV Weibo posts, on a synthetic
  timeline (``--gap-s`` between posts). Some posts are derived from a recent
  one: forum retellings (sentences dropped, title changed), Weibo reposts
  (``parent_id``), the official reply to a message (``parent_id``, source
  kind ``official``), and a few arrive hours late (an earlier T0). Thousands of
  open events at once: the candidate-retrieval case.

``run`` feeds the workload to ``responder.service.handle_batch`` in batches
(``--batch``, as the stage loop hands them over) on a fresh store (SQLite in a
temporary directory, or ``--store URL``), with ``now`` = the batch's latest
fetch time, so two runs write the same rows. It prints posts/s overall and per
tenth of the stream (growth with the store shows there), and with ``--dump``
writes a canonical dump of what grouping decided: each post's event, every
event, ticket, deadline, warning, ticket event and audit row (surrogate ids
kept: equal decisions in equal order give equal ids).

``--code DIR`` runs the responder of another source tree, e.g. the commit
before a change, to save the baseline the change must reproduce:

    git worktree add /tmp/yuqing-base <commit>
    .venv/bin/python bench/responder_scale.py run W --code /tmp/yuqing-base --dump /tmp/base.json.gz
    .venv/bin/python bench/responder_scale.py run W --dump /tmp/new.json.gz
    .venv/bin/python bench/responder_scale.py compare /tmp/base.json.gz /tmp/new.json.gz

``compare`` lists every difference (first 10 per table) and exits 1 if any.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# --------------------------------------------------------------------------- workload


def _demo_posts(n: int) -> list[Any]:
    """The stage_throughput corpus: demo stories cycled, one a minute."""
    import itertools

    from stream.contracts import SHANGHAI, RawPost, content_hash, make_post_id
    from yuqing.demo_site.stories import FORUM, NEWS, WEIBO

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


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _originals(data: Path) -> list[dict[str, Any]]:
    """Real texts: (kind, title, text, reply, region) dicts, in a fixed shuffled order."""
    tip = data / "gov_messages_tipdm2020"
    items: list[dict[str, Any]] = []
    for name, with_reply in (
        ("hot_messages_with_votes_附件3.csv", False),
        ("messages_unlabeled_posttest_测试数据.csv", False),
        ("messages_with_official_replies_附件4_half.csv", True),
    ):
        for r in _csv_rows(tip / name):
            text = (r.get("留言详情") or "").strip()
            if not text:
                continue
            items.append(
                {
                    "kind": "gov_board",
                    "title": (r.get("留言主题") or "").strip(),
                    "text": text,
                    "reply": (r.get("答复意见") or "").strip() if with_reply else "",
                    # The pseudonymised A市 board: its own jurisdiction (长沙 per SOURCES.md's inference).
                    "region": "430100",
                }
            )
    cec = data / "emergency_events_cec" / "cec_documents.jsonl"
    for line in cec.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if (d.get("text") or "").strip():
                items.append({"kind": "news", "title": d.get("title") or "", "text": d["text"], "reply": "", "region": None})
    for r in _csv_rows(data / "weibo" / "cctvnews_weibo_posts_2020H1.csv"):
        text = (r.get("text") or "").strip()
        if text:
            items.append({"kind": "weibo", "title": "", "text": text, "reply": "", "region": None})
    random.Random(20261203).shuffle(items)
    return items


_SENT = re.compile(r"(?<=[。！？!?；;])")


def _retell(rng: random.Random, title: str, text: str) -> tuple[str, str]:
    """A forum retelling: some sentences dropped, the title shortened or prefixed."""
    sents = [s for s in _SENT.split(text) if s.strip()]
    if len(sents) > 2:
        keep = [s for s in sents if rng.random() > 0.35] or sents[:1]
    else:
        keep = sents
    body = "".join(keep)
    if rng.random() < 0.3:
        body = rng.choice(["网友爆料：", "转自网友：", "有人知道这事吗？"]) + body
    t = title
    if t and rng.random() < 0.5:
        t = rng.choice(["转：", "【求关注】", "大家看看："]) + t[: max(6, len(t) - rng.randint(0, 6))]
    return t, body


def _messages_posts(n: int, gap_s: float, data: Path) -> list[Any]:
    from stream.contracts import SHANGHAI, RawPost, content_hash, make_post_id

    rng = random.Random(7)
    base = _originals(data)
    start = datetime(2026, 9, 1, 8, 0, tzinfo=SHANGHAI)
    posts: list[RawPost] = []
    recent: list[tuple[RawPost, dict[str, Any]]] = []  # originals of the last ~day
    next_orig = 0
    for i in range(n):
        pub = start + timedelta(seconds=i * gap_s + rng.uniform(0, gap_s))
        lag = timedelta(seconds=rng.uniform(20, 600))
        if rng.random() < 0.03:
            lag = timedelta(hours=rng.uniform(2, 30))  # found late: an earlier T0
        while recent and (pub - recent[0][0].published_at) > timedelta(hours=24):
            recent.pop(0)
        roll = rng.random()
        if recent and roll < 0.35:
            orig, item = recent[rng.randrange(len(recent))]
            if item["kind"] == "weibo" and roll < 0.12:
                kind, title, parent = "weibo", "", orig.post_id
                text = rng.choice(["转发微博", "关注！", "希望早日查明", "//"]) + "//@央视新闻:" + orig.text[:80]
            elif item["kind"] == "gov_board" and item["reply"] and roll < 0.08:
                kind, title, parent = "official", "", orig.post_id
                text = item["reply"]
            else:
                kind, parent = ("forum" if rng.random() < 0.7 else "news"), None
                title, text = _retell(rng, orig.title, orig.text)
            region = item["region"]
        else:
            item = base[next_orig % len(base)]
            next_orig += 1
            kind, title, text, parent, region = item["kind"], item["title"], item["text"], None, item["region"]
        key = f"m{i}"
        p = RawPost(
            post_id=make_post_id(f"bench-{kind}", key),
            source_id=f"bench-{kind}",
            source_kind=kind,
            source_name={"gov_board": "A市留言板", "news": "新闻网站", "weibo": "微博", "forum": "本地论坛", "official": "A市政府"}[kind],
            url=f"http://bench.invalid/{kind}/{key}",
            title=title,
            text=text,
            published_at=pub,
            fetched_at=pub + lag,
            source_region=region,
            parent_id=parent,
            content_hash=content_hash(title, text),
        )
        posts.append(p)
        if parent is None and kind in ("gov_board", "weibo", "news"):
            recent.append((p, item))
    posts.sort(key=lambda p: (p.fetched_at, p.post_id))  # arrival order
    return posts


def cmd_workload(args: argparse.Namespace) -> None:
    from classifiers.assess import Assessor
    from stream.contracts import AssessedPost
    from yuqing.settings import load_settings

    t0 = time.perf_counter()
    if args.corpus == "demo":
        raw = _demo_posts(args.posts)
    else:
        if not (args.data / "gov_messages_tipdm2020").is_dir():
            sys.exit(f"no shared data at {args.data}: the messages corpus needs ../shared/data")
        raw = _messages_posts(args.posts, args.gap_s, args.data)
    settings = load_settings(ROOT / "config")
    assessor = Assessor(settings)
    out = Path(args.out)
    n_rel = 0
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for i in range(0, len(raw), 256):
            chunk = raw[i : i + 256]
            for p, a in zip(chunk, assessor.assess_batch(chunk), strict=True):
                ap = AssessedPost(post=p, assessment=a, assessed_at=p.fetched_at)
                n_rel += a.relevant
                fh.write(ap.model_dump_json(by_alias=True) + "\n")
    print(f"{out}: {len(raw)} posts ({n_rel} relevant), corpus {args.corpus}, {time.perf_counter() - t0:.0f} s")


# --------------------------------------------------------------------------- run


def _load_workload(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [line for line in fh if line.strip()]


_TABLES = {
    # table: (order by, columns left out of the comparison)
    "events": ("id", {"rev"}),
    "tickets": ("id", set()),
    "deadlines": ("id", set()),
    "deadline_warnings": ("id", set()),
    "ticket_events": ("id", set()),
    "audit": ("id", set()),
}


def _canon(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def dump_store(store: Any) -> dict[str, Any]:
    """What grouping decided, canonical: comparable between code versions."""
    from sqlalchemy import text

    out: dict[str, Any] = {}
    with store.engine.connect() as c:
        out["posts"] = {
            r.post_id: r.event_id for r in c.execute(text("SELECT post_id, event_id FROM posts ORDER BY id"))
        }
        for table, (order, skip) in _TABLES.items():
            res = c.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
            cols = [k for k in res.keys() if k not in skip]
            out[table] = [{k: _canon(getattr(r, k)) for k in cols} for r in res]
    return out


def cmd_run(args: argparse.Namespace) -> None:
    code = Path(args.code).resolve() if args.code else ROOT
    sys.path.insert(0, str(code))
    import responder.service as service
    from responder.store import Event, Store, Ticket
    from stream.contracts import AssessedPost
    from yuqing.settings import load_settings

    print(f"responder code: {Path(service.__file__).resolve().parents[1]}")
    lines = _load_workload(Path(args.workload))
    msgs = [AssessedPost.model_validate_json(line) for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(code / "config")  # each tree with its own config
        settings.data_dir = tmp
        store = Store(args.store or f"sqlite:///{Path(tmp) / 'yuqing.db'}")
        search = None
        if args.search:
            from responder.search import open_search

            search = open_search(settings)
        tenths: list[float] = []
        step = max(1, len(msgs) // 10)
        t_all = time.perf_counter()
        t_slice = t_all
        done = 0
        for i in range(0, len(msgs), args.batch):
            batch = msgs[i : i + args.batch]
            now = max(m.post.fetched_at for m in batch) + timedelta(seconds=1)
            service.handle_batch(store, settings, batch, now=now, search=search)
            done += len(batch)
            if done >= step * (len(tenths) + 1) or done == len(msgs):
                t = time.perf_counter()
                tenths.append((done - step * len(tenths)) / (t - t_slice))
                t_slice = t
        elapsed = time.perf_counter() - t_all
        n_events, n_tickets = store.count(Event), store.count(Ticket)
        dump = dump_store(store) if args.dump else None
        if search is not None:
            search.close()
        store.close()
    relevant = sum(1 for m in msgs if m.assessment.relevant)
    print(
        f"posts: {len(msgs)} (relevant {relevant})  batch: {args.batch}  events: {n_events}  tickets: {n_tickets}"
        f"  search: {'on' if args.search else 'off'}"
    )
    print(f"responder: {len(msgs) / elapsed:8.0f} posts/s  ({elapsed:.1f} s)")
    print("per tenth of the stream (posts/s): " + " ".join(f"{r:.0f}" for r in tenths))
    if dump is not None:
        with gzip.open(args.dump, "wt", encoding="utf-8") as fh:
            json.dump(dump, fh, ensure_ascii=False, sort_keys=True)
        print(f"dump: {args.dump}")


# --------------------------------------------------------------------------- compare


def _natural_keys(d: dict[str, Any]) -> dict[str, Any]:
    """Deadlines and their warnings by what they are (ticket, milestone, percent),
    not by row id: new tickets' deadlines are written together, so their ids
    may come in another order than when each ticket was written alone."""
    d = dict(d)
    by_id = {r["id"]: r for r in d.get("deadlines", [])}
    d["deadlines"] = sorted(
        ({k: v for k, v in r.items() if k != "id"} for r in by_id.values()),
        key=lambda r: (r["ticket_id"], r["milestone"]),
    )
    warnings = []
    for w in d.get("deadline_warnings", []):
        dl = by_id[w["deadline_id"]]
        warnings.append(
            {"ticket_id": dl["ticket_id"], "milestone": dl["milestone"]}
            | {k: v for k, v in w.items() if k not in ("id", "deadline_id")}
        )
    d["deadline_warnings"] = sorted(warnings, key=lambda r: (r["ticket_id"], r["milestone"], r["percent"]))
    return d


def compare(a: dict[str, Any], b: dict[str, Any], limit: int = 10) -> list[str]:
    a, b = _natural_keys(a), _natural_keys(b)
    diffs: list[str] = []
    pa, pb = a["posts"], b["posts"]
    if pa.keys() != pb.keys():
        diffs.append(f"posts: {len(pa.keys() - pb.keys())} only in base, {len(pb.keys() - pa.keys())} only in new")
    bad = [k for k in pa if k in pb and pa[k] != pb[k]]
    diffs += [f"posts[{k}].event_id: {pa[k]} != {pb[k]}" for k in bad[:limit]]
    if len(bad) > limit:
        diffs.append(f"posts: … {len(bad) - limit} more")
    for table in _TABLES:
        ra, rb = a.get(table, []), b.get(table, [])
        if len(ra) != len(rb):
            diffs.append(f"{table}: {len(ra)} rows in base, {len(rb)} in new")
        n = 0
        for x, y in zip(ra, rb, strict=False):
            if x != y:
                keys = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
                if n < limit:
                    diffs.append(f"{table} row {x.get('id', x.get('ticket_id'))}: " + "; ".join(f"{k}: {x.get(k)!r} != {y.get(k)!r}" for k in keys))
                n += 1
        if n > limit:
            diffs.append(f"{table}: … {n - limit} more rows differ")
    return diffs


def cmd_compare(args: argparse.Namespace) -> None:
    with gzip.open(args.base, "rt", encoding="utf-8") as fh:
        a = json.load(fh)
    with gzip.open(args.new, "rt", encoding="utf-8") as fh:
        b = json.load(fh)
    diffs = compare(a, b)
    sizes = ", ".join(f"{t} {len(a.get(t, []))}" for t in ("posts", *_TABLES))
    if diffs:
        print(f"DIFFERENT ({sizes}):")
        for d in diffs:
            print("  " + d)
        sys.exit(1)
    print(f"identical: {sizes}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workload", help="build and assess a workload")
    w.add_argument("--corpus", choices=["demo", "messages"], default="demo")
    w.add_argument("--posts", type=int, default=10000)
    w.add_argument("--gap-s", type=float, default=30.0, help="messages: mean seconds between posts")
    w.add_argument("--data", type=Path, default=DATA)
    w.add_argument("--out", required=True)
    r = sub.add_parser("run", help="feed a workload to the responder")
    r.add_argument("workload")
    r.add_argument("--batch", type=int, default=100)
    r.add_argument("--store", default="", help="database URL (default: SQLite in a temporary directory)")
    r.add_argument("--search", action="store_true", help="also write the embedded full-text index")
    r.add_argument("--code", default="", help="source tree whose responder to run (default: this one)")
    r.add_argument("--dump", default="", help="write the canonical grouping dump here (.json.gz)")
    c = sub.add_parser("compare", help="compare two dumps")
    c.add_argument("base")
    c.add_argument("new")
    args = ap.parse_args()
    if args.cmd == "workload":
        sys.path.insert(0, str(ROOT))
        cmd_workload(args)
    elif args.cmd == "run":
        cmd_run(args)
    else:
        cmd_compare(args)


if __name__ == "__main__":
    main()
