"""A duty officer changes a ticket's clock rule (SPEC §5), with a reason.

The rule a ticket starts with is chosen by ``config/clocks.yaml``
(:meth:`responder.clocks.Clocks.choose`); when it is wrong — a message-board
post that is a complaint, not a suggestion; a news item that was in fact sent
to a 问政 platform — the officer picks another configured rule and says why.

:func:`change_rule` then recomputes the deadlines from the event's T0:

* every milestone not yet met (nor cancelled) is removed, with its unsent
  warnings — a breach of the wrong rule is no breach (the audit keeps it:
  ``deadlines_removed`` names each with its ``starts_at``, ``due_at`` and
  whether it was already past due and notified);
* the new rule's milestones are planned from T0 (``deadlines_added``), as a
  new ticket's would be; a milestone already met keeps its record and is not
  planned again;
* the ticket keeps the new rule and the reason (``clock_reason`` in the API:
  who changed it, when, from which rule, and why).

Like every action in :mod:`responder.cases` it takes the acting user, sees only
the actor's jurisdiction (another place's ticket is :class:`NotFound`), is
refused on a closed ticket (:class:`Conflict`), wants a reason and a known
rule (:class:`Invalid`), and is audited (``clock_rule_changed``), a refusal
too. The same rule again is ``already``: nothing changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from responder import cases
from responder.cases import Conflict, Invalid, Outcome, deadline_record, get_ticket, ticket_view
from responder.clocks import Clocks, as_shanghai, iso_shanghai
from responder.permissions import Actor
from responder.store import Deadline, DeadlineWarning, Event, Store, TicketEventRow, emit_fact, utcnow

ACTION = "clock_rule_changed"
MAX_REASON = 2000


def rule_choices(clocks: Clocks) -> dict[str, str]:
    """The rules an officer may pick: name → label (config/clocks.yaml order)."""
    return {name: (r.label or name) for name, r in clocks.config.rules.items()}


def change_rule(
    store: Store,
    actor: Actor,
    ticket_id: int,
    rule: str,
    reason: str,
    *,
    clocks: Clocks,
    now: datetime | None = None,
) -> Outcome:
    """Set ticket ``ticket_id``'s clock rule to ``rule`` (a name in clocks.yaml), because of
    ``reason``; its unmet deadlines are recomputed from T0. Audited, refusals too."""
    n = now or utcnow()
    name = (rule or "").strip()
    why = (reason or "").strip()
    request = {"ticket_id": ticket_id, "rule": name[:40], "reason": why[:500]}
    with cases._audited(store, actor, ACTION, request, n) as sub:
        choices = rule_choices(clocks)
        if name not in choices:
            listed = "、".join(f"{label}（{k}）" for k, label in choices.items())
            raise Invalid(f"时限规则「{name[:40]}」无效，应为：{listed}")
        if not why:
            raise Invalid("更改时限规则须填写理由")
        if len(why) > MAX_REASON:
            raise Invalid(f"理由过长（{len(why)} 字，上限 {MAX_REASON} 字）")
        return _change(store, actor, sub, ticket_id, name, why, clocks, n)


def _change(store: Store, actor: Actor, sub: cases._Subject, ticket_id: int, rule: str, why: str,
            clocks: Clocks, n: datetime) -> Outcome:
    from responder.scheduler import plan_deadlines

    who, addr = actor.username, actor.remote_addr
    labels = rule_choices(clocks)
    with store.transaction() as s:
        # The events lock first (the responder changes a ticket's rule under it), then the ticket.
        store.lock_events(s)
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        if t.status == "closed":
            raise Conflict(f"工单 {ticket_id} 已办结，不能更改时限规则（如需继续处理，请先重新打开工单）")
        if t.rule == rule:
            return Outcome(True, ticket_view(s, t, n))
        ev = s.get(Event, t.event_id)
        assert ev is not None
        unmet = s.scalars(
            select(Deadline)
            .where(Deadline.ticket_id == t.id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None))
            .order_by(Deadline.id)
        ).all()
        removed = [{**deadline_record(d, n), "rule": d.rule, "breach_notified": d.fired_at is not None}
                   for d in unmet]
        if unmet:
            s.execute(delete(DeadlineWarning).where(DeadlineWarning.deadline_id.in_([d.id for d in unmet])))
            for d in unmet:
                s.delete(d)
            s.flush()
        old, old_reason = t.rule, t.rule_reason
        t.rule = rule
        at = as_shanghai(n).strftime("%Y-%m-%d %H:%M")
        t.rule_reason = (f"{who} 于 {at} 由「{labels.get(old, old)}」改为「{labels[rule]}」，理由：{why}")
        added = plan_deadlines(s, clocks, t, rule, ev.t0)
        count = s.scalar(
            select(func.count()).select_from(TicketEventRow)
            .where(TicketEventRow.ticket_id == t.id, TicketEventRow.kind == ACTION)
        )
        emit_fact(
            s,
            ticket=t,
            kind=ACTION,
            key=f"{t.id}:{ACTION}:{int(count or 0) + 1}",
            at=n,
            actor=who,
            detail={
                "from": old,
                "to": rule,
                "reason": why,
                "previous_reason": old_reason,
                "officer": who,
                "at": iso_shanghai(n),
                "t0": iso_shanghai(ev.t0),
                "deadlines_removed": removed,
                "deadlines_added": [deadline_record(d, n) for d in added],
            },
            remote_addr=addr,
            audit_columns=cases._who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


__all__ = ["ACTION", "change_rule", "rule_choices"]
