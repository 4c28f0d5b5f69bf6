"""Parse the publication times Chinese sites print, absolute or relative.

:func:`parse_date` takes the text a page shows ("2026-11-22 14:05",
"2019年9月5日 11:10", "06-14", "刚刚", "5分钟前", "昨天 12:30", Weibo's
"Sun Nov 22 14:05:00 +0800 2026", ISO 8601 from ``<meta>``) and the fetch time,
and returns an aware Asia/Shanghai datetime with how precise the page was,
or ``None`` when it finds no date. Relative forms and forms without a year are
resolved against the fetch time, never against "now" of the parser.

A time without an offset is Asia/Shanghai time: these sites are in China.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Literal

from stream.contracts import SHANGHAI

Precision = Literal["second", "minute", "hour", "day", "unknown"]
Parsed = tuple[datetime, Precision]

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

# "Sun Nov 22 14:05:00 +0800 2026" (Weibo, Twitter-style)
_WEIBO = re.compile(
    r"(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+([+-])(\d{2}):?(\d{2})\s+(\d{4})"
)
# RSS pubDate (RFC 822): "Sun, 22 Nov 2026 11:05:00 +0800", "22 Nov 2026 11:05 GMT"
_RFC822 = re.compile(
    r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?:[+-]\d{4}|[A-Z]{1,5})?"
)
# ISO 8601 with a T and optional offset: 2026-11-22T14:05:00+08:00
_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?"
)
_TIME = r"\s*T?\s*(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})\s*秒?|\s*分)?"
# 2026-11-22 14:05[:33], 2026/11/22, 2026.11.22, 2026年11月22日 14:05, 2026年11月22日14时05分
_FULL = re.compile(
    r"(?<!\d)(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*(?:[-/.]|月)\s*(\d{1,2})(?!\d)\s*日?(?:" + _TIME + r")?"
)
# 11-22 14:05, 11月22日 14:05, 06-14 (no year)
_MONTH_DAY = re.compile(
    r"(?<![\d\-/.年])(\d{1,2})\s*(?:-|/|月)\s*(\d{1,2})(?![\d\-/.])\s*日?(?:" + _TIME + r")?"
)
_AGO = re.compile(r"(\d+|半|一|两|二|三|四|五|六|七|八|九|十)\s*(秒|分钟|分|小时|个小时|钟头|天|日)\s*(?:之)?前")
_DAY_WORD = re.compile(r"(今天|今日|昨天|昨日|前天|前日)(?:" + _TIME + r")?")
_JUST_NOW = re.compile(r"刚刚|刚才")
_CN_SMALL = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# 二〇二五年八月三日 (documents' 落款, newspaper mastheads): digit by digit for the year,
# 十-style numbers for month and day.
_CN_DIGIT = {"〇": 0, "○": 0, "零": 0, "Ｏ": 0, "O": 0, "0": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
             "七": 7, "八": 8, "九": 9}
_CN_DATE = re.compile(r"([〇○零Ｏ一二三四五六七八九]{4})\s*年\s*([一二三四五六七八九十]{1,3})\s*月\s*([一二三四五六七八九十]{1,3})\s*日")
# 20250214120915 / 20250214 (a script's compact time); 1751372100 / 1751372100000 (epoch s / ms)
_COMPACT = re.compile(r"((?:19|20)\d\d)(\d\d)(\d\d)(?:(\d\d)(\d\d)(\d\d))?")
_EPOCH = re.compile(r"1\d{9}(?:\d{3})?")


def _cn_small_number(s: str) -> int | None:
    """一 .. 三十一 (月/日)."""
    if not s or any(c not in _CN_SMALL for c in s):
        return None
    if s == "十":
        return 10
    if s.startswith("十"):
        return 10 + _CN_SMALL[s[1]] if len(s) == 2 else None
    if len(s) == 1:
        return _CN_SMALL[s]
    if len(s) == 2 and s[1] == "十":
        return _CN_SMALL[s[0]] * 10
    if len(s) == 3 and s[1] == "十":
        return _CN_SMALL[s[0]] * 10 + _CN_SMALL[s[2]]
    return None


def cn_dates_to_digits(text: str) -> str:
    """Write Chinese-numeral dates ("二〇二五年十一月二十八日") as digits ("2025年11月28日")."""
    def one(m: re.Match[str]) -> str:
        year = "".join(str(_CN_DIGIT[c]) for c in m.group(1))
        mo, d = _cn_small_number(m.group(2)), _cn_small_number(m.group(3))
        if mo is None or d is None:
            return m.group(0)
        return f"{year}年{mo}月{d}日"
    return _CN_DATE.sub(one, text) if "年" in text else text


def parse_compact(value: str | None, now: datetime | None = None) -> Parsed | None:
    """A machine time written without separators: ``20250214120915``, ``20250214``, or epoch
    seconds / milliseconds. ``None`` for anything else, or for a time after the fetch time."""
    v = (value or "").strip()
    ref = _now_sh(now)
    got: Parsed | None = None
    if (m := _COMPACT.fullmatch(v)) is not None:
        y, mo, d, h, mi, s = m.groups()
        got = _build(int(y), int(mo), int(d), h, mi, s)
    elif _EPOCH.fullmatch(v):
        secs = int(v) / (1000 if len(v) == 13 else 1)
        got = datetime.fromtimestamp(secs, SHANGHAI), "second"
    if got is None or got[0] > ref + timedelta(days=1):
        return None
    return got


def _now_sh(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(SHANGHAI)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("fetch time must be timezone-aware")
    return now.astimezone(SHANGHAI)


def _build(y: int, mo: int, d: int, h: str | None, mi: str | None, s: str | None) -> Parsed | None:
    try:
        if h is None:
            return datetime(y, mo, d, tzinfo=SHANGHAI), "day"
        hh, mm = int(h), int(mi or 0)
        if s is not None:
            return datetime(y, mo, d, hh, mm, int(s), tzinfo=SHANGHAI), "second"
        return datetime(y, mo, d, hh, mm, tzinfo=SHANGHAI), "minute"
    except ValueError:
        return None


def _offset(sign: str, hh: str, mm: str) -> timezone:
    delta = timedelta(hours=int(hh), minutes=int(mm))
    return timezone(-delta if sign == "-" else delta)


def _weibo(m: re.Match[str]) -> Parsed | None:
    mon = _MONTHS.get(m.group(1).lower())
    if mon is None:
        return None
    try:
        dt = datetime(int(m.group(9)), mon, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                      tzinfo=_offset(m.group(6), m.group(7), m.group(8)))
    except ValueError:
        return None
    return dt.astimezone(SHANGHAI), "second"


def _iso(m: re.Match[str]) -> Parsed | None:
    y, mo, d, h, mi, s, off = m.groups()
    try:
        if off is None:
            tz: timezone | object = SHANGHAI
        elif off == "Z":
            tz = UTC
        else:
            digits = off.replace(":", "")
            tz = _offset(digits[0], digits[1:3], digits[3:5])
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), tzinfo=tz)  # type: ignore[arg-type]
    except ValueError:
        return None
    return dt.astimezone(SHANGHAI), "second" if s is not None else "minute"


def _small_number(s: str) -> float:
    if s == "半":
        return 0.5
    return float(s) if s.isdigit() else float(_CN_SMALL[s])


def parse_date(text: str | None, now: datetime | None = None) -> Parsed | None:
    """Find the first date in ``text`` and resolve it against ``now`` (the fetch time).

    Returns ``(aware Asia/Shanghai datetime, precision)`` or ``None``.
    """
    if not text:
        return None
    t = cn_dates_to_digits(text.replace("\xa0", " ").replace("\u3000", " ").strip())
    if not t:
        return None
    ref = _now_sh(now)

    m = _WEIBO.search(t)
    if m:
        return _weibo(m)
    m = _RFC822.search(t)
    if m:
        try:
            dt = parsedate_to_datetime(m.group(0))
        except (TypeError, ValueError):
            dt = None
        if dt is not None:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=SHANGHAI)
            return dt.astimezone(SHANGHAI), "second"
    m = _ISO.search(t)
    if m:
        return _iso(m)
    m = _FULL.search(t)
    if m:
        y, mo, d, h, mi, s = m.groups()
        return _build(int(y), int(mo), int(d), h, mi, s)
    if _JUST_NOW.search(t):
        return ref.replace(second=0, microsecond=0), "minute"
    m = _AGO.search(t)
    if m:
        n = _small_number(m.group(1))
        unit = m.group(2)
        if unit == "秒":
            return (ref - timedelta(seconds=n)).replace(microsecond=0), "second"
        if unit in ("分钟", "分"):
            return (ref - timedelta(minutes=n)).replace(second=0, microsecond=0), "minute"
        if unit in ("小时", "个小时", "钟头"):
            if n < 1:
                return (ref - timedelta(hours=n)).replace(second=0, microsecond=0), "minute"
            # "2小时前" is printed for ages of 2 to 3 hours: keep the clock
            # reading, say it is only good to the hour.
            return (ref - timedelta(hours=n)).replace(second=0, microsecond=0), "hour"
        day = (ref - timedelta(days=n)).date()
        return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI), "day"
    m = _DAY_WORD.search(t)
    if m:
        back = {"今天": 0, "今日": 0, "昨天": 1, "昨日": 1, "前天": 2, "前日": 2}[m.group(1)]
        day = (ref - timedelta(days=back)).date()
        return _build(day.year, day.month, day.day, m.group(2), m.group(3), m.group(4))
    m = _MONTH_DAY.search(t)
    if m:
        mo, d, h, mi, s = (int(m.group(1)), int(m.group(2)), m.group(3), m.group(4), m.group(5))
        if not (1 <= mo <= 12 and 1 <= d <= 31):
            return None
        got = _build(ref.year, mo, d, h, mi, s)
        # A date without a year that lies well after the fetch time is from
        # last year ("12-31" read on 1 January).
        if got is not None and got[0] > ref + timedelta(days=1):
            got = _build(ref.year - 1, mo, d, h, mi, s)
        return got
    return None
