"""Event split by a duty officer: the counterpart of the merge (:func:`responder.cases.merge`).

Posts the grouper put into the wrong event move to a **new** event with its
own ticket, opened the way the grouper opens one (:meth:`EventGrouper._open`):
T0 = the earliest publication among the moved posts, severity = their
maximum, place = the most specific of theirs, title from the earliest post,
the clock rule from :meth:`Clocks.rule_for` and its deadlines from
:func:`plan_deadlines`.

The original event keeps the other posts; its T0, severity and post count
are recomputed from them. If its T0 moves later, its open deadlines move with
it (:func:`recompute_deadlines`: a milestone already met, or a deadline
already fired, keeps its row). Its clock rule is left as it is: a rule once
in force is not withdrawn by a regrouping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from responder.clocks import Clocks, iso_shanghai
from responder.events import _title_of, place_dict, place_prefix
from responder.scheduler import plan_deadlines, recompute_deadlines
from responder.store import SEVERITY_RANK, Event, Post, Ticket, emit_fact, next_rev
from stream.contracts import AssessedPost


class SplitError(Exception):
    """A split that cannot be done: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SplitResult:
    original: Ticket
    new: Ticket
    moved_post_ids: list[str]
    deadlines_moved: list[dict[str, Any]] = field(default_factory=list)


def _assessed(p: Post) -> AssessedPost | None:
    try:
        return AssessedPost.model_validate(p.raw) if p.raw else None
    except ValueError:
        return None


def _order(p: Post) -> tuple[datetime, int]:
    return (p.published_at, p.id)


def _max_severity(posts: list[Post]) -> Post:
    """The most severe post (the earliest among equals)."""
    return min(posts, key=lambda p: (-SEVERITY_RANK.get(p.severity, 0), *_order(p)))


def _severity_reason(p: Post) -> str:
    ap = _assessed(p)
    return ap.assessment.severity_reason if ap is not None else ""


