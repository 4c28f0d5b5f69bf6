"""Event grouping: which posts are about the same incident.

A new relevant post joins an open event when it is the same incident. A
shared place alone never is: places are compared by their division codes,
and the text by what it says beyond them. The rules:

1. **Thread** — it replies to / reposts a member, a member replies to /
   reposts it, or both belong to the same thread (``parent_id``). No window.
2. **Same emergency** — the post and the event are emergencies of the same
   type (事故灾难, 自然灾害, …) whose subtypes agree or one is unknown, in the
   same county, within the event window, and something says it is the same
   incident: the same death toll as a member (from :data:`DISTINCT_TOLL`
   deaths: smaller tolls coincide), text similarity ≥ the threshold (beyond
   :data:`BURST` of the event's reports: ≥ :data:`PLAIN_TEXT` × the
   threshold, see rule 4), or it was published within :data:`BURST` of the
   event's reports (an emergency is reported in a burst) and its death toll
   is not below theirs (tolls only rise: a lower one, "无人员伤亡" included,
   is another incident).
3. **Same toll** — same county, within the window, and the same death toll
   (from :data:`DISTINCT_TOLL`) as a member: the classifier may miss the
   subtype of a colloquial forum post ("厂房塌了，县里通报说死了12个"), not
   the number.
4. **Same story** — compatible places (same division code, one unknown, or
   one the parent of the other) AND published within the window AND text
   similarity ≥ ``settings.responder.similarity_threshold``; into an
   emergency event, more than :data:`BURST` from its reports, ≥
   :data:`PLAIN_TEXT` × the threshold: one kind of emergency recurs (a fire
   in the same city the next day scores 0.2-0.37 on its words), while a
   follow-up of the same one repeats its particulars. An emergency and a
   non-emergency (either way round) join by text only at :data:`PLAIN_TEXT`
   × the threshold as well.

Two emergencies of different types (a fire and a flood), or of one type
but different subtypes (a fire and a road accident), never join but by
rule 1, whatever their words and tolls. (A shopping-mall fire with casualties
and 43 waterlogging complaints of its district once made one event through
their titles, "芜湖市镜湖区…"; the fire's 5 h notice went out under a
complaint's title.)

The window (``event_window_hours``) is measured from the event's span
[T0, latest member publication]. Text similarity is the cosine of
character-bigram count vectors over title + text without the names of the
post's own place and without the words that only say what kind of incident
it is (:mod:`responder.similarity`). An event is compared by its
:data:`~responder.open_events.MAX_MEMBERS_COMPARED` most recent members.
When several events match, the highest score wins, and among equal scores
the oldest event (lowest id).

**The title** of an event is that of its lead post (:func:`lead_rank`): the
post that opened it, or the first later member that raised its severity (or
made it an emergency at the same severity), i.e. the post its clock rule and
notices are about. A member that joins later without outranking the event
never renames it; a rename is audited (``title_changed``).

**How it scales.** The open events a post may join, and their members'
vectors, are kept in memory (:mod:`responder.open_events`); one vectorised
query of an inverted index scores the post against every such member at
once, exactly (the same cosine, not an approximation), and only the events
that come out at or above the threshold, or that share the post's county,
are examined by the rules above. Thread links of a batch are read in one
query. ``bench/responder_scale.py`` checks the decisions against saved
baselines on 10,000 and 100,000 posts; ``tests/test_grouping.py`` against a
brute-force reading of these rules.

**How well.** ``bench/grouping_eval.py`` scores the events against pairs of
posts labelled the same incident or not: the demo site's stories, CEC
emergency reports (each as news, a Weibo summary and a forum retelling) and
citizen messages about the same and different problems of the same estates.
Pairwise precision / recall, before these rules (title cosine, place names
in the text, same subtype and county enough) → now: demo 1.00 / 0.79 →
1.00 / 0.79; CEC 0.44 / 0.88 → 1.00 / 0.81, and with every report moved into
one district 0.02 / 0.99 → 0.93 / 0.96; messages 0.47 / 0.90 → 0.68 / 0.87.

An ``official`` post (a government release, the official reply on a message
board) that joins an event is recorded as a milestone candidate (audit
``milestone_candidate``, with its link as evidence); the clock stops only
when a duty officer confirms the milestone.

T0 is the earliest publication among members; a later-found earlier post
moves T0 and the open deadlines (audit says why). Severity is the maximum
of the members; raising it may switch the clock rule and add deadlines
(e.g. 权威信息发布 +5 h, 新闻发布会 +24 h).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from responder.clocks import Clocks, archived_as_report, iso_shanghai
from responder.open_events import Member, OpenEvent, OpenEvents
from responder.scheduler import plan_deadlines, plan_new_deadlines, recompute_deadlines
from responder.similarity import BatchSimilarity, TextVector, post_vector, similarity
from responder.store import SEVERITY_RANK, Audit, Deadline, Event, Post, RawJSON, Ticket, TicketEventRow
from stream.contracts import AssessedPost, Place

log = logging.getLogger(__name__)
ARCHIVED_OUTCOME = "政务动态，无需回应（自动归档）"
ARCHIVED_ACTION = "archived_no_response"  # the audit action of such a ticket (read by the brief)

# A report of the same kind of emergency in the same county within this time of
# an event's reports (before its first or after its latest) is the same incident
# unless its death toll is below theirs: an emergency is reported in a burst.
BURST = timedelta(hours=6)
# A death toll identifies an incident from this many deaths up: smaller tolls
# coincide (on the CEC reports moved into one district, bench/grouping_eval.py,
# tolls of 1 and 2 as well took pairwise precision from 0.55 to 0.45 for no recall).
DISTINCT_TOLL = 3
# Beyond BURST of an emergency's reports, text joins it only at this many times
# the similarity threshold: the same story told plainly (a follow-up repeats the
# report's particulars). On the CEC reports (bench/grouping_eval.py), every false
# join of the reports as classified was a report of another incident of the same
# kind a day or more later, at 0.20-0.37 against the event; a report and its own
# Weibo summary or forum retelling score 0.5-0.9.
PLAIN_TEXT = 2.0
# A post of the current batch sorts after every stored post until it gets its id;
# a new event of the batch, after every stored event.
_UNWRITTEN_ROW = 1 << 62
_PROVISIONAL = 1 << 62
# The open events kept in memory reach this far behind the newest post's window
# (a post found later than that reads older events from the store), and are
# dropped in steps of EVICT_STEP.
RETAIN_LATE = timedelta(hours=24)
EVICT_STEP = timedelta(hours=12)

__all__ = [
    "ARCHIVED_ACTION",
    "ARCHIVED_OUTCOME",
    "EventGrouper",
    "FactBuffer",
    "NewPost",
    "places_compatible",
    "similarity",
    "upgrade_rule",
]


# --------------------------------------------------------------------------- places


def place_prefix(code: str | None) -> str | None:
    """``340000`` → ``34``, ``341500`` → ``3415``, ``341502`` → ``341502``."""
    if not code:
        return None
    c = code.strip()
    while len(c) > 2 and c.endswith("00"):
        c = c[:-2]
    return c


def places_compatible(a: str | None, b: str | None) -> bool:
    """Same place, one unknown, or one contains the other."""
    pa, pb = place_prefix(a), place_prefix(b)
    if pa is None or pb is None:
        return True
    return pa.startswith(pb) or pb.startswith(pa)


def is_county(code: str | None) -> bool:
    return bool(code) and len(code or "") == 6 and not (code or "").endswith("00")


def place_dict(p: Place) -> dict[str, Any]:
    return {
        "province": p.province,
        "city": p.city,
        "county": p.county,
        "code": p.code,
        "level": p.level,
        "label": p.label,
    }


# --------------------------------------------------------------------------- batch records


@dataclass(slots=True)
class NewPost:
    """A post of the current batch: the ``posts`` row it becomes, written when
    the batch is (:meth:`row`), and what grouping reads of it."""

    post_id: str
    source_id: str
    source_kind: str
    source_name: str
    url: str
    title: str
    text: str
    author: str
    published_at: datetime
    precision: str
    fetched_at: datetime
    parent_id: str | None
    relevant: bool
    place_code: str | None
    place_label: str
    severity: str
    is_emergency: bool
    event_type: str | None
    event_subtype: str | None
    deaths: int | None
    injured: int | None
    topic: str | None
    department: str | None
    stored_at: datetime
    raw: Any
    event_id: int | None = None
    vectors: TextVector | None = None

    _COLUMNS = (
        "post_id source_id source_kind source_name url title text author published_at precision fetched_at "
        "parent_id relevant place_code place_label severity is_emergency event_type event_subtype deaths "
        "injured topic department stored_at raw event_id"
    ).split()

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in self._COLUMNS}


class FactBuffer:
    """The ticket facts and audit rows of one batch, written together at its end.

    Same contract as :func:`responder.store.emit_fact`: a fact is recorded
    once per key (a key already stored, or already emitted in this batch,
    writes nothing, not even its audit row), in the order emitted.
    """

    def __init__(self) -> None:
        self.facts: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []  # "_key": the fact an audit row belongs to
        self._keys: set[str] = set()

    def emit(
        self,
        *,
        ticket: Ticket,
        kind: str,
        key: str,
        at: datetime,
        detail: dict[str, Any],
        post_id: str,
        audit_action: str | None = None,
    ) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        encoded = RawJSON(json.dumps(detail, ensure_ascii=False, default=str))  # once, for the fact and its audit
        self.facts.append(
            {
                "event_key": key,
                "ticket_id": ticket.id,
                "event_id": ticket.event_id,
                "kind": kind,
                "at": at,
                "actor": "system",
                "detail": encoded,
                "post_id": post_id,
                "_detail": detail,
            }
        )
        self.audits.append(
            {
                "_key": key,
                "ticket_id": ticket.id,
                "event_id": ticket.event_id,
                "at": at,
                "actor": "system",
                "action": audit_action or kind,
                "detail": encoded,
                "remote_addr": None,
            }
        )

    def audit(self, *, ticket_id: int, event_id: int, at: datetime, action: str, detail: dict[str, Any]) -> None:
        self.audits.append(
            {
                "_key": None,
                "ticket_id": ticket_id,
                "event_id": event_id,
                "at": at,
                "actor": "system",
                "action": action,
                "detail": detail,
                "remote_addr": None,
            }
        )

    def write(self, s: Session) -> list[dict[str, Any]]:
        """Insert what is new; return the facts written, in order."""
        keys = [f["event_key"] for f in self.facts]
        stored: set[str] = set()
        for i in range(0, len(keys), 500):
            stored.update(
                s.scalars(select(TicketEventRow.event_key).where(TicketEventRow.event_key.in_(keys[i : i + 500])))
            )
        facts = [f for f in self.facts if f["event_key"] not in stored]
        audits = [{k: v for k, v in a.items() if k != "_key"} for a in self.audits if a["_key"] not in stored]
        if facts:
            s.execute(
                TicketEventRow.__table__.insert(),  # type: ignore[attr-defined]
                [{k: v for k, v in f.items() if k != "_detail"} for f in facts],
            )
        if audits:
            s.execute(Audit.__table__.insert(), audits)  # type: ignore[attr-defined]
        return [f | {"detail": f["_detail"]} for f in facts]


class _Threads:
    """Which open events the posts of a thread (``parent_id``) belong to:
    read from the store once per batch, then kept up to date as it goes."""

    def __init__(self) -> None:
        self.children: dict[str, set[int]] = {}  # parent_id -> events of posts with that parent
        self.posts: dict[str, set[int]] = {}  # post_id -> its event

    def add(self, post_id: str, parent_id: str | None, event_id: int) -> None:
        self.posts.setdefault(post_id, set()).add(event_id)
        if parent_id:
            self.children.setdefault(parent_id, set()).add(event_id)

    def events_of(self, post_id: str, parent_id: str | None) -> set[int]:
        found = set(self.children.get(post_id, ()))
        if parent_id:
            found |= self.posts.get(parent_id, set())
            found |= self.children.get(parent_id, set())
        return found


@dataclass(slots=True)
class _Decision:
    """What grouping decided for one post of the batch (phase 1)."""

    post: NewPost
    ap: AssessedPost
    event_id: int  # an id of the batch's own new events is provisional until they are written
    created: bool
    score: float = 0.0
    reason: str = ""
    member: Member | None = None


@dataclass
class Batch:
    """The state of one batch's grouping (see :class:`EventGrouper`)."""

    rev: int  # the revision stamped on every event the batch touches
    facts: FactBuffer = field(default_factory=FactBuffer)
    threads: _Threads = field(default_factory=_Threads)
    decisions: list[_Decision] = field(default_factory=list)
    sims: BatchSimilarity | None = None
    position: dict[str, int] = field(default_factory=dict)  # post_id -> row in sims
    # Members from this batch, not indexed yet: (row in sims, member, its event's view).
    pending: list[tuple[int, Member, OpenEvent]] = field(default_factory=list)
    # The events and tickets the batch touches, held so that the session's
    # (weak) identity map keeps them: no second SELECT, no flush per post.
    events: dict[int, Event] = field(default_factory=dict)
    tickets: dict[int, Ticket] = field(default_factory=dict)  # event id -> ticket
    real_id: dict[int, int] = field(default_factory=dict)  # provisional -> written event id
    new_deadlines: dict[int, list[Deadline]] = field(default_factory=dict)  # new ticket id -> its deadlines
    latest: datetime | None = None
    view_broken: bool = False


