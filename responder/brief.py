"""The daily and weekly brief (舆情日报 / 周报, SPEC §1) for the propaganda office.

Computed from the store alone (posts, events, tickets, deadlines), so the same
archive and the same ``as_of`` always give the same brief. Times are compared
exactly; days are Asia/Shanghai calendar days.

Scope: a brief is of the acting user's jurisdiction. Every count, list and
distribution below covers only the posts, events and tickets whose place is
in it (:func:`responder.permissions.scope_clause`, inside each query); items
in 待定 only for users at the root jurisdiction. The CLI has full access.

Definitions:

* **period** — ``day``: the Shanghai calendar day ``[day 00:00, day+1 00:00)``;
  ``week``: the ISO week (Monday 00:00 to the next Monday 00:00, Shanghai)
  that contains ``day``. "In the period" always means ``start <= t < end``.
* **as_of** — the moment the brief describes (default: now). Everything that
  depends on a state reads it *at* ``as_of``: a milestone met after ``as_of``
  counts as not met yet, a ticket closed or acknowledged after ``as_of``
  counts as not closed / not acknowledged yet. Counts are of what the store
  holds; titles, severities, places and post counts are as stored now.

概况 (overview):

* **posts** — posts whose ``published_at`` is in the period (relevant or
  not: the archive), also counted by ``source_kind``.
* **relevant posts** — those of them with ``relevant`` true (政务舆情).
* **emergency posts** — relevant posts with ``is_emergency`` true.
* **new events** — events whose T0 (``Event.t0``, the earliest publication
  among the event's posts) is in the period; an event merged into another
  (status ``merged``) is not counted, its posts belong to the other one.
  **emergency events**: those with ``is_emergency`` true.
* **tickets opened** — tickets whose ``created_at`` is in the period (also
  those later merged away), by severity 特别重大/重大/较大/一般; **archived**:
  those of them archived at once as 政务动态 needing no response (an audit
  row ``archived_no_response``; no clock, see :mod:`responder.events`).
* **place pending (待定)** — relevant posts in the period whose place label
  is 待定, and new events whose place label is 待定.

重点事件 (key events):

* **active** — an event (not merged, and not archived as needing no
  response) with T0 before the end of the period
  and either its last publication (``last_published_at``) at or after the
  start of the period, or its ticket not closed before the start (no
  ``closed_at``, or ``closed_at >= start``). So an event first or last
  published inside the period, or still open in it, is active.
* **order** — severity (特别重大 first, ``store.SEVERITY_RANK``), then the
  event's post count (all its posts, descending), then T0, then event id;
  at most :data:`MAX_KEY_EVENTS` are listed, ``key_events_total`` says how
  many were active.
* each lists title, place label, severity, T0, post count (all and in the
  period), ticket id, the ticket's status at ``as_of`` (办结 when
  ``closed_at <= as_of``, else 已确认 when ``acknowledged_at <= as_of``,
  else 待确认), department, and every deadline with its state at ``as_of``:
  **按时完成** met at or before ``due_at``; **超时完成** met after
  ``due_at``; **已撤销** not met and cancelled (``cancelled_at <= as_of``:
  the ticket was closed as 无需回应（政务动态） or 误报, or merged away);
  **已超时未完成** not met, not cancelled and ``due_at <= as_of``;
  **未到期** not met, not cancelled and ``due_at > as_of``.

时限执行 (timeliness): the deadlines whose ``due_at`` is in the period,
counted by the five states above (on time / late / breached-open /
pending / cancelled). **Breaches** are late + breached-open; the departments with
breaches are the tickets' responsible departments (未指定 when none), by
number of breaches, descending, then name. **撤销时限 N 件**: the cancelled
ones, counted apart (no breach), each with who cancelled it, when and why.

分布 (distribution), among the relevant posts of the period (at most
:data:`TOP_N` each, by count descending, then name):

* **topics** — ``Post.topic`` (未分类 when none);
* **places** — city level: province + city from the post's assessed place
  (province alone for a province-level place; 待定 when unknown).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from responder.archive import KIND_LABEL
from responder.cases import CLOSE_OUTCOMES, STATUS_LABEL, scoped
from responder.clocks import SHANGHAI, iso_shanghai
from responder.events import ARCHIVED_ACTION
from responder.permissions import Actor, scope_prefix
from responder.store import SEVERITY_RANK, Audit, Deadline, Event, Post, Store, Ticket, utcnow
from responder.trends import SPIKE_RULE, Volume, volume

PERIODS = ("day", "week")
PERIOD_LABEL = {"day": "日报", "week": "周报"}
SEVERITIES = ("特别重大", "重大", "较大", "一般")
PENDING_PLACE = "待定"
NO_DEPARTMENT = "未指定"
NO_TOPIC = "未分类"
MAX_KEY_EVENTS = 10
TOP_N = 10

ON_TIME = "按时完成"
LATE = "超时完成"
OPEN_PAST_DUE = "已超时未完成"
PENDING = "未到期"
CANCELLED = "已撤销"

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BriefParamError(ValueError):
    """A bad period / date / as_of; ``param`` names it, the message is Chinese."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


