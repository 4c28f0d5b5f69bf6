"""The alert board's query: which tickets, in which order (issue 15 part 5).

:class:`BoardFilter` is what a duty officer picks on the board (the web
parses the query string into it): a place under the officer's own
jurisdiction, severities, states (default: the open ones), a department,
overdue only, and the order. :func:`board_tickets` runs it inside the store
query, scoped by the actor as every read is (:func:`responder.cases.scoped`);
:func:`check_filter` refuses a place outside the actor's jurisdiction with
:class:`BoardFilterError` (Chinese, answered 400) without saying whether
anything is there. :func:`board_choices` lists the places and departments the
actor's tickets have, for the board's selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from responder.cases import STATUS_LABEL, scoped, ticket_view
from responder.permissions import Actor, place_prefix, within
from responder.store import SEVERITY_RANK, Deadline, Ticket

SEVERITIES: tuple[str, ...] = tuple(sorted(SEVERITY_RANK, key=lambda s: -SEVERITY_RANK[s]))  # 特别重大 first
STATES: tuple[str, ...] = tuple(STATUS_LABEL)  # new, acknowledged, closed
OPEN_STATES: tuple[str, ...] = ("new", "acknowledged")
# The orders the board offers: code → label.
SORTS: dict[str, str] = {"severity": "级别从高到低", "deadline": "截止时间最近", "newest": "最新生成"}
# The place value for the tickets with no place (待定): only an actor who sees them may pick it.
UNPLACED = "待定"
# Severities that sound the alarm when a ticket of theirs appears on the board.
ALARM_SEVERITIES = frozenset({"重大", "特别重大"})
LIMIT = 500


class BoardFilterError(ValueError):
    """A filter value the board cannot use; ``message`` says which, in Chinese (400)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class BoardFilter:
    """A board's filter. ``place``: a division-code prefix (``"3401"``), :data:`UNPLACED`,
    or None for the whole jurisdiction; ``place_label`` is how it reads."""

    place: str | None = None
    place_label: str = ""
    severities: tuple[str, ...] = ()
    states: tuple[str, ...] = OPEN_STATES
    department: str | None = None
    overdue: bool = False
    sort: str = "severity"

    def __post_init__(self) -> None:
        for s in self.severities:
            if s not in SEVERITY_RANK:
                raise BoardFilterError(f"筛选条件有误：级别“{s}”不存在（可选：{'、'.join(SEVERITIES)}）")
        if not self.states:
            raise BoardFilterError("筛选条件有误：至少选择一种状态")
        for s in self.states:
            if s not in STATUS_LABEL:
                raise BoardFilterError(f"筛选条件有误：状态“{s}”不存在（可选：{'、'.join(STATUS_LABEL.values())}）")
        if self.sort not in SORTS:
            raise BoardFilterError(f"筛选条件有误：排序“{self.sort}”不存在（可选：{'、'.join(SORTS.values())}）")


def parse_state(value: str) -> str:
    """A state by its code (``new``) or its label (``待确认``)."""
    v = value.strip()
    if v in STATUS_LABEL:
        return v
    for code, label in STATUS_LABEL.items():
        if v == label:
            return code
    raise BoardFilterError(f"筛选条件有误：状态“{v}”不存在（可选：{'、'.join(STATUS_LABEL.values())}）")


def check_filter(actor: Actor, f: BoardFilter) -> None:
    """Refuse a place the actor may not look at — the same answer whether or not anything is there."""
    if f.place is None:
        return
    if f.place == UNPLACED:
        if not actor.sees(None):
            raise BoardFilterError("筛选条件有误：属地待定的工单不在本人属地范围内")
        return
    if not actor.is_cli and not within(f.place, actor.jurisdiction):
        raise BoardFilterError(f"筛选条件有误：{f.place_label or f.place} 不在本人属地范围内")


