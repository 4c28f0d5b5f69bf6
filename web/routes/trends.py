"""Trends (舆情趋势): the charts of a day or a week, and their data.

* ``GET /trends?period=day|week&date=YYYY-MM-DD`` — the page (default: the
  week containing today, Shanghai): posts per hour (日) or day (周) by source
  kind with new events and the spikes marked, tickets by severity, topics,
  places, and each department's on-time rate.
* ``GET /api/trends?period=&date=[&as_of=]`` — the same figures as JSON.

The figures are those of the brief (:func:`responder.brief.brief`, same
scope: the acting user's jurisdiction) and, for the on-time rates, of the
timeliness report (:func:`responder.report.timeliness`, by department, the
deadlines whose T0 falls in the period). Drawn by ECharts in the browser
(``/static/charts.js``; the data travels in a ``data-charts`` attribute:
the CSP allows no inline script).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from responder.archive import KIND_LABEL
from responder.brief import (
    CANCELLED,
    LATE,
    ON_TIME,
    OPEN_PAST_DUE,
    PENDING,
    PERIOD_LABEL,
    SEVERITIES,
    Brief,
    BriefParamError,
    brief,
    parse_params,
)
from responder.permissions import Actor, Permission
from responder.report import TOTAL, Report, percent, timeliness
from responder.trends import SPIKE_RULE, spike_text, volume_dict
from web.auth import require
from web.context import WebContext, get_ctx
from web.templating import render

router = APIRouter()


@dataclass
class DepartmentRate:
    department: str
    on_time: int
    breaches: int
    rate: float | None  # on_time / (on_time + breaches); None when nothing was decided

    @property
    def rate_text(self) -> str:
        return percent(self.on_time, self.on_time + self.breaches) or "—"


def department_rates(rep: Report) -> list[DepartmentRate]:
    """Each department's on-time rate over all its milestones (the report's rows summed)."""
    acc: dict[str, list[int]] = {}
    for r in rep.rows:
        if r.group == TOTAL:
            continue
        a = acc.setdefault(r.group, [0, 0])
        a[0] += r.on_time
        a[1] += r.breaches
    out = [DepartmentRate(d, a, b, round(a / (a + b), 6) if a + b else None) for d, (a, b) in acc.items()]
    out.sort(key=lambda x: (x.rate is None, -(x.rate or 0), x.department))
    return out


def volume_chart(b: Brief) -> dict[str, Any] | None:
    if b.volume is None:
        return None
    v = volume_dict(b.volume, KIND_LABEL)
    return {"id": "chart-volume", "kind": "volume",
            "title": f"帖文量（按来源类型）与新发事件（{'每小时' if b.volume.bucket == 'hour' else '每日'}）",
            "labels": v["labels"], "series": [{"name": s["label"], "data": s["data"]} for s in v["posts_by_kind"]],
            "events": v["events"], "total": v["posts_total"],
            "spikes": [{"bucket": x.bucket, "place": x.place, "count": x.count, "text": spike_text(x)}
                       for x in b.volume.spikes]}


def _bar(cid: str, title: str, labels: list[str], values: list[Any], *, horizontal: bool = False,
         unit: str = "", color: str = "#1565c0") -> dict[str, Any]:
    return {"id": cid, "kind": "barh" if horizontal else "bar", "title": title, "labels": labels,
            "values": values, "unit": unit, "color": color}


def chart_specs(b: Brief, rates: list[DepartmentRate] | None = None) -> list[dict[str, Any]]:
    """What charts.js draws: the brief's figures (and the departments' rates) only."""
    o, t, d = b.overview, b.timeliness, b.distribution
    out = [c for c in [volume_chart(b)] if c is not None]
    out.append(_bar("chart-severity", "新建工单级别分布（件）", list(SEVERITIES),
                    [o.tickets_by_severity.get(k, 0) for k in SEVERITIES], unit="件", color="#ef6c00"))
    out.append(_bar("chart-deadlines", "本期到期时限节点执行情况（个）", [ON_TIME, LATE, OPEN_PAST_DUE, PENDING, CANCELLED],
                    [t.on_time, t.late, t.open_past_deadline, t.pending, t.cancelled], unit="个", color="#2e7d32"))
    out.append(_bar("chart-topics", "话题分布（政务舆情帖文，条）", [c.name for c in d.topics],
                    [c.count for c in d.topics], horizontal=True, unit="条"))
    out.append(_bar("chart-places", "地区分布（政务舆情帖文，条）", [c.name for c in d.places],
                    [c.count for c in d.places], horizontal=True, unit="条", color="#6a1b9a"))
    if rates is not None:
        decided = [r for r in rates if r.rate is not None]
        out.append(_bar("chart-rates", "各部门按时率（%，时限起算在本期内的节点）", [r.department for r in decided],
                        [round(r.rate * 100, 1) for r in decided if r.rate is not None], horizontal=True,
                        unit="%", color="#00838f"))
    return out


def charts_attr(specs: list[dict[str, Any]]) -> str:
    """The charts' data as JSON for a ``data-charts`` attribute (Jinja escapes it)."""
    return json.dumps(specs, ensure_ascii=False, separators=(",", ":"))