# --------------------------------------------------------------------------- records


@dataclass
class Count:
    name: str
    count: int


@dataclass
class Overview:
    posts: int = 0
    posts_by_kind: list[Count] = field(default_factory=list)
    relevant_posts: int = 0
    emergency_posts: int = 0
    new_events: int = 0
    emergency_events: int = 0
    tickets_opened: int = 0
    tickets_by_severity: dict[str, int] = field(default_factory=dict)
    tickets_archived: int = 0
    pending_place_posts: int = 0
    pending_place_events: int = 0


@dataclass
class DeadlineState:
    milestone: str
    due_at: datetime
    met_at: datetime | None
    state: str


@dataclass
class KeyEvent:
    event_id: int
    title: str
    place_label: str
    severity: str
    is_emergency: bool
    t0: datetime
    post_count: int
    posts_in_period: int
    ticket_id: int | None
    ticket_status: str | None
    ticket_status_label: str
    department: str
    deadlines: list[DeadlineState] = field(default_factory=list)


@dataclass
class CancelledDeadline:
    """A deadline cancelled (撤销) with its ticket's close: who, when, why."""

    ticket_id: int
    milestone: str
    department: str
    due_at: datetime
    cancelled_at: datetime
    cancelled_by: str
    outcome: str  # the close outcome's label
    reason: str


@dataclass
class Timeliness:
    due: int = 0
    on_time: int = 0
    late: int = 0
    open_past_deadline: int = 0
    pending: int = 0
    cancelled: int = 0
    breach_departments: list[Count] = field(default_factory=list)
    cancellations: list[CancelledDeadline] = field(default_factory=list)


@dataclass
class Distribution:
    topics: list[Count] = field(default_factory=list)
    places: list[Count] = field(default_factory=list)


