"""Linear topic models on TF-IDF n-grams: the variants ``yuqing train`` measures,
how one is fitted (optionally with weak labels from official replies and with
self-training on unlabelled messages), evaluated (fixed held-out split and k-fold
CV, with near-duplicate removal per fold) and stored without pickle.

Storage (:func:`save_linear`, read by :class:`TfidfTopicModel`):

* ``tfidf_vocab.json``: labels, vectoriser parameters, the n-gram vocabulary and
  the variant's settings;
* ``tfidf.npz``: ``idf``, ``coef`` (classes × features), ``intercept``,
  ``classes`` and ``scale`` — probabilities are ``softmax(scale · (x·coefᵀ + b))``,
  ``scale`` fitted on out-of-fold decisions so that the Assessor's confidence
  thresholds mean what they say.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.weak_labels import OTHER, department_counts, department_topic, drop_near_duplicates

log = logging.getLogger("yuqing.train")

TFIDF_FILE = "tfidf.npz"
TFIDF_VOCAB = "tfidf_vocab.json"
MAX_CHARS = 20000  # longer texts are cut before vectorising (cost grows with length)
GOV = "gov_messages_tipdm2020"
WEAK_FILE = "messages_with_official_replies_附件4_half.csv"
UNLABELLED_FILES = ("hot_messages_with_votes_附件3.csv", "messages_unlabeled_posttest_测试数据.csv")


@dataclass(frozen=True)
class Variant:
    """One linear model: features, classifier and which extra data it uses."""

    name: str
    analyzer: str = "char"
    ngram: tuple[int, int] = (1, 3)
    min_df: int = 2
    max_df: float = 0.5
    max_features: int | None = None
    clf: str = "svc"  # "svc" (LinearSVC) or "lr" (LogisticRegression)
    c: float = 2.0
    balanced: bool = True
    weak_weight: float = 0.0  # sample weight of 附件4 messages labelled by their replying department
    self_weight: float = 0.0  # sample weight of confidently pseudo-labelled unlabelled messages
    self_margin: float = 1.0  # decision margin (top minus second) a pseudo-label needs
    note: str = ""

    def vectorizer_params(self) -> dict[str, object]:
        return {"analyzer": self.analyzer, "ngram_range": self.ngram, "min_df": self.min_df, "max_df": self.max_df,
                "max_features": self.max_features, "sublinear_tf": True}


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("lr_c13_60k", ngram=(1, 3), max_df=1.0, max_features=60000, clf="lr", c=20.0, balanced=False,
            note="the model deployed before (char 1–3, 60k features, logistic regression C=20)"),
    Variant("svc_c13", ngram=(1, 3), note="char 1–3, max_df 0.5, LinearSVC C=2, balanced class weights"),
    Variant("svc_c12", ngram=(1, 2), note="char 1–2, max_df 0.5, LinearSVC C=2, balanced class weights"),
    Variant("svc_c13+weak", ngram=(1, 3), weak_weight=0.6,
            note="svc_c13 plus 附件4 messages labelled by the replying department (weight 0.6)"),
    Variant("svc_c13+self", ngram=(1, 3), self_weight=0.5, self_margin=1.0,
            note="svc_c13 plus one round of self-training on 附件3 + 测试数据 (margin ≥ 1, weight 0.5)"),
)}
DEFAULT_VARIANTS = tuple(VARIANTS)


# -- extra data ---------------------------------------------------------------------


@dataclass
class ExtraData:
    """Weak-labelled and unlabelled texts from the same platform."""

    weak_texts: list[str] = field(default_factory=list)
    weak_labels: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # replies name only units outside the seven topics
    n_replies: int = 0  # messages with a reply read (labelled or not)

    def summary(self) -> dict[str, object]:
        from collections import Counter

        return {"replies_read": self.n_replies, "weak_labelled": len(self.weak_texts),
                "weak_label_counts": dict(Counter(self.weak_labels)), "unlabelled": len(self.unlabelled),
                "outside_seven": len(self.outside)}


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_extra(data_dir: Path | None, topics: Sequence[str]) -> ExtraData:
    """附件4 messages whose reply names a department of one of ``topics`` (the
    message detail only, like the labelled set), those whose reply names only
    units outside the seven (``outside``: for calibration), and the details of
    附件3 and 测试数据 as unlabelled text; whichever files exist under ``data_dir``."""
    out = ExtraData()
    if data_dir is None:
        return out
    gov = Path(data_dir) / GOV
    for row in _rows(gov / WEAK_FILE):
        out.n_replies += 1
        text = (row.get("留言详情") or "").strip()
        reply = row.get("答复意见") or ""
        topic = department_topic(reply)
        if text and topic in topics:
            out.weak_texts.append(text)
            out.weak_labels.append(topic)
        elif text and set(department_counts(reply)) == {OTHER}:
            out.outside.append(text)
    for name in UNLABELLED_FILES:
        for row in _rows(gov / name):
            text = (row.get("留言详情") or "").strip()
            if text:
                out.unlabelled.append(text)
    return out


# -- fitting ------------------------------------------------------------------------


@dataclass
class LinearModel:
    vec: object  # a fitted sklearn TfidfVectorizer
    coef: np.ndarray
    intercept: np.ndarray
    info: dict[str, int]

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        x = self.vec.transform([t[:MAX_CHARS] for t in texts])  # type: ignore[attr-defined]
        return np.asarray(x @ self.coef.T) + self.intercept


def _classifier(v: Variant):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    cw = "balanced" if v.balanced else None
    if v.clf == "lr":
        return LogisticRegression(C=v.c, max_iter=2000, class_weight=cw)
    return LinearSVC(C=v.c, class_weight=cw)


def _coef(clf, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    coef = np.zeros((n_classes, clf.coef_.shape[1]))
    icpt = np.full(n_classes, -1e3)  # a class absent from training never wins
    classes = list(clf.classes_)
    if len(classes) == 2 and clf.coef_.shape[0] == 1:
        # one score z for the second class: softmax over (0, z) is the logistic sigmoid(z)
        coef[classes[1]], icpt[classes[1]] = clf.coef_[0], clf.intercept_[0]
        coef[classes[0]], icpt[classes[0]] = 0.0, 0.0
    else:
        for row, c in enumerate(classes):
            coef[c], icpt[c] = clf.coef_[row], clf.intercept_[row]
    return coef, icpt


def fit_variant(v: Variant, texts: Sequence[str], y: Sequence[int], label_names: Sequence[str],
                extra: ExtraData | None = None, exclude: Sequence[str] = ()) -> LinearModel:
    """Fit ``v`` on labelled ``texts``/``y`` (indices into ``label_names``).

    Weak-labelled and unlabelled texts that near-duplicate one of ``exclude``
    (the messages this model will be evaluated on) are left out, as are repeats.
    """
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    extra = extra or ExtraData()
    texts = [t[:MAX_CHARS] for t in texts]
    y = np.asarray(y, dtype=int)
    info = {"n_labelled": len(texts)}
    add_x: list[str] = []
    add_y: list[int] = []
    add_w: list[float] = []
    if v.weak_weight > 0 and extra.weak_texts:
        keep, dropped = drop_near_duplicates(extra.weak_texts, exclude)
        keep = [i for i in keep if extra.weak_labels[i] in label_names]
        add_x += [extra.weak_texts[i][:MAX_CHARS] for i in keep]
        add_y += [list(label_names).index(extra.weak_labels[i]) for i in keep]
        add_w += [v.weak_weight] * len(keep)
        info.update(weak_used=len(keep), weak_dropped_near_duplicates=dropped)
    unl: list[str] = []
    if v.self_weight > 0 and extra.unlabelled:
        keep, dropped = drop_near_duplicates(extra.unlabelled, exclude)
        unl = [extra.unlabelled[i][:MAX_CHARS] for i in keep]
        info.update(unlabelled_dropped_near_duplicates=dropped)

    vec = TfidfVectorizer(**v.vectorizer_params())  # type: ignore[arg-type]
    vec.fit(texts + add_x + unl)
    x = vec.transform(texts + add_x)
    yy = np.r_[y, np.asarray(add_y, dtype=int)]
    w = np.r_[np.ones(len(texts)), np.asarray(add_w, dtype=float)]
    clf = _classifier(v).fit(x, yy, sample_weight=w)
    coef, icpt = _coef(clf, len(label_names))
    if unl:
        xu = vec.transform(unl)
        d = np.asarray(xu @ coef.T) + icpt
        top2 = np.sort(d, axis=1)[:, -2:]
        sel = (top2[:, 1] - top2[:, 0]) >= v.self_margin
        info["pseudo_labelled"] = int(sel.sum())
        if sel.any():
            x2 = sp.vstack([x, xu[sel]]).tocsr()
            y2 = np.r_[yy, d[sel].argmax(1)]
            w2 = np.r_[w, np.full(int(sel.sum()), v.self_weight)]
            clf = _classifier(v).fit(x2, y2, sample_weight=w2)
            coef, icpt = _coef(clf, len(label_names))
    info["features"] = len(vec.vocabulary_)
    return LinearModel(vec, coef, icpt, info)


# -- probabilities ------------------------------------------------------------------


def softmax(z: np.ndarray, scale: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) * scale
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_scale(decisions: np.ndarray, y: Sequence[int], outside: np.ndarray | None = None,
              outside_share: float = 0.5) -> float:
    """The softmax scale with the least log-loss on (out-of-fold) decisions for
    labelled texts — and, when ``outside`` is given (decisions for messages about
    topics outside the seven, whose best label the model should not be sure of),
    the cross-entropy of those to the uniform distribution, the two mean losses
    weighted ``1 - outside_share`` and ``outside_share`` (the share of such
    messages in the stream). Without ``outside`` the scale only sharpens; with
    it, the model's confidence on other topics' messages stays low enough for
    the Assessor's rules to keep them."""
    y = np.asarray(y, dtype=int)
    share = outside_share if outside is not None and len(outside) else 0.0
    best, best_loss = 1.0, float("inf")
    for s in np.geomspace(0.1, 100, 241):
        p = softmax(decisions, float(s))[np.arange(len(y)), y]
        loss = (1 - share) * float(-np.log(np.clip(p, 1e-12, None)).mean())
        if share:
            loss += share * float(-np.log(np.clip(softmax(outside, float(s)), 1e-12, None)).mean())
        if loss < best_loss:
            best, best_loss = float(s), loss
    return best


