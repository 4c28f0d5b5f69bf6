"""Evaluate the classifier on the shared data (read from ../shared/data, never copied).

    .venv/bin/python bench/eval_classifier.py [--data ../shared/data] [--model classifiers/model]

1. Topic (7 classes) on gov_messages_tipdm2020/messages_labeled_附件2_dev.csv:
   the linear variants of ``classifiers/linear_topic.py`` (char n-gram TF-IDF +
   LinearSVC / LogisticRegression, with weak labels from 附件4 replies, with
   self-training on 附件3/测试数据) on the fixed held-out 20% (seed 13, the split
   ``classifiers/train.py`` uses) and by seeded stratified 5-fold CV (weak/pseudo-
   labelled near-duplicates of evaluated messages removed per fold), macro-F1,
   accuracy and the deployed variant's confusion matrices (``--topic-variants``);
   the keyword rules on all of it; the committed BERT and the deployed variant
   refitted on the training part (clean held-out figures, alone and in the
   Assessor; the committed linear weights are fitted on all labelled messages).
   The whole Assessor (what ``yuqing classify`` runs: emergencies, relevance,
   rules and the deployed model) on the same held-out 20%, beside the rules
   alone, with how many held-out messages it calls emergencies or irrelevant
   (all are government matters, none an emergency); ``--skip-assessor``.
2. Event type on emergency_events_cec/cec_documents.jsonl: the rule-based event
   subtype vs. the CEC category (交通事故/火灾/地震/食物中毒/恐怖袭击); our
   森林火灾 counts as 火灾 (CEC files forest fires under 火灾). Also on the same
   documents cut to the title alone and to the title and the first two sentences
   (a monitored post is often a headline and its lede).
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


def eval_topic(data: Path, model_dir: Path | None, taxonomy: Taxonomy, skip_cv: bool = False,
               variants: list[str] | None = None) -> dict[str, object]:
    """The linear variants of ``classifiers.linear_topic`` (held-out 20%, seed 13, and
    5-fold CV with per-fold near-duplicate removal), confusion matrices of the
    deployed variant, the keyword rules, and the committed model's BERT part."""
    from classifiers.linear_topic import (
        DEFAULT_VARIANTS,
        VARIANTS,
        evaluate_variants,
        fit_variant,
        pick_variant,
        read_extra,
        save_linear,
    )

    path = data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv"
    texts, labels = read_labelled(path)
    names = [t for t in TOPICS if t in set(labels)]
    y = np.array([names.index(lab) for lab in labels])
    pr(f"\n== 主题（{len(texts)} 条，{len(names)} 类）：{dict(Counter(labels))}")
    out: dict[str, object] = {}
    tr_idx, te_idx = holdout_split(labels, 0.2, 13)
    te_x = [texts[i] for i in te_idx]
    te_y = [int(y[i]) for i in te_idx]
    chosen_vars = [VARIANTS[n] for n in (variants or list(DEFAULT_VARIANTS))]
    extra = read_extra(data, names)
    pr(f"线性模型变体：留出集（seed 13，分层 20%：{len(te_idx)} 条，训练 {len(tr_idx)} 条）"
       + ("" if skip_cv else " 与 5 折交叉验证") + f"；弱标注 {len(extra.weak_texts)} 条，未标注 {len(extra.unlabelled)} 条")
    res = evaluate_variants(chosen_vars, texts, y, names, tr_idx, te_idx, extra, folds=0 if skip_cv else 5,
                            seed=13, report=pr)
    for r in res.values():
        r.pop("_oof", None)
    out["variants"] = res
    deployed = None
    if model_dir is not None and (model_dir / "tfidf_vocab.json").is_file():
        meta = json.loads((model_dir / "tfidf_vocab.json").read_text(encoding="utf-8"))
        deployed = (meta.get("variant") or {}).get("name")
    name = deployed if deployed in res else pick_variant(res)
    pr(f"{'已部署' if deployed == name else '最佳'}变体 {name} 留出集混淆矩阵：\n"
       + confusion_text(res[name]["heldout"]["confusion"], names))  # type: ignore[index]
    if "cv" in res[name]:
        pr(f"{name} 5 折交叉验证混淆矩阵：\n" + confusion_text(res[name]["cv"]["confusion"], names))  # type: ignore[index]

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
        import tempfile

        from classifiers.assess import Assessor
        from classifiers.linear_topic import TfidfTopicModel
        from classifiers.topic_model import HFTopicModel, load_model_dir
        from yuqing.settings import Settings

        tm = model_dir / "train_metrics.json"
        meta = json.loads(tm.read_text(encoding="utf-8")) if tm.is_file() else {}
        chosen = load_model_dir(model_dir)
        pr(f"\n-- 已部署模型 {chosen.version}（{model_dir}）；线性部分拟合于："
           f"{'全部标注数据（含留出集，故不在留出集上评它本身）' if meta.get('fit_on') == 'all' else '训练部分'}")
        bert = HFTopicModel(model_dir)
        t0 = time.monotonic()
        pb = bert.proba(te_x)[:, [bert.labels.index(n) for n in names]]
        bert_s = time.monotonic() - t0
        held: dict[str, object] = {"bert(train part)": scores(te_y, pb.argmax(1), len(names))}
        # the deployed variant fitted on the train part only: a clean held-out figure, alone and in the Assessor
        v = VARIANTS[name]
        m = fit_variant(v, [texts[i] for i in tr_idx], y[tr_idx], names, extra, exclude=te_x)
        scale = float(meta.get("softmax_scale") or 1.0)
        with tempfile.TemporaryDirectory() as tmp:
            save_linear(m, names, Path(tmp), scale, v)
            lin = TfidfTopicModel(tmp)
            pt = lin.proba(te_x)
            held[f"{name}(train part)"] = scores(te_y, pt.argmax(1), len(names))
            held["ensemble(0.5)"] = scores(te_y, (0.5 * pb + 0.5 * pt).argmax(1), len(names))
            settings = Settings(data_dir=str(ROOT / "var"), config_dir=ROOT / "config")
            a = Assessor(settings, topic_model=lin)
            got = [x.topic for x in a.assess_texts([("", t, None, None) for t in te_x])]
            held[f"assessor({name}(train part)+rules)"] = scores(
                te_y, np.array([names.index(g) if g in names else -1 for g in got]), len(names))
        for k, s in held.items():
            pr(f"{k:>42}: macro-F1 {s['macro_f1']:.4f}  accuracy {s['accuracy']:.4f}")  # type: ignore[index]
        pr(f"BERT 前向 {len(te_x)} 条用时 {bert_s:.1f} s")
        out["heldout"] = held
    return out


