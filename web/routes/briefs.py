"""The daily and weekly brief (舆情日报/周报, :mod:`responder.brief`).

* ``GET /briefs?period=day|week&date=YYYY-MM-DD`` — the brief as a page
  (default: today in Shanghai, a day).
* ``GET /api/briefs?period=&date=[&as_of=]`` — the same as JSON (times ISO,
  Asia/Shanghai). A bad ``period``, ``date`` or ``as_of`` → 400 naming it.
* ``GET /briefs/download?period=&date=[&as_of=]&format=docx|pdf|xlsx`` — the
  same brief as a Word, PDF or Excel file with charts
  (:mod:`responder.brief_files`); a bad ``format`` → 400.

Every one is the signed-in user's jurisdiction (:func:`_brief`, the same
function for the page, the JSON and the files).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from responder.brief import (
    LATE,
    ON_TIME,
    OPEN_PAST_DUE,
    PENDING,
    PENDING_PLACE,
    PERIOD_LABEL,
    Brief,
    BriefParamError,
    brief,
    counts_text,
    key_events_heading,
    overview_lines,
    parse_params,
    timeliness_lines,
)
from responder.brief_files import FORMATS, MEDIA_TYPE, file_name, to_bytes, unit_name
from responder.permissions import Actor, Permission
from responder.trends import SPIKE_RULE
from web.auth import require
from web.context import WebContext, get_ctx
from web.routes.trends import chart_specs, charts_attr
from web.templating import render, render_str

router = APIRouter()

_STATE_CLASS = {ON_TIME: "state-ok", LATE: "state-late", OPEN_PAST_DUE: "state-breach", PENDING: "muted"}


def _brief(ctx: WebContext, actor: Actor, period: str | None, day: str | None, as_of: str | None) -> Brief:
    p, d, at = parse_params(period, day, as_of, ctx.now())  # BriefParamError → 400 (web.app)
    return brief(ctx.store, p, d, as_of=at, actor=actor)


def brief_context(b: Brief) -> dict[str, Any]:
    step = timedelta(days=1 if b.period == "day" else 7)
    other = "week" if b.period == "day" else "day"
    return {
        "title": b.title,
        "error": "",
        "b": b,
        "prev_day": (b.day - step).isoformat(),
        "next_day": (b.day + step).isoformat(),
        "other": other,
        "other_label": PERIOD_LABEL[other],
        "overview": overview_lines(b),
        "key_events_heading": key_events_heading(b),
        "timeliness": timeliness_lines(b),
        "topics": counts_text(b.distribution.topics),
        "places": counts_text(b.distribution.places),
        "pending_place": PENDING_PLACE,
        "state_class": _STATE_CLASS,
        "met_states": (ON_TIME, LATE),
        "charts": charts_attr(chart_specs(b)),
        "formats": (("docx", "Word"), ("pdf", "PDF"), ("xlsx", "Excel")),
        "spike_rule": SPIKE_RULE,
    }


def brief_html(b: Brief) -> str:
    """The brief as an HTML page; every stored string is escaped."""
    return render_str("brief.html", **brief_context(b))


@router.get("/api/briefs")
def api_brief(
    period: str | None = None,
    day: str | None = Query(None, alias="date"),
    as_of: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.BRIEF_READ)),
) -> dict[str, Any]:
    """The daily / weekly brief as JSON."""
    return _brief(ctx, actor, period, day, as_of).to_dict()


@router.get("/briefs", response_class=HTMLResponse)
def brief_page(
    request: Request,
    period: str | None = None,
    day: str | None = Query(None, alias="date"),
    as_of: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.BRIEF_READ)),
) -> HTMLResponse:
    """The daily / weekly brief (舆情日报/周报) as a page."""
    try:
        b = _brief(ctx, actor, period, day, as_of)
    except BriefParamError as e:
        return render("brief.html", status_code=400, request=request, title="舆情日报/周报", error=e.message)
    return render("brief.html", request=request, **brief_context(b))


@router.get("/briefs/download")
def brief_download(
    period: str | None = None,
    day: str | None = Query(None, alias="date"),
    as_of: str | None = None,
    fmt: str = Query("docx", alias="format"),
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.BRIEF_READ)),
) -> Response:
    """The brief as a file (Word, PDF, Excel), of the user's jurisdiction like the page."""
    if fmt not in FORMATS:
        raise BriefParamError("format", f"参数 format 只能是 {'、'.join(FORMATS)}，收到 {fmt!r}")
    b = _brief(ctx, actor, period, day, as_of)
    data = to_bytes(b, fmt, unit=unit_name(b.jurisdiction, ctx.settings.auth.root_jurisdiction))
    name = file_name(b, fmt)
    ascii_name = f"yuqing-brief-{b.period}-{b.first_day.isoformat()}.{fmt}"
    return Response(data, media_type=MEDIA_TYPE[fmt], headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"})
