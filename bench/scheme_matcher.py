"""Scheme alerts (responder.schemes): posts/s the matcher handles with N monitoring schemes.

    .venv/bin/python bench/scheme_matcher.py [--schemes 200] [--posts 3000]

Stores synthetic posts (SQLite, through the responder's handle_batch), saves N
schemes of 地域词/主体词/事件词/排除词 drawn from the same vocabulary, and times
SchemeMatcher.catch_up over the posts: segmentation once per post, every
scheme's tree evaluated in Python, matches and the cursor written per batch.
Prints the rate with and without the schemes' evaluation (segmentation alone)."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from responder import cases  # noqa: E402
from responder.permissions import CLI_ACTOR  # noqa: E402
from responder.schemes import SchemeMatcher  # noqa: E402
from responder.search import query as qlang  # noqa: E402
from responder.service import handle_batch  # noqa: E402
from responder.store import Post, SchemeMatch, Store  # noqa: E402
from tests.fixtures.databases import assessed, sh  # noqa: E402
from yuqing.settings import load_settings  # noqa: E402

REGIONS = ["合肥", "芜湖", "蜀山", "包河", "六安", "安庆", "蚌埠", "政务区", "滨湖"]
SUBJECTS = ["地铁", "公交", "物业", "学校", "医院", "小区", "出租车", "菜市场", "工地", "自来水"]
EVENTS = ["停运", "拥堵", "涨价", "投诉", "噪音", "停水", "塌陷", "火灾", "欠薪", "纠纷"]
EXCLUDES = ["广告", "招聘", "天气", "促销"]
PLACES = ["蜀山区", "包河区", "镜湖区", "颍州区", "合肥市"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemes", type=int, default=200)
    ap.add_argument("--posts", type=int, default=3000)
    args = ap.parse_args()
    rnd = random.Random(17)
    t0 = sh(2026, 11, 2, 9, 0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(ROOT / "config")
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        for i in range(args.schemes):
            scheme = {"regions": rnd.sample(REGIONS, 2), "subjects": rnd.sample(SUBJECTS, 3),
                      "events": rnd.sample(EVENTS, 3), "excludes": rnd.sample(EXCLUDES, 2)}
            cases.save_search(store, CLI_ACTOR, f"方案{i}", {"scheme": scheme}, now=t0)
        SchemeMatcher(store).step(now=t0)
        posts = []
        for i in range(args.posts):
            words = [rnd.choice(g) for g in (REGIONS, SUBJECTS, EVENTS, EXCLUDES) if rnd.random() < 0.7]
            text = ("网友反映" + "，".join(words) + "，相关部门表示正在核实处理，具体情况将及时向社会公布。") * 3
            posts.append(assessed(f"b{i}", title="".join(words[:3]) + "情况", text=text,
                                  published_at=t0 + timedelta(seconds=i), place=rnd.choice(PLACES)))
        for i in range(0, len(posts), 500):
            handle_batch(store, settings, posts[i:i + 500], now=t0 + timedelta(hours=1))

        with store.reader() as s:
            rows = s.query(Post.title, Post.text).all()
        start = time.perf_counter()
        for title, text in rows:
            qlang.doc_tokens(title, text)
        seg = time.perf_counter() - start

        start = time.perf_counter()
        done = SchemeMatcher(store).catch_up(now=t0 + timedelta(hours=1))
        took = time.perf_counter() - start
        n = store.count(SchemeMatch)
        store.close()
    print(f"schemes {args.schemes}, posts {done.posts}, matches {n} ({n / max(done.posts, 1):.2f} per post)")
    print(f"matcher: {done.posts / took:,.0f} posts/s ({took:.2f} s); segmentation alone: {len(rows) / seg:,.0f} posts/s")


if __name__ == "__main__":
    main()
