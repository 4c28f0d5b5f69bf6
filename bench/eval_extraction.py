"""Evaluate the generic article extraction against labelled Chinese news pages.

Data (read in place, never copied): ``../shared/data/news_extraction/``

* ``cwced_handlabeled/`` — 46 hand-labelled pages (ground_truth.jsonl +
  original_html/, whose first line is a ``<text id=URL ...>`` wrapper).
* ``gne_test_pages/`` — 20 pages with *silver* labels (GNE's own output).

Metrics
-------
* content precision / recall / F1: multiset overlap of characters, whitespace
  ignored (micro: per page, then averaged over pages — "macro"; and summed
  over all pages — "micro").
* date accuracy over pages whose gt date is known: the extracted date has the
  same calendar date; where the gt has a time, the same minute too; where the
  gt has only a year and month ("1998-3"), the same year and month. The gt is the
  wall-clock time the page displays, so the comparison is made in the UTC offset
  ``published_at`` carries: Asia/Shanghai for a page that gives no zone, and for an
  overseas page that prints its own zone's clock next to a machine-readable instant
  (``<time datetime="…T12:48:06+00:00">06/02/2022 - 13:48</time>``) the offset of that
  clock, which the extractor keeps (``crawlers.extract._display_zone``). The instant is
  the same either way; an instant off by hours still fails.
  ``date_acc_all`` also counts a page with UNKNOWN/empty gt as correct when
  nothing was extracted.
* author accuracy (two definitions, both printed):
  ``author_acc_known`` — pages whose gt author is known; correct when the
  normalised strings are equal or one contains the other (gt "王建宏 张文攀"
  vs "王建宏、张文攀"); ``author_acc_all`` — all pages, an UNKNOWN gt being
  correct when no author was extracted.

Usage: ``python bench/eval_extraction.py [--data DIR] [--engine ours|trafilatura|both] [--show-bad]``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crawlers.extract import decode_html, extract_page  # noqa: E402
from stream.contracts import SHANGHAI  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "news_extraction"
_WS = re.compile(r"\s+")
_WRAPPER = re.compile(rb"^\s*<text\s+id=\"?([^\"\s>]*)\"?[^>]*>", re.I)


def prf(pred: str, gold: str) -> tuple[float, float, float]:
    p = Counter(_WS.sub("", pred))
    g = Counter(_WS.sub("", gold))
    if not p and not g:
        return 1.0, 1.0, 1.0
    overlap = sum((p & g).values())
    prec = overlap / sum(p.values()) if p else 0.0
    rec = overlap / sum(g.values()) if g else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


_GT_DATE = re.compile(r"(\d{4})\D{1,3}(\d{1,2})(?:\D{1,3}(\d{1,2}))?(?:\D+(\d{1,2})[:：](\d{1,2}))?")


def date_ok(pred_iso: str | None, gt: str) -> bool:
    m = _GT_DATE.search(gt)
    if not m or not pred_iso:
        return False
    p = datetime.fromisoformat(pred_iso)
    if p.tzinfo is None:
        p = p.replace(tzinfo=SHANGHAI)
    y, mo, d, h, mi = (int(x) if x else None for x in m.groups())
    if (p.year, p.month) != (y, mo):
        return False
    if d is not None and p.day != d:
        return False
    return not (h is not None and (p.hour, p.minute) != (h, mi))


def _norm_author(s: str) -> str:
    return re.sub(r"[\s、，,;；/|]+", " ", s or "").strip()


def author_ok(pred: str, gt: str) -> bool:
    p, g = _norm_author(pred), _norm_author(gt)
    if not p or not g:
        return False
    return p == g or g in p or p in g or p.replace(" ", "") == g.replace(" ", "")


def known(v: str | None) -> bool:
    return bool(v) and v != "UNKNOWN" and v != "未知"


def run_ours(html: str, url: str, now: datetime) -> dict[str, Any]:
    return extract_page(html, url, now)


def run_trafilatura(html: str, url: str, now: datetime) -> dict[str, Any]:
    import trafilatura

    doc = trafilatura.bare_extraction(html, url=url or None, with_metadata=True, favor_recall=True,
                                      include_comments=False, include_tables=True)
    if doc is None:
        return {"content": "", "published_at": None, "author": ""}
    d = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc)
    date = d.get("date")
    iso = None
    if date:
        try:
            iso = datetime.fromisoformat(date).replace(tzinfo=SHANGHAI).isoformat()
        except ValueError:
            iso = None
    return {"content": d.get("text") or "", "published_at": iso, "author": d.get("author") or ""}


ENGINES = {"ours": run_ours, "trafilatura": run_trafilatura}


def load_cwced(data: Path) -> list[dict[str, Any]]:
    base = data / "cwced_handlabeled"
    out = []
    for line in (base / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        raw = (base / row["html_file"]).read_bytes()
        m = _WRAPPER.match(raw)
        url = row.get("url") or ""
        if m:
            url = url or m.group(1).decode("latin-1")
            raw = raw[m.end():]
        html, _ = decode_html(raw)
        out.append({"name": row["id"], "url": url, "html": html, "content": row["gt_content"],
                    "date": row["gt_date"], "author": row["gt_author"]})
    return out


def load_gne(data: Path) -> list[dict[str, Any]]:
    base = data / "gne_test_pages"
    out = []
    for line in (base / "silver_labels_gne_v0.1_output.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        html, _ = decode_html((base / row["html_file"]).read_bytes())
        out.append({"name": row["html_file"], "url": "", "html": html, "content": row.get("content") or "",
                    "date": row.get("publish_time") or "", "author": row.get("author") or ""})
    return out


def evaluate(pages: list[dict[str, Any]], engine: str, show_bad: bool = False) -> dict[str, float]:
    fn = ENGINES[engine]
    now = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)
    ps, rs, fs = [], [], []
    tot_p = tot_g = tot_o = 0
    d_known = d_ok = d_all_ok = 0
    a_known = a_ok = a_all_ok = 0
    t0 = time.perf_counter()
    for pg in pages:
        got = fn(pg["html"], pg["url"], now)
        p, r, f = prf(got["content"], pg["content"])
        ps.append(p)
        rs.append(r)
        fs.append(f)
        pc, gc = Counter(_WS.sub("", got["content"])), Counter(_WS.sub("", pg["content"]))
        tot_p += sum(pc.values())
        tot_g += sum(gc.values())
        tot_o += sum((pc & gc).values())
        dok = False
        if known(pg["date"]):
            d_known += 1
            dok = date_ok(got["published_at"], pg["date"])
            d_ok += dok
            d_all_ok += dok
        else:
            d_all_ok += got["published_at"] is None
            dok = True
        aok = True
        if known(pg["author"]):
            a_known += 1
            aok = author_ok(got["author"], pg["author"])
            a_ok += aok
            a_all_ok += aok
        else:
            a_all_ok += not got["author"]
        if show_bad and (f < 0.9 or not dok or not aok):
            print(f"  {pg['name'][:40]:40s} P={p:.2f} R={r:.2f} F={f:.2f} date={got['published_at']} "
                  f"gt={pg['date']!r} {'OK' if dok else 'BAD'} author={got['author']!r} gt={pg['author']!r}"
                  f" {'OK' if aok else 'BAD'}  {pg['url'][:60]}")
    n = len(pages)
    mp, mr = (tot_o / tot_p if tot_p else 0.0), (tot_o / tot_g if tot_g else 0.0)
    return {
        "pages": n,
        "precision": sum(ps) / n, "recall": sum(rs) / n, "f1": sum(fs) / n,
        "micro_precision": mp, "micro_recall": mr, "micro_f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
        "date_known": d_known, "date_acc_known": d_ok / d_known if d_known else 0.0, "date_acc_all": d_all_ok / n,
        "author_known": a_known, "author_acc_known": a_ok / a_known if a_known else 0.0,
        "author_acc_all": a_all_ok / n,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="正文抽取评测（cwced 人工标注 + GNE 银标）")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--engine", choices=["ours", "trafilatura", "both"], default="ours")
    ap.add_argument("--show-bad", action="store_true", help="列出 F1<0.9 或日期/作者错误的页面")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    engines = ["ours", "trafilatura"] if a.engine == "both" else [a.engine]
    results: dict[str, Any] = {}
    for name, loader in (("cwced", load_cwced), ("gne_silver", load_gne)):
        pages = loader(a.data)
        for eng in engines:
            if a.show_bad:
                print(f"--- {name} / {eng}")
            results[f"{name}/{eng}"] = evaluate(pages, eng, a.show_bad)
    if a.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    for key, r in results.items():
        print(f"{key:24s} pages={r['pages']:3d}  content P={r['precision']:.3f} R={r['recall']:.3f} "
              f"F1={r['f1']:.3f} (micro F1={r['micro_f1']:.3f})  date acc={r['date_acc_known']:.3f} "
              f"(n={r['date_known']}; incl. unknown={r['date_acc_all']:.3f})  author acc={r['author_acc_known']:.3f} "
              f"(n={r['author_known']}; incl. unknown={r['author_acc_all']:.3f})  {r['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
