"""Operations: source health, metrics, notices nobody received, health check.

* ``GET /api/sources`` — every crawled source's latest health (from
  ``crawl.health``), problems first.
* ``GET /metrics`` — Prometheus text: source health, lag, error rate, tickets,
  notices nobody received, and each stage loop's health.
* ``GET /api/notices/unrouted`` — notices of the last 24 h that no recipient of
  ``config/notify.yaml`` covered, with why.
* ``GET /api/healthz`` — public: the database answers (503 when not).

``/metrics`` takes only an API token (``Authorization: Bearer``) of a user
with ``metrics.read``, and counts tickets and notices of that user's
jurisdiction; the rest need a signed-in user (:mod:`web.auth`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from responder.clocks import iso_shanghai
from responder.notify.unrouted import unrouted_summary
from responder.permissions import Actor, Permission
from responder.sources import metrics_text, source_views
from web.auth import PUBLIC, require
from web.context import WebContext, get_ctx

log = logging.getLogger("yuqing.web")
router = APIRouter()


@router.get("/api/sources")
def sources(ctx: WebContext = Depends(get_ctx),
            actor: Actor = Depends(require(Permission.SOURCES_READ))) -> dict[str, Any]:
    items = source_views(ctx.store)
    return {"now": iso_shanghai(ctx.now()), "alerts": sum(v["alert"] for v in items), "sources": items}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: WebContext = Depends(get_ctx),
            actor: Actor = Depends(require(Permission.METRICS_READ, token_only=True))) -> str:
    from stream.health import metrics_text as stage_metrics
    from stream.stage import STATE_DIR

    return metrics_text(ctx.store, ctx.now(), actor) + stage_metrics(ctx.settings.data_path(STATE_DIR))


@router.get("/api/notices/unrouted")
def notices_unrouted(ctx: WebContext = Depends(get_ctx),
                     actor: Actor = Depends(require(Permission.SOURCES_READ))) -> dict[str, Any]:
    n = ctx.now()
    return {"now": iso_shanghai(n), **unrouted_summary(ctx.store, n, actor, limit=200)}


@router.get("/api/healthz", dependencies=[PUBLIC])
def healthz(ctx: WebContext = Depends(get_ctx)) -> JSONResponse:
    """Public (load balancers, compose health checks): says only whether the
    database answers; no figures, and the error's detail goes to the log."""
    try:
        with ctx.store.reader() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # report, do not crash
        log.warning("健康检查：数据库不可用：%s: %s", type(e).__name__, e)
        return JSONResponse({"status": "error", "db": type(e).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "db": ctx.store.dialect})
