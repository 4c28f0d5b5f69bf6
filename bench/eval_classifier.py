"""Evaluate the classifier on the shared data (read from ../shared/data, never copied).

    .venv/bin/python bench/eval_classifier.py [--data ../shared/data] [--model classifiers/model]

1. Topic (7 classes) on gov_messages_tipdm2020/messages_labeled_附件2_dev.csv:
   seeded stratified 5-fold CV of char n-gram TF-IDF + LinearSVC / LogisticRegression
   (macro-F1, accuracy, confusion matrix), the keyword rules on all of it, and the
   committed model (BERT, TF-IDF, ensemble) on the fixed held-out 20% that
   ``classifiers/train.py`` kept out of training (same seed, same split).
2. Event type on emergency_events_cec/cec_documents.jsonl: the rule-based event
   subtype vs. the CEC category (交通事故/火灾/地震/食物中毒/恐怖袭击); our
   森林火灾 counts as 火灾 (CEC files forest fires under 火灾).
3. Deaths / injured exact match vs. CEC annotations. Gold counts are derived like
   this: an event whose denoter is a death word (死亡, 遇难, 身亡, 丧生, 罹难, 死,
   亡, 致死, 遇害, 殒命) or an injury word (重伤 / 受伤, 伤, 轻伤, 负伤 ...) and whose
   Participant span (the annotated "who") holds a count ("6人", "32名乘客",
   "至少十二人", "3名" ...) gives that count; the document's gold is the largest
   such count (reports often repeat and update figures, and the extractor also
   takes the largest stated). For injured, counts next to 重伤 denoters win when
   there are any (the severity rules use 重伤), else the 受伤 counts. A document
   without any such span has gold "none" and matches when the extractor says
   none (or 0). Spans without a number (一名男子 → 1 is counted; 司机 is not) are
   skipped, so gold is a lower bound of what the text says. CEC often annotates
   the bare 死/伤 of "致2死3伤" as a denoter with no Participant; for a death or
   injury denoter without a counted participant, a count written right before
   that denoter word in the text ("2死", "一人亡") is taken instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.casualties import cn_to_number, extract_casualties  # noqa: E402
from classifiers.taxonomy import Taxonomy  # noqa: E402
from classifiers.train import TOPICS, holdout_split, read_labelled  # noqa: E402

CEC_TYPES = ["交通事故", "火灾", "地震", "食物中毒", "恐怖袭击"]
DEATH_WORDS = {"死亡", "遇难", "身亡", "丧生", "罹难", "死", "亡", "致死", "遇害", "殒命", "丧命", "死难", "毙命"}
SERIOUS_WORDS = {"重伤", "受重伤", "严重受伤", "危重"}
INJURY_WORDS = {"受伤", "伤", "轻伤", "负伤", "伤亡", "烧伤", "砸伤", "撞伤", "炸伤", "受轻伤", "轻重伤"} | SERIOUS_WORDS
_COUNT = re.compile(r"(\d+|[零〇一二两三四五六七八九十百千]+)(?:余|多)?(?:个)?(?:人|名|位)")


def pr(*a: object) -> None:
    print(*a, flush=True)


def confusion_text(cm: list[list[int]], labels: list[str]) -> str:
    w = max(len(x) for x in labels) * 2
    head = " " * w + "".join(f"{x[:4]:>6}" for x in labels)
    rows = [f"{lab:<{w - len(lab)}}" + "".join(f"{v:>7}" for v in row) for lab, row in zip(labels, cm, strict=True)]
    return "\n".join([head, *rows])


def scores(y: list[int], pred: np.ndarray, n: int) -> dict[str, object]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {"macro_f1": float(f1_score(y, pred, labels=list(range(n)), average="macro")),
            "accuracy": float(accuracy_score(y, pred)),
            "confusion": confusion_matrix(y, pred, labels=list(range(n))).tolist()}


# -- 1. topic ----------------------------------------------------------------------


def eval_topic(data: Path, model_dir: Path | None, taxonomy: Taxonomy, skip_cv: bool = False) -> dict[str, object]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    from classifiers.train import TFIDF_PARAMS

    path = data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv"
    texts, labels = read_labelled(path)
    names = [t for t in TOPICS if t in set(labels)]
    y = np.array([names.index(lab) for lab in labels])
    pr(f"\n== 主题（{len(texts)} 条，{len(names)} 类）：{dict(Counter(labels))}")
    out: dict[str, object] = {}
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=13)
    cv = () if skip_cv else (("tfidf+LinearSVC", lambda: LinearSVC(C=0.5)),
                             ("tfidf+LogReg", lambda: LogisticRegression(C=20.0, max_iter=2000)))
    for name, make in cv:
        pred = np.zeros_like(y)
        t0 = time.monotonic()
        for tr, te in skf.split(texts, y):
            vec = TfidfVectorizer(**TFIDF_PARAMS)
            xtr = vec.fit_transform([texts[i] for i in tr])
            clf = make().fit(xtr, y[tr])
            pred[te] = clf.predict(vec.transform([texts[i] for i in te]))
        s = scores(list(y), pred, len(names))
        out[f"cv5_{name}"] = s
        pr(f"5 折交叉验证 {name}: macro-F1 {s['macro_f1']:.4f}  accuracy {s['accuracy']:.4f}  "
           f"({time.monotonic() - t0:.0f} s)")
        pr(confusion_text(s["confusion"], names))  # type: ignore[arg-type]

    # keyword rules (no training): the rules' top topic, None counts as wrong
    rule_pred = []
    for t in texts:
        top = taxonomy.topic("", t).topic
        rule_pred.append(names.index(top) if top in names else -1)
    rp = np.array(rule_pred)
    acc = float((rp == y).mean())
    from sklearn.metrics import f1_score

    mf1 = float(f1_score(y, rp, labels=list(range(len(names))), average="macro"))
    out["rules"] = {"macro_f1": mf1, "accuracy": acc, "no_topic_or_other": int((rp == -1).sum())}
    pr(f"关键词规则（全部 {len(texts)} 条）: macro-F1 {mf1:.4f}  accuracy {acc:.4f}  "
       f"（{int((rp == -1).sum())} 条无主题或落在七类之外）")

    if model_dir is not None and (model_dir / "config.json").is_file():
        from classifiers.assess import Assessor, HFTopicModel, load_model_dir
        from classifiers.train import TfidfTopicModel
        from yuqing.settings import Settings

        tr_idx, te_idx = holdout_split(labels, 0.2, 13)
        te_x = [texts[i] for i in te_idx]
        te_y = [int(y[i]) for i in te_idx]
        pr(f"\n-- 固定留出集（seed 13，分层 20%：{len(te_idx)} 条，训练用其余 {len(tr_idx)} 条），模型 {model_dir}")
        bert = HFTopicModel(model_dir)
        perm = [bert.labels.index(n) for n in names]
        t0 = time.monotonic()
        pb = bert.proba(te_x)[:, perm]
        bert_s = time.monotonic() - t0
        res = {"bert": scores(te_y, pb.argmax(1), len(names))}
        if (model_dir / "tfidf.npz").is_file():
            tf = TfidfTopicModel(model_dir)
            pt = tf.proba(te_x)[:, [tf.labels.index(n) for n in names]]
            res["tfidf"] = scores(te_y, pt.argmax(1), len(names))
            res["ensemble(0.5)"] = scores(te_y, (0.5 * pb + 0.5 * pt).argmax(1), len(names))
        chosen = load_model_dir(model_dir)
        # the whole Assessor: the deployed model decides among the seven when confident, rules otherwise
        settings = Settings(data_dir=str(ROOT / "var"), config_dir=ROOT / "config")
        a = Assessor(settings, topic_model=chosen)
        got = [x.topic for x in a.assess_texts([("", t, None, None) for t in te_x])]
        res["assessor(" + chosen.version + "+rules)"] = scores(
            te_y, np.array([names.index(g) if g in names else -1 for g in got]), len(names))
        for k, s in res.items():
            pr(f"{k:>28}: macro-F1 {s['macro_f1']:.4f}  accuracy {s['accuracy']:.4f}")
        pr(f"已部署：{chosen.version}")
        pr(f"BERT 前向 {len(te_x)} 条用时 {bert_s:.1f} s")
        for k in ("bert", "tfidf", "ensemble(0.5)"):
            if k in res:
                pr(f"{k} 混淆矩阵：\n" + confusion_text(res[k]["confusion"], names))  # type: ignore[arg-type]
        out["heldout"] = res
    return out


# -- 2/3. CEC ----------------------------------------------------------------------


def count_of(span: str) -> int | None:
    m = _COUNT.search(span)
    if m:
        v = m.group(1)
        return int(v) if v.isdigit() else cn_to_number(v)
    if re.match(r"^(?:一名|一位|一个)", span):
        return 1
    return None


def gold_casualties(doc: dict) -> tuple[int | None, int | None]:
    deaths: list[int] = []
    serious: list[int] = []
    injured: list[int] = []
    for ev in doc.get("events") or []:
        words = {d["text"] for d in ev.get("denoter") or []}
        counts = [c for p in ev.get("participant") or [] if (c := count_of(p["text"])) is not None]
        if not counts and words & (DEATH_WORDS | INJURY_WORDS):
            for w in words & (DEATH_WORDS | INJURY_WORDS):
                for m in re.finditer(r"(\d+|[一二两三四五六七八九十百]+)(?:余|多)?(?:人|名)?" + re.escape(w), doc["text"]):
                    v = m.group(1)
                    n = int(v) if v.isdigit() else cn_to_number(v)
                    if n is not None:
                        counts.append(n)
        if not counts:
            continue
        n = max(counts)
        if words & DEATH_WORDS:
            deaths.append(n)
        if words & SERIOUS_WORDS:
            serious.append(n)
        elif words & INJURY_WORDS:
            injured.append(n)
    d = max(deaths) if deaths else None
    i = max(serious) if serious else (max(injured) if injured else None)
    return d, i


def eval_cec(data: Path, taxonomy: Taxonomy, show: int) -> dict[str, object]:
    path = data / "emergency_events_cec" / "cec_documents.jsonl"
    docs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pr(f"\n== CEC 突发事件（{len(docs)} 篇）")
    ok = 0
    conf: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    for d in docs:
        ev = taxonomy.event(d["title"], d["text"])
        got = ev.subtype or "（无）"
        if got == "森林火灾":  # CEC's 火灾 folder includes forest fires; ours is a subtype of 自然灾害
            got = "火灾"
        conf[(d["category_zh"], got)] += 1
        if got == d["category_zh"]:
            ok += 1
        else:
            misses.append(f"  {d['category_zh']} → {got}: {d['title']}")
    acc = ok / len(docs)
    pr(f"事件类型准确率（规则子类型 = CEC 类别）：{acc:.4f}（{ok}/{len(docs)}）")
    for cat in CEC_TYPES:
        row = {g: n for (c, g), n in conf.items() if c == cat}
        pr(f"  {cat}: {dict(sorted(row.items(), key=lambda kv: -kv[1]))}")
    for m in misses[:show]:
        pr(m)

    res: dict[str, object] = {"event_type_accuracy": acc}
    for field, idx in (("deaths", 0), ("injured", 1)):
        n_all = n_ok = n_num = n_num_ok = 0
        wrong: list[str] = []
        for d in docs:
            gold = gold_casualties(d)[idx]
            c = extract_casualties(f"{d['title']}\n{d['text']}").casualties
            got = getattr(c, field)
            n_all += 1
            match = (gold is None and not got) or gold == got
            n_ok += match
            if gold is not None:
                n_num += 1
                n_num_ok += gold == got
            if not match:
                wrong.append(f"  {field} 金标 {gold} 抽取 {got}: {d['title']}")
        pr(f"{field} 完全一致：全部 {n_ok / n_all:.4f}（{n_ok}/{n_all}）；"
           f"金标有数字的 {n_num_ok / max(1, n_num):.4f}（{n_num_ok}/{n_num}）")
        for w in wrong[:show]:
            pr(w)
        res[f"{field}_exact_all"] = n_ok / n_all
        res[f"{field}_exact_with_gold"] = n_num_ok / max(1, n_num)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="分类器评估")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=str(ROOT / "classifiers" / "model"))
    ap.add_argument("--show", type=int, default=15, help="每项最多列出多少个错例")
    ap.add_argument("--skip-topic", action="store_true")
    ap.add_argument("--skip-cv", action="store_true", help="不做 5 折交叉验证（只测留出集）")
    ap.add_argument("--json", help="把全部数字写入此 JSON 文件")
    args = ap.parse_args(argv)
    data = Path(args.data)
    taxonomy = Taxonomy.load(ROOT / "config" / "taxonomy.yaml")
    out: dict[str, object] = {}
    if not args.skip_topic:
        out["topic"] = eval_topic(data, Path(args.model) if args.model else None, taxonomy, args.skip_cv)
    out["cec"] = eval_cec(data, taxonomy, args.show)
    if args.json:
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
