"""Crawl throughput: pages per second of one source against a local fixture site, one process.

The fixture site (``tests/fixtures/sites.py``, its ``/slow/`` part with no delay)
serves a list page of N article pages on 127.0.0.1 in a thread; the crawl runs
in the main thread with the real settings (robots.txt, AutoThrottle off so the
number measures the crawler, the frontier journalled in crawl_state.db, per-post flush to the embedded
transport, seen-state). Reported: pages/s and posts/s, first crawl (all new)
and second crawl (all unchanged).

Usage: ``python bench/crawl_throughput.py [--pages 300] [--concurrency 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="采集吞吐量基准（本地测试站点，单进程）")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args(argv)

    from tests.fixtures.sites import FixtureServer

    tmp = Path(tempfile.mkdtemp(prefix="yuqing-bench-"))
    try:
        with FixtureServer() as site:
            site.state.slow_pages, site.state.slow_s = a.pages, 0.0
            cfg = tmp / "config"
            shutil.copytree(ROOT / "config", cfg)
            (cfg / "sources.yaml").write_text(
                "sources:\n"
                f"  - {{id: bench, name: 基准, kind: news, start_urls: [\"{site.url}/slow/list\"], schedule: {{every_s: 600}},\n"
                "     selectors: {list_links: \"li a::attr(href)\"},\n"
                f"     politeness: {{download_delay_s: 0, concurrency: {a.concurrency}, autothrottle: false}}}}\n",
                encoding="utf-8")
            os.environ["YUQING_DATA_DIR"] = str(tmp / "var")
            os.environ.pop("YUQING_TRANSPORT", None)
            from crawlers.runner import _quiet_scrapy
            from yuqing.settings import load_settings

            settings = load_settings(cfg)
            _quiet_scrapy()
            # One reactor per process: both crawls run in it, one after the other,
            # through the same code path as the crawler stage (runner._crawl).
            results = _two_crawls(settings)
            pages = results["first"]["pages"]
            out = {"pages_per_crawl": pages, "concurrency": a.concurrency, **results}
            print(json.dumps(out, ensure_ascii=False, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _two_crawls(settings: object) -> dict[str, dict[str, float]]:
    from crawlers.runner import _crawl, _crawl_session
    from crawlers.sources import get_source

    source = get_source(settings, "bench")  # type: ignore[arg-type]
    out: dict[str, dict[str, float]] = {}
    with _crawl_session(settings) as (reactor, reactor_path, runner, ctx):  # type: ignore[arg-type]
        order = ["first", "second"]
        t0: list[float] = [time.perf_counter()]

        def one(_: object = None) -> None:
            if not order:
                reactor.stop()
                return
            name = order.pop(0)
            t0[0] = time.perf_counter()
            d = _crawl(runner, source, ctx, reactor_path)

            def done(report: object) -> None:
                dt = time.perf_counter() - t0[0]
                r = report  # CrawlReport
                out[name] = {"pages": r.pages, "seconds": round(dt, 2),  # type: ignore[attr-defined]
                             "pages_per_s": round(r.pages / dt, 1),  # type: ignore[attr-defined]
                             "posts_emitted": r.emitted, "posts_unchanged": r.unchanged,  # type: ignore[attr-defined]
                             "errors": r.errors}  # type: ignore[attr-defined]
                one()

            d.addCallback(done)
            d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))

        reactor.callWhenRunning(one)
        reactor.run(installSignalHandlers=False)
    return out


if __name__ == "__main__":
    sys.exit(main())
