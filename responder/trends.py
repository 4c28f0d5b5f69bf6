"""Volume over time (趋势) and the spike flag, for the brief's charts and /trends.

Computed from the store alone, inside the acting user's jurisdiction
(:func:`responder.cases.scoped` in each query), like :mod:`responder.brief`.

* **buckets** — Shanghai hours (``hour``: a day's 24) or Shanghai calendar
  days (``day``: a week's 7) covering ``[start, end)``; a post counts in the
  bucket of its ``published_at``, an event in that of its T0.
* **posts by source kind** — every post (relevant or not: the archive), per
  bucket and ``source_kind``.
* **new events** — events (not merged) whose T0 falls in the bucket.
* **spike (突增)** — per place (the post's stored place label, 待定 when
  unknown) and per Shanghai hour: an hour whose number of posts ``n``
  satisfies ``n >= max(SPIKE_MIN, mean + SPIKE_SD * sd)``, where mean and sd
  (population standard deviation) are over that place's counts in the
  :data:`BASELINE_HOURS` whole hours just before it, hours without a post
  counting 0. Hours are looked at within ``[start, end)``; their baselines
  may reach back before ``start``. A place with a steady, high volume is
  therefore no spike; a quiet place suddenly at 5 posts or more an hour is.
  Spikes are hours even on a day-bucket chart (they are marked on the day
  that holds them).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from responder.cases import scoped
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor
from responder.store import Event, Post

BUCKETS = ("hour", "day")
SPIKE_MIN = 5
SPIKE_SD = 3.0
BASELINE_HOURS = 24
PENDING_PLACE = "待定"
SPIKE_RULE = (f"某地某小时帖文数 ≥ max({SPIKE_MIN}, 该地此前{BASELINE_HOURS}小时每小时帖文数的均值 + "
              f"{SPIKE_SD:g}×标准差)（无帖文的小时计 0）即标为突增")


@dataclass
class Series:
    name: str  # a source kind, or a label
    data: list[int]


@dataclass
class Spike:
    place: str
    hour: datetime  # the Shanghai hour's start
    count: int
    mean: float
    sd: float
    threshold: float
    bucket: int  # the index of the chart bucket holding it


@dataclass
class Volume:
    bucket: str  # hour | day
    starts: list[datetime]
    posts_by_kind: list[Series] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    spikes: list[Spike] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        fmt = "%H时" if self.bucket == "hour" else "%m-%d"
        return [t.astimezone(SHANGHAI).strftime(fmt) for t in self.starts]

    @property
    def posts_total(self) -> list[int]:
        return [sum(s.data[i] for s in self.posts_by_kind) for i in range(len(self.starts))]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _hour(t: datetime) -> datetime:
    return _aware(t).astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)


def _hour_key(s: Any, col: Any) -> Any:
    """A column's UTC hour, as the backend can group by it."""
    if s.get_bind().dialect.name == "sqlite":
        return func.substr(col, 1, 13)  # stored as "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC
    # In UTC whatever the session's TimeZone (a +05:45 zone would cut hours elsewhere); naive UTC back.
    return func.date_trunc("hour", func.timezone("UTC", col))


