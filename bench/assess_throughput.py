"""Posts per second through the whole Assessor, and through the bare topic model.

    .venv/bin/python bench/assess_throughput.py [--n 512] [--batch 32] [--threads 2] [--workers N]

Texts: the unlabelled TipDM messages from ../shared/data when present (real
lengths, median ~200 characters), otherwise generated ones. Every timed pass
runs on texts the process has not seen (the warm-up uses other texts), so no
per-text cache flatters a figure. Reports, in one process:

* the Assessor with rules only,
* the bare model forward pass (tokenise + forward + softmax) on the same texts,
* the whole Assessor with the configured/committed model (rules + model), and
  its ratio to the bare model forward pass;

then ``yuqing classify``'s batch path (parse the JSONL line, assess, write the
JSON record) through its worker pool with 1 and with N processes (``--workers``,
default one per CPU), each process loading the Assessor once; the process
start-up is timed separately and not in the posts/s figure.
"""

from __future__ import annotations

import argparse
import csv
import json
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


def rate(fn, n: int, warm=None) -> float:
    (warm or fn)()  # warm-up, on other texts where given
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def jsonl(texts: list[tuple[str, str]], first: int = 1) -> list[tuple[int, bytes]]:
    return [(first + i, json.dumps({"id": f"b{first + i}", "title": t, "text": x}, ensure_ascii=False).encode())
            for i, (t, x) in enumerate(texts)]


def pool_rate(settings, workers: int, lines, warm_lines, batch: int) -> tuple[float, float]:
    """(posts/s through the worker pool, start-up seconds) for ``lines``."""
    from classifiers.cli import WorkerPool, chunk_lines

    size = chunk_lines(batch)

    def chunks(ls):
        return [ls[i:i + size] for i in range(0, len(ls), size)]

    t0 = time.perf_counter()
    with WorkerPool(settings, workers) as pool:
        # one chunk per worker at once: each has loaded the Assessor after this
        list(pool.map(chunks(warm_lines)[: 2 * workers], batch))
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        ok = sum(r.ok for r in pool.map(chunks(lines), batch))
        return ok / (time.perf_counter() - t1), started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="研判吞吐量")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch 线程数（0 = 默认）")
    ap.add_argument("--mode", choices=["default", "bert", "tfidf", "ensemble"], default="default",
                    help="测哪种模型（default：按 classifiers/model/ensemble.json 部署的那种）")
    ap.add_argument("--workers", type=int, default=0, help="多进程测试的进程数（0 = 每个 CPU 一个，同 yuqing classify）")
    args = ap.parse_args(argv)

    import torch

    from classifiers.cli import usable_cpus

    torch.set_num_threads(args.threads or usable_cpus())
    from classifiers.assess import Assessor
    from yuqing.settings import Settings

    settings = Settings(data_dir=str(ROOT / "var"), config_dir=ROOT / "config")
    settings.classifier.batch_size = args.batch
    both = load_texts(Path(args.data), 2 * args.n)
    texts, others = both[: args.n], both[args.n:]
    items = [(t, x, None, None) for t, x in texts]
    warm_items = [(t, x, None, None) for t, x in others]
    full = [f"{t}\n{x}" if t else x for t, x in texts]
    warm_full = [f"{t}\n{x}" if t else x for t, x in others]
    print(f"{len(items)} 条，平均 {sum(len(s) for s in full) / len(full):.0f} 字；批大小 {args.batch}；"
          f"torch 线程 {torch.get_num_threads()}")

    def batches(fn, xs):
        return lambda: [fn(xs[i:i + args.batch]) for i in range(0, len(xs), args.batch)]

    rules = Assessor(settings, use_model=False)
    r_rules = rate(batches(rules.assess_texts, items), len(items), batches(rules.assess_texts, warm_items))
    print(f"单进程  规则（无模型）整条研判：{r_rules:8.1f} 条/秒")

    model = None
    if args.mode != "default":
        from classifiers.linear_topic import TfidfTopicModel
        from classifiers.topic_model import DEFAULT_MODEL_DIR, EnsembleTopicModel, HFTopicModel

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
    r_model = rate(batches(m.predict, full), len(full), batches(m.predict, warm_full))
    print(f"单进程  模型 {m.version} 前向（分词+前向+softmax）：{r_model:8.1f} 条/秒")
    bert = getattr(m, "bert", None)
    if bert is not None:
        r_bert = rate(batches(bert.predict, full), len(full), batches(bert.predict, warm_full))
        print(f"  其中仅 BERT：{r_bert:8.1f} 条/秒（max_length {bert.max_length}）")
    r_all = rate(batches(a.assess_texts, items), len(items), batches(a.assess_texts, warm_items))
    print(f"单进程  整个 Assessor（模型+规则）：{r_all:8.1f} 条/秒；与模型前向之比 {r_all / r_model:.2f}"
          f"（整条用时是模型前向的 {r_model / r_all:.2f} 倍）")
    best = r_all
    if args.mode == "default":
        from classifiers.cli import default_workers

        workers = args.workers or default_workers()
        lines, warm_lines = jsonl(texts), jsonl(others, first=len(texts) + 1)
        for w in dict.fromkeys((1, workers)):
            r, started = pool_rate(settings, w, lines, warm_lines, args.batch)
            print(f"{w} 进程  批量研判（解析 JSONL + 整个 Assessor + 写 JSON）：{r:8.1f} 条/秒；"
                  f"与单进程模型前向之比 {r / r_model:.2f}（进程启动 {started:.1f} 秒，不计入）")
            best = max(best, r)
    else:
        print("（多进程只测部署的模型：--mode default）")
    print(f"目标 800 条/秒：单进程{'达到' if r_all >= 800 else '未达到'}；"
          f"最好 {best:.0f} 条/秒，{'达到' if best >= 800 else '未达到'}（可用 {usable_cpus()} 个 CPU）")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
