"""What a duty officer does to tickets and events, and how a ticket reads.

Plain functions that take the acting user (:class:`responder.permissions.Actor`)
and the store; the web console and the CLI call them alike, and the web only
parses, authorises and renders. Failures are domain exceptions:
:class:`NotFound` (an unknown ticket, event or saved search), :class:`Conflict`
(the action clashes with the current state), :class:`Invalid` (the request
itself is wrong), :class:`Forbidden` (in sight, but not the actor's to
change); each carries a Chinese message for the user. The web maps them to
404, 409, 422 and 403.

Ticket states (one table, :data:`TRANSITIONS`, checked by :func:`transition`
for every action whoever calls it): new → acknowledged → closed (new →
closed allowed), and closed → acknowledged by :func:`reopen`. A closed
ticket refuses acknowledge, assign and milestones (:class:`Conflict`).

* :func:`acknowledge` — records who, when (Asia/Shanghai) and from which
  address, in the ticket and the audit. It never touches a deadline. A repeat
  by the **same** officer is ``already`` with the unchanged state (a retried
  request or a double click); by **another** officer it is a
  :class:`Conflict` naming who acknowledged first.
* :func:`record_milestone` — the milestone is met now: its clock stops. It
  needs evidence, an http(s) URL (:func:`responder.safety.safe_url`), or it
  is :class:`Invalid`; met after its due time it is late (``on_time`` false
  in the audit), and counts as a breach. Repeating it is ``already`` with the
  first record unchanged.
* :func:`assign` — the responsible department.
* :func:`close` — close with an outcome from :data:`CLOSE_OUTCOMES`
  (已回应办结 / 无需回应（政务动态） / 误报 / 其他 with a note; 已合并 is set by
  merge alone); repeating it is ``already``. Closing as 无需回应 or 误报
  cancels (撤销) the deadlines not met — who, when and why are kept on each;
  they are no breaches and never fire
  (:func:`responder.scheduler.cancel_open_deadlines`). Closing otherwise
  leaves unmet milestones running: they are breaches when due.
* :func:`reopen` — closed → acknowledged, with a reason; the deadlines the
  close cancelled count again (due when they were). A ticket merged away
  cannot be reopened (its posts are in the other event).
* :func:`merge` / :func:`split` — events (:mod:`responder.split`). The merged
  event's ticket is closed as 已合并 and its unmet deadlines cancelled.

Every audit row that creates, moves, meets, cancels or restores a deadline
names it with its ``starts_at`` and ``due_at`` (or the T0 it counts from), so
the timeliness figures can be recomputed from the audit alone
(tests/test_timeliness_truth.py does).
* :func:`save_search` / :func:`delete_saved_search` — saved searches (监测方案):
  a saved search belongs to its creator's jurisdiction; only its creator or an
  admin (系统管理员) deletes it (:class:`Forbidden` otherwise).

Scope: every read and every action sees only what is in the actor's
jurisdiction (:func:`responder.permissions.scope_clause`, put into the query
itself). A ticket, event or saved search outside it is :class:`NotFound` with
the same message as an unknown id, for reads and actions alike, so nobody
learns what a neighbour's jurisdiction holds. A merge needs both events in
scope; a split only moves posts the actor can see.

Audit: every action writes its row through :mod:`responder.accounts` — who
(``actor.username``, the role and jurisdiction it acted in), from where
(``actor.remote_addr``), when, the place of the ticket or event, and the
outcome. A refused action writes a row too, in a transaction of its own (the
action's rolls back): ``denied`` for :class:`NotFound` and :class:`Forbidden`,
``failed`` for :class:`Conflict`, :class:`Invalid` and bad search parameters,
with what was asked (``detail.request``) and the message (``detail.reason``).
A refusal names the ticket or event and its place only when the actor sees
it, so a row about an id outside the actor's scope says nothing of what is
there. A ticket's own trail (:func:`ticket_detail`) lists what was done to it
(``ok`` rows); the admin's audit page lists everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from responder import accounts
from responder.clocks import SHANGHAI, Clocks, iso_shanghai
from responder.notify.departments import DepartmentNames
from responder.permissions import Actor, Role, place_prefix, scope_clause
from responder.safety import safe_url, valid_id
from responder.store import (
    SEVERITY_RANK,
    Audit,
    Deadline,
    DeadlineWarning,
    Event,
    Post,
    SavedSearch,
    Store,
    Ticket,
    TicketEventRow,
    emit_fact,
    utcnow,
)

STATUS_LABEL = {"new": "待确认", "acknowledged": "已确认", "closed": "已办结"}
RULE_LABEL = {
    "major_emergency": "重大突发事件（5小时/24小时）",
    "response_48h": "政务舆情回应（48小时）",
    "suggestion": "网民意见建议（7个工作日）",
    "complaint": "咨询投诉（15个工作日）",
    "none": "无法定时限",
}

# How a ticket is closed (办结结果): code → label. ``merged`` is set by a merge alone.
CLOSE_OUTCOMES: dict[str, str] = {
    "responded": "已回应办结",
    "no_response_needed": "无需回应（政务动态）",
    "false_alarm": "误报",
    "merged": "已合并",
    "other": "其他",
}
# Closing with these cancels the deadlines not met (撤销时限): not breaches.
CANCELLING_OUTCOMES = frozenset({"no_response_needed", "false_alarm"})
MERGED = "merged"
OTHER = "other"
DEADLINE_STATE_LABEL = {"met": "已完成", "open": "进行中", "cancelled": "已撤销"}

# The ticket state machine: for each action, the states it may start from and
# the state it leaves. What is not listed is refused (Conflict, with the message
# of REFUSALS). Repeats (acknowledging again, closing a closed ticket) are each
# action's own business (``already``), not a transition.
TRANSITIONS: dict[str, dict[str, str]] = {
    "acknowledge": {"new": "acknowledged", "acknowledged": "acknowledged"},
    "assign": {"new": "new", "acknowledged": "acknowledged"},
    "milestone": {"new": "new", "acknowledged": "acknowledged"},
    "close": {"new": "closed", "acknowledged": "closed"},
    "reopen": {"closed": "acknowledged"},
    "merge_away": {"new": "closed", "acknowledged": "closed"},  # the merged event's ticket
    "merge_into": {"new": "new", "acknowledged": "acknowledged"},  # the ticket merged into
    "split": {"new": "new", "acknowledged": "acknowledged"},
    "extend": {"new": "new", "acknowledged": "acknowledged"},  # a working-day clock 7 → 15
    "escalate": {"new": "new", "acknowledged": "acknowledged"},  # 督办 by hand
}
_REOPEN_FIRST = "（如需继续处理，请先重新打开工单）"
REFUSALS: dict[tuple[str, str], str] = {
    ("acknowledge", "closed"): "工单 {id} 已办结，不能再确认接收" + _REOPEN_FIRST,
    ("assign", "closed"): "工单 {id} 已办结，不能再指派" + _REOPEN_FIRST,
    ("milestone", "closed"): "工单 {id} 已办结，不能再登记回应节点" + _REOPEN_FIRST,
    ("reopen", "new"): "工单 {id} 尚未办结，无需重新打开",
    ("reopen", "acknowledged"): "工单 {id} 尚未办结，无需重新打开",
    ("merge_away", "closed"): "只能合并两个未关闭的事件",
    ("merge_into", "closed"): "只能合并两个未关闭的事件",
    ("split", "closed"): "工单 {id} 已办结或已并入其他工单，不能拆分其事件",
    ("extend", "closed"): "工单 {id} 已办结，不能再延长时限" + _REOPEN_FIRST,
    ("escalate", "closed"): "工单 {id} 已办结，不能再督办" + _REOPEN_FIRST,
}


def transition(action: str, ticket: Ticket) -> str:
    """The state ``ticket`` goes to by ``action``; :class:`Conflict` when its state refuses it."""
    to = TRANSITIONS[action].get(ticket.status)
    if to is None:
        msg = REFUSALS.get((action, ticket.status), "工单 {id} 当前状态（{state}）不允许此操作")
        raise Conflict(msg.format(id=ticket.id, state=STATUS_LABEL.get(ticket.status, ticket.status)))
    return to


def parse_outcome(value: str) -> str:
    """A close outcome given by its code or its label → its code (:class:`Invalid` otherwise)."""
    v = (value or "").strip()
    by_label = {label: code for code, label in CLOSE_OUTCOMES.items()}
    by_label["无需回应"] = "no_response_needed"
    code = v if v in CLOSE_OUTCOMES else by_label.get(v)
    if code is None:
        choices = "、".join(f"{label}（{c}）" for c, label in CLOSE_OUTCOMES.items() if c != MERGED)
        raise Invalid(f"办结结果「{v[:50]}」无效，应为：{choices}")
    return code


def deadline_record(d: Deadline, at: datetime | None = None) -> dict[str, Any]:
    """A deadline as the audit names it (``overdue``: already due at ``at``)."""
    out: dict[str, Any] = {"milestone": d.milestone, "starts_at": iso_shanghai(d.starts_at),
                           "due_at": iso_shanghai(d.due_at)}
    if at is not None:
        out["overdue"] = d.due_at <= at
    return out


# --------------------------------------------------------------------------- errors


class CaseError(Exception):
    """A duty officer's action that cannot be done; ``message`` is for the user (Chinese)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(CaseError):
    """The ticket, event or saved search does not exist (or is out of the actor's sight)."""


