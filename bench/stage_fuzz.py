"""Fuzz the real classifier and responder stage loops with many random and mutated messages.

    .venv/bin/python bench/stage_fuzz.py [--count 3000] [--transport embedded|kafka|both]
                                         [--stage classifier|responder|both] [--seed 1]
                                         [--max-text-chars 5000]

The same cases and checks as ``tests/test_stage_fuzz.py`` (``tests/fixtures/fuzz.py``),
in larger numbers: deep nesting, huge strings, invalid UTF-8, wrong types,
extreme values, valid messages with bytes flipped or cut. Each case must end
exactly once — produced downstream (classifier) or stored (responder), or in
the dead-letter topic with its original bytes — and a plain message sent after
all of them must still go through. Prints, per stage and transport, the count
of each kind of case, how many went through (and how many were cut to the
size limits), how many were dead-lettered by reason, the seconds taken and
any problem. Kafka runs on a throwaway tansu broker. Exit status 1 on any problem.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.fuzz import FuzzResult, make_cases, run_fuzz  # noqa: E402


def one(kind: str, stage: str, count: int, seed: int, max_text_chars: int, bootstrap: str | None,
        assessor: object | None) -> FuzzResult:
    from sqlalchemy import select

    from classifiers import worker
    from responder import service
    from responder.store import Post, Store
    from stream.contracts import AssessedPost, RawPost
    from yuqing.settings import KafkaSettings, LimitsSettings, Settings, TransportSettings

    with tempfile.TemporaryDirectory() as tmp:
        ts = TransportSettings(kind=kind, topic_prefix=f"fz{uuid.uuid4().hex[:8]}.",  # type: ignore[arg-type]
                               kafka=KafkaSettings(bootstrap_servers=bootstrap or "127.0.0.1:9",
                                                   session_timeout_ms=6000))
        settings = Settings(data_dir=tmp, transport=ts, config_dir=ROOT / "config",
                            limits=LimitsSettings(max_text_chars=max_text_chars))
        expect = RawPost if stage == "classifier" else AssessedPost
        cases = make_cases(random.Random(seed), count, expect, settings.limits.max_message_bytes,
                           settings.limits.max_text_chars)
        if stage == "classifier":
            def run(s: Settings, stop: threading.Event) -> None:
                worker.run(s, stop, assessor=assessor)  # type: ignore[arg-type]

            return run_fuzz(settings, stage, cases, run, timeout_s=max(120.0, count * 0.2))
        store = Store(settings.store_url)

        def stored() -> set[str]:
            with store.reader() as r:
                return set(r.scalars(select(Post.post_id)))

        try:
            return run_fuzz(settings, stage, cases, service.run, stored=stored, timeout_s=max(120.0, count * 0.2))
        finally:
            store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000, help="cases per stage and transport")
    ap.add_argument("--transport", choices=["embedded", "kafka", "both"], default="both")
    ap.add_argument("--stage", choices=["classifier", "responder", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-text-chars", type=int, default=5000,
                    help="limits.max_text_chars for the run (long cases are 1.2-3 times it)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the stages log every dead letter; only the counts matter here

    kinds = ["embedded", "kafka"] if a.transport == "both" else [a.transport]
    stages = ["classifier", "responder"] if a.stage == "both" else [a.stage]
    assessor = None
    if "classifier" in stages:
        from classifiers.assess import Assessor
        from yuqing.settings import Settings

        with tempfile.TemporaryDirectory() as tmp:
            assessor = Assessor(Settings(data_dir=tmp, config_dir=ROOT / "config"))
    broker = None
    results: list[FuzzResult] = []
    try:
        for kind in kinds:
            bootstrap = None
            if kind == "kafka":
                from stream.tansu import TansuBroker

                broker = TansuBroker().start()
                bootstrap = broker.bootstrap
            for i, stage in enumerate(stages):
                res = one(kind, stage, a.count, a.seed + i, a.max_text_chars, bootstrap, assessor)
                results.append(res)
                print(res.summary(), flush=True)
                print("  cases: " + ", ".join(f"{k} {v}" for k, v in sorted(res.kinds.items())), flush=True)
                print("  dead letters: " + ", ".join(f"{k} {v}" for k, v in res.dead_reasons.most_common()),
                      flush=True)
                for p in res.problems[:20]:
                    print(f"  PROBLEM {p}", flush=True)
            if broker is not None:
                broker.stop()
                broker = None
    finally:
        if broker is not None:
            broker.stop()
    total = sum(r.sent for r in results)
    bad = sum(len(r.problems) for r in results)
    print(f"total: {total} cases, {sum(r.through for r in results)} through, {sum(r.dead for r in results)} "
          f"dead-lettered, {bad} problem(s), {sum(r.seconds for r in results):.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
