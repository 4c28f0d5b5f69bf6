"""The alert board (``GET /``) and its fragment (``GET /fragment/tickets``).

Open tickets, most severe first, each deadline with a countdown computed in
the page from ``due_at`` (已超时 once past), an acknowledge button, refreshed
every 5 s (``web/static/board.js``); warning strips while a source is dark or
blocked and while notices reached nobody.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from responder.cases import open_tickets
from responder.clocks import SHANGHAI
from responder.notify.unrouted import unrouted_summary
from responder.permissions import Actor, Permission
from responder.sources import source_views
from web.auth import require
from web.context import WebContext, get_ctx
from web.templating import render

router = APIRouter()


def alerts(ctx: WebContext, now: datetime, actor: Actor) -> dict[str, Any]:
    """The context of ``_alerts.html``: sources with a problem, notices nobody
    received (in ``actor``'s jurisdiction)."""
    return {
        "bad_sources": [v for v in source_views(ctx.store) if v["alert"]],
        "unrouted": unrouted_summary(ctx.store, now, actor),
    }


def board_context(tickets: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    return {"tickets": tickets, "now": now, "now_iso": now.astimezone(SHANGHAI).isoformat()}


@router.get("/", response_class=HTMLResponse)
def index(request: Request, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.BOARD_VIEW))) -> HTMLResponse:
    n = ctx.now()
    with ctx.store.reader() as s:
        tickets = open_tickets(s, actor, n)
    return render("board.html", request=request, live=True, **alerts(ctx, n, actor), **board_context(tickets, n))


@router.get("/fragment/tickets", response_class=HTMLResponse)
def fragment(request: Request, ctx: WebContext = Depends(get_ctx),
             actor: Actor = Depends(require(Permission.BOARD_VIEW))) -> HTMLResponse:
    n = ctx.now()
    with ctx.store.reader() as s:
        tickets = open_tickets(s, actor, n)
    return render("fragment.html", request=request, **alerts(ctx, n, actor), **board_context(tickets, n))
