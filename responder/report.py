"""Timeliness figures (SPEC §6 考核): per department or region, per milestone.

Computed from the deadline rows alone (``deadlines`` joined to ``tickets``),
so the same archive and the same ``as_of`` always give the same figures.

Definitions (all times compared exactly, no rounding before the end):

* **period** — a deadline belongs to the period when its T0 (``starts_at``,
  the event's earliest publication) falls on a day from ``from`` to ``to``
  inclusive, days in Asia/Shanghai.
* **group** — ``department``: the ticket's responsible department (未指定
  when none); ``region``: the ticket's place label (待定 when unknown).
* **as_of** — the moment the figures describe (default: now). A deadline
  is *met* when ``met_at <= as_of`` and *cancelled* when ``cancelled_at <=
  as_of``; one neither met, cancelled nor due by then is *pending* and
  counts in no rate.
* **on time** — met at or before ``due_at``.
* **breach** — met after ``due_at``, or not met (nor cancelled) and
  ``due_at <= as_of``.
* **open past deadline** — not met and ``due_at <= as_of`` (a subset of
  the breaches: still outstanding).
* **cancelled (撤销)** — the ticket was closed as 无需回应（政务动态） or 误报,
  or merged into another, while the milestone was open
  (:func:`responder.cases.close`): no breach, in no rate, counted apart,
  each listed with who cancelled it, when and why (``cancellations``).
* **on-time rate** — on time / (on time + breaches); empty when both are 0.
  Shown as a percentage with one decimal (text, CSV, xlsx; JSON keeps the
  fraction).
* **time to milestone** — ``met_at - starts_at`` of every met deadline
  (on time or late). **median**: the middle value, the mean of the two
  middle ones for an even count. **p90**: nearest rank, the
  ``ceil(0.9 * n)``-th smallest value. JSON: hours (4 decimals); text,
  CSV and xlsx: 小时:分 (``46:05``), rounded to the nearest minute.
* **near miss** — met on time but within the last 10 % of its window,
  i.e. ``met_at > due_at - 0.1 * (due_at - starts_at)``.
* **scope** — only the tickets whose place is in the acting user's
  jurisdiction (a filter inside the query; 待定 only at the root
  jurisdiction). The CLI has full access and may narrow it with
  ``--jurisdiction CODE``.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from responder.cases import CLOSE_OUTCOMES, scoped
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor, scope_prefix
from responder.safety import spreadsheet_row
from responder.store import Deadline, Store, Ticket, utcnow

NEAR_MISS_FRACTION = 0.1
TOTAL = "合计"
COLUMNS = [
    ("group", "分组"),
    ("milestone", "节点"),
    ("total", "总数"),
    ("met", "已完成"),
    ("on_time", "按时"),
    ("breaches", "超时"),
    ("open_past_deadline", "超时未完成"),
    ("pending", "未到期"),
    ("cancelled", "撤销"),
    ("near_misses", "临界完成"),
    ("on_time_rate", "按时率"),
    ("median_hours", "用时中位数(小时:分)"),
    ("p90_hours", "用时90分位(小时:分)"),
]
CANCEL_COLUMNS = [
    ("ticket_id", "工单"),
    ("group", "分组"),
    ("milestone", "节点"),
    ("due_at", "截止时间"),
    ("overdue", "撤销时已超时"),
    ("cancelled_at", "撤销时间"),
    ("cancelled_by", "撤销人"),
    ("outcome", "办结结果"),
    ("reason", "理由"),
]


@dataclass
class Row:
    group: str
    milestone: str
    total: int = 0
    met: int = 0
    on_time: int = 0
    breaches: int = 0
    open_past_deadline: int = 0
    pending: int = 0
    cancelled: int = 0
    near_misses: int = 0
    on_time_rate: float | None = None
    median_hours: float | None = None
    p90_hours: float | None = None
    durations_s: list[float] = field(default_factory=list, repr=False)


@dataclass
class Cancellation:
    """One cancelled deadline (撤销时限): whose, and who cancelled it, when and why."""

    ticket_id: int
    group: str
    milestone: str
    due_at: datetime
    cancelled_at: datetime
    cancelled_by: str
    outcome: str  # the close outcome's label (误报, 无需回应（政务动态）, 已合并)
    reason: str
    overdue: bool  # already past due when cancelled

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["due_at"], d["cancelled_at"] = iso_shanghai(self.due_at), iso_shanghai(self.cancelled_at)
        return d

    def text(self) -> str:
        late = "（撤销时已超时）" if self.overdue else ""
        return (f"工单 #{self.ticket_id}「{self.milestone}」（{self.group}，截止 {_minute(self.due_at)}）"
                f"由 {self.cancelled_by} 于 {_minute(self.cancelled_at)} 撤销{late}，理由：{self.reason}")


@dataclass
class Report:
    date_from: date
    date_to: date
    by: str
    as_of: datetime
    rows: list[Row]
    # The jurisdiction it covers (a division-code prefix; "" = everything).
    jurisdiction: str = ""
    cancellations: list[Cancellation] = field(default_factory=list)
    # The place it was narrowed to (a division-code prefix or 待定; "" = the whole jurisdiction).
    place: str = ""
    place_label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "by": self.by,
            "as_of": iso_shanghai(self.as_of),
            "jurisdiction": self.jurisdiction,
            "place": self.place,
            "place_label": self.place_label,
            "definitions": {
                "on_time_rate": "按时 / (按时 + 超时)",
                "breach": "超期完成，或截至统计时点已到期仍未完成",
                "near_miss": "按时完成但落在时限窗口的最后10%",
                "p90": "最近秩法：第 ceil(0.9n) 小的用时",
                "cancelled": "工单以「无需回应（政务动态）」「误报」办结或被合并时未完成的节点：撤销，不计超时、不计入按时率",
                "durations": "median_hours / p90_hours 以小时计；文本、CSV、Excel 中为 小时:分",
            },
            "rows": [{k: v for k, v in asdict(r).items() if k != "durations_s"} for r in self.rows],
            "cancellations": [c.to_dict() for c in self.cancellations],
        }

    def to_text(self) -> str:
        lines = [
            f"回应及时性统计 {self.date_from}～{self.date_to}（按{'部门' if self.by == 'department' else '地区'}，"
            f"统计时点 {iso_shanghai(self.as_of)}"
            f"{f'，辖区 {self.jurisdiction}' if self.jurisdiction else ''}）",
            "\t".join(label for _k, label in COLUMNS),
        ]
        for r in self.rows:
            lines.append("\t".join("-" if (v := shown(r, k)) is None else str(v) for k, _l in COLUMNS))
        lines += ["", f"撤销时限 {len(self.cancellations)} 件{'：' if self.cancellations else '。'}"]
        lines += [f"  {c.text()}" for c in self.cancellations]
        return "\n".join(lines)


def _minute(dt: datetime) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def percent(on_time: int, decided: int) -> str | None:
    """An on-time rate as people read it: ``2/3`` → ``66.7%``; None when nothing was decided."""
    if not decided:
        return None
    return f"{on_time * 100 / decided:.1f}%"


def hours_minutes(seconds: float | None) -> str | None:
    """A duration as 小时:分, rounded to the nearest minute: ``9000`` → ``2:30``."""
    if seconds is None:
        return None
    minutes = math.floor(seconds / 60 + 0.5)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}"


def shown(r: Row, key: str) -> Any:
    """A cell of the text, CSV and xlsx: rates as percentages, durations as 小时:分,
    counts as numbers; None when there is nothing to show."""
    if key == "on_time_rate":
        return percent(r.on_time, r.on_time + r.breaches)
    if key == "median_hours":
        return hours_minutes(statistics.median(r.durations_s) if r.durations_s else None)
    if key == "p90_hours":
        return hours_minutes(_p90(r.durations_s) if r.durations_s else None)
    return getattr(r, key)


def _p90(values: list[float]) -> float:
    s = sorted(values)
    return s[math.ceil(0.9 * len(s)) - 1]


def _finish(r: Row) -> None:
    decided = r.on_time + r.breaches
    r.on_time_rate = round(r.on_time / decided, 6) if decided else None
    if r.durations_s:
        r.median_hours = round(statistics.median(r.durations_s) / 3600, 4)
        r.p90_hours = round(_p90(r.durations_s) / 3600, 4)


def _add(r: Row, d: Deadline, as_of: datetime) -> None:
    r.total += 1
    if d.met_at is not None and d.met_at <= as_of:
        r.met += 1
        r.durations_s.append((d.met_at - d.starts_at).total_seconds())
        if d.met_at <= d.due_at:
            r.on_time += 1
            if d.met_at > d.due_at - (d.due_at - d.starts_at) * NEAR_MISS_FRACTION:
                r.near_misses += 1
        else:
            r.breaches += 1
    elif d.cancelled_at is not None and d.cancelled_at <= as_of:
        r.cancelled += 1
    elif d.due_at <= as_of:
        r.breaches += 1
        r.open_past_deadline += 1
    else:
        r.pending += 1


def timeliness(
    store: Store,
    date_from: date,
    date_to: date,
    *,
    by: str = "department",
    as_of: datetime | None = None,
    actor: Actor,
    place: str | None = None,
    place_label: str = "",
) -> Report:
    """The figures for deadlines whose T0 falls in [date_from, date_to] (Shanghai days),
    of the tickets in ``actor``'s jurisdiction; ``place``: only those under this division-code
    prefix (``""`` or None: all; :data:`UNPLACED`: those whose place is 待定). The caller
    resolves a place name and refuses one outside the jurisdiction (web/routes/reports.py)."""
    if by not in ("department", "region"):
        raise ValueError("by must be department or region")
    if date_to < date_from:
        raise ValueError("to is before from")
    as_of = as_of or utcnow()
    start = datetime.combine(date_from, time(0), tzinfo=SHANGHAI)
    end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    groups: dict[tuple[str, str], Row] = {}
    totals: dict[str, Row] = {}
    cancellations: list[Cancellation] = []
    with store.reader() as s:
        rows = s.execute(
            scoped(
                select(Deadline, Ticket.department, Ticket.place_label)
                .join(Ticket, Ticket.id == Deadline.ticket_id)
                .where(Deadline.starts_at >= start, Deadline.starts_at < end)
                .where(*_place_filter(place)),
                actor,
                Ticket.place_code,
            ).order_by(Deadline.id)
        ).all()
    for d, dept, label in rows:
        g = (dept or "未指定") if by == "department" else (label or "待定")
        key = (g, d.milestone)
        if key not in groups:
            groups[key] = Row(g, d.milestone)
        if d.milestone not in totals:
            totals[d.milestone] = Row(TOTAL, d.milestone)
        _add(groups[key], d, as_of)
        _add(totals[d.milestone], d, as_of)
        if (d.cancelled_at is not None and d.cancelled_at <= as_of
                and not (d.met_at is not None and d.met_at <= as_of)):
            cancellations.append(Cancellation(
                d.ticket_id, g, d.milestone, d.due_at, d.cancelled_at, d.cancelled_by or "",
                CLOSE_OUTCOMES.get(d.cancel_outcome or "", d.cancel_outcome or ""), d.cancel_reason or "",
                d.due_at <= d.cancelled_at))
    out = [groups[k] for k in sorted(groups)] + [totals[k] for k in sorted(totals)]
    for r in out:
        _finish(r)
    cancellations.sort(key=lambda c: (c.cancelled_at, c.ticket_id, c.milestone))
    return Report(date_from, date_to, by, as_of, out, scope_prefix(actor), cancellations, place or "", place_label)


UNPLACED = "待定"


def _place_filter(place: str | None) -> list[Any]:
    if not place:
        return []
    if place == UNPLACED:
        return [Ticket.place_code.is_(None)]
    return [Ticket.place_code.like(place + "%")]


def _table(rep: Report) -> list[list[Any]]:
    """The header and rows of the text, CSV and xlsx: rates in %, durations in 小时:分.
    Groups are department names and place labels: never formulas (spreadsheet_row)."""
    return [[label for _k, label in COLUMNS]] + [
        spreadsheet_row(["" if (v := shown(r, k)) is None else v for k, _l in COLUMNS]) for r in rep.rows
    ]


def _cancel_table(rep: Report) -> list[list[Any]]:
    rows = []
    for c in rep.cancellations:
        d = c.to_dict()
        d["overdue"] = "是" if c.overdue else "否"
        rows.append(spreadsheet_row([d[k] for k, _l in CANCEL_COLUMNS]))
    return [[label for _k, label in CANCEL_COLUMNS]] + rows


def write_csv(rep: Report, path: str | Path) -> None:
    """The figures table; the cancellations are in the text, JSON and xlsx
    (``撤销`` counts them per row here)."""
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # BOM: Excel opens it as UTF-8
        csv.writer(f).writerows(_table(rep))


def write_xlsx(rep: Report, path: str | Path) -> None:
    """Sheet 回应及时性: the figures; sheet 撤销时限: each cancelled deadline, who and why."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "回应及时性"
    ws.append([f"统计区间 {rep.date_from}～{rep.date_to}，统计时点 {iso_shanghai(rep.as_of)}"])
    # openpyxl stores any text beginning with "=" as a formula: neutralised in _table.
    for row in _table(rep):
        ws.append(row)
    wc = wb.create_sheet("撤销时限")
    wc.append([f"撤销时限 {len(rep.cancellations)} 件（工单以「无需回应（政务动态）」「误报」办结或被合并时未完成的节点）"])
    for row in _cancel_table(rep):
        wc.append(row)
    wb.save(str(path))


__all__ = ["Cancellation", "Report", "Row", "hours_minutes", "percent", "shown", "timeliness", "write_csv", "write_xlsx"]
