"""Check that a speed-up of the rules changed no result.

    .venv/bin/python bench/rules_equivalence.py save    [--n 3000] [--out /tmp/yuqing_rules_baseline.json]
    .venv/bin/python bench/rules_equivalence.py compare [--n 3000] [--out /tmp/yuqing_rules_baseline.json]

For ``--n`` real texts (the TipDM messages and the CEC emergency documents
under ../shared/data, traditional characters read as simplified as the
Assessor does) it records, calling the rules directly rather than through the
Assessor:

* ``Gazetteer.resolve`` with a rotating source region: the Place (with its
  reason), the mentions (span, surface, kind, candidates, code, how);
* ``extract_casualties``: the Casualties value, basis, evidence spans;
* every ``KeywordScorer`` the Taxonomy holds (attributes and dicts of them):
  ``hits`` and ``score`` on (title, text);
* every ``LongestMatcher`` the Taxonomy holds (guard, mood words …):
  ``finditer`` on the full text;
* the Taxonomy's own ``topic``, ``event`` and ``handling`` answers (same
  Taxonomy code on both sides, so a difference there comes from the matchers).

``save`` writes the baseline (and a copy of the config files it used, so a
config edited meanwhile by someone else does not show up as a difference);
``compare`` recomputes with the current code on that same config and lists
every difference. Exit status 1 when anything differs.

``--code DIR`` imports the rules from another source tree, e.g. the previous
commit, for a baseline taken after the change:

    git worktree add /tmp/yuqing-head HEAD
    .venv/bin/python bench/rules_equivalence.py save --code /tmp/yuqing-head
    .venv/bin/python bench/rules_equivalence.py compare
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGIONS = [None, "430102", "110105", "220104", "340000", "341525", "500000", "999999"]


def load_texts(data: Path, n: int) -> list[tuple[str, str, str]]:
    """(key, title, text), a fixed sample of every CEC document and the TipDM files."""
    out: list[tuple[str, str, str]] = []
    cec = data / "emergency_events_cec" / "cec_documents.jsonl"
    if cec.is_file():
        for i, line in enumerate(cec.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                d = json.loads(line)
                out.append((f"cec:{i}", d.get("title") or "", d.get("text") or ""))
    tip: list[tuple[str, str, str]] = []
    for p in sorted((data / "gov_messages_tipdm2020").glob("*.csv")):
        with open(p, encoding="utf-8", newline="") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                text = r.get("留言详情") or ""
                if text.strip():
                    tip.append((f"{p.stem}:{i}", (r.get("留言主题") or "").strip(), text))
    random.Random(11).shuffle(tip)
    out += tip
    return out[:n]


def _of_type(tax: Any, kind: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, v in sorted(vars(tax).items()):
        if isinstance(v, kind):
            found[name] = v
        elif isinstance(v, dict):
            for k, s in v.items():
                if isinstance(s, kind):
                    found[f"{name}[{k}]"] = s
    return found


def _taxonomy_answers(tax: Any, title: str, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        t = tax.topic(title, text)
        out["topic"] = [t.topic, t.department, t.co_departments, t.reason]
    except Exception as e:  # noqa: BLE001 - recorded, compared like an answer
        out["topic"] = repr(e)
    try:
        ev = tax.event(title, text)
        out["event"] = [ev.event_type, ev.subtype, ev.departments, ev.reason, ev.topic,
                        [[h.start, h.end, h.word, h.in_title] for h in ev.hits]]
    except Exception as e:  # noqa: BLE001
        out["event"] = repr(e)
    for emergency in (False, True):
        try:
            h = tax.handling(title, text, is_emergency=emergency)
            out[f"handling_{emergency}"] = [h.name, h.reason]
        except Exception as e:  # noqa: BLE001
            out[f"handling_{emergency}"] = repr(e)
    return out


def dump(config: Path, texts: list[tuple[str, str, str]]) -> tuple[dict[str, Any], float]:
    from classifiers.casualties import extract_casualties
    from classifiers.hanzi import to_simplified
    from classifiers.places import Gazetteer, LongestMatcher
    from classifiers.taxonomy import KeywordScorer, Taxonomy

    gaz = Gazetteer.load(config / "regions.yaml")
    tax = Taxonomy.load(config / "taxonomy.yaml")
    scorers = _of_type(tax, KeywordScorer)
    matchers = _of_type(tax, LongestMatcher)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for n, (key, title, text) in enumerate(texts):
        title, text = to_simplified(title), to_simplified(text)
        full = f"{title}\n{text}" if title else text
        region = REGIONS[n % len(REGIONS)]
        res = gaz.resolve(full, region)
        cas = extract_casualties(full)
        rec: dict[str, Any] = {
            "place": res.place.model_dump(),
            "division": res.division.code if res.division else None,
            "places": [d.code for d in res.places],
            "from_source": res.from_source,
            "mentions": [[m.start, m.end, m.surface, m.kind, list(m.candidates), m.code, m.how] for m in res.mentions],
            "ambiguous": [[m.start, m.surface] for m in res.ambiguous],
            "casualties": cas.casualties.model_dump(),
            "cas_extra": [cas.serious_injured, cas.total_injured, cas.injured_basis, cas.none_stated, cas.describe()],
            "evidence": [[e.field, e.value, e.start, e.end, e.text, e.note] for e in cas.evidence],
            "scorers": {},
        }
        for name, s in scorers.items():
            hits = s.hits(title, text)
            sc = s.score(title, text)
            rec["scorers"][name] = {
                "hits": [[h.start, h.end, h.word, h.in_title] for h in hits],
                "scores": sc.scores, "raw": sc.raw, "words": sc.words, "top": sc.top(),
            }
        rec["matchers"] = {name: [list(g) for g in m.finditer(full)] for name, m in matchers.items()}
        rec["taxonomy"] = _taxonomy_answers(tax, title, text)
        out[key] = rec
    return out, time.perf_counter() - t0


def diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'baseline' if k in a else 'now'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif a != b:
        out.append(f"{path}: baseline {json.dumps(a, ensure_ascii=False)[:300]} | now {json.dumps(b, ensure_ascii=False)[:300]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="规则结果等价性检查（基线/对比）")
    ap.add_argument("action", choices=["save", "compare"])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default="/tmp/yuqing_rules_baseline.json")
    ap.add_argument("--code", default=None, help="从另一份源码树导入规则代码（默认本仓库）")
    args = ap.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    base = Path(args.out)
    cfg_copy = base.with_suffix(".config")
    texts = load_texts(Path(args.data), args.n)
    if not texts:
        print("没有找到数据（../shared/data）", file=sys.stderr)
        return 2
    if args.action == "save":
        cfg_copy.mkdir(parents=True, exist_ok=True)
        for name in ("regions.yaml", "taxonomy.yaml"):
            shutil.copy(Path(args.code or ROOT) / "config" / name, cfg_copy / name)
        result, secs = dump(cfg_copy, texts)
        base.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        print(f"基线：{len(result)} 条，用时 {secs:.1f} 秒 → {base}")
        return 0
    baseline = json.loads(base.read_text(encoding="utf-8"))
    result, secs = dump(cfg_copy, texts)
    result = json.loads(json.dumps(result, ensure_ascii=False))  # same types as the saved baseline
    problems: list[str] = []
    diff(baseline, result, "", problems)
    print(f"对比：{len(result)} 条，用时 {secs:.1f} 秒；差异 {len(problems)} 处")
    for p in problems[:50]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