def _trends(ctx: WebContext, actor: Actor, period: str | None, day: str | None,
            as_of: str | None) -> tuple[Brief, list[DepartmentRate]]:
    p, d, at = parse_params(period or "week", day, as_of, ctx.now())
    b = brief(ctx.store, p, d, as_of=at, actor=actor)
    rep = timeliness(ctx.store, b.first_day, b.last_day, by="department", as_of=at, actor=actor)
    return b, department_rates(rep)


@router.get("/api/trends")
def api_trends(
    period: str | None = None,
    day: str | None = Query(None, alias="date"),
    as_of: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.REPORT_READ)),
) -> dict[str, Any]:
    """Posts and events over time, spikes, distributions and departments' on-time rates."""
    b, rates = _trends(ctx, actor, period, day, as_of)
    o = b.overview
    return {
        "title": b.title.replace("舆情日报", "舆情趋势").replace("舆情周报", "舆情趋势"),
        "period": b.period, "first_day": b.first_day.isoformat(), "last_day": b.last_day.isoformat(),
        "jurisdiction": b.jurisdiction,
        "volume": volume_dict(b.volume, KIND_LABEL) if b.volume is not None else None,
        "tickets_by_severity": o.tickets_by_severity,
        "topics": [{"name": c.name, "count": c.count} for c in b.distribution.topics],
        "places": [{"name": c.name, "count": c.count} for c in b.distribution.places],
        "departments": [{"department": r.department, "on_time": r.on_time, "breaches": r.breaches,
                         "on_time_rate": r.rate, "on_time_rate_text": r.rate_text} for r in rates],
        "definitions": {"spike": SPIKE_RULE, "on_time_rate": "按时 / (按时 + 超时)，时限起算（T0）在本期内的节点"},
    }


@router.get("/trends", response_class=HTMLResponse)
def trends_page(
    request: Request,
    period: str | None = None,
    day: str | None = Query(None, alias="date"),
    as_of: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.REPORT_READ)),
) -> HTMLResponse:
    """The trend charts (舆情趋势) of a day or a week."""
    try:
        b, rates = _trends(ctx, actor, period, day, as_of)
    except BriefParamError as e:
        return render("trends.html", status_code=400, request=request, title="舆情趋势", error=e.message)
    other = "week" if b.period == "day" else "day"
    step = 1 if b.period == "day" else 7
    return render(
        "trends.html", request=request, error="", b=b, rates=rates,
        title=b.title.replace("舆情日报", "舆情趋势（日）").replace("舆情周报", "舆情趋势（周）"),
        charts=charts_attr(chart_specs(b, rates)), spikes=[spike_text(x) for x in (b.volume.spikes if b.volume else [])],
        spike_rule=SPIKE_RULE, other=other, other_label=PERIOD_LABEL[other].replace("报", ""),
        prev_day=(b.day - timedelta(days=step)).isoformat(), next_day=(b.day + timedelta(days=step)).isoformat(),
    )