@dataclass
class Brief:
    period: str
    day: date
    start: datetime  # inclusive, Shanghai midnight
    end: datetime  # exclusive
    as_of: datetime
    overview: Overview
    key_events: list[KeyEvent]
    key_events_total: int
    timeliness: Timeliness
    distribution: Distribution
    # The jurisdiction it covers (a division-code prefix; "" = everything).
    jurisdiction: str = ""
    # Posts by source kind and new events per hour (日报) or day (周报), and the spikes.
    volume: Volume | None = None

    @property
    def first_day(self) -> date:
        return self.start.astimezone(SHANGHAI).date()

    @property
    def last_day(self) -> date:
        return (self.end.astimezone(SHANGHAI) - timedelta(days=1)).date()

    @property
    def title(self) -> str:
        if self.period == "day":
            return f"舆情日报（{_cn_date(self.day)}）"
        a, b = self.first_day, self.last_day
        tail = f"{b.month}月{b.day}日" if a.year == b.year else _cn_date(b)
        return f"舆情周报（{_cn_date(a)}—{tail}）"

    def to_dict(self) -> dict[str, Any]:
        out = _jsonable(self)
        out["title"] = self.title
        out["first_day"] = self.first_day.isoformat()
        out["last_day"] = self.last_day.isoformat()
        out["definitions"] = {
            "period": "北京时间自然日；周报为含该日的ISO周（周一至周日）",
            "new_events": "首发时间（T0）在统计时段内的事件（不含已并入其他事件者）",
            "key_events": "T0早于时段结束，且最后发布在时段内或工单在时段内未办结的事件，按级别、帖文数排序，至多10起",
            "deadline_state": "按时完成 / 超时完成 / 已超时未完成 / 未到期 / 已撤销，均以统计时点为准",
            "cancelled": "工单以「无需回应（政务动态）」「误报」办结或被合并时未完成的节点：撤销，不计超时",
            "timeliness": "截止时间在统计时段内的时限节点",
            "distribution": "统计时段内的政务舆情帖文",
            "jurisdiction": "仅统计属地在该辖区（行政区划代码前缀，空为全部）内的帖文、事件与工单",
            "volume": "日报按北京时间每小时、周报按每日统计的帖文数（按来源类型）与新发事件数",
            "spike": SPIKE_RULE,
        }
        return out


