"""The demo site's state: a seeded publication schedule plus injected posts.

An item is visible once its ``published_at`` has come (real wall-clock time).
The schedule is built once from :mod:`yuqing.demo_site.stories`: the
``INITIAL`` stories were "published" minutes or hours before start, the rest
come one every ``publish_every_s`` seconds in a seeded order.
"""

from __future__ import annotations

import random
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from stream.contracts import SHANGHAI
from yuqing.demo_site import stories as S

Kind = Literal["news", "forum", "weibo"]
Fault = Literal["error", "truncate"]

NEWS_FIRST_ID = 1001
FORUM_FIRST_TID = 3001
FORUM_FIRST_PID = 50001
WEIBO_BASE_ID = 5231000000000000
_B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def now_sh() -> datetime:
    return datetime.now(SHANGHAI)


def weibo_uid(name: str) -> int:
    return 5000000000 + zlib.crc32(name.encode("utf-8")) % 999_999_999


def bid_of(mid: int) -> str:
    out = ""
    n = mid
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return "N" + out[-8:]


@dataclass
class Reply:
    pid: int
    author: str
    text: str
    published_at: datetime


@dataclass
class Item:
    kind: Kind
    id: int  # news: article id; forum: tid; weibo: mid
    title: str
    text: str
    author: str
    published_at: datetime
    source: str = ""
    group: str | None = None
    first_pid: int = 0  # forum: pid of the first post
    replies: list[Reply] = field(default_factory=list)
    retweet_of: int | None = None  # weibo: mid of the original
    views: int = 0
    reposts: int = 0
    comments: int = 0
    likes: int = 0
    relative_time: bool = False  # weibo: created_at as "5分钟前"
    charset: str = "gbk"  # news article pages
    date_style: Literal["dash", "cn"] = "dash"
    fault: Fault | None = None
    edited: bool = False
    injected: bool = False

    @property
    def uid(self) -> int:
        return weibo_uid(self.author)

    @property
    def bid(self) -> str:
        return bid_of(self.id)

    def path(self) -> str:
        if self.kind == "news":
            d = self.published_at.astimezone(SHANGHAI)
            return f"/news/{d:%Y-%m}/{d:%d}/content_{self.id}.htm"
        if self.kind == "forum":
            return f"/forum/forum.php?mod=viewthread&tid={self.id}"
        return f"/status/{self.bid}"

    def native_id(self) -> str:
        """What the spiders use for ``make_post_id`` (URL for news)."""
        if self.kind == "forum":
            return f"tid:{self.id}"
        if self.kind == "weibo":
            return str(self.id)
        return self.path()

    def visible_replies(self, now: datetime) -> list[Reply]:
        return [r for r in self.replies if r.published_at <= now]

    def last_post_at(self, now: datetime) -> datetime:
        rs = self.visible_replies(now)
        return rs[-1].published_at if rs else self.published_at


def _fill(text: str, at: datetime) -> str:
    t = at.astimezone(SHANGHAI)
    h = t.hour
    period = ("凌晨" if h < 6 else "早上" if h < 9 else "上午" if h < 12 else "中午" if h < 14
              else "下午" if h < 18 else "晚上")
    minute = t.minute - t.minute % 10
    clock = f"{h}时{minute}分" if minute else f"{h}时"
    return text.format(md=f"{t.month}月{t.day}日", period=period, clock=clock, year=t.year,
                       mdcode=f"{t.month}·{t.day}")


