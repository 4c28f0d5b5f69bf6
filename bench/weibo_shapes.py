"""Does the Weibo spider read the real m.weibo.cn shapes, not just our fixtures?

Feeds the captured API responses in ``../shared/data/weibo/raw_api_responses_mweibocn/``
(never copied into the repository) through :class:`crawlers.spiders.weibo.WeiboSpider`'s
own callbacks and prints what came out: posts with text, author, time and counts,
reposts linked to their originals, "全文" posts sent to ``/statuses/extend``, the
long text filled in, comments linked to their post. Exits 1 when a check fails.

    .venv/bin/python bench/weibo_shapes.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scrapy  # noqa: E402
from scrapy.http import TextResponse  # noqa: E402

from crawlers.items import PostItem  # noqa: E402
from crawlers.sources import Source  # noqa: E402
from crawlers.spiders.weibo import WeiboSpider  # noqa: E402
from stream.contracts import SHANGHAI  # noqa: E402

ORIGIN = "https://m.weibo.cn"
# The capture is from June 2019: relative times ("5分钟前") are resolved against this.
CAPTURED = datetime(2019, 6, 18, 12, 0, tzinfo=SHANGHAI)


class _Spider(WeiboSpider):
    crawler = None  # run outside a crawl: no stats collector

    def fetch_time(self) -> datetime:
        return CAPTURED


def _response(path: Path, url: str) -> TextResponse:
    return TextResponse(url=url, body=path.read_bytes(), encoding="utf-8",
                        headers={"Content-Type": "application/json; charset=utf-8"})


def _split(out: Any) -> tuple[list[PostItem], list[scrapy.Request]]:
    items, reqs = [], []
    for x in out or []:
        (reqs if isinstance(x, scrapy.Request) else items).append(x)
    return items, reqs


def run(data: Path) -> int:
    d = data / "weibo" / "raw_api_responses_mweibocn"
    manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))["files"]
    urls = {k: v.split(" (")[0] for k, v in manifest.items()}  # some entries carry a note in brackets
    src = Source(id="weibo-real", name="微博（真实接口样本）", kind="weibo",
                 start_urls=[urls["getIndex_containerid-107603_weibo-list_page2.json"]], schedule={"every_s": 60},
                 max_pages=5, fetch_comments=True)
    spider = _Spider(src)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failures.append(what)

    # 1. An account timeline page (container/getIndex, containerid 107603…).
    name = "getIndex_containerid-107603_weibo-list_page2.json"
    print(f"{name}  ({manifest[name]})")
    raw = json.loads((d / name).read_text(encoding="utf-8"))
    mblogs = [c["mblog"] for c in raw["data"]["cards"] if isinstance(c, dict) and isinstance(c.get("mblog"), dict)]
    reposts = [m for m in mblogs if isinstance(m.get("retweeted_status"), dict)]
    longs = [m for m in mblogs if m.get("isLongText")]
    items, reqs = _split(spider.parse(_response(d / name, urls[name]), page=1))
    longreq = [r for r in reqs if "/statuses/extend" in r.url]
    comreq = [r for r in reqs if "/comments/hotflow" in r.url]
    posts = items + [r.cb_kwargs["item"] for r in longreq]
    print(f"  cards with mblog {len(mblogs)} (reposts {len(reposts)}, 全文 {len(longs)}) → posts {len(items)} "
          f"now + {len(longreq)} after /statuses/extend, comment requests {len(comreq)}, next page "
          f"{[r.url for r in reqs if r.callback == spider.parse]}")
    expected = len(mblogs) + len({str(m['retweeted_status'].get('id')) for m in reposts})
    check(len({p["native_id"] for p in posts}) == expected, f"one post per mblog and per embedded original ({expected})")
    check(all(p["text"].strip() for p in posts), "every post has text")
    check(all(p["author"] for p in posts), "every post has its author")
    check(all(p.get("published_at") for p in posts), "every post has a publication time")
    check(all(p["engagement"].get("reposts") is not None and p["engagement"].get("likes") is not None for p in posts),
          "reposts and likes counted")
    check(len(longreq) == len(longs), "each 全文 post is completed from /statuses/extend")
    check(all("全文" not in p["text"][-4:] for p in items), "no '全文' link left at the end of a text")
    ids = {p["post_id"] for p in posts}
    linked = [p for p in posts if p.get("parent_id")]
    check(len(linked) == len(reposts) and all(p["parent_id"] in ids for p in linked),
          "each repost points to its original, which is a post too")
    for p in posts[:3]:
        print(f"    {p['published_at']}  {p['author']}: {p['text'][:60]!r}  {p['engagement']}")

    # 2. Long text.
    name = "statuses_extend_longtext.json"
    print(f"{name}  ({manifest[name]})")
    long_raw = json.loads((d / name).read_text(encoding="utf-8"))["data"]["longTextContent"]
    stub = spider.make_item(native_id="4383487819465288", url=f"{ORIGIN}/status/x", title="", text="截断的…",
                            author="a", published=(CAPTURED, "minute"), fetched_at=CAPTURED, parent_native_id=None,
                            engagement={})
    items, _ = _split(spider.parse_long_text(_response(d / name, urls[name]), item=stub))
    text = items[0]["text"] if items else ""
    print(f"  longTextContent {len(long_raw)} chars of HTML → text {len(text)} chars: {text[:60]!r}")
    check(len(text) > 140 and "<" not in text, "long text filled in as plain text")
    check("[" in text or "[" not in long_raw, "emoji kept as their alt text")

    # 3. Comments (hotflow).
    name = "comments_hotflow.json"
    print(f"{name}  ({manifest[name]})")
    raw = json.loads((d / name).read_text(encoding="utf-8"))
    n_raw = len((raw.get("data") or {}).get("data") or [])
    items, reqs = _split(spider.parse_comments(_response(d / name, urls[name]), mid="4383183661430868",
                                               url=f"{ORIGIN}/status/x"))
    print(f"  comments in response {n_raw} → posts {len(items)}; next page requests {len(reqs)}")
    check(len(items) == n_raw and n_raw > 0, "one post per comment")
    check(all(i["parent_id"] == spider.post_id("4383183661430868") for i in items), "each comment points to its post")
    check(all(i["text"].strip() and i["author"] and i.get("published_at") for i in items),
          "comments have text, author and time")
    for i in items[:2]:
        print(f"    {i['published_at']}  {i['author']}: {i['text'][:50]!r}  {i['engagement']}")

    print("all checks passed" if not failures else f"{len(failures)} check(s) failed: {failures}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    return run(ap.parse_args(argv).data)


if __name__ == "__main__":
    raise SystemExit(main())
