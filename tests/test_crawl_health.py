"""Crawl health from the real crawl_state.db: dark from the last success, lag since the newest
item, the optional content-stall threshold, one alert per dark spell."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scrapy.utils.test import get_crawler

from crawlers.health import clear_dark_alerted, health_of, mark_dark_alerted, record_crawl
from crawlers.pipelines import RawPostPipeline
from crawlers.sources import Source
from crawlers.spiders.news import NewsSpider
from stream.contracts import SHANGHAI

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=SHANGHAI)


def source(**over: Any) -> Source:
    return Source.model_validate({"id": "s1", "name": "某网", "kind": "news", "start_urls": ["http://x.test/"],
                                  "schedule": {"every_s": 300}, **over})


def ok_crawl(db: Path, at: datetime, newest: datetime | None) -> str:
    stats = {"yuqing/newest_item_at": newest.isoformat()} if newest else {}
    return record_crawl(db, "s1", started=at - timedelta(seconds=20), finished=at, pages=5, errors=0,
                        failed=False, stats=stats)


def test_lag_is_a_metric_and_dark_counts_from_the_last_success(tmp_path: Path) -> None:
    db = tmp_path / "crawl_state.db"
    src = source()
    assert ok_crawl(db, T0, T0 - timedelta(hours=30)) == "ok"  # a quiet source: newest item 30 h old
    h = health_of(db, src, T0 + timedelta(minutes=5))
    assert h.state == "ok" and not h.alert
    assert h.lag_s == (timedelta(hours=30, minutes=5)).total_seconds() and h.dark_s == 300
    # Failing since: dark once the last success is older than dark_after_min (60).
    record_crawl(db, "s1", started=T0 + timedelta(minutes=5), finished=T0 + timedelta(minutes=6), pages=0,
                 errors=1, failed=True, stats={})
    assert health_of(db, src, T0 + timedelta(minutes=59)).state == "failing"
    dark = health_of(db, src, T0 + timedelta(minutes=61))
    assert dark.state == "dark" and dark.alert and "61 分钟没有成功抓取" in dark.reason


def test_content_stall_is_dark_only_where_configured(tmp_path: Path) -> None:
    db = tmp_path / "crawl_state.db"
    busy = source(max_lag_min=30)
    ok_crawl(db, T0, T0 - timedelta(minutes=10))
    assert health_of(db, busy, T0 + timedelta(minutes=5)).state == "ok"
    # Crawls keep succeeding, the list shows nothing newer: a stale page / broken selector.
    ok_crawl(db, T0 + timedelta(minutes=30), T0 - timedelta(minutes=10))
    h = health_of(db, busy, T0 + timedelta(minutes=31))
    assert h.state == "dark" and h.alert and "没有新内容" in h.reason and h.dark_s == 60
    assert health_of(db, source(), T0 + timedelta(minutes=31)).state == "ok"  # not configured: a metric only
    # A newer item: not dark any more.
    ok_crawl(db, T0 + timedelta(minutes=35), T0 + timedelta(minutes=33))
    assert health_of(db, busy, T0 + timedelta(minutes=36)).state == "ok"


def test_one_alert_per_dark_spell(tmp_path: Path) -> None:
    db = tmp_path / "crawl_state.db"
    ok_crawl(db, T0, T0)
    assert mark_dark_alerted(db, "s1", T0 + timedelta(hours=2))
    # A successful crawl while still stalled does not re-arm the alert (it would repeat
    # every crawl); only the source being seen not dark does.
    ok_crawl(db, T0 + timedelta(hours=2, minutes=5), T0)
    assert not mark_dark_alerted(db, "s1", T0 + timedelta(hours=2, minutes=6))
    assert clear_dark_alerted(db, "s1")
    assert not clear_dark_alerted(db, "s1")
    assert mark_dark_alerted(db, "s1", T0 + timedelta(hours=5))


def test_newest_item_is_never_after_the_fetch(tmp_path: Path) -> None:
    crawler = get_crawler(NewsSpider, {"TWISTED_REACTOR_ENABLED": False})
    crawler.spider = NewsSpider.from_crawler(crawler, source=source(), ctx=None)
    pipe = RawPostPipeline.from_crawler(crawler)
    fetched = datetime.now(SHANGHAI).replace(microsecond=0)
    for when in (fetched - timedelta(hours=1), fetched + timedelta(days=300)):  # a page with a wrong year
        pipe.process_item(crawler.spider.make_item(native_id=f"http://x.test/{int(when.timestamp())}", url="http://x.test/a",
                                                   title="标题", text="正文", author="", published=(when, "minute"),
                                                   fetched_at=fetched))
    assert crawler.stats.get_value("yuqing/newest_item_at") == fetched.isoformat()
