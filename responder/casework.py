"""The ticket screen's own actions and what it reads (issue 15 part 1).

Like :mod:`responder.cases` (whose rules, audit and scope these follow), plain
functions that take the acting user and the store; the web only parses,
authorises and renders.

* :func:`milestone_candidates` — the official posts (a government release, the
  official reply on a message board) that joined the ticket's event while a
  milestone was open: the grouper notes each as an audit row
  ``milestone_candidate``; here each is read back from its post (its link and
  publication time), with the open milestones it could meet and whether it
  would meet each on time. :func:`confirm_candidate` records the milestone with
  the post's link as evidence and its publication time as the time met
  (:func:`responder.cases.record_milestone` with ``met_at``).
* :func:`extend_deadline` — a working-day clock whose rule allows it
  (``extendable_to_working_days`` in ``config/clocks.yaml``: 网民意见建议 7 →
  15 working days) is extended once, from the same T0, with a reason; any
  other clock, a second extension, a met, cancelled or already past-due
  deadline is refused. Audited ``deadline_extended``.
* :func:`escalate` — 督办 by hand: a notice ``escalated`` to those a breach
  escalates to (:func:`responder.scheduler.escalation_targets`), through the
  outbox like the scheduler's breach notices (routed as
  ``escalation.escalated`` in notify.yaml, by default the breach's steps).
* :func:`merge_targets` — open events in the actor's jurisdiction whose title
  holds the words typed (for the merge picker), each with its place and
  whether merging would cross jurisdictions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from responder import cases
from responder.cases import Conflict, Invalid, NotFound, Outcome, get_ticket, scoped, ticket_view
from responder.clocks import Clocks, iso_shanghai
from responder.permissions import Actor
from responder.safety import safe_url, valid_id
from responder.store import (
    SEVERITY_RANK,
    Audit,
    Deadline,
    DeadlineWarning,
    Event,
    Post,
    Store,
    Ticket,
    TicketEventRow,
    emit_fact,
    utcnow,
)

MAX_REASON = 2000
OFFICIAL = "official"


def _reason(reason: str | None, what: str) -> str:
    why = (reason or "").strip()
    if not why:
        raise Invalid(f"{what}须填写理由")
    if len(why) > MAX_REASON:
        raise Invalid(f"理由过长（{len(why)} 字，上限 {MAX_REASON} 字）")
    return why


# --------------------------------------------------------------------------- candidates


def milestone_candidates(s: Session, actor: Actor, t: Ticket, now: datetime) -> list[dict[str, Any]]:
    """The official posts of the ticket's event (in the actor's sight) that may meet an open
    milestone, oldest first; each with the milestones it could meet (``on_time``: published
    by the milestone's due time). Empty for a closed ticket or when every milestone is met."""
    if t.status == "closed":
        return []
    open_ms = s.scalars(
        select(Deadline).where(Deadline.ticket_id == t.id, Deadline.met_at.is_(None),
                               Deadline.cancelled_at.is_(None)).order_by(Deadline.due_at, Deadline.id)
    ).all()
    if not open_ms:
        return []
    noted = {
        str((a.detail or {}).get("post_id")): a.at
        for a in s.scalars(select(Audit).where(Audit.ticket_id == t.id, Audit.action == "milestone_candidate"))
    }
    posts = s.scalars(
        scoped(select(Post).where(Post.event_id == t.event_id), actor, Post.place_code).order_by(Post.published_at)
    ).all()
    out = []
    for p in posts:
        if p.source_kind != OFFICIAL and p.post_id not in noted:
            continue
        out.append({
            "post_id": p.post_id,
            "source_name": p.source_name or p.source_id,
            "title": p.title,
            "excerpt": (p.text or "")[:200],
            "url": p.url,
            "evidence_ok": safe_url(p.url) is not None,
            "published_at": iso_shanghai(p.published_at),
            "noted_at": iso_shanghai(noted.get(p.post_id)),
            "milestones": [
                {"milestone": d.milestone, "due_at": iso_shanghai(d.due_at), "on_time": p.published_at <= d.due_at}
                for d in open_ms
            ],
        })
    return out


def confirm_candidate(
    store: Store, actor: Actor, ticket_id: int, post_id: str, milestone: str, *, clocks: Clocks,
    now: datetime | None = None,
) -> Outcome:
    """Record ``milestone`` as met by the official post ``post_id`` of the ticket's event:
    its link is the evidence, its publication time the time met (on time or late by it)."""
    n = now or utcnow()
    pid = (post_id or "").strip()
    request = {"ticket_id": ticket_id, "milestone": (milestone or "")[:40], "post_id": pid[:100]}
    with cases._audited(store, actor, "milestone", request, n) as sub, store.reader() as s:
        t = sub.ticket(get_ticket(s, actor, ticket_id))
        p = s.scalar(scoped(select(Post).where(Post.post_id == pid, Post.event_id == t.event_id), actor,
                            Post.place_code)) if pid else None
        if p is None:
            raise Invalid(f"帖子「{pid[:60]}」不属于工单 {ticket_id} 的事件，不能作为回应佐证")
        found = (p.url, p.published_at)
    url, published = found
    return cases.record_milestone(store, actor, ticket_id, milestone, clocks=clocks, evidence_url=url,
                                  met_at=published, source_post_id=pid, now=n)


# --------------------------------------------------------------------------- extension


def extendable(clocks: Clocks, d: Deadline, now: datetime) -> datetime | None:
    """The due time ``d`` would get by its one extension, or None when it cannot be extended."""
    if d.met_at is not None or d.cancelled_at is not None or d.fired_at is not None or d.due_at <= now:
        return None
    try:
        spec = clocks.milestone(d.rule, d.milestone)
    except KeyError:
        return None
    if not spec.extendable_to_working_days:
        return None
    new_due = clocks.due(spec, d.starts_at, extended=True)
    return new_due if new_due > d.due_at else None


def extend_deadline(
    store: Store, actor: Actor, ticket_id: int, milestone: str, reason: str, *, clocks: Clocks,
    now: datetime | None = None,
) -> Outcome:
    """Extend the open working-day clock ``milestone`` of ticket ``ticket_id`` once, as its rule
    allows (7 → 15 working days from the same T0), because of ``reason`` (audited)."""
    n = now or utcnow()
    request = {"ticket_id": ticket_id, "milestone": (milestone or "")[:40], "reason": (reason or "").strip()[:500]}
    with cases._audited(store, actor, "deadline_extended", request, n) as sub:
        why = _reason(reason, "延长时限")
        with store.transaction() as s:
            t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
            cases.transition("extend", t)
            d = s.scalar(select(Deadline).where(Deadline.ticket_id == t.id, Deadline.milestone == milestone))
            if d is None:
                known = s.scalars(select(Deadline.milestone).where(Deadline.ticket_id == t.id)).all()
                raise Invalid(f"工单 {ticket_id} 没有节点「{milestone[:40]}」（可选：{'、'.join(known) or '无'}）")
            if d.met_at is not None:
                raise Conflict(f"「{d.milestone}」已于 {cases._fmt(d.met_at)} 完成，无需延长")
            if d.cancelled_at is not None:
                raise Conflict(f"「{d.milestone}」的时限已撤销，不能延长")
            try:
                spec = clocks.milestone(d.rule, d.milestone)
            except KeyError:
                spec = None
            if spec is None or not spec.extendable_to_working_days:
                label = cases.RULE_LABEL.get(d.rule, d.rule)
                raise Invalid(f"「{d.milestone}」（{label}）的时限规则不允许延长；"
                              "只有网民意见建议（7个工作日）可延长一次至15个工作日")
            longest = clocks.due(spec, d.starts_at, extended=True)
            if d.due_at >= longest:
                raise Conflict(f"「{d.milestone}」已延长至 {cases._fmt(d.due_at)}（{spec.extendable_to_working_days}"
                               "个工作日），只能延长一次")
            if d.fired_at is not None or d.due_at <= n:
                raise Conflict(f"「{d.milestone}」已于 {cases._fmt(d.due_at)} 超时，超时后不能再延长")
            old = d.due_at
            d.due_at = longest
            for w in s.scalars(select(DeadlineWarning).where(DeadlineWarning.deadline_id == d.id,
                                                             DeadlineWarning.fired_at.is_(None))):
                w.at = d.starts_at + (d.due_at - d.starts_at) * (w.percent / 100)
            count = s.scalar(select(func.count()).select_from(TicketEventRow).where(
                TicketEventRow.ticket_id == t.id, TicketEventRow.kind == "deadline_extended"))
            emit_fact(
                s,
                ticket=t,
                kind="deadline_extended",
                key=f"{t.id}:{d.milestone}:extended:{int(count or 0) + 1}",
                at=n,
                actor=actor.username,
                detail={
                    "milestone": d.milestone,
                    "rule": d.rule,
                    "starts_at": iso_shanghai(d.starts_at),
                    "from_due_at": iso_shanghai(old),
                    "due_at": iso_shanghai(d.due_at),
                    "working_days": spec.extendable_to_working_days,
                    "reason": why,
                    "officer": actor.username,
                },
                remote_addr=actor.remote_addr,
                audit_columns=accounts_columns(actor),
            )
            return Outcome(False, ticket_view(s, t, n))


def accounts_columns(actor: Actor) -> dict[str, Any]:
    from responder import accounts

    return accounts.actor_columns(actor)


# --------------------------------------------------------------------------- escalation


def escalate(store: Store, actor: Actor, ticket_id: int, reason: str, *, now: datetime | None = None) -> Outcome:
    """督办 by hand (audited ``escalated``): a notice through the outbox to those a breach
    escalates to — the coordinator (本级政府办公厅) with the propaganda department, and the
    principal leader for 特别重大 — naming the open milestones and the reason."""
    from responder.scheduler import escalation_targets

    n = now or utcnow()
    request = {"ticket_id": ticket_id, "reason": (reason or "").strip()[:500]}
    with cases._audited(store, actor, "escalated", request, n) as sub:
        why = _reason(reason, "督办")
        with store.transaction() as s:
            t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
            cases.transition("escalate", t)
            ev = s.get(Event, t.event_id)
            open_ds = s.scalars(select(Deadline).where(
                Deadline.ticket_id == t.id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None)
            ).order_by(Deadline.due_at)).all()
            first = open_ds[0] if open_ds else None
            count = s.scalar(select(func.count()).select_from(TicketEventRow).where(
                TicketEventRow.ticket_id == t.id, TicketEventRow.kind == "escalated"))
            emit_fact(
                s,
                ticket=t,
                kind="escalated",
                key=f"{t.id}:escalated:{int(count or 0) + 1}",
                at=n,
                actor=actor.username,
                detail={
                    "officer": actor.username,
                    "reason": why,
                    "at": iso_shanghai(n),
                    "title": ev.title if ev else "",
                    "severity": t.severity,
                    "place": t.place_label,
                    "rule": t.rule,
                    "escalate_to": escalation_targets(t),
                    "responders": t.responders,
                    "milestone": first.milestone if first else None,
                    "due_at": iso_shanghai(first.due_at) if first else None,
                    "open_milestones": [cases.deadline_record(d, n) for d in open_ds],
                },
                outbox=True,
                remote_addr=actor.remote_addr,
                audit_columns=accounts_columns(actor),
            )
            return Outcome(False, ticket_view(s, t, n))


