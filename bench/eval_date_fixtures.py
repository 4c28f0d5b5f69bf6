"""Publication-date accuracy on the project's own date pages (tests/fixtures/dates/).

66 pages written for the project (none copied from ../shared/data) imitate where Chinese
portals, government sites, county media centres and forums print a publication date, and the
dates that mislead (updated stamps, copyright years, related lists, comments, 成文日期, dates in
the body). ``manifest.json`` gives each page's URL, fetch time, expected date and split:

* ``tune`` (40 pages): what the extraction rules may be adjusted on;
* ``heldout`` (26 pages): drawn before any rule was changed and never tuned on; its figure is
  the one that says whether the rules generalise.

A page is correct when ``extract_page`` gives the expected Asia/Shanghai day and, where the
expected value has a time, the same minute.

Usage: ``python bench/eval_date_fixtures.py [--show-bad] [--show-heldout] [--json]``
(``--show-bad`` lists the tuning set's misses; held-out misses are listed only with
``--show-heldout``, for the report, not for choosing rules.)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crawlers.extract import extract_page  # noqa: E402
from stream.contracts import SHANGHAI  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "dates"


def load(fixtures: Path = FIXTURES) -> list[dict[str, Any]]:
    doc = json.loads((fixtures / "manifest.json").read_text(encoding="utf-8"))
    pages = doc["pages"]
    for p in pages:
        p["html"] = (fixtures / p["file"]).read_text(encoding="utf-8")
    return pages


def correct(published_at: str | None, expected: str) -> bool:
    if not published_at:
        return False
    got = datetime.fromisoformat(published_at).astimezone(SHANGHAI)
    if " " in expected:
        return got.strftime("%Y-%m-%d %H:%M") == expected
    return got.strftime("%Y-%m-%d") == expected


def run(page: dict[str, Any]) -> tuple[bool, str | None]:
    out = extract_page(page["html"], page["url"], datetime.fromisoformat(page["fetched_at"]))
    return correct(out["published_at"], page["expected"]), out["published_at"]


def evaluate(pages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    res: dict[str, dict[str, Any]] = {}
    for split in ("tune", "heldout", "all"):
        sel = [p for p in pages if split == "all" or p["split"] == split]
        rows = [(p, *run(p)) for p in sel]
        ok = sum(r[1] for r in rows)
        res[split] = {"pages": len(sel), "correct": ok, "accuracy": ok / len(sel) if sel else 0.0,
                      "styles": len({p["style"] for p in sel}),
                      "wrong": [{"file": p["file"], "style": p["style"], "expected": p["expected"], "got": got}
                                for p, good, got in rows if not good]}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="发布时间抽取评测（项目自写页面：调参集 / 留出集）")
    ap.add_argument("--show-bad", action="store_true", help="列出调参集中抽错的页面")
    ap.add_argument("--show-heldout", action="store_true", help="也列出留出集中抽错的页面（仅用于报告）")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = evaluate(load())
    if a.json:
        if not a.show_heldout:
            res["heldout"].pop("wrong")
        print(json.dumps(res, ensure_ascii=False, indent=1))
        return 0
    names = {"tune": "调参集", "heldout": "留出集", "all": "全部"}
    for split, r in res.items():
        print(f"{names[split]:4s} 页面 {r['pages']:3d}（{r['styles']} 种站点样式）  日期正确 {r['correct']}/{r['pages']} "
              f"= {r['accuracy']:.3f}")
        if (split == "tune" and a.show_bad) or (split == "heldout" and a.show_heldout):
            for w in r["wrong"]:
                print(f"    {w['file']:28s} {w['style']:16s} 应为 {w['expected']:16s} 抽取 {w['got']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
