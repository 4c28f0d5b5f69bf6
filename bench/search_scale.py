"""Archive search at a year of posts: build rate, index size and query latency.

    .venv/bin/python bench/search_scale.py --posts 100000 --engine tantivy --engine fts5 --compare
    .venv/bin/python bench/search_scale.py --posts 1000000 --engine tantivy --dir /tmp/search-1m

Posts are real texts from ``../shared/data`` (never committed; the TipDM
citizen messages, CEC emergency reports, CCTV Weibo posts, as
``bench/workloads.py`` reads them) recombined: a base text, sometimes cut to a
window or joined with sentences of another, the name of a real Anhui
division (``classifiers/data/gazetteer.tsv``) written into the text and its
code as ``place_code`` (70 %; 10 % another province, 20 % 待定), a source
kind, a topic (75 %), a severity (40 %), an event id (30 %), and a
publication time spread over one year. The same seed gives the same posts.

Engines:

* ``tantivy``: ``responder.search.embedded`` as it is now;
* ``fts5``: the SQLite FTS5 engine of commit ``FTS5_COMMIT`` (the last one
  with it), loaded from git;
* ``elasticsearch`` / ``opensearch``: when ``YUQING_ES_URL`` /
  ``YUQING_OPENSEARCH_URL`` is set, an index ``yuqing-bench-<n>`` on it
  (dropped afterwards unless ``--keep``).

Posts go in by ``index()`` in batches of 500, as the indexer sends them.
Then every query class runs ``--queries`` times (words drawn from the
posts' own texts, a fixed seed) and prints p50/p95/p99 in ms:

* ``word1`` / ``words2-3``: one word, two or three words of one text;
* ``place``: a word within a city or county prefix;
* ``date7d``: a word in the last 7 days of the year;
* ``filters``: a word with a source-kind / topic / severity filter;
* ``sort_time``: a word, newest first;
* ``deep_page``: a word, relevance, offset 200-1000;
* ``browse``: no words, a province/city/county prefix, newest first (the
  archive page); ``browse_deep``: the same at offset 200-1000.

Every query asks for 20 hits and the facets, as the archive page does.
``--compare`` (with two or more engines) checks that each query gets the same
total and facets from every engine, and the same hits in the same order for
the time sorts; it prints the count of disagreements.

Run on a quiet machine; the index lives under ``--dir`` (a temporary
directory by default) and is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from workloads import DATA, _originals  # noqa: E402

from responder.search import segment as seg  # noqa: E402
from responder.search.base import FACET_FIELDS, PostDoc, Scope, SearchQuery  # noqa: E402
from stream.contracts import SHANGHAI  # noqa: E402

FTS5_COMMIT = "6531c3c"  # the last commit whose responder/search/embedded.py is SQLite FTS5
BATCH = 500
YEAR_START = datetime(2025, 12, 1, tzinfo=SHANGHAI)
TOPICS = ["城乡建设", "环境保护", "交通运输", "教育文体", "劳动和社会保障", "商贸旅游", "卫生计生", "安全生产", "自然灾害", "公共安全"]
SEVERITIES = ["一般", "较大", "重大", "特别重大"]
KIND_OF = {"gov_board": ["gov_board"], "news": ["news", "forum"], "weibo": ["weibo", "weibo", "forum"]}
_SENT = re.compile(r"(?<=[。！？!?；;])")


# -- posts --------------------------------------------------------------------


def _places() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    anhui, other = [], []
    for line in (ROOT / "classifiers" / "data" / "gazetteer.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        code, name = line.split("\t")[:2]
        (anhui if code.startswith("34") else other).append((code, name))
    return anhui, other


def posts(n: int, seed: int = 16) -> Iterator[PostDoc]:
    """``n`` recombined posts over one year (lazily: a million would not fit as a list)."""
    rng = random.Random(seed)
    base = _originals(DATA)
    anhui, other = _places()
    span_s = 365 * 86400
    for i in range(n):
        it = base[rng.randrange(len(base))]
        text = it["text"]
        if len(text) > 600:
            lo = rng.randrange(len(text) - 400)
            text = text[lo : lo + rng.randint(200, 600)]
        if rng.random() < 0.4:
            extra = [s for s in _SENT.split(base[rng.randrange(len(base))]["text"]) if s.strip()]
            text += "".join(extra[: rng.randint(1, 3)])
        r = rng.random()
        if r < 0.7:
            code, name = anhui[rng.randrange(len(anhui))]
        elif r < 0.8:
            code, name = other[rng.randrange(len(other))]
        else:
            code, name = None, ""
        if name:
            text = name + rng.choice(["", "某地", "网友反映，"]) + text
        title = it["title"] or text[: rng.randint(12, 30)]
        kind = rng.choice(KIND_OF[it["kind"]]) if rng.random() > 0.05 else "official"
        yield PostDoc(
            post_id=f"b{i:07d}",
            title=title,
            text=text,
            source_id=f"bench-{kind}",
            source_kind=kind,
            url=f"http://bench.invalid/{i}",
            # Whole seconds: several posts share a time, as crawled posts do.
            published_at=YEAR_START + timedelta(seconds=rng.randrange(span_s)),
            place_code=code,
            place_label=name or "待定",
            topic=rng.choice(TOPICS) if rng.random() < 0.75 else None,
            severity=rng.choice(SEVERITIES) if rng.random() < 0.4 else None,
            event_id=rng.randrange(max(1, n // 20)) if rng.random() < 0.3 else None,
        )


# -- queries ------------------------------------------------------------------


def queries(count: int, seed: int = 17) -> dict[str, list[SearchQuery]]:
    rng = random.Random(seed)
    base = _originals(DATA)
    anhui, _other = _places()
    cities = [c for c, _n in anhui if c.endswith("00") and not c.endswith("0000")]
    counties = [c for c, _n in anhui if not c.endswith("00")]
    end = YEAR_START + timedelta(days=365)

    def words(k: int) -> str:
        while True:
            ws = [w for w in seg.query_terms(base[rng.randrange(len(base))]["text"][:300]) if len(w) >= 2]
            if len(ws) >= k:
                start = rng.randrange(len(ws) - k + 1)
                return " ".join(ws[start : start + k])

    out: dict[str, list[SearchQuery]] = {c: [] for c in (
        "word1", "words2-3", "place", "date7d", "filters", "sort_time", "deep_page", "browse", "browse_deep"
    )}
    for _ in range(count):
        out["word1"].append(SearchQuery(text=words(1)))
        out["words2-3"].append(SearchQuery(text=words(rng.randint(2, 3))))
        out["place"].append(SearchQuery(text=words(1), place_code=rng.choice(cities + counties)))
        out["date7d"].append(SearchQuery(text=words(1), published_from=end - timedelta(days=7), published_to=end))
        f = rng.choice(FACET_FIELDS)
        value = {"source_kind": rng.choice(["news", "weibo", "gov_board", "forum"]),
                 "topic": rng.choice(TOPICS), "severity": rng.choice(SEVERITIES)}[f]
        out["filters"].append(SearchQuery(text=words(1), **{f: value}))  # type: ignore[arg-type]
        out["sort_time"].append(SearchQuery(text=words(1), sort="time"))
        out["deep_page"].append(SearchQuery(text=words(1), offset=rng.randrange(200, 1000)))
        prefix = rng.choice(["34", rng.choice(cities), rng.choice(counties)])
        out["browse"].append(SearchQuery(place_code=prefix, sort="time"))
        out["browse_deep"].append(
            SearchQuery(scope=Scope(prefix, rng.random() < 0.5), sort="time", offset=rng.randrange(200, 1000))
        )
    return out


# -- engines --------------------------------------------------------------------


def _fts5_class() -> Any:
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{FTS5_COMMIT}:responder/search/embedded.py"],
        check=True, capture_output=True, text=True,
    ).stdout
    mod = types.ModuleType("fts5_embedded")
    exec(compile(src, f"{FTS5_COMMIT}:responder/search/embedded.py", "exec"), mod.__dict__)  # noqa: S102
    return mod.EmbeddedSearch


def open_engine(name: str, where: Path, n: int) -> tuple[Any, Any]:
    """(backend, size-in-bytes function)."""
    if name == "tantivy":
        from responder.search.embedded import EmbeddedSearch

        b = EmbeddedSearch(where / "search.db")
        return b, lambda: _du(where)
    if name == "fts5":
        b = _fts5_class()(where / "search.db")
        return b, lambda: _du(where)
    if name in ("elasticsearch", "opensearch"):
        url = os.environ["YUQING_ES_URL" if name == "elasticsearch" else "YUQING_OPENSEARCH_URL"]
        if name == "elasticsearch":
            from responder.search.elastic import ElasticSearch as Server
        else:
            from responder.search.opensearch import OpenSearch as Server  # type: ignore[assignment]
        b = Server(url, f"yuqing-bench-{n}")
        return b, lambda: None
    raise SystemExit(f"unknown engine {name}")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(b: Any, n: int) -> float:
    t0 = time.perf_counter()
    batch: list[PostDoc] = []
    done = 0
    for d in posts(n):
        batch.append(d)
        if len(batch) == BATCH:
            b.index(batch)
            done += len(batch)
            batch = []
            if done % 100_000 == 0:
                print(f"  {done:>9,} posts  {done / (time.perf_counter() - t0):,.0f}/s", flush=True)
    if batch:
        b.index(batch)
    return time.perf_counter() - t0


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_queries(b: Any, qs: dict[str, list[SearchQuery]]) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    times: dict[str, list[float]] = {}
    answers: dict[str, list[Any]] = {}
    for cls, items in qs.items():
        times[cls], answers[cls] = [], []
        for q in items:
            t0 = time.perf_counter()
            r = b.search(q)
            times[cls].append((time.perf_counter() - t0) * 1000)
            answers[cls].append((r.total, r.facets, [h.post_id for h in r.hits]))
    return times, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--engine", action="append", help="tantivy, fts5, elasticsearch, opensearch (repeatable)")
    ap.add_argument("--queries", type=int, default=100, help="queries per class")
    ap.add_argument("--dir", type=Path, help="where the embedded indexes go (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the indexes (reuse with --no-build)")
    ap.add_argument("--no-build", action="store_true", help="query an index built before (--dir, --keep)")
    ap.add_argument("--compare", action="store_true", help="check every engine gives the same answers")
    args = ap.parse_args()
    if not (DATA / "gov_messages_tipdm2020").is_dir():
        sys.exit(f"no shared data at {DATA}")
    engines = args.engine or ["tantivy"]
    for name, var in (("elasticsearch", "YUQING_ES_URL"), ("opensearch", "YUQING_OPENSEARCH_URL")):
        if os.environ.get(var) and name not in engines:
            engines.append(name)
    top = args.dir or Path(tempfile.mkdtemp(prefix="search-scale-"))
    qs = queries(args.queries)
    print(f"{args.posts:,} posts, {args.queries} queries per class, engines: {', '.join(engines)}")
    all_answers: dict[str, dict[str, list[Any]]] = {}
    try:
        for name in engines:
            where = top / name
            if not args.no_build:
                shutil.rmtree(where, ignore_errors=True)
            where.mkdir(parents=True, exist_ok=True)
            b, size = open_engine(name, where, args.posts)
            try:
                if not args.no_build:
                    if name in ("elasticsearch", "opensearch"):
                        b.drop_index()
                    secs = build(b, args.posts)
                    sz = size()
                    print(f"[{name}] built {args.posts:,} posts in {secs:,.0f} s: {args.posts / secs:,.0f} docs/s"
                          + (f", index {sz / 2**20:,.0f} MiB" if sz else ""), flush=True)
                # One untimed pass warms the page cache and the process, as a running server is.
                run_queries(b, {c: v[:10] for c, v in qs.items()})
                times, answers = run_queries(b, qs)
                all_answers[name] = answers
                print(f"[{name}] {'class':<12} {'p50':>8} {'p95':>8} {'p99':>8}   ms")
                every: list[float] = []
                for cls, ts in times.items():
                    every += ts
                    print(f"[{name}] {cls:<12} {_pct(ts, 50):8.1f} {_pct(ts, 95):8.1f} {_pct(ts, 99):8.1f}")
                print(f"[{name}] {'all':<12} {_pct(every, 50):8.1f} {_pct(every, 95):8.1f} {_pct(every, 99):8.1f}",
                      flush=True)
                if name in ("elasticsearch", "opensearch") and not args.keep:
                    b.drop_index()
            finally:
                b.close()
        if args.compare and len(all_answers) > 1:
            first, *rest = list(all_answers)
            for other in rest:
                bad = 0
                for cls, items in all_answers[first].items():
                    for i, (a, o) in enumerate(zip(items, all_answers[other][cls], strict=True)):
                        q = qs[cls][i]
                        same_hits = a[2] == o[2] if (q.sort != "relevance" or not q.text) else True
                        if a[0] != o[0] or a[1] != o[1] or not same_hits:
                            bad += 1
                            if bad <= 5:
                                print(f"  differs [{cls} #{i}] {q}: {first} {a[0]} {a[1]} {a[2][:5]} / "
                                      f"{other} {o[0]} {o[1]} {o[2][:5]}")
                n = sum(len(v) for v in all_answers[first].values())
                print(f"compare {first} vs {other}: {n - bad} of {n} queries agree "
                      "(total, facets, and hits in order for the time sorts)")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(top, ignore_errors=True)
        elif not args.keep:
            for name in engines:
                shutil.rmtree(top / name, ignore_errors=True)


if __name__ == "__main__":
    main()