def _jsonable(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, datetime):
        return iso_shanghai(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


# --------------------------------------------------------------------------- computing


def _bad_period(period: str) -> BriefParamError:
    return BriefParamError("period", f"参数 period 只能是 day（日报）或 week（周报），收到 {period!r}")


def period_bounds(period: str, day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of the period containing ``day``, Shanghai midnights."""
    if period == "day":
        first, days = day, 1
    elif period == "week":
        first, days = day - timedelta(days=day.isoweekday() - 1), 7
    else:
        raise _bad_period(period)
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI)
    return start, datetime.combine(first + timedelta(days=days), time(0), tzinfo=SHANGHAI)


def parse_params(
    period: str | None, day: str | None, as_of: str | None, now: datetime
) -> tuple[str, date, datetime]:
    """Validate the web parameters; defaults: period day, today in Shanghai, as_of now."""
    p = period or "day"
    if p not in PERIODS:
        raise _bad_period(p)
    if day:
        try:
            # Only YYYY-MM-DD: fromisoformat alone would also take 20261120 or 2026-W47-5.
            if not _DATE_RE.fullmatch(day):
                raise ValueError(day)
            d = date.fromisoformat(day)
            if not date(1000, 1, 1) <= d <= date(9999, 12, 1):  # a week around it must fit in datetime
                raise ValueError(day)
        except ValueError:
            raise BriefParamError("date", f"参数 date 格式错误（应为 YYYY-MM-DD）：{day!r}") from None
    else:
        d = now.astimezone(SHANGHAI).date()
    at = now
    if as_of:
        try:
            at = datetime.fromisoformat(as_of)
        except ValueError:
            raise BriefParamError("as_of", f"参数 as_of 格式错误（应为 ISO 8601 时间）：{as_of!r}") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=SHANGHAI)  # a bare wall time is Shanghai time
    return p, d, at


def deadline_state(d: Deadline, as_of: datetime) -> str:
    met = d.met_at if d.met_at is not None and d.met_at <= as_of else None
    if met is not None:
        return ON_TIME if met <= d.due_at else LATE
    if d.cancelled_at is not None and d.cancelled_at <= as_of:
        return CANCELLED
    return OPEN_PAST_DUE if d.due_at <= as_of else PENDING


def _ticket_status(t: Ticket | None, as_of: datetime) -> str | None:
    if t is None:
        return None
    if t.closed_at is not None and t.closed_at <= as_of:
        return "closed"
    if t.acknowledged_at is not None and t.acknowledged_at <= as_of:
        return "acknowledged"
    return "new"


def _city_label(place: Any, fallback: str) -> str:
    if isinstance(place, dict):
        parts = [p for p in (place.get("province"), place.get("city")) if p]
        if parts:
            # 北京市 / 北京市: a municipality is its own city
            return parts[0] if len(parts) == 2 and parts[0] == parts[1] else "".join(parts)
        return PENDING_PLACE
    return fallback or PENDING_PLACE


def _top(counter: Counter[str], n: int = TOP_N) -> list[Count]:
    return [Count(k, v) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def brief(
    store: Store, period: str, day: date, as_of: datetime | None = None, *, actor: Actor
) -> Brief:
    """The brief of the day (or ISO week) containing ``day``, as of ``as_of``,
    of ``actor``'s jurisdiction."""
    start, end = period_bounds(period, day)
    as_of = as_of or utcnow()
    if as_of.tzinfo is None:
        raise ValueError("as_of must be time-zone aware")
    in_period = Post.published_at >= start, Post.published_at < end

    def posts(stmt: Any) -> Any:
        return scoped(stmt, actor, Post.place_code)

    def tickets(stmt: Any) -> Any:
        return scoped(stmt, actor, Ticket.place_code)

    with store.reader() as s:
        ov = Overview()
        kinds = s.execute(
            posts(select(Post.source_kind, func.count()).where(*in_period)).group_by(Post.source_kind)
        ).all()
        ov.posts = sum(int(n) for _k, n in kinds)
        ov.posts_by_kind = _top(Counter({str(k): int(n) for k, n in kinds}), n=len(kinds))
        # One row per relevant post: its flags, topic and assessed place (small JSON path, not the raw doc).
        rel = s.execute(
            posts(
                select(Post.is_emergency, Post.place_label, Post.topic, Post.raw["assessment"]["place"]).where(
                    *in_period, Post.relevant.is_(True)
                )
            )
        ).all()
        ov.relevant_posts = len(rel)
        ov.emergency_posts = sum(1 for r in rel if r[0])
        ov.pending_place_posts = sum(1 for r in rel if (r[1] or PENDING_PLACE) == PENDING_PLACE)

        new_events = s.execute(
            scoped(
                select(Event.is_emergency, Event.place_label).where(
                    Event.t0 >= start, Event.t0 < end, Event.status != "merged"
                ),
                actor,
                Event.place_code,
            )
        ).all()
        ov.new_events = len(new_events)
        ov.emergency_events = sum(1 for e in new_events if e[0])
        ov.pending_place_events = sum(1 for e in new_events if (e[1] or PENDING_PLACE) == PENDING_PLACE)

        sev = dict(
            s.execute(
                tickets(select(Ticket.severity, func.count()).where(Ticket.created_at >= start, Ticket.created_at < end))
                .group_by(Ticket.severity)
            ).all()
        )
        ov.tickets_by_severity = {k: int(sev.get(k, 0)) for k in SEVERITIES}
        ov.tickets_opened = sum(int(n) for n in sev.values())
        ov.tickets_archived = int(
            s.scalar(
                tickets(
                    select(func.count(func.distinct(Ticket.id)))
                    .join(Audit, Audit.ticket_id == Ticket.id)
                    .where(Ticket.created_at >= start, Ticket.created_at < end, Audit.action == ARCHIVED_ACTION)
                )
            )
            or 0
        )

        key_events, total = _key_events(s, actor, start, end, as_of)
        timeliness = _timeliness(s, actor, start, end, as_of)
        dist = Distribution(
            topics=_top(Counter(r[2] or NO_TOPIC for r in rel)),
            places=_top(Counter(_city_label(r[3], r[1]) for r in rel)),
        )
        vol = volume(s, actor, start, end, "hour" if period == "day" else "day")
    return Brief(period, day, start, end, as_of, ov, key_events, total, timeliness, dist, scope_prefix(actor), vol)


def _key_events(
    s: Any, actor: Actor, start: datetime, end: datetime, as_of: datetime
) -> tuple[list[KeyEvent], int]:
    stmt = (
        select(Event, Ticket)
        .outerjoin(Ticket, Ticket.event_id == Event.id)
        .where(
            Event.status != "merged",
            Event.t0 < end,
            ~Event.id.in_(select(Audit.event_id).where(Audit.action == ARCHIVED_ACTION, Audit.event_id.is_not(None))),
            or_(
                Event.last_published_at >= start,
                Ticket.id.is_(None),
                Ticket.closed_at.is_(None),
                Ticket.closed_at >= start,
            ),
        )
    )
    rows = s.execute(scoped(stmt, actor, Event.place_code)).all()
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r[0].severity, 0), -(r[0].post_count or 0), r[0].t0, r[0].id))
    top = rows[:MAX_KEY_EVENTS]
    ids = [ev.id for ev, _t in top]
    in_period = (
        dict(
            s.execute(
                scoped(
                    select(Post.event_id, func.count()).where(
                        Post.event_id.in_(ids), Post.published_at >= start, Post.published_at < end
                    ),
                    actor,
                    Post.place_code,
                ).group_by(Post.event_id)
            ).all()
        )
        if ids
        else {}
    )
    out = []
    for ev, t in top:
        status = _ticket_status(t, as_of)
        deadlines = (
            s.scalars(
                select(Deadline).where(Deadline.ticket_id == t.id).order_by(Deadline.due_at, Deadline.id)
            )
            if t is not None
            else []
        )
        out.append(
            KeyEvent(
                event_id=ev.id,
                title=ev.title,
                place_label=ev.place_label or PENDING_PLACE,
                severity=ev.severity,
                is_emergency=bool(ev.is_emergency),
                t0=ev.t0,
                post_count=int(ev.post_count or 0),
                posts_in_period=int(in_period.get(ev.id, 0)),
                ticket_id=t.id if t is not None else None,
                ticket_status=status,
                ticket_status_label=STATUS_LABEL.get(status or "", "无工单"),
                department=(t.department if t is not None else None) or NO_DEPARTMENT,
                deadlines=[
                    DeadlineState(d.milestone, d.due_at, d.met_at, deadline_state(d, as_of))
                    for d in deadlines
                ],
            )
        )
    return out, len(rows)