class Conflict(CaseError):
    """The action clashes with the current state (another officer acknowledged first, …)."""


class Invalid(CaseError):
    """The request itself is wrong (an unknown milestone, merging an event into itself, …)."""


class Forbidden(CaseError):
    """The actor sees the object but may not do this to it (another user's saved search)."""


# --------------------------------------------------------------------------- audit


@dataclass
class _Subject:
    """What an action is about, noted once the actor has been shown to see it:
    a refusal's audit row names it (never an object out of the actor's scope)."""

    ticket_id: int | None = None
    event_id: int | None = None
    place_code: str | None = None

    def ticket(self, t: Ticket) -> Ticket:
        # Plain values: the objects expire when the refused transaction rolls back.
        self.ticket_id, self.event_id, self.place_code = t.id, t.event_id, t.place_code
        return t

    def event(self, ev: Event) -> Event:
        self.ticket_id, self.event_id, self.place_code = None, ev.id, ev.place_code
        return ev


@contextmanager
def _audited(store: Store, actor: Actor, action: str, request: dict[str, Any], at: datetime) -> Iterator[_Subject]:
    """Audit a refusal of ``action`` (its own transaction), then let it go on."""
    from responder.archive import SearchParamError

    subject = _Subject()
    try:
        yield subject
    except (CaseError, SearchParamError) as e:
        outcome = "denied" if isinstance(e, NotFound | Forbidden) else "failed"
        accounts.audit_alone(store, actor, action, outcome, {"request": request, "reason": e.message}, at,
                             ticket_id=subject.ticket_id, event_id=subject.event_id,
                             place_code=subject.place_code)
        raise


def _who(actor: Actor) -> dict[str, Any]:
    """The audit columns of a person's action (for :func:`responder.store.emit_fact`)."""
    return accounts.actor_columns(actor)


# --------------------------------------------------------------------------- results


@dataclass
class Outcome:
    """The ticket after an action; ``already``: nothing changed (a repeat)."""

    already: bool
    ticket: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"already": self.already, "ticket": self.ticket}


@dataclass
class MergeOutcome:
    ticket: dict[str, Any]
    closed_ticket: int

    def to_dict(self) -> dict[str, Any]:
        return {"ticket": self.ticket, "closed_ticket": self.closed_ticket}


@dataclass
class SplitOutcome:
    ticket: dict[str, Any]
    new_ticket: dict[str, Any]
    moved_post_ids: list[str]
    deadlines_moved: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "new_ticket": self.new_ticket,
            "moved_post_ids": self.moved_post_ids,
            "deadlines_moved": self.deadlines_moved,
        }


# --------------------------------------------------------------------------- views


def _fmt(dt: datetime | None) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if dt else ""


def _primary(responders: list[Any] | None, department: str | None) -> str:
    for r in responders or []:
        if isinstance(r, dict) and r.get("role") == "primary" and r.get("name"):
            return str(r["name"])
    return department or "待指定"


