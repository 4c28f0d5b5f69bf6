"""Does masked-LM pre-training on the shared Chinese text make the character
BERT worth having? Three steps, because the middle one wants a GPU:

    .venv/bin/python bench/bert_pretrain.py prepare DIR      # here: corpus, vocabulary, token ids
    python3 bench/bert_pretrain.py train DIR OUT            # on a GPU machine (torch + transformers)
    .venv/bin/python bench/bert_pretrain.py ensemble DIR OUT # here: BERT + deployed linear variant

``prepare`` reads ../shared/data (never copied into the repository): the
labelled messages with the fixed held-out split of ``classifiers.train``
(stratified 20 %, seed 13) and the pre-training windows of
:func:`classifiers.bert_topic.corpus` (held-out texts removed). ``train``
pre-trains ``GPU_PRESET`` for its minutes, then fine-tunes on the training
part, from scratch and from the pre-trained encoder, 3 seeds each, and writes
held-out probabilities, ``report.json`` and the seed-0 pre-trained model
directory. ``ensemble`` fits the deployed linear variant on the training part
and prints held-out macro-F1 of the linear model, the BERT and their weighted
averages.

The same in 5-fold cross-validation (the folds of ``classifiers.train``'s CV),
which also measures distillation — the linear model trained on the labelled
messages plus unlabelled messages labelled by a BERT + linear teacher that
never saw the fold it is scored on:

    .venv/bin/python bench/bert_pretrain.py prepare-cv DIR
    python3 bench/bert_pretrain.py train-cv DIR OUT          # GPU
    .venv/bin/python bench/bert_pretrain.py cv DIR OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.bert_topic import GPU_PRESET  # noqa: E402


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    f = []
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f)), float((pred == y).mean())


def prepare(data: Path, out: Path) -> None:
    from classifiers.bert_topic import corpus, encode
    from classifiers.train import (
        TOPICS,
        build_vocab,
        holdout_split,
        jieba_chars,
        make_tokenizer,
        read_labelled,
    )

    texts, labels = read_labelled(data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv")
    tr, ho = holdout_split(labels, 0.2, 13)
    train_texts = [texts[i] for i in tr]
    wins, dropped = corpus(data, train_texts, [texts[i] for i in ho])
    vocab = build_vocab(train_texts + wins, cap=6000, extra_chars=jieba_chars(6000))
    tok = make_tokenizer(vocab, out / "tokenizer", GPU_PRESET["max_length"])
    out.mkdir(parents=True, exist_ok=True)
    L = GPU_PRESET["max_length"]
    np.save(out / "mlm.npy", encode(tok, wins, L))
    np.save(out / "labelled.npy", encode(tok, texts, L))
    np.save(out / "y.npy", np.array([TOPICS.index(x) for x in labels], dtype=np.int64))
    np.save(out / "heldout.npy", np.array(ho, dtype=np.int64))
    meta = {"topics": list(TOPICS), "vocab": vocab, "windows": len(wins), "dropped_as_heldout": dropped,
            "chars": sum(map(len, wins))}
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    print(f"{len(wins)} pre-training windows ({meta['chars']} chars; {dropped} texts dropped as held-out "
          f"near-duplicates); {len(texts)} labelled, {len(ho)} held out → {out}")


def _pretrain(d: Path, mlm_minutes: float) -> tuple[list[str], dict[str, int], dict, dict, dict]:
    """Masked-LM pre-training of ``GPU_PRESET`` on ``d/mlm.npy``: topics, special
    token ids, the BERT config arguments, the encoder state and a summary."""
    from transformers import BertConfig

    from classifiers.bert_topic import mlm_pretrain

    meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    vocab, topics = meta["vocab"], meta["topics"]
    special = {t: vocab.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    P = GPU_PRESET
    base = dict(vocab_size=len(vocab), hidden_size=P["hidden_size"], num_hidden_layers=P["num_layers"],
                num_attention_heads=P["num_heads"], intermediate_size=P["intermediate_size"],
                max_position_embeddings=P["max_length"], pad_token_id=special["[PAD]"])
    state, summary = mlm_pretrain(BertConfig(**base), np.load(d / "mlm.npy"), special, minutes=mlm_minutes,
                                  batch_size=P["mlm_batch_size"], lr=P["mlm_learning_rate"])
    print("masked LM:", summary, flush=True)
    return topics, special, base, state, summary


def train(d: Path, out: Path, seeds: int, mlm_minutes: float) -> None:
    from transformers import BertConfig

    from classifiers.bert_topic import finetune, predict

    topics, special, base, state, summary = _pretrain(d, mlm_minutes)
    P = GPU_PRESET
    x, y, ho = np.load(d / "labelled.npy"), np.load(d / "y.npy"), np.load(d / "heldout.npy")
    tr = np.setdiff1d(np.arange(len(y)), ho)
    cls = BertConfig(**base, id2label=dict(enumerate(topics)), label2id={t: i for i, t in enumerate(topics)})
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"mlm": summary, "preset": P}
    for name, enc in (("scratch", None), ("mlm", state)):
        probs = []
        for seed in range(seeds):
            m = finetune(cls, x[tr], y[tr], special["[PAD]"], encoder_state=enc, seed=seed, epochs=P["epochs"],
                         lr=P["learning_rate"] if enc is not None else 5e-4, batch_size=P["batch_size"],
                         minutes=P["finetune_minutes"])
            p = predict(m, x[ho], special["[PAD]"])
            probs.append(p)
            f, a = macro_f1(y[ho], p.argmax(1), len(topics))
            print(f"{name} seed {seed}: held-out macro-F1 {f:.4f} acc {a:.4f}", flush=True)
            report[f"{name}_seed{seed}"] = {"macro_f1": f, "accuracy": a}
            if name == "mlm" and seed == 0:
                m.half().save_pretrained(out / "model", safe_serialization=True)  # fp16: half the size
        avg = np.mean(probs, 0)
        f, a = macro_f1(y[ho], avg.argmax(1), len(topics))
        print(f"{name} {seeds}-seed average: held-out macro-F1 {f:.4f} acc {a:.4f}", flush=True)
        report[f"{name}_avg"] = {"macro_f1": f, "accuracy": a}
        np.save(out / f"heldout_probs_{name}.npy", np.stack(probs))
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


def ensemble(d: Path, out: Path, data: Path) -> None:
    from classifiers.linear_topic import VARIANTS, TfidfTopicModel, fit_variant, read_extra, save_linear
    from classifiers.train import TOPICS, read_labelled

    texts, labels = read_labelled(data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv")
    y = np.array([TOPICS.index(x) for x in labels])
    ho = np.load(d / "heldout.npy")
    tr = np.setdiff1d(np.arange(len(y)), ho)
    metrics = json.loads((ROOT / "classifiers" / "model" / "train_metrics.json").read_text(encoding="utf-8"))
    name = metrics.get("linear_chosen") or "svc_c12"
    v = VARIANTS[name]
    extra = read_extra(data, TOPICS)
    te = [texts[i] for i in ho]
    m = fit_variant(v, [texts[i] for i in tr], y[tr], list(TOPICS), extra, exclude=te)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_linear(m, list(TOPICS), Path(tmp), float(metrics.get("softmax_scale") or 1.0), v)
        pl = TfidfTopicModel(tmp).proba(te)
    print(f"{name} (training part): held-out macro-F1 {macro_f1(y[ho], pl.argmax(1), len(TOPICS))[0]:.4f}")
    for kind in ("scratch", "mlm"):
        pb_all = np.load(out / f"heldout_probs_{kind}.npy")
        for label, pb in (("seed 0", pb_all[0]), (f"{len(pb_all)}-seed average", pb_all.mean(0))):
            row = [f"BERT {kind} {label}: {macro_f1(y[ho], pb.argmax(1), len(TOPICS))[0]:.4f}"]
            for w in (0.2, 0.3, 0.5):
                row.append(f"w={w}: {macro_f1(y[ho], (w * pb + (1 - w) * pl).argmax(1), len(TOPICS))[0]:.4f}")
            print("  ".join(row))


FOLDS, FOLD_SEED = 5, 13  # the CV of classifiers.train / linear_topic.evaluate_variant


def _cv_folds(y: np.ndarray) -> list[np.ndarray]:
    """Test indices of each fold, exactly as ``evaluate_variant`` makes them."""
    from sklearn.model_selection import StratifiedKFold

    return [b for _, b in StratifiedKFold(FOLDS, shuffle=True, random_state=FOLD_SEED).split(np.zeros(len(y)), y)]


def distill_texts(data: Path) -> list[str]:
    """Unlabelled message details a teacher may label: 附件3, 测试数据 and all of
    附件4 (the same field as the labelled set), without repeats."""
    from classifiers.linear_topic import GOV, UNLABELLED_FILES, WEAK_FILE, _rows

    seen: set[str] = set()
    out: list[str] = []
    for name in (*UNLABELLED_FILES, WEAK_FILE):
        for row in _rows(data / GOV / name):
            t = (row.get("留言详情") or "").strip()
            if t and t not in seen:
                seen.add(t)
                out.append(t)
    return out


def prepare_cv(data: Path, out: Path) -> None:
    from classifiers.bert_topic import encode, pretraining_texts, windows
    from classifiers.train import TOPICS, build_vocab, jieba_chars, make_tokenizer, read_labelled
    from classifiers.weak_labels import drop_near_duplicates

    texts, labels = read_labelled(data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv")
    # Every labelled message is scored in some fold: keep them all (and their
    # near duplicates) out of the masked-LM corpus.
    pre = pretraining_texts(data)
    keep, dropped = drop_near_duplicates(pre, texts)
    wins = windows([pre[i] for i in keep])
    unl = distill_texts(data)
    vocab = build_vocab(wins, cap=6000, extra_chars=jieba_chars(6000))
    tok = make_tokenizer(vocab, out / "tokenizer", GPU_PRESET["max_length"])
    out.mkdir(parents=True, exist_ok=True)
    L = GPU_PRESET["max_length"]
    np.save(out / "mlm.npy", encode(tok, wins, L))
    np.save(out / "labelled.npy", encode(tok, texts, L))
    np.save(out / "unlabelled.npy", encode(tok, unl, L))
    y = np.array([TOPICS.index(x) for x in labels], dtype=np.int64)
    np.save(out / "y.npy", y)
    folds = _cv_folds(y)
    np.save(out / "fold.npy", np.concatenate([np.full(len(b), k) for k, b in enumerate(folds)])[
        np.argsort(np.concatenate(folds))])
    meta = {"topics": list(TOPICS), "vocab": vocab, "windows": len(wins), "dropped_as_labelled": dropped,
            "chars": sum(map(len, wins)), "unlabelled": len(unl)}
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    print(f"{len(wins)} pre-training windows ({meta['chars']} chars; {dropped} texts dropped as near-duplicates "
          f"of labelled ones); {len(texts)} labelled in {FOLDS} folds; {len(unl)} unlabelled → {out}")


def train_cv(d: Path, out: Path, mlm_minutes: float) -> None:
    import time

    from transformers import BertConfig

    from classifiers.bert_topic import finetune, predict

    t0 = time.monotonic()
    topics, special, base, state, summary = _pretrain(d, mlm_minutes)
    P = GPU_PRESET
    x, y, fold = np.load(d / "labelled.npy"), np.load(d / "y.npy"), np.load(d / "fold.npy")
    xu = np.load(d / "unlabelled.npy")
    cls = BertConfig(**base, id2label=dict(enumerate(topics)), label2id={t: i for i, t in enumerate(topics)})
    out.mkdir(parents=True, exist_ok=True)
    pad = special["[PAD]"]
    oof = np.zeros((len(y), len(topics)), dtype=np.float32)
    unl = np.zeros((FOLDS, len(xu), len(topics)), dtype=np.float32)
    report: dict[str, object] = {"mlm": summary, "preset": P}
    kw = dict(epochs=P["epochs"], lr=P["learning_rate"], batch_size=P["batch_size"], minutes=P["finetune_minutes"])
    for k in range(FOLDS):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        m = finetune(cls, x[tr], y[tr], pad, encoder_state=state, seed=k, **kw)
        oof[te] = predict(m, x[te], pad)
        unl[k] = predict(m, xu, pad)
        f, a = macro_f1(y[te], oof[te].argmax(1), len(topics))
        print(f"fold {k}: macro-F1 {f:.4f} acc {a:.4f} ({time.monotonic() - t0:.0f} s)", flush=True)
        report[f"fold{k}"] = {"macro_f1": f, "accuracy": a}
    f, a = macro_f1(y, oof.argmax(1), len(topics))
    report["cv"] = {"macro_f1": f, "accuracy": a}
    print(f"BERT CV macro-F1 {f:.4f} acc {a:.4f}", flush=True)
    np.save(out / "oof_bert.npy", oof)
    np.save(out / "unl_bert_folds.npy", unl.astype(np.float16))
    m = finetune(cls, x, y, pad, encoder_state=state, seed=0, **kw)  # all labelled: the deployable teacher
    np.save(out / "unl_bert_all.npy", predict(m, xu, pad).astype(np.float16))
    m.half().save_pretrained(out / "model", safe_serialization=True)
    report["seconds"] = round(time.monotonic() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"done in {report['seconds']} s", flush=True)


def cv(d: Path, out: Path, data: Path) -> None:
    """CV macro-F1 of the linear model, the BERT, fixed-weight averages, and
    linear students distilled from each fold's teacher."""
    import scipy.sparse as sp

    from classifiers.linear_topic import MAX_CHARS, VARIANTS, _classifier, _coef, fit_variant, softmax
    from classifiers.train import TOPICS, read_labelled
    from classifiers.weak_labels import drop_near_duplicates

    texts, labels = read_labelled(data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv")
    y = np.array([TOPICS.index(x) for x in labels])
    fold = np.load(d / "fold.npy")
    assert (np.load(d / "y.npy") == y).all(), "labelled data changed since prepare-cv"
    unl_texts = distill_texts(data)
    oof_b = np.load(out / "oof_bert.npy").astype(np.float64)
    unl_b = np.load(out / "unl_bert_folds.npy").astype(np.float64)
    metrics = json.loads((ROOT / "classifiers" / "model" / "train_metrics.json").read_text(encoding="utf-8"))
    name = metrics.get("linear_chosen") or "svc_c12"
    scale = float(metrics.get("softmax_scale") or 1.0)
    v = VARIANTS[name]
    K = len(TOPICS)
    oof_l = np.zeros((len(y), K))
    students: dict[str, np.ndarray] = {}
    cfgs = [(w, thr, sw) for w in (0.0, 0.3, 0.5, 1.0) for thr in (0.0, 0.7) for sw in (0.5, 1.0)]
    for k in range(FOLDS):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        te_x = [texts[i] for i in te]
        m = fit_variant(v, [texts[i] for i in tr], y[tr], list(TOPICS), exclude=te_x)
        oof_l[te] = softmax(m.decision(te_x), scale)
        keep, _ = drop_near_duplicates(unl_texts, te_x)
        ux = [unl_texts[i] for i in keep]
        pl_u = softmax(m.decision(ux), scale)
        pb_u = unl_b[k][keep]
        xl = m.vec.transform([texts[i][:MAX_CHARS] for i in tr])
        xu = m.vec.transform([t[:MAX_CHARS] for t in ux])
        xt = m.vec.transform([t[:MAX_CHARS] for t in te_x])
        for w, thr, sw in cfgs:
            teach = w * pb_u + (1 - w) * pl_u
            sel = teach.max(1) >= thr
            clf = _classifier(v).fit(sp.vstack([xl, xu[sel]]).tocsr(), np.r_[y[tr], teach[sel].argmax(1)],
                                     sample_weight=np.r_[np.ones(len(tr)), np.full(int(sel.sum()), sw)])
            coef, icpt = _coef(clf, K)
            key = f"student teacher w_bert={w} conf≥{thr} weight={sw}"
            students.setdefault(key, np.zeros((len(y), K)))[te] = np.asarray(xt @ coef.T) + icpt
        print(f"fold {k} done", flush=True)
    rows = [("linear " + name, oof_l), ("BERT (pre-trained, fine-tuned per fold)", oof_b)]
    rows += [(f"average w_bert={w}", w * oof_b + (1 - w) * oof_l) for w in (0.1, 0.2, 0.3, 0.4, 0.5)]
    rows += list(students.items())
    print(f"{'model':58s} CV macro-F1   acc")
    for label, p in rows:
        f, a = macro_f1(y, p.argmax(1), K)
        print(f"{label:58s} {f:.4f}      {a:.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dir", type=Path)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    t = sub.add_parser("train")
    t.add_argument("dir", type=Path)
    t.add_argument("out", type=Path)
    t.add_argument("--seeds", type=int, default=3)
    t.add_argument("--mlm-minutes", type=float, default=GPU_PRESET["mlm_minutes"])
    e = sub.add_parser("ensemble")
    e.add_argument("dir", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    pc = sub.add_parser("prepare-cv")
    pc.add_argument("dir", type=Path)
    pc.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    tc = sub.add_parser("train-cv")
    tc.add_argument("dir", type=Path)
    tc.add_argument("out", type=Path)
    tc.add_argument("--mlm-minutes", type=float, default=GPU_PRESET["mlm_minutes"])
    c = sub.add_parser("cv")
    c.add_argument("dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    a = ap.parse_args(argv)
    if a.cmd == "prepare-cv":
        prepare_cv(a.data, a.dir)
    elif a.cmd == "train-cv":
        train_cv(a.dir, a.out, a.mlm_minutes)
    elif a.cmd == "cv":
        cv(a.dir, a.out, a.data)
    elif a.cmd == "prepare":
        prepare(a.data, a.dir)
    elif a.cmd == "train":
        train(a.dir, a.out, a.seeds, a.mlm_minutes)
    else:
        ensemble(a.dir, a.out, a.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