# --------------------------------------------------------------------------- grouping


@dataclass
class Match:
    event: Event
    score: float
    reason: str


class EventGrouper:
    """Groups posts into events. One per responder process and store: it keeps
    the open events in memory between batches (:mod:`responder.open_events`).

    A batch is grouped inside the caller's write transaction, in two phases::

        with grouper.lock:
            b = grouper.begin(s, fresh_posts)    # after store.lock_events(s)
            grouper.decide(s, b, [(post, ap), ...])   # phase 1: in memory
            grouper.apply(s, b, now)             # phase 2: bulk reads and writes
            ... insert the posts, then b.facts.write(s) ...
            grouper.written(b, rows)             # posts.id of the batch's posts
        grouper.committed(b)  /  grouper.rolled_back()

    Phase 1 decides, post by post in the batch's order, which event each
    relevant post joins or opens, from the in-memory view alone, and updates
    the view as it goes (so a later post of the batch sees the earlier ones).
    Phase 2 reads the touched events and tickets in one query each, creates
    the new events, tickets and deadlines in a few multi-row inserts, and
    replays the decisions on them in order: the rows end up as if each post
    had been handled on its own.
    """

    def __init__(self, clocks: Clocks, *, window_hours: float, similarity_threshold: float):
        self.clocks = clocks
        self.window = timedelta(hours=window_hours)
        self.threshold = similarity_threshold
        self.cache = OpenEvents()
        self.lock = threading.Lock()
        self._seq = 0

    # ---- batch bracket

    def begin(self, s: Session, posts: Iterable[NewPost]) -> Batch:
        """Bring the cache up to date for ``posts`` (the caller holds the events lock)."""
        relevant = [p for p in posts if p.relevant]
        current = self.cache.catch_up(s)
        b = Batch(rev=current + 1)
        if not relevant:
            return b
        self.cache.cover(s, min(p.published_at for p in relevant) - self.window)
        b.latest = max(p.published_at for p in relevant)
        ids = {p.post_id for p in relevant}
        parents = {p.parent_id for p in relevant if p.parent_id}
        keys = sorted(ids | parents)
        links: list[Any] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            # Posts first, each condition on its own index: joined to events (or
            # OR-ed), SQLite would start from every open event.
            for cond in (Post.parent_id.in_(chunk), Post.post_id.in_(chunk)):
                links += s.execute(
                    select(Post.post_id, Post.parent_id, Post.event_id).where(cond, Post.event_id.is_not(None))
                ).all()
        linked = sorted({eid for _, _, eid in links})
        open_ids: set[int] = set()
        for i in range(0, len(linked), 500):
            open_ids.update(
                s.scalars(select(Event.id).where(Event.id.in_(linked[i : i + 500]), Event.status == "open"))
            )
        for pid, parent, eid in links:
            if eid in open_ids:
                b.threads.add(pid, parent, eid)
        for p in relevant:
            p.vectors = post_vector(p.title, p.text, p.place_code)
            b.position[p.post_id] = len(b.position)
        b.sims = BatchSimilarity([p.vectors for p in relevant])  # type: ignore[misc]
        return b

    def written(self, b: Batch, rows: dict[str, int]) -> None:
        """The batch's posts were inserted: ``rows`` maps post_id to posts.id.
        Its members get their ids and go into the index."""
        members = [d.member for d in b.decisions if d.member is not None]
        self.cache.set_rows(rows, members)
        self.cache.index_members(
            [
                (d.member, d.post.event_id, d.post.vectors)  # type: ignore[misc]
                for d in b.decisions
                if d.member is not None
            ]
        )

    def committed(self, b: Batch) -> None:
        if b.view_broken:
            self.cache.invalidate()  # a bug, logged: start again from the rows
            return
        if b.decisions:
            self.cache.rev = b.rev
        if b.latest is not None:
            # Keep a day beyond the window behind the newest post; an older open
            # event is read again if a late post's window reaches it.
            self.cache.evict_before(b.latest - self.window - RETAIN_LATE, step=EVICT_STEP)

    def rolled_back(self) -> None:
        self.cache.invalidate()

    # ---- phase 1: decide

    def decide(self, s: Session, b: Batch, posts: Iterable[tuple[NewPost, AssessedPost]]) -> None:
        """Decide, in order, the event of each relevant post (see the class docstring)."""
        for post, ap in posts:
            a = ap.assessment
            found = self.find_event(s, b, post, ap)
            if found is None:
                self._seq += 1
                eid = _PROVISIONAL + self._seq
                archive = _archived(ap)
                oe = OpenEvent(
                    eid,
                    "closed" if archive else "open",
                    post.published_at,
                    post.published_at,
                    a.place.code,
                    a.is_emergency,
                    a.event_subtype,
                    a.event_type,
                )
                if not archive:
                    self.cache.put(oe)
                d = _Decision(post, ap, eid, True)
            else:
                eid, score, reason = found
                oe = self.cache.events.get(eid) or self.cache.ensure(s, eid)  # type: ignore[assignment]
                assert oe is not None, f"event {eid} is not open"
                old_place = oe.place_code
                _view_join(oe, post, a)
                self.cache.moved(oe, old_place)
                d = _Decision(post, ap, eid, False, score, reason)
            post.event_id = eid
            if oe.status == "open":
                m = Member(post.published_at, _UNWRITTEN_ROW + len(b.decisions), post.post_id, post.deaths)
                if self.cache.add_member(oe, m):
                    b.pending.append((b.position[post.post_id], m, oe))
                d.member = m
                b.threads.add(post.post_id, post.parent_id, eid)
            b.decisions.append(d)

    def find_event(self, s: Session, b: Batch, post: NewPost, ap: AssessedPost) -> tuple[int, float, str] | None:
        """(event id, score, reason) of the event ``post`` joins, or None to open one."""
        thread = b.threads.events_of(post.post_id, post.parent_id)
        if thread:
            return min(thread), 2.0, "同一主题帖/转发链"
        a = ap.assessment
        subtype = a.event_subtype if a.is_emergency else None
        assert post.vectors is not None and b.sims is not None
        floor = self.threshold  # below it no text score counts
        sims = self.cache.index.best_per_owner(post.vectors, floor)
        if b.pending:
            row = b.sims.row(b.position[post.post_id])
            for i, m, oe in b.pending:
                sim = float(row[i])
                if sim >= floor and m.compared and sim > sims.get(oe.id, -1.0):
                    sims[oe.id] = sim
        best: tuple[float, int, str] | None = None
        # Events that may match by a county rule (same emergency, same toll):
        # each is scored in full. The highest score wins; among equal scores the
        # oldest event (lowest id), as when every candidate was scanned in id order.
        ruled: set[int] = set()
        if is_county(post.place_code) and (post.is_emergency or post.deaths):
            for oe in sorted(self.cache.candidates_by_place(post.place_code or ""), key=lambda e: e.id):
                ruled.add(oe.id)
                if oe.in_window(post.published_at, self.window):
                    scored = self._score(oe, post, subtype, sims.get(oe.id, 0.0))
                    if scored is not None and (best is None or scored[0] > best[0]):
                        best = (scored[0], oe.id, scored[1])
        # Every other event can only score its text similarity: the best one that
        # passes the window, place and threshold checks is the text match.
        for eid, sim in sorted(sims.items(), key=lambda kv: (-kv[1], kv[0])):
            if best is not None and (sim < best[0] or (sim == best[0] and eid > best[1])):
                break
            if eid in ruled:
                continue
            oe = self.cache.events[eid]  # type: ignore[index]
            if not oe.in_window(post.published_at, self.window):
                continue
            scored = self._score(oe, post, subtype, sim)
            if scored is not None:
                best = (scored[0], eid, scored[1])
                break
        return None if best is None else (best[1], best[0], best[2])

    def _score(self, ev: OpenEvent, post: NewPost, subtype: str | None, best: float) -> tuple[float, str] | None:
        """The rules (module docstring) for one open event in the post's window:
        (score, reason) if ``post`` may join it, else None. ``best`` is the
        post's highest similarity with the event's compared members (0 below
        the threshold)."""
        if not places_compatible(ev.place_code, post.place_code):
            return None
        kind = post.event_type if post.is_emergency else None
        ev_kind = ev.etype if ev.is_emergency else None
        if kind and ev_kind and (kind != ev_kind or (subtype and ev.subtype and subtype != ev.subtype)):
            return None  # a fire is never a flood nor a road accident, whatever the words and tolls say
        same_county = is_county(post.place_code) and post.place_code == ev.place_code
        tolls = {m.deaths for m in ev.members if m.deaths}
        toll = (post.deaths or 0) >= DISTINCT_TOLL and post.deaths in tolls
        burst = ev.t0 - BURST <= post.published_at <= ev.last + BURST
        # Text joins an emergency while it is being reported; after that, only
        # text that tells the same story plainly (one kind of emergency recurs).
        # An emergency and a non-emergency (a report of a fire and an event of
        # complaints, either way round) join only on plain text too: a few shared
        # words would upgrade a complaint to an emergency's clock and title, or
        # pour complaints into an emergency (the fault matrix: a 12-death fire
        # joined a waterlogging event of its district at 0.24).
        mixed = bool(kind) != bool(ev_kind)
        needed = self.threshold if (burst or not ev_kind) and not mixed else PLAIN_TEXT * self.threshold
        if same_county and kind and ev_kind:
            same = f"同类突发事件（{subtype or ev.subtype or kind}）且同一县区，"
            if toll:
                return 1.5, f"{same}死亡人数一致（{post.deaths}人）"
            if best >= needed:
                return 1.5, f"{same}文本相似度 {best:.2f} ≥ {needed:.2f}"
            # Tolls only rise: a lower one (0 included: "无人员伤亡") is another incident.
            if burst and not (post.deaths is not None and tolls and post.deaths < max(tolls)):
                return 1.5, f"{same}与该事件的报道相隔不足{BURST.total_seconds() / 3600:g}小时，伤亡数字无矛盾"
        if same_county and toll:
            return 1.4, f"同一县区、时间窗口内、死亡人数一致（{post.deaths}人）"
        if best >= needed:
            return best, f"地点相容、时间窗口内、文本相似度 {best:.2f} ≥ {needed:.2f}"
        return None

    # ---- phase 2: apply

    def apply(self, s: Session, b: Batch, now: datetime) -> None:
        """Write what phase 1 decided: new events, tickets and deadlines, then
        every post's join in order, with its facts in ``b.facts``."""
        if not b.decisions:
            return
        existing = sorted({d.event_id for d in b.decisions if not d.created and d.event_id < _PROVISIONAL})
        for i in range(0, len(existing), 500):
            chunk = existing[i : i + 500]
            for ev in s.scalars(select(Event).where(Event.id.in_(chunk))):
                b.events[ev.id] = ev
            for t in s.scalars(select(Ticket).where(Ticket.event_id.in_(chunk))):
                b.tickets[t.event_id] = t
        self._create(s, b, now)
        for d in b.decisions:
            real = b.real_id.get(d.event_id, d.event_id)
            d.post.event_id = real
            ev, ticket = b.events[real], b.tickets[real]
            if d.created:
                self._opened(b, d, ev, ticket, now)
            else:
                self._join(s, b, Match(ev, d.score, d.reason), d.post, d.ap, now)
            ev.rev = b.rev
        for prov, real in b.real_id.items():
            self.cache.rekey(prov, real)
        self._check_view(b)

    def _create(self, s: Session, b: Batch, now: datetime) -> None:
        """The batch's new events, their tickets and deadlines, a few multi-row inserts for all."""
        made = [d for d in b.decisions if d.created]
        if not made:
            return
        events = [self._new_event(d.post, d.ap, now, b.rev) for d in made]
        s.add_all(events)
        s.flush()
        tickets: list[Ticket] = []
        plans: list[tuple[Ticket, str, datetime]] = []
        for d, ev in zip(made, events, strict=True):
            b.real_id[d.event_id] = ev.id
            b.events[ev.id] = ev
            t = self._new_ticket(ev, d.ap, now)
            tickets.append(t)
            b.tickets[ev.id] = t
        s.add_all(tickets)
        s.flush()
        for t, ev in zip(tickets, events, strict=True):
            if t.rule != "none":
                plans.append((t, t.rule, ev.t0))
        b.new_deadlines = plan_new_deadlines(s, self.clocks, plans)

    def _new_event(self, post: NewPost, ap: AssessedPost, now: datetime, rev: int) -> Event:
        a, p = ap.assessment, ap.post
        return Event(
            t0=post.published_at,
            t0_post_id=post.post_id,
            t0_precision=post.precision,
            t0_crawl_lag_s=(post.fetched_at - post.published_at).total_seconds(),
            last_published_at=post.published_at,
            place_code=a.place.code,
            place_label=a.place.label,
            place=place_dict(a.place),
            severity=a.severity,
            severity_reason=a.severity_reason,
            is_emergency=a.is_emergency,
            event_type=a.event_type,
            event_subtype=a.event_subtype,
            title=_title_of(p.title, p.text),
            # 政务动态 that asks for nothing: archived at once, no clock, nobody notified.
            status="closed" if _archived(ap) else "open",
            post_count=1,
            created_at=now,
            rev=rev,
        )

    def _new_ticket(self, ev: Event, ap: AssessedPost, now: datetime) -> Ticket:
        a = ap.assessment
        archive = _archived(ap)
        choice = None if archive else self.clocks.choose(a, source_kind=ap.post.source_kind)
        return Ticket(
            event_id=ev.id,
            status="closed" if archive else "new",
            closed_at=now if archive else None,
            severity=ev.severity,
            severity_reason=ev.severity_reason,
            place_label=ev.place_label,
            place_code=ev.place_code,
            department=a.department,
            responders=[r.model_dump() for r in a.responders],
            rule=choice.rule if choice else "none",
            rule_reason=(choice.reason if choice else
                         (a.handling_reason or "政务动态，无需回应，不计时限") if archive else "未匹配任何时限规则"),
            created_at=now,
        )

    def _opened(self, b: Batch, d: _Decision, ev: Event, ticket: Ticket, now: datetime) -> None:
        archive = ev.status == "closed"
        deadlines = b.new_deadlines.get(ticket.id, [])
        detail = {
            "title": ev.title,
            "severity": ev.severity,
            "severity_reason": ev.severity_reason,
            "place": ev.place_label,
            "place_code": ev.place_code,
            "department": ticket.department,
            "rule": ticket.rule,
            "rule_reason": ticket.rule_reason,
            "t0": iso_shanghai(ev.t0),
            "t0_precision": ev.t0_precision,
            "post_id": d.post.post_id,
            "deadlines": [{"milestone": x.milestone, "due_at": iso_shanghai(x.due_at)} for x in deadlines],
        }
        if archive:
            detail.update(outcome=ARCHIVED_OUTCOME, reason=d.ap.assessment.handling_reason, auto=True)
        b.facts.emit(
            ticket=ticket,
            kind="closed" if archive else "opened",
            key=f"{ticket.id}:{'closed' if archive else 'opened'}",
            at=now,
            detail=detail,
            post_id=d.post.post_id,
            audit_action=ARCHIVED_ACTION if archive else None,
        )

    def _check_view(self, b: Batch) -> None:
        """The in-memory view must now say what the rows say; if not, forget it."""
        for eid, ev in b.events.items():
            oe = self.cache.events.get(eid)
            if oe is None:
                continue
            view = (oe.status, oe.t0, oe.last, oe.place_code, oe.is_emergency, oe.subtype, oe.etype)
            rows = (
                ev.status, ev.t0, ev.last_published_at, ev.place_code, bool(ev.is_emergency), ev.event_subtype,
                ev.event_type,
            )
            if view != rows:
                log.error("grouping view of event %s differs from its row (%s != %s): reloading", eid, view, rows)
                b.view_broken = True

    def _join(self, s: Session, b: Batch, m: Match, post: NewPost, ap: AssessedPost, now: datetime) -> None:
        ev = m.event
        a = ap.assessment
        ticket = b.tickets[ev.id]
        ev.post_count = (ev.post_count or 0) + 1
        if post.published_at > ev.last_published_at:
            ev.last_published_at = post.published_at
        b.facts.emit(
            ticket=ticket,
            kind="post_added",
            key=f"{ticket.id}:post:{post.post_id}",
            at=now,
            detail={
                "post_id": post.post_id,
                "source": ap.post.source_name or ap.post.source_id,
                "url": ap.post.url,
                "reason": m.reason,
                "score": round(m.score, 3),
            },
            post_id=post.post_id,
        )
        if ap.post.source_kind == "official":
            self._milestone_candidate(s, b, ticket, post, ap, now)
        self._retitle(b, ev, ticket, post, ap, now)
        if not ticket.department and a.department:
            ticket.department = a.department
        self._refine_place(b, ev, ticket, a.place, post, now)

        # T0: the earliest publication among members.
        if post.published_at < ev.t0:
            old = ev.t0
            ev.t0 = post.published_at
            ev.t0_post_id = post.post_id
            ev.t0_precision = post.precision
            ev.t0_crawl_lag_s = (post.fetched_at - post.published_at).total_seconds()
            changes = recompute_deadlines(s, self.clocks, ticket, ev.t0)
            reason = (
                f"发现更早发布的帖子 {post.post_id}（{ap.post.source_name or ap.post.source_id}，"
                f"发布于 {iso_shanghai(post.published_at)}），T0 由 {iso_shanghai(old)} 提前至 "
                f"{iso_shanghai(ev.t0)}，未完成的期限随之重算"
            )
            b.facts.emit(
                ticket=ticket,
                kind="t0_moved",
                key=f"{ticket.id}:t0:{post.post_id}",
                at=now,
                detail={
                    "from": iso_shanghai(old),
                    "to": iso_shanghai(ev.t0),
                    "post_id": post.post_id,
                    "reason": reason,
                    "deadlines": changes,
                },
                post_id=post.post_id,
            )

        # Severity: the maximum of the members.
        emergency = ev.is_emergency or a.is_emergency
        raised = SEVERITY_RANK.get(a.severity, 0) > SEVERITY_RANK.get(ev.severity, 0)
        if raised or emergency != ev.is_emergency:
            old_sev = ev.severity
            if raised:
                ev.severity = a.severity
                ev.severity_reason = a.severity_reason
                ticket.severity = a.severity
                ticket.severity_reason = a.severity_reason
                if a.responders:
                    ticket.responders = [r.model_dump() for r in a.responders]
            if a.is_emergency and not ev.is_emergency:
                ev.is_emergency = True
                ev.event_type = ev.event_type or a.event_type
                ev.event_subtype = ev.event_subtype or a.event_subtype
            added = upgrade_rule(s, self.clocks, ev, ticket)
            if raised:
                b.facts.emit(
                    ticket=ticket,
                    kind="severity_changed",
                    key=f"{ticket.id}:severity:{ev.severity}",
                    at=now,
                    detail={
                        "from": old_sev,
                        "to": ev.severity,
                        "reason": ev.severity_reason,
                        "post_id": post.post_id,
                        "rule": ticket.rule,
                        "deadlines_added": [
                            {"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)} for d in added
                        ],
                    },
                    post_id=post.post_id,
                )

    def _retitle(self, b: Batch, ev: Event, ticket: Ticket, post: NewPost, ap: AssessedPost, now: datetime) -> None:
        """The event's title is its lead post's (see :func:`lead_rank`): a member
        takes the lead only by outranking the event, before its severity is raised."""
        a = ap.assessment
        if ev.title and lead_rank(a.severity, a.is_emergency) <= lead_rank(ev.severity, bool(ev.is_emergency)):
            return
        title = _title_of(ap.post.title, ap.post.text)
        if not title or title == ev.title:
            return
        old, ev.title = ev.title, title
        if old:
            b.facts.audit(
                ticket_id=ticket.id,
                event_id=ev.id,
                at=now,
                action="title_changed",
                detail={
                    "from": old,
                    "to": title,
                    "post_id": post.post_id,
                    "reason": f"该帖子使事件升级为{a.severity}{'突发事件' if a.is_emergency else ''}，"
                    "事件标题改取该帖子的标题",
                },
            )

    def _milestone_candidate(
        self, s: Session, b: Batch, ticket: Ticket, post: NewPost, ap: AssessedPost, now: datetime
    ) -> None:
        """An official post (a government release, or the official reply on a
        message board) joined the event: record it as a candidate for the open
        milestones, with the evidence link. A duty officer confirms it through
        the milestones API; the clock stops only then."""
        open_ms = s.scalars(
            select(Deadline)
            .where(Deadline.ticket_id == ticket.id, Deadline.met_at.is_(None))
            .order_by(Deadline.due_at)
        ).all()
        if not open_ms:
            return
        b.facts.audit(
            ticket_id=ticket.id,
            event_id=ticket.event_id,
            at=now,
            action="milestone_candidate",
            detail={
                "post_id": post.post_id,
                "evidence_url": ap.post.url,
                "source": ap.post.source_name or ap.post.source_id,
                "author": ap.post.author,
                "published_at": iso_shanghai(post.published_at),
                "milestones": [
                    {
                        "milestone": d.milestone,
                        "due_at": iso_shanghai(d.due_at),
                        "on_time_if_confirmed": post.published_at <= d.due_at,
                    }
                    for d in open_ms
                ],
                "reason": "官方来源发布的内容归入本事件，可能是回应节点的佐证，待值班员确认",
            },
        )

    def _refine_place(
        self, b: Batch, ev: Event, ticket: Ticket, place: Place, post: NewPost, now: datetime
    ) -> None:
        """An unknown (待定) or coarser event place takes a member's more specific one."""
        new = refined_place(ev.place_code, place.code)
        if new is None:
            return
        old_label = ev.place_label
        ev.place_code, ev.place_label, ev.place = new, place.label, place_dict(place)
        ticket.place_code, ticket.place_label = new, place.label
        b.facts.audit(
            ticket_id=ticket.id,
            event_id=ev.id,
            at=now,
            action="place_refined",
            detail={
                "from": old_label,
                "to": place.label,
                "code": new,
                "post_id": post.post_id,
                "reason": "成员帖子给出更具体的属地",
            },
        )


def refined_place(current: str | None, offered: str | None) -> str | None:
    """The place an event takes from a new member: ``offered`` when it is more
    specific than (or the event has no) ``current``, else None (keep it)."""
    if not offered or offered == current:
        return None
    old_p, new_p = place_prefix(current), place_prefix(offered)
    if old_p is not None and not (new_p or "").startswith(old_p):
        return None  # a different or coarser place: keep the event's
    return offered


def _view_join(oe: OpenEvent, post: NewPost, a: Any) -> None:
    """What :meth:`EventGrouper._join` will do to the fields grouping reads,
    done to the in-memory view in phase 1 (checked against the rows after phase 2)."""
    if post.published_at > oe.last:
        oe.last = post.published_at
    new = refined_place(oe.place_code, a.place.code)
    if new is not None:
        oe.place_code = new
    if post.published_at < oe.t0:
        oe.t0 = post.published_at
    if a.is_emergency and not oe.is_emergency:
        oe.is_emergency = True
        oe.etype = oe.etype or a.event_type
        oe.subtype = oe.subtype or a.event_subtype


def lead_rank(severity: str | None, emergency: bool) -> tuple[int, bool]:
    """How much a post (or an event) says about the incident: severity first,
    then being an emergency. An event's title is that of its lead post: the
    one that opened it, or the first later member that outranked it (raised
    its severity, or made it an emergency at the same severity), so the title
    names what set the event's clock; a member that joins later without
    outranking it never renames it."""
    return SEVERITY_RANK.get(severity or "", 0), bool(emergency)


def _archived(ap: AssessedPost) -> bool:
    """政务动态 that asks for nothing is archived at once. A message-board post
    always gets a reply, an emergency always a response."""
    return archived_as_report(ap.assessment, ap.post.source_kind)


def _title_of(title: str, text: str) -> str:
    t = (title or "").strip()
    if t:
        return t[:200]
    t = re.sub(r"\s+", " ", text or "").strip()
    return t[:40] + ("…" if len(t) > 40 else "")


def upgrade_rule(s: Session, clocks: Clocks, ev: Event, ticket: Ticket) -> list:
    """Switch to a higher-priority clock rule if the event now qualifies
    (an emergency raised to 重大 gets the 5 h / 24 h deadlines from its T0)."""
    new_rule = clocks.match(relevant=True, emergency=ev.is_emergency, severity=ev.severity)
    if new_rule is None or new_rule == ticket.rule:
        return []
    order = list(clocks.config.rules)
    cur = order.index(ticket.rule) if ticket.rule in order else len(order)
    if order.index(new_rule) >= cur:
        return []
    ticket.rule = new_rule
    ticket.rule_reason = "事件升级：" + clocks.reason(
        new_rule, emergency=ev.is_emergency, severity=ev.severity, handling_type=None, source_kind=None)
    return plan_deadlines(s, clocks, ticket, new_rule, ev.t0)