def _hour_of(key: Any) -> datetime:
    """The Shanghai hour of a :func:`_hour_key` value."""
    if isinstance(key, str):
        return datetime.strptime(key, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(SHANGHAI)
    return _hour(key)


def bucket_starts(start: datetime, end: datetime, bucket: str) -> list[datetime]:
    if bucket not in BUCKETS:
        raise ValueError("bucket must be hour or day")
    out, t = [], start.astimezone(SHANGHAI)
    while t < end:
        out.append(t)
        # Wall-clock steps in Shanghai (no DST there, so an hour is always 3600 s).
        t = t + (timedelta(hours=1) if bucket == "hour" else timedelta(days=1))
    return out


def _index(starts: list[datetime], t: datetime) -> int:
    """The bucket of ``t`` (starts ascending, t within them)."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= t:
            lo = mid
        else:
            hi = mid - 1
    return lo


def find_spikes(hourly: dict[str, Counter[datetime]], first: datetime, end: datetime) -> list[tuple[str, datetime,
                                                                                                     int, float, float,
                                                                                                     float]]:
    """(place, hour, count, mean, sd, threshold) of every spike hour in ``[first, end)``."""
    out = []
    for place, counts in hourly.items():
        for hour in sorted(h for h in counts if first <= h < end):
            n = counts[hour]
            if n < SPIKE_MIN:
                continue
            base = [counts.get(hour - timedelta(hours=k), 0) for k in range(1, BASELINE_HOURS + 1)]
            mean = sum(base) / len(base)
            sd = math.sqrt(sum((x - mean) ** 2 for x in base) / len(base))
            threshold = max(SPIKE_MIN, mean + SPIKE_SD * sd)
            if n >= threshold:
                out.append((place, hour, n, round(mean, 2), round(sd, 2), round(threshold, 2)))
    out.sort(key=lambda x: (x[1], -x[2], x[0]))
    return out


def volume(s: Any, actor: Actor, start: datetime, end: datetime, bucket: str) -> Volume:
    """Posts by source kind and new events per bucket of ``[start, end)``, and the spikes,
    in ``actor``'s jurisdiction (``s``: an open session of the store)."""
    starts = bucket_starts(start, end, bucket)
    v = Volume(bucket, starts)
    if not starts:
        return v
    since = start - timedelta(hours=BASELINE_HOURS)
    # Counted per UTC hour in the database (Shanghai is a whole number of hours
    # ahead, so a UTC hour is a Shanghai hour): rows are hours × kinds × places, not posts.
    hour = _hour_key(s, Post.published_at)
    rows = s.execute(
        scoped(
            select(hour, Post.source_kind, Post.place_label, func.count()).where(
                Post.published_at >= since, Post.published_at < end
            ),
            actor,
            Post.place_code,
        ).group_by(hour, Post.source_kind, Post.place_label)
    ).all()
    by_kind: dict[str, list[int]] = {}
    hourly: dict[str, Counter[datetime]] = defaultdict(Counter)
    for key, kind, place, n in rows:
        h = _hour_of(key)
        hourly[place or PENDING_PLACE][h] += int(n)
        if h >= start:
            by_kind.setdefault(str(kind), [0] * len(starts))[_index(starts, h)] += int(n)
    v.posts_by_kind = [Series(k, d) for k, d in sorted(by_kind.items(), key=lambda kv: (-sum(kv[1]), kv[0]))]
    v.events = [0] * len(starts)
    for (t0,) in s.execute(
        scoped(
            select(Event.t0).where(Event.t0 >= start, Event.t0 < end, Event.status != "merged"),
            actor,
            Event.place_code,
        )
    ).all():
        v.events[_index(starts, _aware(t0))] += 1
    v.spikes = [Spike(p, h, n, m, sd, th, _index(starts, h)) for p, h, n, m, sd, th in
                find_spikes(hourly, start.astimezone(SHANGHAI), end)]
    return v


def volume_dict(v: Volume, kind_label: dict[str, str] | None = None) -> dict[str, Any]:
    """JSON for the API and the page's charts: times ISO (Asia/Shanghai)."""
    labels = kind_label or {}
    return {
        "bucket": v.bucket,
        "starts": [iso_shanghai(t) for t in v.starts],
        "labels": v.labels,
        "posts_by_kind": [{"name": s.name, "label": labels.get(s.name, s.name), "data": s.data}
                          for s in v.posts_by_kind],
        "posts_total": v.posts_total,
        "events": v.events,
        "spikes": [{"place": x.place, "hour": iso_shanghai(x.hour), "count": x.count, "mean": x.mean, "sd": x.sd,
                    "threshold": x.threshold, "bucket": x.bucket} for x in v.spikes],
        "spike_rule": SPIKE_RULE,
    }


def spike_text(x: Spike) -> str:
    return (f"{x.hour.astimezone(SHANGHAI).strftime('%m-%d %H时')} {x.place} {x.count} 条"
            f"（此前{BASELINE_HOURS}小时均值 {x.mean:g}、标准差 {x.sd:g}，阈值 {x.threshold:g}）")


def days_of(start: datetime, end: datetime) -> tuple[date, date]:
    return start.astimezone(SHANGHAI).date(), (end.astimezone(SHANGHAI) - timedelta(days=1)).date()


__all__ = ["BASELINE_HOURS", "SPIKE_MIN", "SPIKE_RULE", "SPIKE_SD", "Series", "Spike", "Volume", "bucket_starts",
           "find_spikes", "spike_text", "volume", "volume_dict"]