class DemoSite:
    """All items, scheduled and injected. Safe to use from several threads."""

    def __init__(self, *, publish_every_s: float, seed: int, start: datetime | None = None):
        if publish_every_s <= 0:
            raise ValueError("publish_every_s must be > 0")
        self.publish_every_s = publish_every_s
        self.seed = seed
        start = start or now_sh()
        if start.tzinfo is None:
            start = start.replace(tzinfo=SHANGHAI)
        self.start = start.astimezone(SHANGHAI).replace(microsecond=0)
        self._lock = threading.Lock()
        self._items: dict[tuple[str, int], Item] = {}
        self._next_id = {"news": NEWS_FIRST_ID, "forum": FORUM_FIRST_TID, "weibo": 0}
        self._next_pid = FORUM_FIRST_PID
        self._build()

    # ------------------------------------------------------------ schedule

    def _build(self) -> None:
        rng = random.Random(self.seed)
        by_key = {s.key: s for s in S.ALL_STORIES}
        times: dict[str, datetime] = {}
        for key, minutes in S.INITIAL:
            times[key] = self.start - timedelta(minutes=minutes, seconds=rng.randrange(0, 50))
        fixed = dict(S.FIXED_SLOTS)
        rest = [s.key for s in S.ALL_STORIES if s.key not in times and s.key not in fixed.values()]
        rng.shuffle(rest)
        slot = 1
        while rest or any(k >= slot for k in fixed):
            key = fixed.get(slot) or (rest.pop(0) if rest else None)
            if key is not None:
                times[key] = self.start + timedelta(seconds=slot * self.publish_every_s)
            slot += 1
        # Event time of each emergency: a while before its first report.
        group_at: dict[str, datetime] = {}
        for s in S.ALL_STORIES:
            if s.group:
                t = times[s.key]
                group_at[s.group] = min(group_at.get(s.group, t), t)
        mids: dict[str, int] = {}
        for key in sorted(times, key=lambda k: times[k]):
            story = by_key[key]
            at = times[key]
            event_at = group_at[story.group] - timedelta(minutes=35) if story.group else at - timedelta(minutes=50)
            item = self._new_item(
                story.kind, title=_fill(story.title, event_at), text=_fill(story.text, event_at),
                author=story.author, published_at=at, source=story.source, group=story.group,
            )
            if story.kind == "forum":
                last = max((r.after_min for r in story.replies), default=0)
                scale = 1.0
                if at <= self.start and last and at + timedelta(minutes=last) > self.start - timedelta(minutes=1):
                    # Replies to threads from before start also came before it.
                    scale = max(0.0, (self.start - timedelta(minutes=1) - at).total_seconds()) / (last * 60)
                for r in story.replies:
                    self._add_reply(item, r.author, r.text, at + timedelta(minutes=r.after_min * scale))
                item.views = rng.randrange(80, 3000) + 40 * len(story.replies)
            elif story.kind == "weibo":
                mids[key] = item.id
                if story.retweet_of:
                    item.retweet_of = mids.get(story.retweet_of)
                scale = 40 if story.hot else 1
                item.reposts = rng.randrange(0, 60) * scale
                item.comments = rng.randrange(0, 80) * scale
                item.likes = rng.randrange(1, 300) * scale
                item.relative_time = (story.relative_time if story.relative_time is not None
                                      else rng.random() < 0.3)
            else:
                item.date_style = "cn" if rng.random() < 0.4 else "dash"
                item.charset = "gb2312" if rng.random() < 0.25 else "gbk"
            self._items[(item.kind, item.id)] = item

    def _new_item(self, kind: Kind, **kw: object) -> Item:
        if kind == "weibo":
            n = self._next_id["weibo"]
            self._next_id["weibo"] = n + 1
            item_id = WEIBO_BASE_ID + n * 1_000_003 + (zlib.crc32(f"{self.seed}:{n}".encode()) % 997)
        else:
            item_id = self._next_id[kind]
            self._next_id[kind] = item_id + 1
        item = Item(kind=kind, id=item_id, **kw)  # type: ignore[arg-type]
        if kind == "forum":
            item.first_pid = self._next_pid
            self._next_pid += 1
        return item

    def _add_reply(self, item: Item, author: str, text: str, at: datetime) -> Reply:
        r = Reply(pid=self._next_pid, author=author, text=text, published_at=at.replace(microsecond=0))
        self._next_pid += 1
        item.replies.append(r)
        item.replies.sort(key=lambda x: (x.published_at, x.pid))
        return r

    # ------------------------------------------------------------ queries

    def visible(self, kind: Kind | None = None, now: datetime | None = None) -> list[Item]:
        """Visible items, newest first."""
        now = now or now_sh()
        with self._lock:
            items = [i for i in self._items.values()
                     if (kind is None or i.kind == kind) and i.published_at <= now]
        return sorted(items, key=lambda i: (i.published_at, i.id), reverse=True)

    def get(self, kind: Kind, item_id: int, now: datetime | None = None) -> Item | None:
        now = now or now_sh()
        with self._lock:
            item = self._items.get((kind, item_id))
        if item is None or item.published_at > now:
            return None
        return item

    def next_at(self, now: datetime | None = None) -> datetime | None:
        now = now or now_sh()
        with self._lock:
            future = [i.published_at for i in self._items.values() if i.published_at > now]
        return min(future) if future else None

    # ------------------------------------------------------------ operator API

    def publish(
        self, *, kind: Kind, title: str, text: str, author: str | None = None,
        published_at: datetime | None = None, source: str | None = None,
        replies: list[tuple[str, str, float]] | None = None, fault: Fault | None = None,
        retweet_of: int | None = None,
    ) -> Item:
        at = (published_at or now_sh())
        if at.tzinfo is None:
            at = at.replace(tzinfo=SHANGHAI)
        at = at.astimezone(SHANGHAI).replace(microsecond=0)
        default_author = {"news": "本网记者", "forum": "热心网友", "weibo": "皖事通报君"}[kind]
        with self._lock:
            if retweet_of is not None and ("weibo", retweet_of) not in self._items:
                raise KeyError(f"没有这条微博: {retweet_of}")
            item = self._new_item(kind, title=title, text=text, author=author or default_author,
                                  published_at=at, source=source or ("江淮晨讯网" if kind == "news" else ""))
            item.injected = True
            item.fault = fault
            item.retweet_of = retweet_of
            for r_author, r_text, after_min in replies or []:
                self._add_reply(item, r_author, r_text, at + timedelta(minutes=after_min))
            self._items[(kind, item.id)] = item
        return item

    def edit(self, kind: Kind, item_id: int, changes: dict[str, object]) -> Item:
        with self._lock:
            item = self._items.get((kind, item_id))
            if item is None:
                raise KeyError(f"没有这条内容: {kind} {item_id}")
            for name, value in changes.items():
                setattr(item, name, value)
            if {"title", "text"} & changes.keys():
                item.edited = True
        return item