# --------------------------------------------------------------------------- merge picker


def merge_targets(s: Session, actor: Actor, event_id: int, q: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Open events in the actor's jurisdiction, other than ``event_id`` (itself in sight, else
    NotFound), whose title holds every word of ``q``; most severe, then newest first."""
    src = s.scalar(scoped(select(Event).where(Event.id == event_id), actor, Event.place_code)) \
        if valid_id(event_id) else None
    if src is None:
        raise NotFound(f"事件 {event_id} 不存在")
    stmt = scoped(select(Event, Ticket.id).join(Ticket, Ticket.event_id == Event.id)
                  .where(Event.status == "open", Event.id != src.id), actor, Event.place_code)
    for word in (q or "").split()[:5]:
        stmt = stmt.where(Event.title.contains(word[:50], autoescape=True))
    rows = s.execute(stmt.order_by(Event.last_published_at.desc()).limit(200)).all()
    rows = sorted(rows, key=lambda r: (-SEVERITY_RANK.get(r[0].severity, 0), -r[0].last_published_at.timestamp()))
    return [
        {
            "event_id": ev.id,
            "ticket_id": tid,
            "title": ev.title,
            "severity": ev.severity,
            "place": ev.place_label or "待定",
            "t0": iso_shanghai(ev.t0),
            "cross": cases.cross_places(src.place_code, ev.place_code),
            "confirm": cases.cross_place_message(src, ev) if cases.cross_places(src.place_code, ev.place_code)
            else None,
        }
        for ev, tid in rows[:limit]
    ]


# --------------------------------------------------------------------------- the screen


def ticket_screen(s: Session, actor: Actor, tid: int, now: datetime, *, clocks: Clocks,
                  departments: Any = None) -> dict[str, Any]:
    """Everything the ticket page shows: :func:`responder.cases.ticket_detail` (posts, audit
    trail), the milestone candidates, the departments it may be assigned to, the close
    outcomes, and per deadline whether it may be extended and to when."""
    t = get_ticket(s, actor, tid)
    out = cases.ticket_detail(s, actor, tid, now)
    out["candidates"] = milestone_candidates(s, actor, t, now)
    out["department_choices"] = cases.department_choices(t, departments)
    rows = {d.milestone: d for d in s.scalars(select(Deadline).where(Deadline.ticket_id == t.id))}
    for d in out["deadlines"]:
        row = rows.get(d["milestone"])
        to = extendable(clocks, row, now) if row is not None and t.status != "closed" else None
        d["extend_to"] = iso_shanghai(to)
    out["close_outcomes"] = {k: v for k, v in cases.CLOSE_OUTCOMES.items() if k != cases.MERGED}
    out["merged_into"] = _merged_into(s, t)
    return out


def _merged_into(s: Session, t: Ticket) -> int | None:
    if t.outcome != cases.MERGED:
        return None
    for a in s.scalars(select(Audit).where(Audit.ticket_id != t.id, Audit.action == "event_merged",
                                           Audit.outcome == "ok").order_by(Audit.id.desc())):
        if (a.detail or {}).get("from_ticket") == t.id:
            return a.ticket_id
    return None


__all__ = [
    "confirm_candidate",
    "escalate",
    "extend_deadline",
    "extendable",
    "merge_targets",
    "milestone_candidates",
    "ticket_screen",
]