# -- evaluation ---------------------------------------------------------------------


def scores(y_true: Sequence[int], pred: Sequence[int], n_classes: int) -> dict[str, object]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(n_classes))
    return {"macro_f1": round(float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)), 4),
            "accuracy": round(float(accuracy_score(y_true, pred)), 4),
            "confusion": confusion_matrix(y_true, pred, labels=labels).tolist()}


def evaluate_variant(v: Variant, texts: Sequence[str], y: Sequence[int], label_names: Sequence[str],
                     train_idx: Sequence[int], test_idx: Sequence[int], extra: ExtraData | None = None,
                     folds: int = 5, seed: int = 13) -> dict[str, object]:
    """Held-out figures (fit on ``train_idx``, scored on ``test_idx``) and, with
    ``folds`` ≥ 2, stratified k-fold CV on all texts; extra texts that
    near-duplicate an evaluated message are removed per fold."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    n = len(label_names)
    t0 = time.monotonic()
    te_x = [texts[i] for i in test_idx]
    m = fit_variant(v, [texts[i] for i in train_idx], y[list(train_idx)], label_names, extra, exclude=te_x)
    d_ho = m.decision(te_x)
    out: dict[str, object] = {"variant": asdict(v), "heldout": scores(y[list(test_idx)], d_ho.argmax(1), n),
                              "heldout_info": m.info}
    if folds >= 2:
        oof = np.zeros((len(texts), n))
        infos = []
        for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
            bx = [texts[i] for i in b]
            mf = fit_variant(v, [texts[i] for i in a], y[a], label_names, extra, exclude=bx)
            oof[b] = mf.decision(bx)
            infos.append(mf.info)
        out["cv"] = scores(y, oof.argmax(1), n)
        out["cv_folds"] = folds
        out["cv_info"] = {k: [i.get(k) for i in infos] for k in infos[0]}
        out["_oof"] = oof
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def evaluate_variants(variants: Sequence[Variant], texts: Sequence[str], y: Sequence[int],
                      label_names: Sequence[str], train_idx: Sequence[int], test_idx: Sequence[int],
                      extra: ExtraData | None = None, folds: int = 5, seed: int = 13,
                      report: Callable[[str], None] | None = None) -> dict[str, dict[str, object]]:
    res: dict[str, dict[str, object]] = {}
    for v in variants:
        r = evaluate_variant(v, texts, y, label_names, train_idx, test_idx, extra, folds, seed)
        res[v.name] = r
        line = (f"{v.name:>14}: held-out macro-F1 {r['heldout']['macro_f1']:.4f} acc {r['heldout']['accuracy']:.4f}"  # type: ignore[index]
                + (f" | {folds}-fold CV macro-F1 {r['cv']['macro_f1']:.4f} acc {r['cv']['accuracy']:.4f}"  # type: ignore[index]
                   if "cv" in r else "") + f"  ({r['seconds']} s)")
        (report or log.info)(line)
    return res


def pick_variant(results: dict[str, dict[str, object]]) -> str:
    """The best CV macro-F1 (held-out macro-F1 when there is no CV); ties go to
    the earlier (simpler) variant."""
    def key(name: str) -> float:
        r = results[name]
        return float(r["cv"]["macro_f1"] if "cv" in r else r["heldout"]["macro_f1"])  # type: ignore[index]

    best = list(results)[0]
    for name in results:
        if key(name) > key(best) + 1e-9:
            best = name
    return best


# -- storage ------------------------------------------------------------------------


def save_linear(model: LinearModel, label_names: Sequence[str], out_dir: Path, scale: float = 1.0,
                variant: Variant | None = None) -> None:
    vec = model.vec
    vocab = {k: int(i) for k, i in vec.vocabulary_.items()}  # type: ignore[attr-defined]
    params = {"analyzer": vec.analyzer, "ngram_range": list(vec.ngram_range),  # type: ignore[attr-defined]
              "sublinear_tf": bool(vec.sublinear_tf), "lowercase": bool(vec.lowercase)}  # type: ignore[attr-defined]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / TFIDF_VOCAB).write_text(json.dumps(
        {"labels": list(label_names), "params": params, "variant": asdict(variant) if variant else None,
         "vocabulary": vocab}, ensure_ascii=False), encoding="utf-8")
    np.savez_compressed(Path(out_dir) / TFIDF_FILE, idf=vec.idf_.astype(np.float32),  # type: ignore[attr-defined]
                        coef=model.coef.astype(np.float32), intercept=model.intercept.astype(np.float32),
                        classes=np.arange(len(label_names)), scale=np.float32(scale))


# sklearn's character analyzer collapses runs of white space to one space.
_WHITE_SPACES = re.compile(r"\s\s+")
# A unigram's key: its code point, then a low part no code point has (they end
# at 0x10FFFF), so it never equals a bigram's (code << 21 | next code).
_UNIGRAM = (1 << 21) - 1


def _char_key(term: str) -> int:
    a = ord(term[0])
    return (a << 21) | (ord(term[1]) if len(term) == 2 else _UNIGRAM)


class TfidfTopicModel:
    """A linear TF-IDF topic model stored by :func:`save_linear`."""

    def __init__(self, model_dir: Path | str):
        from sklearn.feature_extraction.text import TfidfVectorizer

        d = Path(model_dir)
        meta = json.loads((d / TFIDF_VOCAB).read_text(encoding="utf-8"))
        arr = np.load(d / TFIDF_FILE, allow_pickle=False)
        params = {k: meta["params"][k] for k in ("analyzer", "ngram_range", "sublinear_tf", "lowercase")
                  if k in meta["params"]}
        params["ngram_range"] = tuple(params["ngram_range"])
        self.vec = TfidfVectorizer(vocabulary=meta["vocabulary"], **params)
        self.vec.idf_ = arr["idf"].astype(np.float64)
        self.coef = arr["coef"].astype(np.float64)
        self.intercept = arr["intercept"].astype(np.float64)
        self.scale = float(arr["scale"]) if "scale" in arr.files else 1.0
        self.labels = [meta["labels"][int(c)] for c in arr["classes"]]
        self.variant = (meta.get("variant") or {}).get("name", "tfidf")
        self.version = f"tfidf:{d.name}"
        self._keys: np.ndarray | None = None
        self._features = np.empty(0, np.int32)
        vocab: dict[str, int] = meta["vocabulary"]
        if (
            params.get("analyzer") == "char"
            and params.get("lowercase", True)
            and tuple(params["ngram_range"]) == (1, 2)
            and all(1 <= len(term) <= 2 for term in vocab)
        ):
            terms = sorted(vocab, key=_char_key)
            self._keys = np.array([_char_key(t) for t in terms], dtype=np.int64)
            self._features = np.array([vocab[t] for t in terms], dtype=np.int32)

    def _char_counts(self, texts: Sequence[str]) -> Any:
        """The count matrix sklearn's ``CountVectorizer.transform`` gives for a
        lower-cased char 1-2-gram vocabulary, the same entries in the same
        order, without a Python loop over the n-grams: each n-gram is a 64-bit
        key, looked up in the sorted vocabulary with ``searchsorted``."""
        from scipy import sparse

        assert self._keys is not None
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        indptr = [0]
        for text in texts:
            t = _WHITE_SPACES.sub(" ", text.lower())
            codes = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            grams = np.concatenate(((codes << 21) | _UNIGRAM, (codes[:-1] << 21) | codes[1:]))
            keys, counts = np.unique(grams, return_counts=True)
            pos = np.searchsorted(self._keys, keys)
            pos[pos == len(self._keys)] = 0
            hit = self._keys[pos] == keys
            features = self._features[pos[hit]]
            order = np.argsort(features)
            indices.append(features[order])
            values.append(counts[hit][order].astype(np.intc))
            indptr.append(indptr[-1] + len(order))
        x = sparse.csr_array(
            (
                np.concatenate(values) if values else np.empty(0, np.intc),
                np.concatenate(indices) if indices else np.empty(0, np.int32),
                np.asarray(indptr, dtype=np.int32),
            ),
            shape=(len(texts), len(self.vec.vocabulary)),
            dtype=self.vec.dtype,
        )
        x.sort_indices()
        return x

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t[:MAX_CHARS] for t in texts]
        counts = self._char_counts(texts) if self._keys is not None else None
        if counts is None:
            x = self.vec.transform(texts)
        else:
            x = self.vec._tfidf.transform(counts, copy=False)  # type: ignore[attr-defined]
        z = np.asarray(x @ self.coef.T) + self.intercept
        if z.shape[1] == 1:  # binary logistic regression stored by an old version: one score
            z = np.hstack([np.zeros_like(z), z])
        return z

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.labels)))
        return softmax(self.decision(texts), self.scale)

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{lab: float(p) for lab, p in zip(self.labels, row, strict=True)} for row in self.proba(texts)]
