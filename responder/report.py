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
  neither met nor due by then is *pending* and counts in no rate.
* **on time** — met at or before ``due_at``.
* **breach** — met after ``due_at``, or not met and ``due_at <= as_of``.
* **open past deadline** — not met and ``due_at <= as_of`` (a subset of
  the breaches: still outstanding).
* **on-time rate** — on time / (on time + breaches); empty when both are 0.
* **time to milestone** — ``met_at - starts_at`` of every met deadline
  (on time or late). **median**: the middle value, the mean of the two
  middle ones for an even count. **p90**: nearest rank, the
  ``ceil(0.9 * n)``-th smallest value. Both in hours.
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

from responder.cases import scoped
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
    ("near_misses", "临界完成"),
    ("on_time_rate", "按时率"),
    ("median_hours", "用时中位数(小时)"),
    ("p90_hours", "用时90分位(小时)"),
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
    near_misses: int = 0
    on_time_rate: float | None = None
    median_hours: float | None = None
    p90_hours: float | None = None
    durations_s: list[float] = field(default_factory=list, repr=False)


@dataclass
class Report:
    date_from: date
    date_to: date
    by: str
    as_of: datetime
    rows: list[Row]
    # The jurisdiction it covers (a division-code prefix; "" = everything).
    jurisdiction: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "by": self.by,
            "as_of": iso_shanghai(self.as_of),
            "jurisdiction": self.jurisdiction,
            "definitions": {
                "on_time_rate": "按时 / (按时 + 超时)",
                "breach": "超期完成，或截至统计时点已到期仍未完成",
                "near_miss": "按时完成但落在时限窗口的最后10%",
                "p90": "最近秩法：第 ceil(0.9n) 小的用时",
            },
            "rows": [{k: v for k, v in asdict(r).items() if k != "durations_s"} for r in self.rows],
        }

    def to_text(self) -> str:
        lines = [
            f"回应及时性统计 {self.date_from}～{self.date_to}（按{'部门' if self.by == 'department' else '地区'}，"
            f"统计时点 {iso_shanghai(self.as_of)}"
            f"{f'，辖区 {self.jurisdiction}' if self.jurisdiction else ''}）",
            "\t".join(label for _k, label in COLUMNS),
        ]
        for r in self.rows:
            lines.append("\t".join(_cell(getattr(r, k)) for k, _l in COLUMNS))
        return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


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
    if d.met_at is not None:
        r.met += 1
        r.durations_s.append((d.met_at - d.starts_at).total_seconds())
        if d.met_at <= d.due_at:
            r.on_time += 1
            if d.met_at > d.due_at - (d.due_at - d.starts_at) * NEAR_MISS_FRACTION:
                r.near_misses += 1
        else:
            r.breaches += 1
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
) -> Report:
    """The figures for deadlines whose T0 falls in [date_from, date_to] (Shanghai days),
    of the tickets in ``actor``'s jurisdiction."""
    if by not in ("department", "region"):
        raise ValueError("by must be department or region")
    if date_to < date_from:
        raise ValueError("to is before from")
    as_of = as_of or utcnow()
    start = datetime.combine(date_from, time(0), tzinfo=SHANGHAI)
    end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    groups: dict[tuple[str, str], Row] = {}
    totals: dict[str, Row] = {}
    with store.reader() as s:
        rows = s.execute(
            scoped(
                select(Deadline, Ticket.department, Ticket.place_label)
                .join(Ticket, Ticket.id == Deadline.ticket_id)
                .where(Deadline.starts_at >= start, Deadline.starts_at < end),
                actor,
                Ticket.place_code,
            ).order_by(Deadline.id)
        ).all()
    for d, dept, place in rows:
        g = (dept or "未指定") if by == "department" else (place or "待定")
        key = (g, d.milestone)
        if key not in groups:
            groups[key] = Row(g, d.milestone)
        if d.milestone not in totals:
            totals[d.milestone] = Row(TOTAL, d.milestone)
        _add(groups[key], d, as_of)
        _add(totals[d.milestone], d, as_of)
    out = [groups[k] for k in sorted(groups)] + [totals[k] for k in sorted(totals)]
    for r in out:
        _finish(r)
    return Report(date_from, date_to, by, as_of, out, scope_prefix(actor))


def write_csv(rep: Report, path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # BOM: Excel opens it as UTF-8
        w = csv.writer(f)
        w.writerow([label for _k, label in COLUMNS])
        # Groups are department names an officer typed and place labels: never formulas.
        for r in rep.rows:
            w.writerow(spreadsheet_row(["" if getattr(r, k) is None else getattr(r, k) for k, _l in COLUMNS]))


def write_xlsx(rep: Report, path: str | Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "回应及时性"
    ws.append([f"统计区间 {rep.date_from}～{rep.date_to}，统计时点 {iso_shanghai(rep.as_of)}"])
    ws.append([label for _k, label in COLUMNS])
    # openpyxl stores any text beginning with "=" as a formula: neutralise it first.
    for r in rep.rows:
        ws.append(spreadsheet_row([getattr(r, k) for k, _l in COLUMNS]))
    wb.save(str(path))




__all__ = ["Report", "Row", "timeliness", "write_csv", "write_xlsx"]
