"""The responder's in-memory view of the open events a new post may join.

Grouping compares a post with the open events whose span reaches its time
window. Reading those events and their members from the database for every
post made the responder slower with every open event (86 posts/s at 10,000
posts). :class:`OpenEvents` keeps, in the responder process:

* for every open event whose latest member was published at or after
  ``horizon``: the fields grouping reads (status, T0, latest publication,
  place, emergency type and subtype) and its :data:`MAX_MEMBERS_COMPARED` most recent
  members (newest first; among equal times the older row first, the order
  SQLite gives), with their death tolls;
* those members' text vectors in a :class:`~responder.similarity.MemberIndex`,
  so one vectorised query gives every such event's best similarity.

The database stays the truth; this is a cache of it that is made coherent
before each batch:

* **Other writers.** Every transaction that changes what grouping reads
  (the responder's batches; a duty officer's close, merge or split) stamps
  the events it touches with ``events.rev = max(rev) + 1`` while holding the
  events lock. Before a batch, under the same lock, the responder compares
  ``max(rev)`` with the revision it has seen and reloads just the events
  stamped since: several responder processes and the web UI can write.
* **Its own batch.** Changes are applied here as the batch makes them. If
  the transaction rolls back, :meth:`OpenEvents.invalidate` empties the cache
  and the next batch reloads what it needs.
* **Time.** ``horizon`` only moves back when a post's window reaches before
  it (a late post: the older open events are loaded then), and forward when
  the cache drops events far behind the newest post.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from responder.similarity import MemberIndex, TextVector, post_vector
from responder.store import Event, Post

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Members an event is compared by: its most recent ones.
MAX_MEMBERS_COMPARED = 50
_LOAD_CHUNK = 500


@dataclass(slots=True)
class Member:
    published_at: datetime
    row: int  # posts.id; a post of the current batch gets its id when the batch is written
    post_id: str
    deaths: int | None
    compared: bool = True  # False once newer members pushed it out of the most recent
    _newest_first: int = 0

    def __post_init__(self) -> None:
        self._newest_first = -((self.published_at - _EPOCH) // _US)

    def order(self) -> tuple[int, int]:
        # Newest first; among equal times the lower id first.
        return (self._newest_first, self.row)


@dataclass(slots=True)
class OpenEvent:
    id: int
    status: str
    t0: datetime
    last: datetime
    place_code: str | None
    is_emergency: bool
    subtype: str | None
    etype: str | None = None  # event type (事故灾难, 自然灾害, …)
    members: list[Member] = field(default_factory=list)  # sorted by Member.order, at most MAX

    def in_window(self, published_at: datetime, window: timedelta) -> bool:
        return (
            self.status == "open"
            and self.t0 <= published_at + window
            and self.last >= published_at - window
        )


class OpenEvents:
    """See the module docstring."""

    def __init__(self, max_members: int = MAX_MEMBERS_COMPARED) -> None:
        self.max_members = max_members
        self.invalidate()

    def invalidate(self) -> None:
        """Forget everything (after a rollback): the next batch reloads."""
        self.events: dict[int, OpenEvent] = {}
        self.by_place: dict[str, set[int]] = {}
        self.index = MemberIndex()
        self.horizon: datetime | None = None  # None: nothing is covered yet
        self.rev: int | None = None
        self.loaded = 0  # events read from the database (a measure of cache misses)

    # ---- keeping in step with the database

    def catch_up(self, s: Session) -> int:
        """Reload the events other writers stamped since we last looked; the current ``max(rev)``."""
        current = int(s.scalar(select(func.coalesce(func.max(Event.rev), 0))) or 0)
        if self.rev is None:
            # Nothing cached yet: nothing to refresh, the horizon load reads what it needs.
            self.rev = current
            return current
        if current != self.rev:
            rows = s.execute(select(Event).where(Event.rev > self.rev)).scalars().all()
            keep = [
                ev
                for ev in rows
                if ev.status == "open" and self.horizon is not None and ev.last_published_at >= self.horizon
            ]
            for ev in rows:
                self.drop(ev.id)
            self._load(s, keep)
            self.rev = current
        return current

    def cover(self, s: Session, since: datetime) -> None:
        """Make sure every open event whose latest member is at or after ``since`` is here."""
        if self.horizon is not None and since >= self.horizon:
            return
        q = select(Event).where(Event.status == "open", Event.last_published_at >= since)
        if self.horizon is not None:
            q = q.where(Event.last_published_at < self.horizon)
        self._load(s, [ev for ev in s.scalars(q) if ev.id not in self.events])
        self.horizon = since

    def ensure(self, s: Session, event_id: int) -> OpenEvent | None:
        """The cached view of an open event, read from the database if it is not
        here yet (an event outside the horizon that a thread reply joins)."""
        got = self.events.get(event_id)
        if got is None:
            ev = s.get(Event, event_id)
            if ev is not None and ev.status == "open":
                self._load(s, [ev])
                got = self.events.get(event_id)
        return got

    def evict_before(self, horizon: datetime, *, step: timedelta = timedelta(0)) -> None:
        """Drop events whose latest member is before ``horizon`` (they can come
        back), once the horizon is more than ``step`` behind it."""
        if self.horizon is None or horizon - step <= self.horizon:
            return  # nothing covered yet, or not far enough behind
        for eid in [e.id for e in self.events.values() if e.last < horizon]:
            self.drop(eid)
        self.horizon = horizon

    def _load(self, s: Session, events: Sequence[Event]) -> None:
        if not events:
            return
        for ev in events:
            self._put(ev)
        ids = [ev.id for ev in events]
        for i in range(0, len(ids), _LOAD_CHUNK):
            chunk = ids[i : i + _LOAD_CHUNK]
            rn = (
                func.row_number()
                .over(partition_by=Post.event_id, order_by=(Post.published_at.desc(), Post.id.asc()))
                .label("rn")
            )
            inner = (
                select(
                    Post.id, Post.post_id, Post.event_id, Post.title, Post.text, Post.place_code, Post.published_at,
                    Post.deaths, rn,
                )
                .where(Post.event_id.in_(chunk))
                .subquery()
            )
            rows = s.execute(select(inner).where(inner.c.rn <= self.max_members).order_by(inner.c.event_id, inner.c.rn))
            items = []
            for r in rows:
                oe = self.events[r.event_id]
                oe.members.append(Member(r.published_at, r.id, r.post_id, r.deaths))  # already in order
                items.append((r.post_id, oe.id, post_vector(r.title or "", r.text or "", r.place_code)))
            self.index.add_many(items)
        self.loaded += len(events)

    def _put(self, ev: Event) -> OpenEvent:
        oe = OpenEvent(
            ev.id, ev.status, ev.t0, ev.last_published_at, ev.place_code, bool(ev.is_emergency), ev.event_subtype,
            ev.event_type,
        )
        self.put(oe)
        return oe

    def drop(self, event_id: int) -> None:
        oe = self.events.pop(event_id, None)
        if oe is None:
            return
        self._unplace(oe.place_code, event_id)
        self.index.remove_all(m.post_id for m in oe.members)

    def _place(self, code: str | None, event_id: int) -> None:
        if code:
            self.by_place.setdefault(code, set()).add(event_id)

    def _unplace(self, code: str | None, event_id: int) -> None:
        ids = self.by_place.get(code) if code else None
        if ids is not None:
            ids.discard(event_id)
            if not ids:
                del self.by_place[code]  # type: ignore[arg-type]

    # ---- changes the current batch makes

    def put(self, oe: OpenEvent) -> None:
        """An event to keep: read from the store, or new in the current batch
        (under a provisional id until it is written)."""
        self.drop(oe.id)
        self.events[oe.id] = oe
        self._place(oe.place_code, oe.id)

    def moved(self, oe: OpenEvent, old_place: str | None) -> None:
        """``oe``'s place changed from ``old_place``: keep the place lookup right."""
        if old_place != oe.place_code:
            self._unplace(old_place, oe.id)
            self._place(oe.place_code, oe.id)

    def rekey(self, old: int, new: int) -> None:
        """A new event was written: its provisional id becomes its real one."""
        oe = self.events.pop(old, None)
        if oe is None:
            return
        self._unplace(oe.place_code, old)
        oe.id = new
        self.events[new] = oe
        self._place(oe.place_code, new)

    def add_member(self, oe: OpenEvent, m: Member) -> bool:
        """A post joined ``oe``; False when it is too old to be among the members compared.
        A member it pushes out of them is no longer compared (nor indexed)."""
        order = m.order()
        pos = bisect.bisect_left(oe.members, order, key=Member.order)
        if pos >= self.max_members:
            m.compared = False
            return False
        oe.members.insert(pos, m)
        while len(oe.members) > self.max_members:
            out = oe.members.pop()
            out.compared = False
            self.index.remove(out.post_id)
        return True

    def index_members(self, items: Sequence[tuple[Member, int, TextVector]]) -> None:
        """Index the batch's members (member, event id, vectors) still compared."""
        self.index.add_many([(m.post_id, eid, v) for m, eid, v in items if m.compared and eid in self.events])

    def set_rows(self, rows: dict[str, int], members: Iterable[Member]) -> None:
        """The batch was written: its members get their real ``posts.id``."""
        for m in members:
            m.row = rows[m.post_id]

    # ---- reading

    def candidates_by_place(self, code: str) -> list[OpenEvent]:
        return [self.events[i] for i in self.by_place.get(code, ())]

    def stats(self) -> dict[str, Any]:
        return {
            "events": len(self.events),
            "members": len(self.index),
            "index_rows": self.index.rows,
            "horizon": self.horizon.isoformat() if self.horizon else None,
            "rev": self.rev,
            "loaded": self.loaded,
        }