def ticket_view(s: Session, t: Ticket, now: datetime) -> dict[str, Any]:
    """A ticket as the API and the pages show it (times ISO, Asia/Shanghai)."""
    ev = s.get(Event, t.event_id)
    assert ev is not None
    place = dict(ev.place or {})
    deadlines = s.scalars(select(Deadline).where(Deadline.ticket_id == t.id).order_by(Deadline.due_at)).all()
    return {
        "id": t.id,
        "status": t.status,
        "status_label": STATUS_LABEL.get(t.status, t.status),
        "event": {
            "id": ev.id,
            "title": ev.title,
            "t0": iso_shanghai(ev.t0),
            "t0_precision": ev.t0_precision,
            "t0_post_id": ev.t0_post_id,
            "crawl_lag_seconds": ev.t0_crawl_lag_s,
            "post_count": ev.post_count,
            "event_type": ev.event_type,
            "event_subtype": ev.event_subtype,
        },
        "severity": t.severity,
        "severity_reason": t.severity_reason,
        "place": {
            "province": place.get("province"),
            "city": place.get("city"),
            "county": place.get("county"),
            "code": t.place_code,
            "label": t.place_label or "待定",
        },
        "department": t.department,
        "primary_responder": _primary(t.responders, t.department),
        "responders": t.responders or [],
        "rule": t.rule,
        "rule_label": RULE_LABEL.get(t.rule, t.rule),
        # The clock rule by its name in config/clocks.yaml, and why it was chosen.
        "clock_rule": t.rule,
        "clock_reason": t.rule_reason or "",
        "deadlines": [_deadline_view(d, now) for d in deadlines],
        "created_at": iso_shanghai(t.created_at),
        "acknowledged_by": t.acknowledged_by,
        "acknowledged_at": iso_shanghai(t.acknowledged_at),
        "acknowledged_from": t.acknowledged_from,
        "closed_at": iso_shanghai(t.closed_at),
        "closed_by": t.closed_by,
        "outcome": t.outcome,
        "outcome_label": CLOSE_OUTCOMES.get(t.outcome or "", t.outcome),
        "outcome_note": t.outcome_note,
    }


def _deadline_view(d: Deadline, now: datetime) -> dict[str, Any]:
    state = "met" if d.met_at is not None else "cancelled" if d.cancelled_at is not None else "open"
    return {
        "milestone": d.milestone,
        "rule": d.rule,
        "starts_at": iso_shanghai(d.starts_at),
        "due_at": iso_shanghai(d.due_at),
        "state": state,
        "state_label": DEADLINE_STATE_LABEL[state],
        "met_at": iso_shanghai(d.met_at),
        "met_by": d.met_by,
        "on_time": None if d.met_at is None else d.met_at <= d.due_at,
        "evidence_url": d.evidence_url,
        "fired_at": iso_shanghai(d.fired_at),
        "cancelled_at": iso_shanghai(d.cancelled_at),
        "cancelled_by": d.cancelled_by,
        "cancel_reason": d.cancel_reason,
        "seconds_left": int((d.due_at - now).total_seconds()),
        "overdue": state == "open" and d.due_at <= now,
    }


def scoped(stmt: Any, actor: Actor, column: Any) -> Any:
    """``stmt`` limited to what ``actor`` sees by the place code ``column``."""
    clause = scope_clause(actor, column)
    return stmt if clause is None else stmt.where(clause)


