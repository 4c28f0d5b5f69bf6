"""Chinese publication-time parsing: every form the sources print, against a fixed fetch time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crawlers.dates import cn_dates_to_digits, parse_compact, parse_date
from stream.contracts import SHANGHAI

# Fetch time: Sunday 2026-11-22 14:30:15 in Shanghai.
NOW = datetime(2026, 11, 22, 14, 30, 15, tzinfo=SHANGHAI)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("text", "expected", "precision"),
    [
        ("2026-11-22 14:05", sh(2026, 11, 22, 14, 5), "minute"),
        ("2026-11-22 14:05:33", sh(2026, 11, 22, 14, 5, 33), "second"),
        ("2026/11/22 14:05", sh(2026, 11, 22, 14, 5), "minute"),
        ("2026-11-22", sh(2026, 11, 22), "day"),
        ("2026年11月22日 14:05", sh(2026, 11, 22, 14, 5), "minute"),
        ("2026年11月22日14时05分", sh(2026, 11, 22, 14, 5), "minute"),
        ("2019年9月5日 11:10", sh(2019, 9, 5, 11, 10), "minute"),
        ("2019年9月5日", sh(2019, 9, 5), "day"),
        ("11-22 14:05", sh(2026, 11, 22, 14, 5), "minute"),
        ("11月20日 08:30", sh(2026, 11, 20, 8, 30), "minute"),
        ("06-14", sh(2026, 6, 14), "day"),
        ("刚刚", sh(2026, 11, 22, 14, 30), "minute"),
        ("5分钟前", sh(2026, 11, 22, 14, 25), "minute"),
        ("5 分钟前", sh(2026, 11, 22, 14, 25), "minute"),
        ("30秒前", sh(2026, 11, 22, 14, 29, 45), "second"),
        ("2小时前", sh(2026, 11, 22, 12, 30), "hour"),
        ("半小时前", sh(2026, 11, 22, 14, 0), "minute"),
        ("3天前", sh(2026, 11, 19), "day"),
        ("今天 09:12", sh(2026, 11, 22, 9, 12), "minute"),
        ("昨天 12:30", sh(2026, 11, 21, 12, 30), "minute"),
        ("昨天", sh(2026, 11, 21), "day"),
        ("前天", sh(2026, 11, 20), "day"),
        ("前天 23:59", sh(2026, 11, 20, 23, 59), "minute"),
        ("Sun Nov 22 14:05:00 +0800 2026", sh(2026, 11, 22, 14, 5), "second"),
        ("2026-11-22T14:05:00+08:00", sh(2026, 11, 22, 14, 5), "second"),
        # Text around the date, as pages print it.
        ("发表于 2026-11-22 14:05", sh(2026, 11, 22, 14, 5), "minute"),
        ("发布时间：2026年11月22日 09:00  来源：江淮晨讯网", sh(2026, 11, 22, 9, 0), "minute"),
    ],
)
def test_forms(text: str, expected: datetime, precision: str) -> None:
    got = parse_date(text, NOW)
    assert got is not None, text
    dt, prec = got
    assert dt == expected
    assert prec == precision
    assert dt.utcoffset() == timedelta(hours=8)  # always Shanghai, aware


def test_other_offsets_are_converted_to_shanghai() -> None:
    dt, prec = parse_date("Sun Nov 22 06:05:00 +0000 2026", NOW)  # type: ignore[misc]
    assert dt == sh(2026, 11, 22, 14, 5) and prec == "second"
    assert dt.tzinfo == SHANGHAI
    dt, _ = parse_date("2026-11-22T06:05:00Z", NOW)  # type: ignore[misc]
    assert dt == datetime(2026, 11, 22, 6, 5, tzinfo=UTC)
    assert dt.tzinfo == SHANGHAI


def test_year_less_date_after_fetch_time_is_last_year() -> None:
    new_year = datetime(2027, 1, 1, 8, 0, tzinfo=SHANGHAI)
    assert parse_date("12-31 23:50", new_year) == (sh(2026, 12, 31, 23, 50), "minute")
    assert parse_date("01-01", new_year) == (sh(2027, 1, 1), "day")


def test_relative_forms_follow_the_fetch_time_not_the_clock() -> None:
    other = NOW - timedelta(days=400)
    dt, _ = parse_date("昨天 12:30", other)  # type: ignore[misc]
    assert dt.date() == (other - timedelta(days=1)).date()
    dt, _ = parse_date("5分钟前", other)  # type: ignore[misc]
    assert dt == (other - timedelta(minutes=5)).replace(second=0)


def test_fetch_time_in_another_zone_means_the_same_instant() -> None:
    utc_now = NOW.astimezone(UTC)  # 06:30 UTC, still 22 Nov in Shanghai
    assert parse_date("昨天 12:30", utc_now) == (sh(2026, 11, 21, 12, 30), "minute")


@pytest.mark.parametrize("text", ["", "   ", "hello", "暂无", "2026-02-30 10:00", "13-45", "Foo Bar 99 99:99:99 +0800 2026",
                                  None])
def test_unknown_is_none(text: str | None) -> None:
    assert parse_date(text, NOW) is None


def test_naive_fetch_time_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_date("5分钟前", datetime(2026, 11, 22, 14, 30))


@pytest.mark.parametrize(("text", "want"), [
    ("Sun, 22 Nov 2026 11:05:00 +0800", sh(2026, 11, 22, 11, 5)),  # RSS pubDate
    ("Sun, 22 Nov 2026 03:05:00 GMT", sh(2026, 11, 22, 11, 5)),
    ("22 Nov 2026 03:05:00 +0000", sh(2026, 11, 22, 11, 5)),
])
def test_rss_pubdate(text: str, want: datetime) -> None:
    assert parse_date(text, NOW) == (want, "second")


@pytest.mark.parametrize(("text", "want"), [
    ("二〇二五年八月三日", sh(2025, 8, 3)),
    ("日期：二○二五年十一月二十八日", sh(2025, 11, 28)),
    ("二〇二四年十二月三十一日 星期二", sh(2024, 12, 31)),
    ("二〇二六年十月十日", sh(2026, 10, 10)),
])
def test_chinese_numeral_dates(text: str, want: datetime) -> None:
    assert parse_date(text, NOW) == (want, "day")


def test_chinese_numerals_that_are_no_date_stay_text() -> None:
    assert cn_dates_to_digits("二〇二五年十三十月一日") == "二〇二五年十三十月一日"
    assert parse_date("三年前的一天", NOW) is None


@pytest.mark.parametrize(("value", "want"), [
    ("20250214120915", (sh(2025, 2, 14, 12, 9, 15), "second")),  # 央视网 publishDate
    ("20250214", (sh(2025, 2, 14), "day")),
    ("1751372100", (sh(2025, 7, 1, 20, 15), "second")),  # epoch seconds
    ("1759289400000", (sh(2025, 10, 1, 11, 30), "second")),  # epoch milliseconds
    ("20251340", None),  # month 13
    ("12345", None),
    ("1893456000", None),  # 2030: after the fetch time
    ("", None),
])
def test_compact_machine_times(value: str, want: tuple[datetime, str] | None) -> None:
    assert parse_compact(value, NOW) == want
