"""Posts per second through the whole Assessor, and through the bare topic model.

    .venv/bin/python bench/assess_throughput.py [--n 512] [--batch 32] [--threads 2]

Texts: the unlabelled TipDM messages from ../shared/data when present (real
lengths, median ~200 characters), otherwise generated ones. Reports

* the whole Assessor with the configured/committed model (rules + model),
* the Assessor with rules only,
* the bare model forward pass (tokenise + forward + softmax) on the same texts,

and the ratio of the whole Assessor's time to the bare model's.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_texts(data: Path, n: int) -> list[tuple[str, str]]:
    p = data / "gov_messages_tipdm2020" / "messages_unlabeled_posttest_测试数据.csv"
    out: list[tuple[str, str]] = []
    if p.is_file():
        with open(p, encoding="utf-8", newline="") as fh:
            out = [((r.get("留言主题") or ""), (r.get("留言详情") or "")) for r in csv.DictReader(fh)]
    if not out:
        rng = random.Random(1)
        parts = ["小区物业乱收停车费", "学校食堂卫生差", "道路施工噪音扰民", "拖欠农民工工资", "医院收费不合理",
                 "湖南省长沙市雨花区发生火灾，造成3人死亡", "公交线路调整不便", "工厂排放废水污染河道"]
        out = [(rng.choice(parts), "，".join(rng.choice(parts) for _ in range(12))) for _ in range(n)]
    rng = random.Random(7)
    rng.shuffle(out)
    return (out * (n // len(out) + 1))[:n]


def rate(fn, n: int, repeat: int = 1) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return n * repeat / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="研判吞吐量")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch 线程数（0 = 默认）")
    ap.add_argument("--mode", choices=["default", "bert", "tfidf", "ensemble"], default="default",
                    help="测哪种模型（default：按 classifiers/model/ensemble.json 部署的那种）")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from classifiers.assess import Assessor
    from yuqing.settings import Settings

    settings = Settings(data_dir=str(ROOT / "var"), config_dir=ROOT / "config")
    settings.classifier.batch_size = args.batch
    texts = load_texts(Path(args.data), args.n)
    items = [(t, x, None, None) for t, x in texts]
    full = [f"{t}\n{x}" if t else x for t, x in texts]
    print(f"{len(items)} 条，平均 {sum(len(s) for s in full) / len(full):.0f} 字；批大小 {args.batch}；"
          f"torch 线程 {torch.get_num_threads()}")

    rules = Assessor(settings, use_model=False)
    r_rules = rate(lambda: [rules.assess_texts(items[i:i + args.batch]) for i in range(0, len(items), args.batch)],
                   len(items))
    print(f"规则（无模型）整条研判：{r_rules:8.1f} 条/秒")

    model = None
    if args.mode != "default":
        from classifiers.assess import DEFAULT_MODEL_DIR, EnsembleTopicModel, HFTopicModel
        from classifiers.train import TfidfTopicModel

        if args.mode == "tfidf":
            model = TfidfTopicModel(DEFAULT_MODEL_DIR)
        else:
            bert = HFTopicModel(DEFAULT_MODEL_DIR, batch_size=args.batch)
            model = bert if args.mode == "bert" else EnsembleTopicModel(bert, TfidfTopicModel(DEFAULT_MODEL_DIR))
    a = Assessor(settings, topic_model=model)
    if a.topic_model is None:
        print("未找到主题模型（classifiers/model/ 或 classifier.model_dir），只测了规则")
        return 0
    m = a.topic_model
    r_model = rate(lambda: [m.predict(full[i:i + args.batch]) for i in range(0, len(full), args.batch)], len(full))
    print(f"模型 {m.version} 前向（分词+前向+softmax）：{r_model:8.1f} 条/秒")
    bert = getattr(m, "bert", None)
    if bert is not None:
        r_bert = rate(lambda: [bert.predict(full[i:i + args.batch]) for i in range(0, len(full), args.batch)],
                      len(full))
        print(f"  其中仅 BERT：{r_bert:8.1f} 条/秒（max_length {bert.max_length}）")
    r_all = rate(lambda: [a.assess_texts(items[i:i + args.batch]) for i in range(0, len(items), args.batch)],
                 len(items))
    print(f"整个 Assessor（模型+规则）：{r_all:8.1f} 条/秒；与模型前向之比 {r_all / r_model:.2f}"
          f"（整条用时是模型前向的 {r_model / r_all:.2f} 倍）")
    print(f"目标 800 条/秒：{'达到' if r_all >= 800 else '未达到'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