def _timeliness(s: Any, actor: Actor, start: datetime, end: datetime, as_of: datetime) -> Timeliness:
    rows = s.execute(
        scoped(
            select(Deadline, Ticket.department)
            .join(Ticket, Ticket.id == Deadline.ticket_id)
            .where(Deadline.due_at >= start, Deadline.due_at < end),
            actor,
            Ticket.place_code,
        )
    ).all()
    out = Timeliness(due=len(rows))
    breaches: Counter[str] = Counter()
    for d, dept in rows:
        state = deadline_state(d, as_of)
        if state == ON_TIME:
            out.on_time += 1
        elif state == LATE:
            out.late += 1
        elif state == OPEN_PAST_DUE:
            out.open_past_deadline += 1
        elif state == CANCELLED:
            out.cancelled += 1
            out.cancellations.append(CancelledDeadline(
                d.ticket_id, d.milestone, dept or NO_DEPARTMENT, d.due_at, d.cancelled_at, d.cancelled_by or "",
                CLOSE_OUTCOMES.get(d.cancel_outcome or "", d.cancel_outcome or ""), d.cancel_reason or ""))
        else:
            out.pending += 1
        if state in (LATE, OPEN_PAST_DUE):
            breaches[dept or NO_DEPARTMENT] += 1
    out.breach_departments = _top(breaches, n=len(breaches))
    out.cancellations.sort(key=lambda c: (c.cancelled_at, c.ticket_id, c.milestone))
    return out


# --------------------------------------------------------------------------- rendering


def shanghai_time(dt: datetime | None) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if dt else ""


def counts_text(items: list[Count], labels: dict[str, str] | None = None, unit: str = "") -> str:
    if not items:
        return "无"
    return "、".join(f"{(labels or {}).get(c.name, c.name)} {c.count}{unit}" for c in items)


def deadline_text(d: DeadlineState) -> str:
    s = f"{d.milestone}：截止 {shanghai_time(d.due_at)}，{d.state}"
    if d.state in (ON_TIME, LATE) and d.met_at is not None:
        s += f"（{shanghai_time(d.met_at)} 完成）"
    return s


