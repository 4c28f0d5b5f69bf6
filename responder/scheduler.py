"""Deadline rows and the due-time scheduler.

Deadlines are rows (``deadlines``), each with warning points
(``deadline_warnings``, e.g. at 50 % and 80 % of the interval T0 → due).
Every tick the :class:`Scheduler` looks for due rows and fires them in
transactions of up to ``batch_size`` rows (one per row with
``batch_size=1``); for each row the transaction

1. marks it fired — ``UPDATE … SET fired_at = now WHERE id = ? AND
   fired_at IS NULL`` — and goes on only if that changed exactly one row,
2. writes the notification to the outbox (unique key
   ``"{ticket}:{milestone}:{kind}"``), a ``ticket_events`` row and an audit row.

Between ticks :meth:`Scheduler.run` sleeps until the next due time (at most
``tick_s``), so an action fires within milliseconds of its due time.

So a kill -9 at any moment leaves either nothing or all of a transaction, a restarted
scheduler fires what is still due, and two schedulers never fire the same
row twice (PostgreSQL re-checks the ``WHERE`` after the row lock; SQLite
serialises writers with ``BEGIN IMMEDIATE``). The outbox key is unique, so
a second notification for the same fact cannot even be inserted.

Acknowledging a ticket touches no deadline; only recording the milestone
(``met_at``) stops its clock. A cancelled deadline (``cancelled_at``: the
ticket was closed as needing no response or as a false alarm, or merged
away) never fires, nor do its warnings (:func:`cancel_open_deadlines`); a
reopen restores it (:func:`restore_cancelled_deadlines`), and one already
past due then fires as a breach.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from responder.clocks import Clocks, iso_shanghai
from responder.store import (
    Audit,
    Deadline,
    DeadlineWarning,
    Event,
    Outbox,
    Store,
    Ticket,
    TicketEventRow,
    emit_fact,
    ticket_event_payload,
    utcnow,
)

log = logging.getLogger(__name__)


# A deadline the scheduler still watches: not breached yet, not met, not cancelled
# (a ticket closed as 误报 / 无需回应, or merged away: responder.cases.close).
LIVE = (Deadline.fired_at.is_(None), Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None))


# --------------------------------------------------------------------------- planning


def _warnings_for(deadline: Deadline, fractions: list[float]) -> list[DeadlineWarning]:
    span = deadline.due_at - deadline.starts_at
    out = []
    for f in fractions:
        out.append(
            DeadlineWarning(
                deadline_id=deadline.id,
                percent=round(f * 100),
                at=deadline.starts_at + span * f,
            )
        )
    return out


def plan_deadlines(
    session: Session, clocks: Clocks, ticket: Ticket, rule_name: str, t0: datetime
) -> list[Deadline]:
    """Insert the deadlines of ``rule_name`` (from ``t0``) the ticket lacks."""
    have = set(session.scalars(select(Deadline.milestone).where(Deadline.ticket_id == ticket.id)))
    added: list[Deadline] = []
    for milestone, due in clocks.deadlines_for(rule_name, t0):
        if milestone in have:
            continue
        d = Deadline(ticket_id=ticket.id, milestone=milestone, rule=rule_name, starts_at=t0, due_at=due)
        session.add(d)
        session.flush()
        session.add_all(_warnings_for(d, clocks.warnings))
        added.append(d)
    session.flush()
    return added


def plan_new_deadlines(
    session: Session, clocks: Clocks, plans: list[tuple[Ticket, str, datetime]]
) -> dict[int, list[Deadline]]:
    """The deadlines of new tickets, (ticket, rule, T0) each, in two flushes
    for all of them (the rows :func:`plan_deadlines` would insert one by one)."""
    out: dict[int, list[Deadline]] = {}
    rows: list[Deadline] = []
    for ticket, rule_name, t0 in plans:
        mine = out.setdefault(ticket.id, [])
        for milestone, due in clocks.deadlines_for(rule_name, t0):
            d = Deadline(ticket_id=ticket.id, milestone=milestone, rule=rule_name, starts_at=t0, due_at=due)
            mine.append(d)
            rows.append(d)
    if rows:
        session.add_all(rows)
        session.flush()
        session.add_all([w for d in rows for w in _warnings_for(d, clocks.warnings)])
    return out


FOLLOWUP = "持续发布"


def plan_followup(session: Session, clocks: Clocks, ticket: Ticket, met: Deadline) -> Deadline | None:
    """持续发布: once the rule's first release (or the previous follow-up) is met,
    the next follow-up falls due one ``followup_interval_hours`` after it, for as
    long as the ticket is open. Counted from the release, not from T0."""
    rule = clocks.config.rules.get(ticket.rule)
    if rule is None or not rule.followup_interval_hours or ticket.status == "closed" or met.met_at is None:
        return None
    if met.milestone != rule.milestones[0].name and not met.milestone.startswith(FOLLOWUP):
        return None
    done = session.scalars(
        select(Deadline.milestone).where(Deadline.ticket_id == ticket.id, Deadline.milestone.startswith(FOLLOWUP))
    ).all()
    d = Deadline(
        ticket_id=ticket.id,
        milestone=f"{FOLLOWUP}（第{len(done) + 1}次）",
        rule=ticket.rule,
        starts_at=met.met_at,
        due_at=met.met_at + timedelta(hours=rule.followup_interval_hours),
    )
    session.add(d)
    session.flush()
    session.add_all(_warnings_for(d, clocks.warnings))
    session.flush()
    return d


def drop_open_followups(session: Session, ticket: Ticket) -> list[str]:
    """A closed ticket needs no further follow-up releases: remove the pending one."""
    rows = session.scalars(
        select(Deadline).where(
            Deadline.ticket_id == ticket.id,
            Deadline.milestone.startswith(FOLLOWUP),
            Deadline.met_at.is_(None),
            Deadline.fired_at.is_(None),
        )
    ).all()
    for d in rows:
        session.execute(delete(DeadlineWarning).where(DeadlineWarning.deadline_id == d.id))
        session.delete(d)
    session.flush()
    return [d.milestone for d in rows]


def cancel_open_deadlines(
    session: Session, ticket: Ticket, *, at: datetime, by: str, outcome: str, reason: str
) -> list[Deadline]:
    """Cancel (撤销) every deadline of ``ticket`` not met: the ticket was closed as
    needing no response or as a false alarm, or merged away. Each keeps who,
    when and why; it is no breach (also one already past due, whose breach
    notice went out), never fires, and its unsent warnings are closed."""
    rows = session.scalars(
        select(Deadline)
        .where(Deadline.ticket_id == ticket.id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None))
        .order_by(Deadline.id)
    ).all()
    for d in rows:
        d.cancelled_at, d.cancelled_by, d.cancel_outcome, d.cancel_reason = at, by, outcome, reason
    if rows:
        session.execute(
            update(DeadlineWarning)
            .where(DeadlineWarning.deadline_id.in_([d.id for d in rows]), DeadlineWarning.fired_at.is_(None))
            .values(fired_at=at, outcome="cancelled")
            .execution_options(synchronize_session=False)
        )
    session.flush()
    return list(rows)


def restore_cancelled_deadlines(session: Session, ticket: Ticket) -> list[Deadline]:
    """A reopened ticket's cancelled deadlines count again, due when they were
    (one already past due fires as a breach); their cancelled warnings too."""
    rows = session.scalars(
        select(Deadline).where(Deadline.ticket_id == ticket.id, Deadline.cancelled_at.is_not(None)).order_by(Deadline.id)
    ).all()
    for d in rows:
        d.cancelled_at = d.cancelled_by = d.cancel_outcome = d.cancel_reason = None
    if rows:
        session.execute(
            update(DeadlineWarning)
            .where(DeadlineWarning.deadline_id.in_([d.id for d in rows]), DeadlineWarning.outcome == "cancelled")
            .values(fired_at=None, outcome=None)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    return list(rows)


def recompute_deadlines(
    session: Session, clocks: Clocks, ticket: Ticket, new_t0: datetime
) -> list[dict[str, Any]]:
    """Move the open deadlines of a ticket to a new T0; return what changed.

    A deadline already met or already fired keeps its row as it is (its
    notification went out); its warnings too. Unfired warnings move with it.
    """
    changes: list[dict[str, Any]] = []
    rows = session.scalars(select(Deadline).where(Deadline.ticket_id == ticket.id).order_by(Deadline.id))
    for d in rows:
        # Follow-ups count from the release they follow, not from T0.
        if (d.met_at is not None or d.fired_at is not None or d.cancelled_at is not None
                or d.milestone.startswith(FOLLOWUP)):
            continue
        try:
            spec = clocks.milestone(d.rule, d.milestone)
        except KeyError:
            # The rule left the config since: keep the interval it had.
            new_due = new_t0 + (d.due_at - d.starts_at)
        else:
            # A clock extended once (7 → 15 working days) stays extended from the new T0.
            extended = bool(spec.extendable_to_working_days) and d.due_at >= clocks.due(
                spec, d.starts_at, extended=True)
            new_due = clocks.due(spec, new_t0, extended=extended)
        if new_due == d.due_at and new_t0 == d.starts_at:
            continue
        changes.append(
            {"milestone": d.milestone, "from": iso_shanghai(d.due_at), "to": iso_shanghai(new_due)}
        )
        d.starts_at = new_t0
        d.due_at = new_due
        for w in session.scalars(
            select(DeadlineWarning).where(
                DeadlineWarning.deadline_id == d.id, DeadlineWarning.fired_at.is_(None)
            )
        ):
            w.at = d.starts_at + (d.due_at - d.starts_at) * (w.percent / 100)
    session.flush()
    return changes


def outbox_key(ticket_id: int, milestone: str, kind: str) -> str:
    return f"{ticket_id}:{milestone}:{kind}"


# --------------------------------------------------------------------------- firing


@dataclass(frozen=True)
class Fired:
    """One notification the scheduler wrote."""

    key: str
    ticket_id: int
    milestone: str
    kind: str  # "breach" or "warn50", "warn80", ...
    at: datetime


@dataclass
class _Fact:
    key: str
    ticket: Ticket
    ev_kind: str
    detail: dict[str, Any]
    fired: Fired


class Scheduler:
    """Fires due deadlines and warning points exactly once.

    ``now`` is the clock (a callable returning an aware datetime) so tests
    can move time without touching the database.
    """

    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow, *, batch_size: int = 100):
        self.store = store
        self.now = now
        # Due rows fired per transaction: a backlog (after downtime) is cleared
        # in batches; a crash rolls back the whole batch, which the restart redoes.
        self.batch_size = max(1, batch_size)

    def due_deadline_ids(self, now: datetime) -> list[int]:
        with self.store.reader() as s:
            breached = s.scalars(
                select(Deadline.id).where(*LIVE, Deadline.due_at <= now)
            ).all()
            warned = s.scalars(
                select(DeadlineWarning.deadline_id)
                .join(Deadline, Deadline.id == DeadlineWarning.deadline_id)
                .where(DeadlineWarning.fired_at.is_(None), DeadlineWarning.at <= now, *LIVE)
            ).all()
        return sorted(set(breached) | set(warned))

    def next_due_at(self, after: datetime) -> datetime | None:
        """The earliest due time of a live deadline or warning later than ``after``."""
        with self.store.reader() as s:
            d = s.scalar(
                select(Deadline.due_at)
                .where(*LIVE, Deadline.due_at > after)
                .order_by(Deadline.due_at)
                .limit(1)
            )
            w = s.scalar(
                select(DeadlineWarning.at)
                .join(Deadline, Deadline.id == DeadlineWarning.deadline_id)
                .where(DeadlineWarning.fired_at.is_(None), DeadlineWarning.at > after, *LIVE)
                .order_by(DeadlineWarning.at)
                .limit(1)
            )
        times = [t for t in (d, w) if t is not None]
        return min(times) if times else None

    def tick(self) -> list[Fired]:
        """Fire everything due now; return what this scheduler fired."""
        return self._tick(self.now())

    def _tick(self, now: datetime) -> list[Fired]:
        fired: list[Fired] = []
        ids = self.due_deadline_ids(now)
        for i in range(0, len(ids), self.batch_size):
            chunk = ids[i : i + self.batch_size]
            try:
                with self.store.transaction() as s:
                    got = self._fire_batch(s, chunk, now)
            except Exception:
                if len(chunk) == 1:
                    raise
                # One bad row must not hold back the others: retry them one by one.
                log.warning("batch firing failed; retrying %d rows one by one", len(chunk), exc_info=True)
                got = []
                for did in chunk:
                    try:
                        got.append(self._fire(did, now))
                    except Exception:
                        log.exception("deadline %s could not be fired; retried next tick", did)
            fired.extend(f for f in got if f is not None)
        return fired

    def _fire(self, deadline_id: int, now: datetime) -> Fired | None:
        with self.store.transaction() as s:
            return self._fire_in(s, deadline_id, now)

    def _fire_batch(self, s: Session, ids: list[int], now: datetime) -> list[Fired | None]:
        """Fire several due rows in one transaction, with a handful of statements
        per row: the rows, their tickets and events are loaded up front and the
        facts are inserted together at the end."""
        if len(ids) == 1:
            return [self._fire_in(s, ids[0], now)]
        # Claim every breach of the batch with one UPDATE (the same WHERE as one by one).
        won = set(
            s.scalars(
                update(Deadline)
                .where(Deadline.id.in_(ids), *LIVE, Deadline.due_at <= now)
                .values(fired_at=now)
                .returning(Deadline.id)
                .execution_options(synchronize_session=False)
            )
        )
        if won:
            # Warnings not yet sent are moot once the deadline itself is breached.
            s.execute(
                update(DeadlineWarning)
                .where(DeadlineWarning.deadline_id.in_(won), DeadlineWarning.fired_at.is_(None))
                .values(fired_at=now, outcome="superseded")
                .execution_options(synchronize_session=False)
            )
        # Keep the loaded rows referenced: the session's identity map holds them weakly.
        deadlines = {d.id: d for d in s.scalars(select(Deadline).where(Deadline.id.in_(ids)))}
        tickets = s.scalars(
            select(Ticket).where(Ticket.id.in_({d.ticket_id for d in deadlines.values()}))
        ).all()
        events = s.scalars(select(Event).where(Event.id.in_({t.event_id for t in tickets}))).all()
        facts: list[_Fact] = []
        for did in ids:
            d = deadlines.get(did)
            if d is None:
                continue
            if did in won:
                self._notify(s, d, "breach", now, percent=None, facts=facts)
            else:
                self._fire_in(s, did, now, facts)
        del events
        return self._emit(s, facts)

    def _emit(self, s: Session, facts: list[_Fact]) -> list[Fired | None]:
        if not facts:
            return []
        have = set(
            s.scalars(
                select(TicketEventRow.event_key).where(TicketEventRow.event_key.in_([f.key for f in facts]))
            )
        )
        out: list[Fired | None] = []
        for f in facts:
            if f.key in have:
                continue
            have.add(f.key)
            row = TicketEventRow(
                event_key=f.key,
                ticket_id=f.ticket.id,
                event_id=f.ticket.event_id,
                kind=f.ev_kind,
                at=f.fired.at,
                actor="system",
                detail=f.detail,
            )
            s.add(row)
            s.add(
                Outbox(
                    key=f.key,
                    ticket_id=f.ticket.id,
                    kind=f.ev_kind,
                    payload=ticket_event_payload(row),
                    created_at=f.fired.at,
                )
            )
            s.add(
                Audit(
                    ticket_id=f.ticket.id,
                    event_id=f.ticket.event_id,
                    at=f.fired.at,
                    actor="system",
                    action=f"deadline_{f.fired.kind}",
                    detail=f.detail,
                )
            )
            log.info("ticket %s: %s %s fired (%s)", f.ticket.id, f.fired.milestone, f.fired.kind, f.key)
            out.append(f.fired)
        s.flush()
        return out

    def _fire_in(
        self, s: Session, deadline_id: int, now: datetime, facts: list[_Fact] | None = None
    ) -> Fired | None:
        won = s.execute(
            update(Deadline)
            .where(Deadline.id == deadline_id, *LIVE, Deadline.due_at <= now)
            .values(fired_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        d = s.get(Deadline, deadline_id)
        if d is None:
            return None
        if won == 1:
            set_committed_value(d, "fired_at", now)
            # Warnings not yet sent are moot once the deadline itself is breached.
            s.execute(
                update(DeadlineWarning)
                .where(DeadlineWarning.deadline_id == d.id, DeadlineWarning.fired_at.is_(None))
                .values(fired_at=now, outcome="superseded")
                .execution_options(synchronize_session=False)
            )
            return self._notify(s, d, "breach", now, percent=None, facts=facts)
        s.refresh(d)  # lost the race, or not due: read the row as it is now
        if d.fired_at is not None or d.met_at is not None or d.cancelled_at is not None:
            return None
        pending = s.scalars(
            select(DeadlineWarning)
            .where(
                DeadlineWarning.deadline_id == d.id,
                DeadlineWarning.fired_at.is_(None),
                DeadlineWarning.at <= now,
            )
            .order_by(DeadlineWarning.percent.desc())
        ).all()
        if not pending:
            return None
        top = pending[0]
        won = s.execute(
            update(DeadlineWarning)
            .where(DeadlineWarning.id == top.id, DeadlineWarning.fired_at.is_(None))
            .values(fired_at=now, outcome="sent")
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
        if len(pending) > 1:
            s.execute(
                update(DeadlineWarning)
                .where(
                    DeadlineWarning.id.in_([w.id for w in pending[1:]]),
                    DeadlineWarning.fired_at.is_(None),
                )
                .values(fired_at=now, outcome="superseded")
                .execution_options(synchronize_session=False)
            )
        return self._notify(s, d, f"warn{top.percent}", now, percent=top.percent, facts=facts)

    def _notify(
        self,
        s: Session,
        d: Deadline,
        kind: str,
        now: datetime,
        percent: int | None,
        facts: list[_Fact] | None = None,
    ) -> Fired | None:
        ticket = s.get(Ticket, d.ticket_id)
        if ticket is None:  # pragma: no cover - foreign key
            return None
        event = s.get(Event, ticket.event_id)
        key = outbox_key(ticket.id, d.milestone, kind)
        left_s = int((d.due_at - now).total_seconds())
        detail: dict[str, Any] = {
            "milestone": d.milestone,
            "rule": d.rule,
            "t0": iso_shanghai(d.starts_at),
            "due_at": iso_shanghai(d.due_at),
            "severity": ticket.severity,
            "place": ticket.place_label,
            "title": event.title if event else "",
            "responders": ticket.responders,
        }
        if kind == "breach":
            detail["overdue_seconds"] = -left_s
            detail["escalate_to"] = escalation_targets(ticket)
            text = f"已超时：{detail['title']}「{d.milestone}」应于 {detail['due_at']} 前完成"
            ev_kind = "deadline_breached"
        else:
            detail["percent"] = percent
            detail["seconds_left"] = left_s
            text = f"期限预警（已过{percent}%）：{detail['title']}「{d.milestone}」须于 {detail['due_at']} 前完成"
            ev_kind = "deadline_warning"
        detail["message"] = text
        if facts is not None:  # batch: inserted together by _emit
            fired = Fired(key=key, ticket_id=ticket.id, milestone=d.milestone, kind=kind, at=now)
            facts.append(_Fact(key, ticket, ev_kind, detail, fired))
            return None
        row = emit_fact(
            s,
            ticket=ticket,
            kind=ev_kind,
            key=key,
            at=now,
            detail=detail,
            outbox=True,
            audit_action=f"deadline_{kind}",
        )
        if row is None:  # the unique key says this fact exists already
            return None
        log.info("ticket %s: %s %s fired (%s)", ticket.id, d.milestone, kind, key)
        return Fired(key=key, ticket_id=ticket.id, milestone=d.milestone, kind=kind, at=now)

    def run(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried."""
        while not stop.is_set():
            wait = tick_s
            try:
                now = self.now()
                self._tick(now)
                # Sleep until the next due time, at most tick_s (rows written
                # meanwhile by other threads are seen within tick_s).
                nxt = self.next_due_at(now)
                if nxt is not None:
                    wait = min(tick_s, max(0.0, (nxt - self.now()).total_seconds()))
            except Exception:  # keep the clock alive through a database hiccup
                log.exception("scheduler tick failed; retrying in %.1f s", tick_s)
            stop.wait(wait)


def escalation_targets(ticket: Ticket) -> list[str]:
    """Who a breach escalates to (SPEC §5): the coordinator (本级政府办公厅)
    with the propaganda department; for 特别重大 also the principal leader."""
    names: list[str] = []
    for r in ticket.responders or []:
        if isinstance(r, dict) and r.get("role") in ("coordinator", "leader") and r.get("name"):
            if r["role"] == "leader" and ticket.severity != "特别重大":
                continue
            names.append(str(r["name"]))
    if not any(r.get("role") == "coordinator" for r in ticket.responders or [] if isinstance(r, dict)):
        names.insert(0, "本级政府办公厅")
    names.append("宣传部门")
    return names