def open_tickets(s: Session, actor: Actor, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Open tickets in ``actor``'s jurisdiction, most severe first, then newest."""
    rows = s.scalars(
        scoped(select(Ticket).where(Ticket.status != "closed"), actor, Ticket.place_code)
        .order_by(Ticket.created_at.desc())
        .limit(limit)
    ).all()
    rows = sorted(rows, key=lambda t: (-SEVERITY_RANK.get(t.severity, 0), -t.created_at.timestamp(), -t.id))
    return [ticket_view(s, t, now) for t in rows]


def get_ticket(s: Session, actor: Actor, tid: int, *, lock: bool = False) -> Ticket:
    """Ticket ``tid`` if ``actor`` sees it; otherwise NotFound, as for an unknown id."""
    if not valid_id(tid):
        raise NotFound(f"工单 {tid} 不存在")
    stmt = scoped(select(Ticket).where(Ticket.id == tid), actor, Ticket.place_code)
    # FOR UPDATE (PostgreSQL): two officers acknowledging at once queue up
    # and the second sees the first; SQLite writers are serial anyway.
    t = s.scalar(stmt.with_for_update() if lock else stmt)
    if t is None:
        raise NotFound(f"工单 {tid} 不存在")
    return t


def event_ticket(s: Session, actor: Actor, eid: int) -> Ticket:
    """The ticket of event ``eid`` (the link from a search hit), if ``actor`` sees it."""
    t = (
        s.scalars(scoped(select(Ticket).where(Ticket.event_id == eid), actor, Ticket.place_code)).first()
        if valid_id(eid)
        else None
    )
    if t is None:
        raise NotFound(f"事件 {eid} 没有工单（可能已并入其他事件）")
    return t


def ticket_detail(s: Session, actor: Actor, tid: int, now: datetime) -> dict[str, Any]:
    """One ticket with its posts (those in ``actor``'s jurisdiction) and audit trail."""
    t = get_ticket(s, actor, tid)
    out = ticket_view(s, t, now)
    posts = s.scalars(
        scoped(select(Post).where(Post.event_id == t.event_id), actor, Post.place_code).order_by(Post.published_at)
    ).all()
    out["posts"] = [
        {
            "post_id": p.post_id,
            "source_id": p.source_id,
            "source_kind": p.source_kind,
            "source_name": p.source_name,
            "url": p.url,
            "title": p.title,
            "text": p.text[:500],
            "published_at": iso_shanghai(p.published_at),
            "precision": p.precision,
            "fetched_at": iso_shanghai(p.fetched_at),
            "crawl_lag_seconds": (p.fetched_at - p.published_at).total_seconds(),
            "place_label": p.place_label,
            "severity": p.severity,
        }
        for p in posts
    ]
    audits = s.scalars(
        select(Audit).where(Audit.ticket_id == tid, Audit.outcome == "ok").order_by(Audit.at, Audit.id)
    ).all()
    out["audit"] = [
        {
            "at": iso_shanghai(a.at),
            "actor": a.actor,
            "action": a.action,
            "detail": a.detail,
            "remote_addr": a.remote_addr,
        }
        for a in audits
    ]
    return out


# --------------------------------------------------------------------------- tickets


def acknowledge(store: Store, actor: Actor, ticket_id: int, *, now: datetime | None = None) -> Outcome:
    """The officer has seen the ticket (确认接收). Never stops a statutory clock."""
    n = now or utcnow()
    who, addr = actor.username, actor.remote_addr
    with _audited(store, actor, "acknowledged", {"ticket_id": ticket_id}, n) as sub, store.transaction() as s:
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        to = transition("acknowledge", t)
        if t.acknowledged_at is not None:
            if t.acknowledged_by != who:
                raise Conflict(f"工单 {ticket_id} 已由 {t.acknowledged_by} 于 {_fmt(t.acknowledged_at)} 确认接收")
            return Outcome(True, ticket_view(s, t, n))
        t.acknowledged_at = n
        t.acknowledged_by = who
        t.acknowledged_from = addr
        t.status = to
        emit_fact(
            s,
            ticket=t,
            kind="acknowledged",
            key=f"{t.id}:ack",
            at=n,
            actor=who,
            detail={"officer": who, "at": iso_shanghai(n), "from": addr},
            outbox=True,
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


def department_choices(t: Ticket, names: DepartmentNames | None = None) -> list[str]:
    """The departments ticket ``t`` may be assigned to: every department of
    ``config/responders.yaml`` as it is named at the ticket's place (蜀山区 →
    蜀山区住房和城乡建设局, …, 蜀山区人民政府办公室); the responders the
    classifier named (co-responders at other places included) come first. A
    ticket whose place is 待定 gets the generic names."""
    names = names or _department_names()
    prefix = place_prefix(t.place_code) or ""
    out = [str(r["name"]) for r in t.responders or []
           if isinstance(r, dict) and r.get("role") in ("primary", "co") and r.get("name")]
    out += [names.name_at(prefix, g) for g in names.generic]
    return list(dict.fromkeys(x.strip() for x in out if x and x.strip()))


def _department_names() -> DepartmentNames:
    from yuqing.settings import config_dir

    return DepartmentNames.load(config_dir())


def assign(
    store: Store, actor: Actor, ticket_id: int, department: str, *, departments: DepartmentNames | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Assign the responsible department (new/acknowledged tickets; audited).

    The department is one of :func:`department_choices` (configured in
    ``responders.yaml`` for the ticket's place), or a department kind by its
    generic name (城市管理局); anything else — free text such as 火星市宇宙局 —
    is :class:`Invalid`. ``departments``: the name rules of the deployment's
    config (default: ``$YUQING_CONFIG_DIR`` or the project's)."""
    n = now or utcnow()
    dept = department.strip()
    with _audited(store, actor, "assigned", {"ticket_id": ticket_id, "department": dept[:100]}, n) as sub:
        if not dept:
            raise Invalid("责任部门不能为空")
        return _assign(store, actor, sub, ticket_id, dept, departments or _department_names(), n)


def _assign(store: Store, actor: Actor, sub: _Subject, ticket_id: int, dept: str, names: DepartmentNames,
            n: datetime) -> Outcome:
    who, addr = actor.username, actor.remote_addr
    with store.transaction() as s:
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        t.status = transition("assign", t)
        if t.department == dept:
            return Outcome(True, ticket_view(s, t, n))
        choices = department_choices(t, names)
        if dept not in choices and dept not in names.generic:
            raise Invalid(f"责任部门「{dept[:50]}」不在{t.place_label or '本属地'}已配置的部门之列"
                          f"（config/responders.yaml），请从列表中选择，如：{'、'.join(choices[:4])}")
        count = s.scalar(
            select(func.count())
            .select_from(Audit)
            .where(Audit.ticket_id == ticket_id, Audit.action == "assigned", Audit.outcome == "ok")
        )
        old = t.department
        t.department = dept
        emit_fact(
            s,
            ticket=t,
            kind="assigned",
            key=f"{t.id}:assigned:{int(count or 0) + 1}",
            at=n,
            actor=who,
            detail={"from": old, "to": dept, "officer": who, "at": iso_shanghai(n)},
            outbox=True,
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


def record_milestone(
    store: Store,
    actor: Actor,
    ticket_id: int,
    milestone: str,
    *,
    clocks: Clocks,
    evidence_url: str | None = None,
    met_at: datetime | None = None,
    source_post_id: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """The milestone is met — now, or at ``met_at`` (the publication time of the
    release or reply that met it): its clock stops (and a 持续发布 follow-up may
    be planned).

    ``evidence_url`` (the release, the reply, the press-conference notice) is
    required, an absolute http(s) URL; without it nothing is recorded
    (:class:`Invalid`), so no milestone counts as met without proof.
    ``met_at`` may not lie in the future nor before the event's T0
    (:class:`Invalid`); on time or late is judged by it: met after its due
    time, the milestone is late (a breach in the reports). The audit keeps
    ``met_at`` and, when it differs, ``recorded_at``; ``source_post_id`` names
    the post confirmed as the evidence (a milestone candidate)."""
    from responder.scheduler import plan_followup

    n = now or utcnow()
    who, addr = actor.username, actor.remote_addr
    request: dict[str, Any] = {"ticket_id": ticket_id, "milestone": milestone, "evidence_url": evidence_url}
    if met_at is not None:
        request["met_at"] = iso_shanghai(met_at) if met_at.tzinfo is not None else str(met_at)
    if source_post_id is not None:
        request["post_id"] = source_post_id
    with _audited(store, actor, "milestone", request, n) as sub, store.transaction() as s:
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        t.status = transition("milestone", t)
        d = s.scalar(select(Deadline).where(Deadline.ticket_id == ticket_id, Deadline.milestone == milestone))
        if d is None:
            known = s.scalars(select(Deadline.milestone).where(Deadline.ticket_id == ticket_id)).all()
            raise Invalid(f"工单 {ticket_id} 没有节点「{milestone}」（可选：{'、'.join(known) or '无'}）")
        if d.met_at is not None:
            return Outcome(True, ticket_view(s, t, n))
        url = safe_url(evidence_url)
        if url is None:
            raise Invalid(
                f"登记「{milestone}」须附佐证链接（发布稿、答复或发布会通知的网址，以 http:// 或 https:// 开头）"
                if not (evidence_url or "").strip()
                else "佐证链接无效：只接受以 http:// 或 https:// 开头的完整网址"
            )
        evidence_url = url
        met = _met_at(s, t, met_at, n)
        d.met_at = met
        d.met_by = who
        d.evidence_url = evidence_url
        # Its warning points are moot now: close them so the scheduler never looks again.
        s.execute(
            update(DeadlineWarning)
            .where(DeadlineWarning.deadline_id == d.id, DeadlineWarning.fired_at.is_(None))
            .values(fired_at=n, outcome="moot")
            .execution_options(synchronize_session=False)
        )
        on_time = met <= d.due_at
        nxt = plan_followup(s, clocks, t, d)
        emit_fact(
            s,
            ticket=t,
            kind="milestone",
            key=f"{t.id}:{d.milestone}:met",
            at=n,
            actor=who,
            detail={
                "milestone": d.milestone,
                "due_at": iso_shanghai(d.due_at),
                "met_at": iso_shanghai(met),
                "starts_at": iso_shanghai(d.starts_at),
                "on_time": on_time,
                "overdue_seconds": None if on_time else int((met - d.due_at).total_seconds()),
                "evidence_url": evidence_url,
                "officer": who,
                "next_followup": deadline_record(nxt) if nxt else None,
                **({"recorded_at": iso_shanghai(n)} if met != n else {}),
                **({"post_id": source_post_id} if source_post_id else {}),
            },
            outbox=True,
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


def _met_at(s: Session, t: Ticket, met_at: datetime | None, n: datetime) -> datetime:
    """When a milestone was met: ``met_at`` if given (not in the future, not before T0), else now."""
    if met_at is None:
        return n
    if met_at.tzinfo is None:
        raise Invalid("完成时间须带时区（如 2026-11-02T10:00:00+08:00）")
    if met_at > n:
        raise Invalid(f"完成时间 {_fmt(met_at)} 晚于当前时间 {_fmt(n)}，不能登记将来的时间")
    ev = s.get(Event, t.event_id)
    if ev is not None and met_at < ev.t0:
        raise Invalid(f"完成时间 {_fmt(met_at)} 早于事件首发时间（T0）{_fmt(ev.t0)}")
    return met_at


def close(
    store: Store, actor: Actor, ticket_id: int, outcome: str, *, note: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Close (办结) with an outcome of :data:`CLOSE_OUTCOMES`, by code or label;
    ``note`` says more (required for 其他). 已合并 is a merge's alone.

    无需回应 / 误报 cancel the deadlines not met (with who, when and why: the
    outcome and the note); they are no breaches. Any other outcome leaves
    them running: only a milestone stops a clock, and an unmet one is a
    breach when due. A pending 持续发布 follow-up is dropped: the event is over.
    """
    n = now or utcnow()
    text = (note or "").strip()
    request = {"ticket_id": ticket_id, "outcome": (outcome or "").strip()[:100], "note": text[:500]}
    with _audited(store, actor, "closed", request, n) as sub:
        code = parse_outcome(outcome)
        if code == MERGED:
            raise Invalid("「已合并」由合并事件操作设定，请使用合并功能")
        if code == OTHER and not text:
            raise Invalid("办结结果为「其他」时须填写说明")
        return _close(store, actor, sub, ticket_id, code, text, n)


def _close(store: Store, actor: Actor, sub: _Subject, ticket_id: int, code: str, note: str,
           n: datetime) -> Outcome:
    from responder.scheduler import cancel_open_deadlines, drop_open_followups

    who, addr = actor.username, actor.remote_addr
    with store.transaction() as s:
        # The events lock before the ticket's row lock, in the responder's order.
        store.lock_events(s)
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        if t.status == "closed":
            return Outcome(True, ticket_view(s, t, n))
        t.status = transition("close", t)
        t.closed_at, t.closed_by, t.outcome, t.outcome_note = n, who, code, note or None
        ev = s.get(Event, t.event_id)
        if ev is not None:
            ev.status = "closed"
            store.stamp_events(s, ev)  # responders drop it from the events a post may join
        dropped = drop_open_followups(s, t)
        label = CLOSE_OUTCOMES[code]
        cancelled = []
        if code in CANCELLING_OUTCOMES:
            reason = f"{label}：{note}" if note else label
            cancelled = [deadline_record(d, n) for d in
                         cancel_open_deadlines(s, t, at=n, by=who, outcome=code, reason=reason)]
        open_ms = s.scalars(
            select(Deadline.milestone).where(
                Deadline.ticket_id == ticket_id, Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None)
            )
        ).all()
        emit_fact(
            s,
            ticket=t,
            kind="closed",
            key=_nth_key(s, t, "closed"),
            at=n,
            actor=who,
            detail={
                "officer": who,
                "outcome": label,
                "outcome_code": code,
                "note": note or None,
                "at": iso_shanghai(n),
                "open_milestones": list(open_ms),
                "followups_dropped": dropped,
                "deadlines_cancelled": cancelled,
            },
            outbox=True,
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


def _nth_key(s: Session, t: Ticket, kind: str) -> str:
    """The fact key of a close or reopen: a ticket closed, reopened and closed
    again has one fact per close. The first close keeps the key it always had
    (``{id}:closed``); later ones are ``{id}:closed:2`` and on."""
    n = int(s.scalar(
        select(func.count()).select_from(TicketEventRow)
        .where(TicketEventRow.ticket_id == t.id, TicketEventRow.kind == kind)
    ) or 0)
    if kind == "closed" and n == 0:
        return f"{t.id}:closed"
    return f"{t.id}:{kind}:{n + 1}"


def reopen(store: Store, actor: Actor, ticket_id: int, reason: str, *, now: datetime | None = None) -> Outcome:
    """Reopen a closed ticket (closed → acknowledged), with a reason (audited).

    The event is open again (posts may join it); the deadlines the close
    cancelled count again, due when they were (one past due is a breach and
    fires). A follow-up dropped at the close is not planned again. A ticket
    merged into another cannot be reopened (:class:`Conflict` naming it).
    """
    n = now or utcnow()
    why = (reason or "").strip()
    with _audited(store, actor, "reopened", {"ticket_id": ticket_id, "reason": why[:500]}, n) as sub:
        if not why:
            raise Invalid("重新打开须填写理由")
        return _reopen(store, actor, sub, ticket_id, why, n)


def _reopen(store: Store, actor: Actor, sub: _Subject, ticket_id: int, why: str, n: datetime) -> Outcome:
    from responder.scheduler import restore_cancelled_deadlines

    who, addr = actor.username, actor.remote_addr
    with store.transaction() as s:
        store.lock_events(s)
        t = sub.ticket(get_ticket(s, actor, ticket_id, lock=True))
        to = transition("reopen", t)
        ev = s.get(Event, t.event_id)
        if t.outcome == MERGED or (ev is not None and ev.status == "merged"):
            into = next(
                (a.detail.get("into_ticket") for a in s.scalars(
                    select(Audit).where(Audit.ticket_id == t.id, Audit.action == "event_merged",
                                        Audit.outcome == "ok").order_by(Audit.id.desc()))
                 if (a.detail or {}).get("from_ticket") == t.id),
                None,
            )
            where = f"工单 #{into}" if into else "其他工单"
            raise Conflict(f"工单 {ticket_id} 已并入{where}，不能重新打开（请在{where}上继续处理）")
        previous = {"outcome": CLOSE_OUTCOMES.get(t.outcome or "", t.outcome), "outcome_code": t.outcome,
                    "note": t.outcome_note, "closed_by": t.closed_by, "closed_at": iso_shanghai(t.closed_at)}
        t.status = to
        t.closed_at = t.closed_by = t.outcome = t.outcome_note = None
        acknowledged = t.acknowledged_at is None
        if acknowledged:  # reopening a ticket nobody acknowledged takes it on
            t.acknowledged_at, t.acknowledged_by, t.acknowledged_from = n, who, addr
        if ev is not None:
            ev.status = "open"
            store.stamp_events(s, ev)  # responders take it back among the events a post may join
        restored = [deadline_record(d, n) for d in restore_cancelled_deadlines(s, t)]
        emit_fact(
            s,
            ticket=t,
            kind="reopened",
            key=_nth_key(s, t, "reopened"),
            at=n,
            actor=who,
            detail={
                "officer": who,
                "reason": why,
                "at": iso_shanghai(n),
                "previous": previous,
                "acknowledged": acknowledged,
                "deadlines_restored": restored,
            },
            outbox=True,
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return Outcome(False, ticket_view(s, t, n))


# --------------------------------------------------------------------------- events


def cross_places(a: str | None, b: str | None) -> bool:
    """Whether two events' places lie in different jurisdictions: neither is
    within the other (阜阳市 and 合肥市, 蜀山区 and 包河区; not 蜀山区 and
    合肥市). An event whose place is 待定 belongs to no jurisdiction yet (only
    the root sees it): merging it crosses nothing."""
    pa, pb = place_prefix(a), place_prefix(b)
    if pa is None or pb is None:
        return False
    return not (pa.startswith(pb) or pb.startswith(pa))


def merge(
    store: Store, actor: Actor, event_id: int, into: int, *, clocks: Clocks, confirm_places: bool = False,
    now: datetime | None = None,
) -> MergeOutcome:
    """Merge event ``event_id`` into event ``into`` (audited).

    The posts move; the target's T0 becomes the earlier of the two (its open
    deadlines move with it) and its severity the higher; the merged event's
    ticket is closed as 已合并 (fact ``closed`` with ``merged_into``) and its
    unmet deadlines are cancelled — the target's clocks cover the incident —
    and listed in the audit. Both tickets must be open (:data:`TRANSITIONS`).

    Both events must lie in the actor's jurisdiction (one outside it is
    :class:`NotFound`, like an unknown id): a 合肥 officer cannot merge a 阜阳
    event. Two events of different jurisdictions (:func:`cross_places`) merge
    only with ``confirm_places`` — the officer has confirmed a message naming
    both places; without it the merge is :class:`Invalid` with that message.
    """
    n = now or utcnow()
    request = {"event_id": event_id, "into": into, **({"confirm_places": True} if confirm_places else {})}
    with _audited(store, actor, "event_merged", request, n) as sub:
        if into == event_id:
            raise Invalid("不能将事件合并到自身")
        for eid in (event_id, into):
            if not valid_id(eid):
                raise NotFound(f"事件 {eid} 不存在")
        return _merge(store, actor, sub, event_id, into, clocks, confirm_places, n)


def merge_tickets(
    store: Store, actor: Actor, ticket_id: int, into_ticket: int, *, clocks: Clocks, confirm_places: bool = False,
    now: datetime | None = None,
) -> MergeOutcome:
    """:func:`merge` by ticket numbers (the ticket page): the event of ticket ``ticket_id``
    into the event of ticket ``into_ticket``. Either out of sight is :class:`NotFound` as an
    unknown ticket number."""
    n = now or utcnow()
    request = {"ticket_id": ticket_id, "into_ticket": into_ticket,
               **({"confirm_places": True} if confirm_places else {})}
    with _audited(store, actor, "event_merged", request, n) as sub:
        if into_ticket == ticket_id:
            raise Invalid("不能将事件合并到自身")
        with store.reader() as s:
            src = sub.ticket(get_ticket(s, actor, ticket_id)).event_id
            dst = get_ticket(s, actor, into_ticket).event_id
        return _merge(store, actor, sub, src, dst, clocks, confirm_places, n)


def cross_place_message(src: Event, dst: Event) -> str:
    """What an officer confirms before merging events of two jurisdictions."""
    def name(ev: Event) -> str:
        title = ev.title if len(ev.title) <= 40 else ev.title[:40] + "…"
        return f"事件「{title}」（{ev.place_label or '待定'}）"

    return f"跨属地合并：{name(src)}将并入{name(dst)}，两地属地不同，须确认后才能合并"


def _merge(store: Store, actor: Actor, sub: _Subject, event_id: int, into: int, clocks: Clocks,
           confirm_places: bool, n: datetime) -> MergeOutcome:
    from responder.events import upgrade_rule
    from responder.scheduler import cancel_open_deadlines, drop_open_followups, recompute_deadlines

    who, addr = actor.username, actor.remote_addr
    with store.transaction() as s:
        store.lock_events(s)
        # Both events must be in the actor's sight: one outside it is unknown.
        src, dst = (
            s.scalar(scoped(select(Event).where(Event.id == eid), actor, Event.place_code).with_for_update())
            for eid in (event_id, into)
        )
        if src is None or dst is None:
            raise NotFound(f"事件 {event_id if src is None else into} 不存在")
        sub.event(dst)
        if src.status != "open" or dst.status != "open":
            raise Conflict("只能合并两个未关闭的事件")
        cross = cross_places(src.place_code, dst.place_code)
        if cross and not confirm_places:
            raise Invalid(cross_place_message(src, dst))
        st_ticket = s.scalar(select(Ticket).where(Ticket.event_id == src.id))
        dt_ticket = s.scalar(select(Ticket).where(Ticket.event_id == dst.id))
        assert st_ticket is not None and dt_ticket is not None
        closed_to = transition("merge_away", st_ticket)
        dt_ticket.status = transition("merge_into", dt_ticket)
        s.execute(
            update(Post)
            .where(Post.event_id == src.id)
            .values(event_id=dst.id)
            .execution_options(synchronize_session=False)
        )
        dst.post_count = (dst.post_count or 0) + (src.post_count or 0)
        dst.last_published_at = max(dst.last_published_at, src.last_published_at)
        moved: list[dict[str, Any]] = []
        if src.t0 < dst.t0:
            dst.t0, dst.t0_post_id, dst.t0_precision = src.t0, src.t0_post_id, src.t0_precision
            dst.t0_crawl_lag_s = src.t0_crawl_lag_s
            moved = recompute_deadlines(s, clocks, dt_ticket, dst.t0)
        added: list[dict[str, Any]] = []
        if SEVERITY_RANK.get(src.severity, 0) > SEVERITY_RANK.get(dst.severity, 0) or (
            src.is_emergency and not dst.is_emergency
        ):
            if SEVERITY_RANK.get(src.severity, 0) > SEVERITY_RANK.get(dst.severity, 0):
                dst.severity, dst.severity_reason = src.severity, src.severity_reason
                dt_ticket.severity, dt_ticket.severity_reason = src.severity, src.severity_reason
            if src.is_emergency and not dst.is_emergency:
                dst.is_emergency = True
                dst.event_type = dst.event_type or src.event_type
                dst.event_subtype = dst.event_subtype or src.event_subtype
            # The stricter clock (e.g. 5 h / 24 h) applies from the merged T0.
            added = [
                {"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)}
                for d in upgrade_rule(s, clocks, dst, dt_ticket)
            ]
        note = f"合并至工单 #{dt_ticket.id}"
        dropped = drop_open_followups(s, st_ticket)
        cancelled = [
            deadline_record(d, n)
            for d in cancel_open_deadlines(s, st_ticket, at=n, by=who, outcome=MERGED,
                                           reason=f"{CLOSE_OUTCOMES[MERGED]}：{note}")
        ]
        src.status = "merged"
        store.stamp_events(s, src, dst)  # responders reload both
        st_ticket.status, st_ticket.closed_at, st_ticket.closed_by = closed_to, n, who
        st_ticket.outcome, st_ticket.outcome_note = MERGED, note
        detail = {
            "from_event": src.id,
            "into_event": dst.id,
            "from_ticket": st_ticket.id,
            "into_ticket": dt_ticket.id,
            "officer": who,
            "t0": iso_shanghai(dst.t0),
            "deadlines_cancelled": cancelled,
            "followups_dropped": dropped,
            "deadlines_moved": moved,
            "deadlines_added": added,
            "rule": dt_ticket.rule,
            "places": {"from": src.place_label, "into": dst.place_label, "cross": cross,
                       "confirmed": bool(cross and confirm_places)},
        }
        accounts.audit(s, actor, "event_merged", "ok", detail, dt_ticket.id, dst.id,
                       place_code=dt_ticket.place_code, at=n)
        emit_fact(
            s,
            ticket=st_ticket,
            kind="closed",
            key=_nth_key(s, st_ticket, "closed"),
            at=n,
            actor=who,
            detail={"outcome": CLOSE_OUTCOMES[MERGED], "outcome_code": MERGED, "note": note,
                    "merged_into": dt_ticket.id, **detail},
            outbox=True,
            audit_action="event_merged",
            remote_addr=addr,
            audit_columns=_who(actor),
        )
        return MergeOutcome(ticket_view(s, dt_ticket, n), st_ticket.id)


_SPLIT_ERRORS: dict[int, type[CaseError]] = {404: NotFound, 409: Conflict, 422: Invalid}


def split(
    store: Store,
    actor: Actor,
    event_id: int,
    post_ids: list[str],
    reason: str,
    *,
    clocks: Clocks,
    now: datetime | None = None,
) -> SplitOutcome:
    """Move ``post_ids`` off event ``event_id`` into a new event (audited).

    The posts must all belong to the event and may not be all of them
    (Invalid); unknown event → NotFound, closed or merged event → Conflict.
    The new event's ticket is opened as the grouper opens one (T0, severity,
    place, rule and deadlines from the moved posts); the original event's T0,
    severity and post count are recomputed from the remaining posts and its
    open deadlines follow a later T0 (met milestones stay met). Both tickets
    get an ``event_split`` audit row and a ticket event.
    """
    n = now or utcnow()
    reason = reason.strip()
    request = {"event_id": event_id, "post_ids": list(post_ids)[:100], "reason": reason}
    with _audited(store, actor, "event_split", request, n) as sub:
        if not reason:
            raise Invalid("拆分理由不能为空")
        return _split(store, actor, sub, event_id, post_ids, reason, clocks, n)


def _split(store: Store, actor: Actor, sub: _Subject, event_id: int, post_ids: list[str], reason: str,
           clocks: Clocks, n: datetime) -> SplitOutcome:
    from responder.split import SplitError, split_event

    with store.transaction() as s:
        store.lock_events(s)
        ev = (
            s.scalar(scoped(select(Event).where(Event.id == event_id), actor, Event.place_code).with_for_update())
            if valid_id(event_id)
            else None
        )
        if ev is None:
            raise NotFound(f"事件 {event_id} 不存在")
        sub.event(ev)
        t = s.scalar(select(Ticket).where(Ticket.event_id == ev.id))
        if t is not None:
            transition("split", t)
        if ev.status == "open":
            # Only posts the actor sees may move; another is "not of this event",
            # as split_event says of a post it does not hold.
            wanted = list(dict.fromkeys(p.strip() for p in post_ids if p and p.strip()))
            seen = set(
                s.scalars(
                    scoped(select(Post.post_id).where(Post.event_id == ev.id), actor, Post.place_code)
                ).all()
            )
            hidden = [p for p in wanted if p not in seen]
            if hidden:
                raise Invalid(f"帖子 {'、'.join(hidden)} 不属于事件 {ev.id}，不能拆分")
        try:
            res = split_event(
                s, clocks, ev, post_ids, officer=actor.username, reason=reason, now=n, remote_addr=actor.remote_addr,
                audit_columns=_who(actor),
            )
        except SplitError as e:
            raise _SPLIT_ERRORS.get(e.status, Invalid)(e.message) from None
        return SplitOutcome(
            ticket_view(s, res.original, n), ticket_view(s, res.new, n), res.moved_post_ids, res.deadlines_moved
        )


# --------------------------------------------------------------------------- saved searches


def save_search(
    store: Store, actor: Actor, name: str, params: dict[str, Any], *, now: datetime | None = None,
    notify: Any | None = None, vocab: Any | None = None,
) -> int:
    """Save the archive-search ``params`` under ``name`` (监测方案); returns its id.

    A scheme's word groups, place, alert and recipient are checked by
    :func:`responder.schemes.normalise` (``notify``: the loaded
    ``config/notify.yaml``, whose recipients an alert may name). Bad
    parameters raise :class:`responder.archive.SearchParamError` before
    anything is saved; a name already taken is a :class:`Conflict`.
    """
    at = now or utcnow()
    name = name.strip()
    with _audited(store, actor, "saved_search_created", {"name": name[:100], "params": params}, at):
        return _save_search(store, actor, name, params, at, notify, vocab)


def _newest_post(s: Session) -> int:
    return int(s.scalar(select(func.coalesce(func.max(Post.id), 0))) or 0)


def _save_search(store: Store, actor: Actor, name: str, params: dict[str, Any], at: datetime,
                 notify: Any | None = None, vocab: Any | None = None) -> int:
    from responder.schemes import normalise

    if not name:
        raise Invalid("方案名称不能为空")
    if len(name) > 100:
        raise Invalid("方案名称最多 100 个字")
    stored = normalise(params, actor, vocab=vocab, notify=notify)  # SearchParamError on a bad value
    try:
        with store.transaction() as s:
            # Alerts are for posts stored from now on, never the archive.
            row = SavedSearch(name=name, params=stored, created_by=actor.username, created_at=at,
                              jurisdiction=actor.jurisdiction, watch_from=_newest_post(s))
            s.add(row)
            s.flush()
            accounts.audit(s, actor, "saved_search_created", "ok",
                           {"id": row.id, "name": row.name, "params": row.params},
                           place_code=actor.jurisdiction or None, at=at)
            return int(row.id)
    except IntegrityError:
        raise Conflict(f"已有名为“{name}”的监测方案") from None


def _own_search(s: Session, actor: Actor, search_id: int, verb: str, sub: _Subject | None = None) -> SavedSearch:
    """A saved search ``actor`` sees (else NotFound) and may change: its creator or an admin (else Forbidden)."""
    from responder.archive import saved_search_clause

    row = None
    if valid_id(search_id):
        stmt = select(SavedSearch).where(SavedSearch.id == search_id)
        seen = saved_search_clause(actor)
        row = s.scalar(stmt if seen is None else stmt.where(seen))
    if row is None:
        raise NotFound(f"监测方案 {search_id} 不存在")
    if sub is not None:
        sub.place_code = row.jurisdiction or None
    if row.created_by != actor.username and not (actor.is_cli or actor.role == Role.ADMIN):
        raise Forbidden(f"监测方案“{row.name}”由 {row.created_by} 创建，只有创建者或系统管理员可以{verb}")
    return row


def update_saved_search(
    store: Store, actor: Actor, search_id: int, name: str | None, params: dict[str, Any], *,
    now: datetime | None = None, notify: Any | None = None, vocab: Any | None = None,
) -> None:
    """Change a saved search's name and parameters (audited, before and after): its creator or an
    admin who sees it. Matches found so far stay; new posts are matched by the new conditions."""
    from responder.schemes import normalise

    at = now or utcnow()
    with _audited(store, actor, "saved_search_updated", {"id": search_id, "params": params}, at) as sub:
        with store.reader() as s:
            row = _own_search(s, actor, search_id, "修改", sub)
        new_name = (name if name is not None else row.name).strip()
        if not new_name:
            raise Invalid("方案名称不能为空")
        if len(new_name) > 100:
            raise Invalid("方案名称最多 100 个字")
        # Checked as the scheme's own jurisdiction would (an admin editing keeps the owner's place).
        stored = normalise(params, actor, vocab=vocab, notify=notify)
        try:
            with store.transaction() as s:
                row = _own_search(s, actor, search_id, "修改")
                before = {"name": row.name, "params": row.params}
                row.name, row.params = new_name, stored
                s.flush()
                accounts.audit(s, actor, "saved_search_updated", "ok",
                               {"id": row.id, "before": before, "name": row.name, "params": row.params},
                               place_code=row.jurisdiction or None, at=at)
        except IntegrityError:
            raise Conflict(f"已有名为“{new_name}”的监测方案") from None


def delete_saved_search(store: Store, actor: Actor, search_id: int, *, now: datetime | None = None) -> None:
    """Delete a saved search (audited, with what it was) and its matches: its creator or an
    admin who sees it; one the actor cannot see is NotFound."""
    from responder.schemes import forget

    at = now or utcnow()
    with _audited(store, actor, "saved_search_deleted", {"id": search_id}, at) as sub, store.transaction() as s:
        row = _own_search(s, actor, search_id, "删除", sub)
        accounts.audit(s, actor, "saved_search_deleted", "ok", {"id": row.id, "name": row.name, "params": row.params},
                       place_code=row.jurisdiction or None, at=at)
        forget(s, row.id)
        s.delete(row)


__all__ = [
    "CANCELLING_OUTCOMES",
    "CLOSE_OUTCOMES",
    "cross_place_message",
    "cross_places",
    "department_choices",
    "REFUSALS",
    "RULE_LABEL",
    "STATUS_LABEL",
    "TRANSITIONS",
    "CaseError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "MergeOutcome",
    "NotFound",
    "Outcome",
    "SplitOutcome",
    "acknowledge",
    "assign",
    "close",
    "deadline_record",
    "delete_saved_search",
    "event_ticket",
    "get_ticket",
    "merge",
    "merge_tickets",
    "open_tickets",
    "parse_outcome",
    "record_milestone",
    "reopen",
    "save_search",
    "scoped",
    "split",
    "ticket_detail",
    "ticket_view",
    "transition",
]
