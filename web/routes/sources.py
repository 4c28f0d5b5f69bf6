"""Operations: source health, metrics, notices nobody received, health check.

* ``GET /api/sources`` — every crawled source's latest health (from
  ``crawl.health``), problems first.
* ``GET /metrics`` — Prometheus text: source health, lag, error rate, tickets,
  notices nobody received, and each stage loop's health.
* ``GET /api/notices/unrouted`` — notices of the last 24 h that no recipient of
  ``config/notify.yaml`` covered, with why.
* ``GET /api/healthz`` — the database answers (503 with the error when not).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from responder.clocks import iso_shanghai
from responder.notify.unrouted import unrouted_summary
from responder.permissions import Actor
from responder.sources import metrics_text, source_views
from responder.store import Ticket
from web.context import WebContext, get_ctx, viewer

router = APIRouter()


@router.get("/api/sources")
def sources(ctx: WebContext = Depends(get_ctx)) -> dict[str, Any]:
    items = source_views(ctx.store)
    return {"now": iso_shanghai(ctx.now()), "alerts": sum(v["alert"] for v in items), "sources": items}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: WebContext = Depends(get_ctx)) -> str:
    from stream.health import metrics_text as stage_metrics
    from stream.stage import STATE_DIR

    return metrics_text(ctx.store, ctx.now()) + stage_metrics(ctx.settings.data_path(STATE_DIR))


@router.get("/api/notices/unrouted")
def notices_unrouted(ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(viewer)) -> dict[str, Any]:
    n = ctx.now()
    return {"now": iso_shanghai(n), **unrouted_summary(ctx.store, n, actor, limit=200)}


@router.get("/api/healthz")
def healthz(ctx: WebContext = Depends(get_ctx)) -> JSONResponse:
    try:
        with ctx.store.reader() as s:
            s.execute(text("SELECT 1"))
            n_open = s.scalar(select(func.count()).select_from(Ticket).where(Ticket.status != "closed"))
    except Exception as e:  # report, do not crash
        return JSONResponse({"status": "error", "db": f"{type(e).__name__}: {e}"}, status_code=503)
    return JSONResponse({"status": "ok", "db": ctx.store.dialect, "open_tickets": int(n_open or 0)})