# -- 1b. the whole Assessor ----------------------------------------------------------


def eval_assessor(data: Path, model_dir: Path | None, show: int = 0) -> dict[str, object]:
    """The whole Assessor (``yuqing classify``'s path: rules, emergencies,
    relevance, and the committed topic model) on the fixed held-out 20% of the
    labelled messages, with the rules alone beside it. Every held-out message is
    a government matter and none is an emergency, so the counts of messages
    called irrelevant or emergencies are errors too."""
    from classifiers.assess import Assessor
    from classifiers.topic_model import load_model_dir
    from yuqing.settings import Settings

    path = data / "gov_messages_tipdm2020" / "messages_labeled_附件2_dev.csv"
    texts, labels = read_labelled(path)
    names = [t for t in TOPICS if t in set(labels)]
    _tr, te_idx = holdout_split(labels, 0.2, 13)
    te_x = [texts[i] for i in te_idx]
    te_y = [names.index(labels[i]) for i in te_idx]
    settings = Settings(data_dir=str(ROOT / "var"), config_dir=ROOT / "config")
    pr(f"\n== 整个 Assessor（固定留出集 {len(te_x)} 条，seed 13，分层 20%）")
    runs: list[tuple[str, Assessor]] = []
    if model_dir is not None and (model_dir / "config.json").is_file():
        tm = model_dir / "train_metrics.json"
        meta = json.loads(tm.read_text(encoding="utf-8")) if tm.is_file() else {}
        if meta.get("fit_on") == "all":
            # Its linear weights have seen these messages: a figure here would be leakage.
            pr("已部署模型的线性部分拟合于全部标注数据（含留出集），此处不评它；"
               "干净的整体数字见上节 assessor(…(train part)+rules)")
        else:
            model = load_model_dir(model_dir)
            runs.append((f"{model.version}+rules", Assessor(settings, topic_model=model)))
    runs.append(("rules", Assessor(settings, use_model=False)))
    out: dict[str, object] = {}
    for name, a in runs:
        t0 = time.monotonic()
        res = a.assess_texts([("", t, None, None) for t in te_x])
        secs = time.monotonic() - t0
        pred = np.array([names.index(r.topic) if r.topic in names else -1 for r in res])
        s = scores(te_y, pred, len(names))
        s["emergencies"] = sum(r.is_emergency for r in res)
        s["irrelevant"] = sum(not r.relevant for r in res)
        s["no_topic"] = sum(r.topic is None for r in res)
        s["other_topic"] = sum(r.topic is not None and r.topic not in names for r in res)
        out[name] = s
        pr(f"{name:>24}: macro-F1 {s['macro_f1']:.4f}  accuracy {s['accuracy']:.4f}  突发事件 {s['emergencies']} 条  "
           f"判为无关 {s['irrelevant']} 条  无主题 {s['no_topic']} 条  七类之外 {s['other_topic']} 条  ({secs:.1f} s)")
        pr(confusion_text(s["confusion"], names))  # type: ignore[arg-type]
        shown = 0
        for t, r in zip(te_x, res, strict=True):
            if r.is_emergency and shown < show:
                shown += 1
                pr(f"  判为突发事件：{r.event_subtype or '（伤亡）'} → {r.topic}：{t[:60]}")
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