def split_event(
    s: Session,
    clocks: Clocks,
    ev: Event,
    post_ids: list[str],
    *,
    officer: str,
    reason: str,
    now: datetime,
    remote_addr: str | None,
    audit_columns: Mapping[str, Any] | None = None,
) -> SplitResult:
    """Move ``post_ids`` of event ``ev`` into a new event with its own ticket.
    ``audit_columns``: the officer's role and jurisdiction, for the audit rows
    (:func:`responder.store.emit_fact`).

    The caller holds the events lock and a row lock on ``ev``; raises
    :class:`SplitError` (409 closed event, 422 bad post list).
    """
    if ev.status != "open":
        raise SplitError(409, f"事件 {ev.id} 已关闭或已合并，不能拆分")
    wanted = list(dict.fromkeys(p.strip() for p in post_ids if p and p.strip()))
    if not wanted:
        raise SplitError(422, "请指定要拆分出去的帖子")
    members = list(s.scalars(select(Post).where(Post.event_id == ev.id)))
    by_id = {p.post_id: p for p in members}
    foreign = [p for p in wanted if p not in by_id]
    if foreign:
        raise SplitError(422, f"帖子 {'、'.join(foreign)} 不属于事件 {ev.id}，不能拆分")
    moved = sorted((by_id[p] for p in wanted), key=_order)
    remaining = sorted((p for p in members if p.post_id not in set(wanted)), key=_order)
    if not remaining:
        raise SplitError(422, f"不能拆分出事件 {ev.id} 的全部帖子（原事件至少保留一条）")
    ticket = s.scalar(select(Ticket).where(Ticket.event_id == ev.id).with_for_update())
    assert ticket is not None, f"event {ev.id} has no ticket"

    # ---- the new event and its ticket (as EventGrouper._open builds them)
    first = moved[0]
    top = _max_severity(moved)
    top_ap = _assessed(top)
    first_ap = _assessed(first)
    # Most specific place: the longest division code (the earliest among equals).
    placed = [p for p in moved if p.place_code]
    where = (
        max(placed, key=lambda p: (len(place_prefix(p.place_code) or ""), -moved.index(p)))
        if placed
        else None
    )
    where_ap = _assessed(where) if where is not None else None
    emergency = next((p for p in moved if p.is_emergency), None)
    new_ev = Event(
        t0=first.published_at,
        t0_post_id=first.post_id,
        t0_precision=first.precision,
        t0_crawl_lag_s=(first.fetched_at - first.published_at).total_seconds(),
        last_published_at=max(p.published_at for p in moved),
        place_code=where.place_code if where is not None else None,
        place_label=where.place_label if where is not None else "待定",
        place=(
            place_dict(where_ap.assessment.place)
            if where_ap is not None
            else {"code": where.place_code, "label": where.place_label}
            if where is not None
            else {}
        ),
        severity=top.severity,
        severity_reason=_severity_reason(top),
        is_emergency=emergency is not None,
        event_type=emergency.event_type if emergency is not None else first.event_type,
        event_subtype=emergency.event_subtype if emergency is not None else first.event_subtype,
        title=_title_of(first.title, first.text),
        status="open",
        post_count=len(moved),
        created_at=now,
    )
    s.add(new_ev)
    s.flush()
    for p in moved:
        p.event_id = new_ev.id
    # Responders keeping open events in memory reload both (the caller holds the events lock).
    ev.rev = new_ev.rev = next_rev(s)
    # The clock rule: the same rule_for a newly opened ticket gets, from the most
    # severe moved post's assessment (with the new event's severity/emergency).
    base = top_ap or first_ap
    if base is not None:
        a = base.assessment.model_copy(
            update={"severity": new_ev.severity, "is_emergency": new_ev.is_emergency}
        )
        choice = clocks.choose(a, source_kind=top.source_kind)
        rule = choice.rule if choice else "none"
        rule_reason = f"拆分出的新事件：{choice.reason}" if choice else "未匹配任何时限规则"
        responders = [r.model_dump() for r in base.assessment.responders]
    else:
        rule = (
            clocks.match(
                relevant=True,
                emergency=new_ev.is_emergency,
                severity=new_ev.severity,
                source_kind=top.source_kind,
            )
            or "none"
        )
        rule_reason = "拆分出的新事件：" + (clocks.reason(
            rule, emergency=new_ev.is_emergency, severity=new_ev.severity, handling_type=None,
            source_kind=top.source_kind) if rule != "none" else "未匹配任何时限规则")
        responders = []
    new_t = Ticket(
        event_id=new_ev.id,
        status="new",
        severity=new_ev.severity,
        severity_reason=new_ev.severity_reason,
        place_label=new_ev.place_label,
        place_code=new_ev.place_code,
        department=top.department or first.department,
        responders=responders,
        rule=rule,
        rule_reason=rule_reason,
        created_at=now,
    )
    s.add(new_t)
    s.flush()
    deadlines = plan_deadlines(s, clocks, new_t, rule, new_ev.t0) if rule != "none" else []

    # ---- the original event, from its remaining posts
    old_t0, old_sev, old_count = ev.t0, ev.severity, ev.post_count
    head = remaining[0]
    ev.post_count = len(remaining)
    ev.last_published_at = max(p.published_at for p in remaining)
    # A title taken from a post that left (and no remaining one) comes from the new head.
    if any(ev.title == _title_of(p.title, p.text) for p in moved) and not any(
        ev.title == _title_of(p.title, p.text) for p in remaining
    ):
        ev.title = _title_of(head.title, head.text)
    changes: list[dict[str, Any]] = []
    if head.published_at != ev.t0 or head.post_id != ev.t0_post_id:
        ev.t0, ev.t0_post_id, ev.t0_precision = head.published_at, head.post_id, head.precision
        ev.t0_crawl_lag_s = (head.fetched_at - head.published_at).total_seconds()
        if ev.t0 != old_t0:
            changes = recompute_deadlines(s, clocks, ticket, ev.t0)
    rtop = _max_severity(remaining)
    if rtop.severity != ev.severity:
        ev.severity, ev.severity_reason = rtop.severity, _severity_reason(rtop)
        ticket.severity, ticket.severity_reason = ev.severity, ev.severity_reason
    s.flush()

    moved_ids = [p.post_id for p in moved]
    common = {
        "officer": officer,
        "reason": reason,
        "at": iso_shanghai(now),
        "remote_addr": remote_addr,
        "post_ids": moved_ids,
        "from_event": ev.id,
        "from_ticket": ticket.id,
        "new_event": new_ev.id,
        "new_ticket": new_t.id,
    }
    # The new ticket: an "opened" fact as for any new ticket (the dispatcher's
    # new-ticket notice announces it), audited as the split.
    emit_fact(
        s,
        ticket=new_t,
        kind="opened",
        key=f"{new_t.id}:opened",
        at=now,
        actor=officer,
        detail={
            **common,
            "title": new_ev.title,
            "severity": new_ev.severity,
            "severity_reason": new_ev.severity_reason,
            "place": new_ev.place_label,
            "place_code": new_ev.place_code,
            "department": new_t.department,
            "rule": rule,
            "t0": iso_shanghai(new_ev.t0),
            "t0_precision": new_ev.t0_precision,
            "post_id": first.post_id,
            "deadlines": [{"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)} for d in deadlines],
        },
        post_id=first.post_id,
        audit_action="event_split",
        remote_addr=remote_addr,
        audit_columns=audit_columns,
    )
    emit_fact(
        s,
        ticket=ticket,
        kind="event_split",
        key=f"{ticket.id}:split:{new_t.id}",
        at=now,
        actor=officer,
        detail={
            **common,
            "removed_post_ids": moved_ids,
            "post_count": {"from": old_count, "to": ev.post_count},
            "t0_change": {"from": iso_shanghai(old_t0), "to": iso_shanghai(ev.t0)},
            "severity_change": {"from": old_sev, "to": ev.severity},
            "deadlines": changes,
        },
        outbox=True,
        audit_action="event_split",
        remote_addr=remote_addr,
        audit_columns=audit_columns,
    )
    return SplitResult(ticket, new_t, moved_ids, changes)