def overview_lines(b: Brief) -> list[str]:
    o = b.overview
    sev = "、".join(f"{k} {o.tickets_by_severity.get(k, 0)}" for k in SEVERITIES)
    return [
        f"采集帖文 {o.posts} 条（{counts_text(o.posts_by_kind, KIND_LABEL)}），"
        f"其中政务舆情 {o.relevant_posts} 条、突发事件相关 {o.emergency_posts} 条。",
        f"新发事件 {o.new_events} 起，其中突发事件 {o.emergency_events} 起。",
        f"新建工单 {o.tickets_opened} 件：{sev}"
        + (f"；其中政务动态自动归档 {o.tickets_archived} 件（无需回应，不计时限）。" if o.tickets_archived else "。"),
        f"属地待定：帖文 {o.pending_place_posts} 条、事件 {o.pending_place_events} 起。",
    ]


def key_events_heading(b: Brief) -> str:
    shown = len(b.key_events)
    more = f"，列前 {shown} 起" if b.key_events_total > shown else ""
    return f"二、重点事件（共 {b.key_events_total} 起{more}）"


def timeliness_lines(b: Brief) -> list[str]:
    t = b.timeliness
    cancelled = f"，{CANCELLED} {t.cancelled}" if t.cancelled else ""
    lines = [
        f"本期到期节点 {t.due} 个：{ON_TIME} {t.on_time}，{LATE} {t.late}，"
        f"{OPEN_PAST_DUE} {t.open_past_deadline}，{PENDING} {t.pending}{cancelled}。",
        f"超时部门：{counts_text(t.breach_departments, unit=' 个')}。",
    ]
    if not t.cancellations:
        lines.append("撤销时限 0 件。")
        return lines
    kinds = Counter(c.outcome for c in t.cancellations)
    lines.append(f"撤销时限 {t.cancelled} 件（{counts_text(_top(kinds, n=len(kinds)), unit=' 件')}，不计超时）：")
    lines += [f"  {cancellation_text(c)}" for c in t.cancellations]
    return lines


def cancellation_text(c: CancelledDeadline) -> str:
    return (f"工单 #{c.ticket_id}「{c.milestone}」（{c.department}，截止 {shanghai_time(c.due_at)}）"
            f"由 {c.cancelled_by} 于 {shanghai_time(c.cancelled_at)} 撤销，理由：{c.reason}")


def brief_text(b: Brief) -> str:
    """Plain Chinese text for pasting into WeChat or e-mail."""
    lines = [
        b.title,
        f"统计时段：{shanghai_time(b.start)} 至 {shanghai_time(b.end)}（北京时间）；统计时点：{shanghai_time(b.as_of)}",
        "",
        "一、概况",
        *overview_lines(b),
        "",
        key_events_heading(b),
    ]
    if not b.key_events:
        lines.append("无。")
    for i, e in enumerate(b.key_events, 1):
        ticket = f"工单 #{e.ticket_id} {e.ticket_status_label}" if e.ticket_id is not None else "无工单"
        lines.append(f"{i}. 【{e.severity}】{e.title}（{e.place_label}）")
        lines.append(
            f"   首发 {shanghai_time(e.t0)}；帖文 {e.post_count} 条（本期 {e.posts_in_period} 条）；{ticket}；责任部门 {e.department}"
        )
        lines.extend(f"   {deadline_text(d)}" for d in e.deadlines)
    lines += ["", "三、时限执行", *timeliness_lines(b), "", "四、分布"]
    lines.append(f"话题：{counts_text(b.distribution.topics)}")
    lines.append(f"地区：{counts_text(b.distribution.places)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "Brief",
    "BriefParamError",
    "CancelledDeadline",
    "Count",
    "DeadlineState",
    "Distribution",
    "KeyEvent",
    "Overview",
    "Timeliness",
    "brief",
    "brief_text",
    "cancellation_text",
    "counts_text",
    "deadline_text",
    "key_events_heading",
    "overview_lines",
    "shanghai_time",
    "timeliness_lines",
    "parse_params",
    "period_bounds",
]