def _lede2(text: str) -> str:
    """The first two sentences of a report."""
    return "".join(re.split(r"(?<=[。！？])", text.strip())[:2])


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
    # The full reports repeat the words that name the event; a monitored post often has only a
    # headline, or a headline and its lede. The same documents cut that way say whether the
    # subtype rules work without the repetition.
    for key, label, cut in (("event_type_accuracy_title", "只有标题", lambda d: (d["title"], "")),
                            ("event_type_accuracy_lede", "标题 + 正文前两句", lambda d: (d["title"], _lede2(d["text"])))):
        n_ok, wrong = 0, []
        for d in docs:
            got = taxonomy.event(*cut(d)).subtype or "（无）"
            got = "火灾" if got == "森林火灾" else got
            n_ok += got == d["category_zh"]
            if got != d["category_zh"]:
                wrong.append(f"  {d['category_zh']} → {got}: {d['title']}")
        pr(f"事件类型准确率（{label}）：{n_ok / len(docs):.4f}（{n_ok}/{len(docs)}）")
        for m in wrong[:show]:
            pr(m)
        res[key] = n_ok / len(docs)
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
    ap.add_argument("--topic-variants", help="要比较的线性主题模型变体，逗号分隔（默认全部，见 classifiers/linear_topic.py）")
    ap.add_argument("--skip-assessor", action="store_true", help="不测整个 Assessor")
    ap.add_argument("--json", help="把全部数字写入此 JSON 文件")
    args = ap.parse_args(argv)
    data = Path(args.data)
    taxonomy = Taxonomy.load(ROOT / "config" / "taxonomy.yaml")
    out: dict[str, object] = {}
    if not args.skip_topic:
        out["topic"] = eval_topic(data, Path(args.model) if args.model else None, taxonomy, args.skip_cv,
                                  args.topic_variants.split(",") if args.topic_variants else None)
    if not args.skip_assessor:
        out["assessor"] = eval_assessor(data, Path(args.model) if args.model else None, args.show)
    out["cec"] = eval_cec(data, taxonomy, args.show)
    if args.json:
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
