"""The alert board (``GET /``) and its fragment (``GET /fragment/tickets``).

Tickets in the user's jurisdiction, by default the open ones most severe
first; each deadline with a countdown computed in the page from ``due_at``
(已超时 once past), an acknowledge button, refreshed every 5 s
(``web/static/board.js``); warning strips while a source is dark or blocked
and while notices reached nobody; the monitoring schemes (监测方案) with
matches the user has not opened yet (:func:`responder.schemes.unseen_for`).

Filters and order come in the query string, the same on the page and on its
fragment (the refresh sends the page's own query string):

* ``place`` — a division under the user's own, by code (``3401``) or name
  (``合肥``), or ``待定``; one outside the user's jurisdiction is 400
  "不在本人属地范围内", whether or not anything is there;
* ``severity`` — 特别重大 / 重大 / 较大 / 一般 (may repeat);
* ``state`` — ``open`` (default: 待确认 and 已确认), ``all``, or one of
  ``new`` / ``acknowledged`` / ``closed`` (or 待确认 / 已确认 / 已办结; may repeat);
* ``department`` — the ticket's department, exactly;
* ``overdue`` — ``1``: only tickets with an open deadline past due;
* ``sort`` — ``severity`` (default), ``deadline`` (soonest open deadline
  first), ``newest``.

A value the board cannot use answers 400 with a Chinese message; one longer
than :data:`MAX_VALUE` characters answers 422 without repeating it. The
query itself is :func:`responder.board.board_tickets`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from responder.archive import SearchParamError, vocabulary
from responder.board import (
    OPEN_STATES,
    SEVERITIES,
    SORTS,
    STATES,
    UNPLACED,
    BoardFilter,
    BoardFilterError,
    board_choices,
    board_tickets,
    parse_state,
)
from responder.cases import STATUS_LABEL
from responder.clocks import SHANGHAI
from responder.notify.unrouted import unrouted_summary
from responder.permissions import Actor, Permission
from responder.schemes import unseen_for
from responder.search.base import Scope
from responder.sources import source_views
from web.auth import require
from web.context import WebContext, get_ctx
from web.templating import render

router = APIRouter()

# The longest value a filter field takes (a place name, a department); longer is 422, not echoed.
MAX_VALUE = 100
# The query-string names the board reads, and how each reads in a message.
FIELDS = {"place": "属地", "severity": "级别", "state": "状态", "department": "部门", "overdue": "仅看超时",
          "sort": "排序"}
ALL = ("", "all", "全部")


class FilterTooLong(BoardFilterError):
    """A filter value over :data:`MAX_VALUE` characters (422)."""


def alerts(ctx: WebContext, now: datetime, actor: Actor) -> dict[str, Any]:
    """The context of ``_alerts.html``: sources with a problem, notices nobody
    received (in ``actor``'s jurisdiction)."""
    return {
        "bad_sources": [v for v in source_views(ctx.store) if v["alert"]],
        "unrouted": unrouted_summary(ctx.store, now, actor),
    }


def board_context(tickets: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    return {"tickets": tickets, "now": now, "now_iso": now.astimezone(SHANGHAI).isoformat()}


def _values(request: Request, name: str) -> list[str]:
    vals = request.query_params.getlist(name)
    for v in vals:
        if len(v) > MAX_VALUE:
            raise FilterTooLong(f"筛选条件“{FIELDS[name]}”过长（最多 {MAX_VALUE} 字），请重新选择")
    return [v.strip() for v in vals]


def _one(request: Request, name: str) -> str:
    vals = [v for v in _values(request, name) if v]
    if len(set(vals)) > 1:
        raise BoardFilterError(f"筛选条件有误：“{FIELDS[name]}”只能选一个")
    return vals[0] if vals else ""


def parse_filter(request: Request, ctx: WebContext, actor: Actor) -> BoardFilter:
    """The board's filter from the query string (:class:`BoardFilterError` for a bad value)."""
    place_in = _one(request, "place")
    place: str | None = None
    label = ""
    if place_in in (UNPLACED, "none"):
        place, label = UNPLACED, "属地待定"
    elif place_in not in ALL:
        try:
            place, label = vocabulary(ctx.settings.config_dir).place(place_in, Scope.of(actor))
        except SearchParamError as e:
            raise BoardFilterError(e.message.replace("检索条件有误", "筛选条件有误")) from None
    severities = tuple(dict.fromkeys(v for v in _values(request, "severity") if v not in ALL))
    states_in = [v for v in _values(request, "state") if v]
    if not states_in or "open" in states_in or "未办结" in states_in:
        states: tuple[str, ...] = OPEN_STATES
        states_in = [v for v in states_in if v not in ("open", "未办结")]
    else:
        states = ()
    if any(v in ("all", "全部") for v in states_in):
        states = STATES
    else:
        states = tuple(dict.fromkeys(states + tuple(parse_state(v) for v in states_in)))
    department = _one(request, "department")
    overdue_in = _one(request, "overdue").lower()
    if overdue_in not in ("", "0", "1", "true", "false", "on"):
        raise BoardFilterError("筛选条件有误：“仅看超时”只能是 1 或 0")
    sort = _one(request, "sort") or "severity"
    return BoardFilter(place=place, place_label=label, severities=severities, states=states,
                       department=department or None, overdue=overdue_in in ("1", "true", "on"), sort=sort)


def _state_choice(f: BoardFilter) -> str:
    """The state select's value for ``f``: open, all or one state."""
    if f.states == OPEN_STATES:
        return "open"
    if set(f.states) == set(STATES):
        return "all"
    return f.states[0] if len(f.states) == 1 else "open"


def _refused(request: Request, e: BoardFilterError, *, page: bool) -> HTMLResponse:
    status = 422 if isinstance(e, FilterTooLong) else 400
    if page:
        return render("error.html", status_code=status, request=request, title="筛选条件有误",
                      message=e.message + "。点上方“预警工单”清除筛选。")
    return render("_board_error.html", status_code=status, request=request, message=e.message)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.BOARD_VIEW))) -> HTMLResponse:
    n = ctx.now()
    try:
        f = parse_filter(request, ctx, actor)
        with ctx.store.reader() as s:
            tickets = board_tickets(s, actor, f, n)
            choices = board_choices(s, actor)
    except BoardFilterError as e:
        return _refused(request, e, page=True)
    # Monitoring schemes with matches this user has not opened yet (responder.schemes), within its jurisdiction.
    fresh = unseen_for(ctx.store, actor) if actor.can(Permission.SEARCH) else []
    return render("board.html", request=request, live=True, f=f, state_choice=_state_choice(f), choices=choices,
                  schemes_new=fresh,
                  SEVERITIES=SEVERITIES, SORTS=SORTS, STATUS_LABEL=STATUS_LABEL, UNPLACED=UNPLACED,
                  filtered=bool(request.query_params), **alerts(ctx, n, actor), **board_context(tickets, n))


@router.get("/fragment/tickets", response_class=HTMLResponse)
def fragment(request: Request, ctx: WebContext = Depends(get_ctx),
             actor: Actor = Depends(require(Permission.BOARD_VIEW))) -> HTMLResponse:
    n = ctx.now()
    try:
        f = parse_filter(request, ctx, actor)
        with ctx.store.reader() as s:
            tickets = board_tickets(s, actor, f, n)
    except BoardFilterError as e:
        return _refused(request, e, page=False)
    return render("fragment.html", request=request, live=True, **alerts(ctx, n, actor), **board_context(tickets, n))
