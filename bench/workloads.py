"""Workloads for the benchmarks: raw posts as a crawler would publish them.

* ``demo`` — the demo site's stories, each copied with a unique id, one a
  minute, cycled (few stories, long-lived events with many members).
* ``messages`` — real texts from ``../shared/data`` (never committed): the
  TipDM citizen messages (附件3 hot messages, 测试数据, 附件4 with their official
  replies), CEC emergency reports and CCTV Weibo posts, on a synthetic
  timeline (``gap_s`` between posts). Some posts are derived from a recent
  one: forum retellings (sentences dropped, title changed), Weibo reposts
  (``parent_id``), the official reply to a message (``parent_id``, source
  kind ``official``); a few arrive hours late (an earlier T0). Thousands of
  open events at once.

Posts come in arrival order (by fetch time). ``start`` moves the whole
timeline (default: the fixed dates the saved baselines were taken with).
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def demo_posts(n: int, start: datetime | None = None) -> list[Any]:
    """The demo stories cycled, one a minute."""
    from stream.contracts import SHANGHAI, RawPost, content_hash, make_post_id
    from yuqing.demo_site.stories import FORUM, NEWS, WEIBO

    stories = [*NEWS, *FORUM, *WEIBO]
    t = start or datetime(2026, 11, 22, 8, 0, tzinfo=SHANGHAI)
    out = []
    for i, st in zip(range(n), itertools.cycle(stories), strict=False):
        pub = t + timedelta(minutes=i)
        out.append(
            RawPost(
                post_id=make_post_id("bench", f"{st.key}-{i}"),
                source_id=f"bench-{st.kind}",
                source_kind=st.kind,
                title=st.title,
                text=st.text,
                author=st.author,
                published_at=pub,
                fetched_at=pub + timedelta(seconds=30),
                source_region="340000",
                content_hash=content_hash(st.title, st.text),
            )
        )
    return out


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _originals(data: Path) -> list[dict[str, Any]]:
    """Real texts: (kind, title, text, reply, region) dicts, in a fixed shuffled order."""
    tip = data / "gov_messages_tipdm2020"
    items: list[dict[str, Any]] = []
    for name, with_reply in (
        ("hot_messages_with_votes_附件3.csv", False),
        ("messages_unlabeled_posttest_测试数据.csv", False),
        ("messages_with_official_replies_附件4_half.csv", True),
    ):
        for r in _csv_rows(tip / name):
            text = (r.get("留言详情") or "").strip()
            if not text:
                continue
            items.append(
                {
                    "kind": "gov_board",
                    "title": (r.get("留言主题") or "").strip(),
                    "text": text,
                    "reply": (r.get("答复意见") or "").strip() if with_reply else "",
                    # The pseudonymised A市 board: its own jurisdiction (长沙 per SOURCES.md's inference).
                    "region": "430100",
                }
            )
    cec = data / "emergency_events_cec" / "cec_documents.jsonl"
    for line in cec.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if (d.get("text") or "").strip():
                items.append({"kind": "news", "title": d.get("title") or "", "text": d["text"], "reply": "", "region": None})
    for r in _csv_rows(data / "weibo" / "cctvnews_weibo_posts_2020H1.csv"):
        text = (r.get("text") or "").strip()
        if text:
            items.append({"kind": "weibo", "title": "", "text": text, "reply": "", "region": None})
    random.Random(20261203).shuffle(items)
    return items


_SENT = re.compile(r"(?<=[。！？!?；;])")


def _retell(rng: random.Random, title: str, text: str) -> tuple[str, str]:
    """A forum retelling: some sentences dropped, the title shortened or prefixed."""
    sents = [s for s in _SENT.split(text) if s.strip()]
    if len(sents) > 2:
        keep = [s for s in sents if rng.random() > 0.35] or sents[:1]
    else:
        keep = sents
    body = "".join(keep)
    if rng.random() < 0.3:
        body = rng.choice(["网友爆料：", "转自网友：", "有人知道这事吗？"]) + body
    t = title
    if t and rng.random() < 0.5:
        t = rng.choice(["转：", "【求关注】", "大家看看："]) + t[: max(6, len(t) - rng.randint(0, 6))]
    return t, body


def messages_posts(n: int, gap_s: float, data: Path, start: datetime | None = None) -> list[Any]:
    from stream.contracts import SHANGHAI, RawPost, content_hash, make_post_id

    rng = random.Random(7)
    base = _originals(data)
    start = start or datetime(2026, 9, 1, 8, 0, tzinfo=SHANGHAI)
    posts: list[RawPost] = []
    recent: list[tuple[RawPost, dict[str, Any]]] = []  # originals of the last ~day
    next_orig = 0
    for i in range(n):
        pub = start + timedelta(seconds=i * gap_s + rng.uniform(0, gap_s))
        lag = timedelta(seconds=rng.uniform(20, 600))
        if rng.random() < 0.03:
            lag = timedelta(hours=rng.uniform(2, 30))  # found late: an earlier T0
        while recent and (pub - recent[0][0].published_at) > timedelta(hours=24):
            recent.pop(0)
        roll = rng.random()
        if recent and roll < 0.35:
            orig, item = recent[rng.randrange(len(recent))]
            if item["kind"] == "weibo" and roll < 0.12:
                kind, title, parent = "weibo", "", orig.post_id
                text = rng.choice(["转发微博", "关注！", "希望早日查明", "//"]) + "//@央视新闻:" + orig.text[:80]
            elif item["kind"] == "gov_board" and item["reply"] and roll < 0.08:
                kind, title, parent = "official", "", orig.post_id
                text = item["reply"]
            else:
                kind, parent = ("forum" if rng.random() < 0.7 else "news"), None
                title, text = _retell(rng, orig.title, orig.text)
            region = item["region"]
        else:
            item = base[next_orig % len(base)]
            next_orig += 1
            kind, title, text, parent, region = item["kind"], item["title"], item["text"], None, item["region"]
        key = f"m{i}"
        p = RawPost(
            post_id=make_post_id(f"bench-{kind}", key),
            source_id=f"bench-{kind}",
            source_kind=kind,
            source_name={"gov_board": "A市留言板", "news": "新闻网站", "weibo": "微博", "forum": "本地论坛", "official": "A市政府"}[kind],
            url=f"http://bench.invalid/{kind}/{key}",
            title=title,
            text=text,
            published_at=pub,
            fetched_at=pub + lag,
            source_region=region,
            parent_id=parent,
            content_hash=content_hash(title, text),
        )
        posts.append(p)
        if parent is None and kind in ("gov_board", "weibo", "news"):
            recent.append((p, item))
    posts.sort(key=lambda p: (p.fetched_at, p.post_id))  # arrival order
    return posts




def raw_posts(corpus: str, n: int, *, gap_s: float = 30.0, data: Path = DATA, start: datetime | None = None) -> list[Any]:
    if corpus == "demo":
        return demo_posts(n, start)
    if not (data / "gov_messages_tipdm2020").is_dir():
        sys.exit(f"no shared data at {data}: the messages corpus needs ../shared/data")
    return messages_posts(n, gap_s, data, start)
