"""Event grouping: which posts are about the same incident.

A new relevant post joins an open event when it is the same incident:

1. **Thread** — it replies to / reposts a member, a member replies to /
   reposts it, or both belong to the same thread (``parent_id``). No window.
2. **Same emergency** — same emergency subtype (火灾, 交通事故, …) in the
   same county, published within the event window.
3. **Same toll** — same county, within the window, and the same reported
   death toll (> 0) as a member: the classifier may miss the subtype of a
   colloquial forum post ("厂房塌了，县里通报说死了12个"), not the number.
4. **Same story** — compatible places (same division code, one unknown, or
   one the parent of the other) AND published within the window AND text
   similarity ≥ ``settings.responder.similarity_threshold`` (half of it when
   the post and the event are both emergencies in the same county).

The window (``event_window_hours``) is measured from the event's span
[T0, latest member publication]. Text similarity is the cosine of
character-bigram count vectors over title + text (punctuation and spaces
removed), or of the two titles when that is higher: headlines of the same
story share their key words even when the bodies are rewritten.

Measured on the demo site's stories (``yuqing/demo_site/stories.py``, 47
stories; pairs with compatible places): the same story retold by another
source scores 0.16–0.50 (news vs. its Weibo summary 0.36–0.51, news vs. a
colloquial forum post 0.05–0.17), different stories in the same place
0.00–0.14. So 0.35 joins copies and close retellings and never merges two
different issues; the emergencies' colloquial retellings are joined by
rules 1–3 (every demo emergency ends as one event). Lowering the threshold
to about 0.2 would also join the non-emergency retellings (停水, 噪音)
at the price of a thinner margin.

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

import functools
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from responder.clocks import Clocks, iso_shanghai
from responder.scheduler import plan_deadlines, recompute_deadlines
from responder.store import SEVERITY_RANK, Audit, Deadline, Event, Post, Ticket, TicketEventRow, emit_fact
from stream.contracts import AssessedPost, Place

log = logging.getLogger(__name__)
ARCHIVED_OUTCOME = "政务动态，无需回应（自动归档）"
ARCHIVED_ACTION = "archived_no_response"  # the audit action of such a ticket (read by the brief)

_NOISE = re.compile(r"[\W_]+", re.UNICODE)
# Members compared per candidate event (the most recent ones).
MAX_MEMBERS_COMPARED = 50
# Two emergencies in the same county need only this fraction of the threshold.
EMERGENCY_THRESHOLD_FACTOR = 0.5


# --------------------------------------------------------------------------- similarity


def bigram_vector(s: str) -> Counter[str]:
    s = _NOISE.sub("", s.lower())
    if len(s) == 1:
        return Counter([s])
    return Counter(s[i : i + 2] for i in range(len(s) - 1))


def cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb)


@functools.lru_cache(maxsize=4096)
def _vector(s: str) -> tuple[Counter[str], float]:
    """The bigram vector of ``s`` and its norm, cached: an event's members are
    compared with every new post, so their vectors are built once, not per
    comparison. (Callers never mutate the cached Counter.)"""
    v = bigram_vector(s)
    return v, math.sqrt(sum(x * x for x in v.values()))


def _cached_cosine(s1: str, s2: str) -> float:
    # The same arithmetic as cosine(), in the same order: identical results.
    (a, na), (b, nb) = _vector(s1), _vector(s2)
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
        na, nb = nb, na
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    return dot / (na * nb)


def similarity(title_a: str, text_a: str, title_b: str, text_b: str) -> float:
    """Text similarity in [0, 1] of two posts (see the module docstring)."""
    body = _cached_cosine(f"{title_a} {text_a}", f"{title_b} {text_b}")
    if len(_NOISE.sub("", title_a)) >= 4 and len(_NOISE.sub("", title_b)) >= 4:
        return max(body, _cached_cosine(title_a, title_b))
    return body


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


# --------------------------------------------------------------------------- grouping


@dataclass
class Match:
    event: Event
    score: float
    reason: str


@dataclass
class Outcome:
    """What adding one post did: its event, ticket, and the facts emitted."""

    event: Event | None
    ticket: Ticket | None
    created: bool = False
    facts: list[TicketEventRow] = field(default_factory=list)


class EventGrouper:
    def __init__(self, clocks: Clocks, *, window_hours: float, similarity_threshold: float):
        self.clocks = clocks
        self.window = timedelta(hours=window_hours)
        self.threshold = similarity_threshold

    # ---- matching

    def find_event(self, s: Session, post: Post, ap: AssessedPost) -> Match | None:
        m = self._thread_match(s, post)
        if m is not None:
            return m
        a = ap.assessment
        candidates = s.scalars(
            select(Event).where(
                Event.status == "open",
                Event.t0 <= post.published_at + self.window,
                Event.last_published_at >= post.published_at - self.window,
            )
        ).all()
        best: Match | None = None
        for ev in candidates:
            m = self._score(s, ev, post, a.event_subtype if a.is_emergency else None)
            if m is not None and (best is None or m.score > best.score):
                best = m
        return best

    def _thread_match(self, s: Session, post: Post) -> Match | None:
        conds = [Post.parent_id == post.post_id]
        if post.parent_id:
            conds += [Post.post_id == post.parent_id, Post.parent_id == post.parent_id]
        row = s.execute(
            select(Event)
            .join(Post, Post.event_id == Event.id)
            .where(or_(*conds), Post.id != post.id, Event.status == "open")
            .order_by(Event.id)
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        return Match(row, 2.0, "同一主题帖/转发链")

    def _score(self, s: Session, ev: Event, post: Post, subtype: str | None) -> Match | None:
        same_county = is_county(post.place_code) and post.place_code == ev.place_code
        if same_county and subtype and ev.is_emergency and ev.event_subtype == subtype:
            return Match(ev, 1.5, f"同类突发事件（{subtype}）且同一县区，时间窗口内")
        if not places_compatible(ev.place_code, post.place_code):
            return None
        members = s.execute(
            select(Post.title, Post.text, Post.deaths)
            .where(Post.event_id == ev.id)
            .order_by(Post.published_at.desc())
            .limit(MAX_MEMBERS_COMPARED)
        ).all()
        if same_county and post.deaths and any(d == post.deaths for _, _, d in members):
            return Match(ev, 1.4, f"同一县区、时间窗口内、死亡人数一致（{post.deaths}人）")
        best = 0.0
        for title, text, _ in members:
            best = max(best, similarity(post.title, post.text, title, text))
        threshold = self.threshold
        if same_county and post.is_emergency and ev.is_emergency:
            # Both emergencies in one county, but the classifier named no common
            # subtype (e.g. one report says 食源性疾病, another nothing): the
            # text only has to be half as close.
            threshold = self.threshold * EMERGENCY_THRESHOLD_FACTOR
        if best >= threshold:
            return Match(ev, best, f"地点相容、时间窗口内、文本相似度 {best:.2f} ≥ {threshold:.2f}")
        return None

    # ---- applying

    def add_post(self, s: Session, post: Post, ap: AssessedPost, now: datetime) -> Outcome:
        """Attach a stored relevant post to an event (new or existing)."""
        match = self.find_event(s, post, ap)
        if match is None:
            return self._open(s, post, ap, now)
        return self._join(s, match, post, ap, now)

    def _open(self, s: Session, post: Post, ap: AssessedPost, now: datetime) -> Outcome:
        a = ap.assessment
        p = ap.post
        ev = Event(
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
            status="open",
            post_count=1,
            created_at=now,
        )
        # 政务动态 that asks for nothing: archived at once, no clock, nobody notified.
        # A message-board post always gets a reply, an emergency always a response.
        archive = not a.needs_response and not a.is_emergency and p.source_kind != "gov_board"
        if archive:
            ev.status = "closed"
        s.add(ev)
        s.flush()
        post.event_id = ev.id
        rule = "none" if archive else (self.clocks.rule_for(a, source_kind=p.source_kind) or "none")
        ticket = Ticket(
            event_id=ev.id,
            status="closed" if archive else "new",
            closed_at=now if archive else None,
            severity=ev.severity,
            severity_reason=ev.severity_reason,
            place_label=ev.place_label,
            place_code=ev.place_code,
            department=a.department,
            responders=[r.model_dump() for r in a.responders],
            rule=rule,
            created_at=now,
        )
        s.add(ticket)
        s.flush()
        deadlines = plan_deadlines(s, self.clocks, ticket, rule, ev.t0) if rule != "none" else []
        detail = {
            "title": ev.title,
            "severity": ev.severity,
            "severity_reason": ev.severity_reason,
            "place": ev.place_label,
            "place_code": ev.place_code,
            "department": ticket.department,
            "rule": rule,
            "t0": iso_shanghai(ev.t0),
            "t0_precision": ev.t0_precision,
            "post_id": post.post_id,
            "deadlines": [{"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)} for d in deadlines],
        }
        if archive:
            detail.update(outcome=ARCHIVED_OUTCOME, reason=a.handling_reason, auto=True)
        facts = [
            emit_fact(
                s,
                ticket=ticket,
                kind="closed" if archive else "opened",
                key=f"{ticket.id}:{'closed' if archive else 'opened'}",
                at=now,
                detail=detail,
                post_id=post.post_id,
                audit_action=ARCHIVED_ACTION if archive else None,
            )
        ]
        return Outcome(ev, ticket, True, [f for f in facts if f is not None])

    def _join(self, s: Session, m: Match, post: Post, ap: AssessedPost, now: datetime) -> Outcome:
        ev = m.event
        a = ap.assessment
        ticket = s.scalar(select(Ticket).where(Ticket.event_id == ev.id))
        assert ticket is not None, f"event {ev.id} has no ticket"
        post.event_id = ev.id
        ev.post_count = (ev.post_count or 0) + 1
        if post.published_at > ev.last_published_at:
            ev.last_published_at = post.published_at
        facts: list[TicketEventRow | None] = []
        facts.append(
            emit_fact(
                s,
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
        )
        if ap.post.source_kind == "official":
            self._milestone_candidate(s, ticket, post, ap, now)
        if not ev.title:
            ev.title = _title_of(ap.post.title, ap.post.text)
        if not ticket.department and a.department:
            ticket.department = a.department
        self._refine_place(s, ev, ticket, a.place, post, now)

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
            facts.append(
                emit_fact(
                    s,
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
                facts.append(
                    emit_fact(
                        s,
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
                )
        s.flush()
        return Outcome(ev, ticket, False, [f for f in facts if f is not None])

    def _milestone_candidate(
        self, s: Session, ticket: Ticket, post: Post, ap: AssessedPost, now: datetime
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
        s.add(
            Audit(
                ticket_id=ticket.id,
                event_id=ticket.event_id,
                at=now,
                actor="system",
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
        )

    def _refine_place(
        self, s: Session, ev: Event, ticket: Ticket, place: Place, post: Post, now: datetime
    ) -> None:
        """An unknown (待定) or coarser event place takes a member's more specific one."""
        new = place.code
        if not new or new == ev.place_code:
            return
        old_p, new_p = place_prefix(ev.place_code), place_prefix(new)
        if old_p is not None and not (new_p or "").startswith(old_p):
            return  # a different or coarser place: keep the event's
        old_label = ev.place_label
        ev.place_code, ev.place_label, ev.place = new, place.label, place_dict(place)
        ticket.place_code, ticket.place_label = new, place.label
        s.add(
            Audit(
                ticket_id=ticket.id,
                event_id=ev.id,
                at=now,
                actor="system",
                action="place_refined",
                detail={
                    "from": old_label,
                    "to": place.label,
                    "code": new,
                    "post_id": post.post_id,
                    "reason": "成员帖子给出更具体的属地",
                },
            )
        )


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
    return plan_deadlines(s, clocks, ticket, new_rule, ev.t0)