def _next_due() -> Any:
    """The soonest open (not met, not cancelled) deadline of the ticket in the outer query."""
    return (
        select(func.min(Deadline.due_at))
        .where(Deadline.ticket_id == Ticket.id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None))
        .correlate(Ticket)
        .scalar_subquery()
    )


def board_query(actor: Actor, f: BoardFilter, now: datetime, limit: int = LIMIT) -> Any:
    """The SELECT of the board's tickets: scoped by ``actor``, filtered and ordered in the query."""
    check_filter(actor, f)
    stmt = scoped(select(Ticket), actor, Ticket.place_code).where(Ticket.status.in_(f.states))
    if f.place == UNPLACED:
        stmt = stmt.where(Ticket.place_code.is_(None))
    elif f.place is not None:
        stmt = stmt.where(Ticket.place_code.like(f.place + "%"))
    if f.severities:
        stmt = stmt.where(Ticket.severity.in_(f.severities))
    if f.department is not None:
        stmt = stmt.where(Ticket.department == f.department)
    if f.overdue:
        stmt = stmt.where(exists().where(
            Deadline.ticket_id == Ticket.id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None),
            Deadline.due_at <= now,
        ))
    rank = case(SEVERITY_RANK, value=Ticket.severity, else_=0)
    if f.sort == "deadline":
        due = _next_due()
        order = [due.is_(None), due.asc(), rank.desc(), Ticket.created_at.desc(), Ticket.id.desc()]
    elif f.sort == "newest":
        order = [Ticket.created_at.desc(), Ticket.id.desc()]
    else:
        order = [rank.desc(), Ticket.created_at.desc(), Ticket.id.desc()]
    return stmt.order_by(*order).limit(limit)


def board_tickets(s: Session, actor: Actor, f: BoardFilter, now: datetime, limit: int = LIMIT) -> list[dict[str, Any]]:
    """The tickets of the board as :func:`responder.cases.ticket_view` shows them, each with
    ``alarm`` (a 重大/特别重大 ticket still open: the board sounds it once) and, on each
    deadline, ``breach`` (open, past due, on an open ticket: sounded once too)."""
    out = []
    for t in s.scalars(board_query(actor, f, now, limit)).all():
        v = ticket_view(s, t, now)
        is_open = t.status != "closed"
        v["alarm"] = is_open and t.severity in ALARM_SEVERITIES
        for d in v["deadlines"]:
            d["breach"] = is_open and d["overdue"]
        out.append(v)
    return out


def board_choices(s: Session, actor: Actor) -> dict[str, Any]:
    """What the board's selects offer: the division prefixes (province, city, county) under
    which the actor's tickets lie, each with its ticket count, and the departments named on
    them; ``unplaced``: how many have no place (only counted for an actor who sees them)."""
    rows = s.execute(
        scoped(select(Ticket.place_code, func.count()), actor, Ticket.place_code).group_by(Ticket.place_code)
    ).all()
    counts: dict[str, int] = {}
    unplaced = 0
    for code, n in rows:
        if not code:
            unplaced += n
            continue
        full = place_prefix(str(code)) or ""
        for prefix in {full[:k] for k in (2, 4, 6) if k <= len(full)} | {full}:
            # Only divisions under the actor's own (its own is the board unfiltered).
            if actor.is_cli or (within(prefix, actor.jurisdiction) and prefix != actor.jurisdiction):
                counts[prefix] = counts.get(prefix, 0) + n
    depts = s.scalars(
        scoped(select(Ticket.department).distinct(), actor, Ticket.place_code)
        .where(Ticket.department.is_not(None), Ticket.department != "")
        .order_by(Ticket.department)
    ).all()
    return {"places": sorted(counts.items()), "unplaced": unplaced, "departments": list(depts)}


__all__ = [
    "ALARM_SEVERITIES", "OPEN_STATES", "SEVERITIES", "SORTS", "STATES", "UNPLACED",
    "BoardFilter", "BoardFilterError", "board_choices", "board_query", "board_tickets", "check_filter",
    "parse_state",
]
