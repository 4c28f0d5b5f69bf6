"""The analyst's archive search (SPEC §1); the query, export and saved-search
rules are :mod:`responder.archive` and :mod:`responder.cases`.

* ``GET /search`` — the search page: keywords, jurisdiction, source kind,
  topic, severity, date range and order; hits with highlighted snippets, facet
  counts that narrow the search with one click, pages, CSV and Excel export links.
* ``GET /api/search`` — the same as JSON: ``total``, ``page``, ``size``,
  ``hits`` (times in Asia/Shanghai) and ``facets``.
* ``GET /api/search/export[?format=csv|xlsx]`` — CSV (or Excel: the same
  rows) of every match, newest first (at most
  ``archive.EXPORT_MAX`` rows); ``X-Total-Count`` gives the full count and
  ``X-Truncated`` says when rows were left out.
* ``GET /api/searches``, ``POST /api/searches`` ``{"name", "params"}``,
  ``DELETE /api/searches/{id}`` — saved searches (监测方案), owned by the
  signed-in user who saved them, listed on the page with their matches in
  the last 24 hours.

Every export is audited (who, which query, how many rows) by
:func:`responder.archive.export`.

A bad parameter gets 400 naming it (the page shows the message with the form;
the API answers ``{"detail", "suggestions"}``, suggestions being the places an
ambiguous or unknown place name may mean); no backend, 503. ``place`` takes a
division code or a place name (合肥 → 3401); the rules are
:class:`responder.archive.Vocabulary`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, Field, field_validator

from responder import cases
from responder.archive import (
    FACET_LABEL,
    FACET_PARAM,
    KIND_LABEL,
    MAX_PAGE_SIZE,
    SORT_LABEL,
    SearchParamError,
    SearchParams,
    export,
    export_csv,
    export_xlsx,
    hit_json,
    scheme_views,
    vocabulary,
)
from responder.archive import search as archive_search
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor, Permission
from responder.safety import DbId
from responder.search.base import FACET_FIELDS, SearchResult
from web.auth import require
from web.context import WebContext, get_ctx
from web.templating import SEVERITY_COLOUR, render

router = APIRouter()


def search_params(
    q: str = "",
    place: str = "",
    kind: list[str] = Query([]),
    topic: list[str] = Query([]),
    severity: list[str] = Query([]),
    date_from: str = Query("", alias="from"),
    date_to: str = Query("", alias="to"),
    sort: str = "relevance",
    page: int = Query(1, ge=1, le=10_000),
    size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
    ctx: WebContext = Depends(get_ctx),
) -> SearchParams:
    """The query-string parameters of every route below (checked against this config's places and topics)."""
    clean = [[x.strip() for x in v if x.strip()] for v in (kind, topic, severity)]
    return SearchParams(q, place, *clean, date_from, date_to, sort, page, size, vocabulary(ctx.settings.config_dir))


class SaveSearch(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


# --------------------------------------------------------------------------- page


def _page_context(p: SearchParams, res: SearchResult | None) -> dict[str, Any]:
    """What ``search.html`` shows besides the form: facets, hits, pages."""
    if res is None:
        return {"res": None}
    facets = []
    for name in FACET_FIELDS:
        counts = res.facets.get(name) or {}
        if not counts:
            continue
        param = FACET_PARAM[name]
        chosen = getattr(p, param)
        links = []
        for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            on = value in chosen
            links.append({
                "label": KIND_LABEL.get(value, value) if name == "source_kind" else value,
                "count": n,
                "on": on,
                "href": p.link(**{param: [] if on else [value], "page": 1}),
            })
        facets.append({"label": FACET_LABEL[name], "links": links})
    hits = []
    for h in res.hits:
        meta = [h.published_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
                KIND_LABEL.get(h.source_kind, h.source_kind), h.source_id, h.place_label or "待定",
                h.topic or "", h.severity or ""]
        hits.append({
            "url": h.url,
            # Escaped by the search backend; their only markup is <em>.
            "title_html": Markup(h.title_html or "（无标题）"),
            "snippet": Markup(h.snippet),
            "meta": [x for x in meta if x],
            "event_id": h.event_id,
        })
    pages = max(1, -(-res.total // p.size))
    return {
        "res": res,
        "facets": facets,
        "hits": hits,
        "pages": pages,
        "prev_query": p.link(page=p.page - 1) if p.page > 1 else None,
        "next_query": p.link(page=p.page + 1) if p.page < pages else None,
        "export_query": p.link(page=None, size=None),
    }


def search_page(request: Request, p: SearchParams, res: SearchResult | None, error: str,
                schemes: list[dict[str, Any]], status_code: int = 200, *,
                suggestions: list[dict[str, str]] | None = None, place_label: str = "") -> HTMLResponse:
    return render(
        "search.html",
        status_code=status_code,
        request=request,
        p=p,
        error=error,
        suggestions=[{**x, "href": p.link(place=x["code"], page=1)} for x in suggestions or []],
        place_label=place_label,
        schemes=schemes,
        kinds={"": "全部来源", **KIND_LABEL},
        severities={"": "全部级别", **{s: s for s in SEVERITY_COLOUR}},
        sorts=SORT_LABEL,
        chosen_kind=p.kind[0] if len(p.kind) == 1 else "",
        chosen_severity=p.severity[0] if len(p.severity) == 1 else "",
        saved_params=json.dumps(p.saved(), ensure_ascii=False),
        **_page_context(p, res),
    )


@router.get("/search", response_class=HTMLResponse)
def page(
    request: Request,
    p: SearchParams = Depends(search_params),
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.SEARCH)),
) -> HTMLResponse:
    schemes = scheme_views(ctx.store, ctx.search_backend(), actor, ctx.now(), p.vocab)
    try:
        res = archive_search(ctx.require_search(), actor, p)
    except HTTPException as e:
        return search_page(request, p, None, str(e.detail), schemes, e.status_code)
    except SearchParamError as e:
        return search_page(request, p, None, e.message, schemes, 400, suggestions=e.suggestions)
    return search_page(request, p, res, "", schemes, place_label=p.place_of(actor)[1])


# --------------------------------------------------------------------------- API


@router.get("/api/search")
def api_search(
    p: SearchParams = Depends(search_params),
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.SEARCH)),
) -> dict[str, Any]:
    res = archive_search(ctx.require_search(), actor, p)
    return {"total": res.total, "page": p.page, "size": p.size,
            "hits": [hit_json(h) for h in res.hits], "facets": res.facets}


@router.get("/api/search/export")
def api_export(
    p: SearchParams = Depends(search_params),
    fmt: str = Query("csv", alias="format", pattern="^(csv|xlsx)$"),
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.SEARCH_EXPORT)),
) -> Response:
    hits, total = export(ctx.store, ctx.require_search(), actor, p, now=ctx.now())
    stamp = datetime.now(SHANGHAI).strftime("%Y%m%d-%H%M")
    name = quote(f"舆情检索_{stamp}.{fmt}")
    headers = {
        "Content-Disposition": f"attachment; filename=\"yuqing-search-{stamp}.{fmt}\"; filename*=UTF-8''{name}",
        "X-Total-Count": str(total),
        "X-Truncated": "true" if total > len(hits) else "false",
    }
    if fmt == "xlsx":
        return Response(export_xlsx(hits, total=total), headers=headers,
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    return Response(export_csv(hits), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/api/searches")
def list_searches(ctx: WebContext = Depends(get_ctx),
                  actor: Actor = Depends(require(Permission.SEARCH))) -> dict[str, Any]:
    return {"now": iso_shanghai(ctx.now()),
            "searches": scheme_views(ctx.store, ctx.search_backend(), actor, ctx.now(),
                                     vocabulary(ctx.settings.config_dir))}


@router.post("/api/searches", status_code=201)
def save_search(body: SaveSearch, ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.SAVED_SEARCH_WRITE))) -> JSONResponse:
    at = ctx.now()
    rid = cases.save_search(ctx.store, actor, body.name, body.params, now=at)
    vocab = vocabulary(ctx.settings.config_dir)
    item = next(v for v in scheme_views(ctx.store, ctx.search_backend(), actor, at, vocab) if v["id"] == rid)
    return JSONResponse(item, status_code=201)


@router.delete("/api/searches/{sid}")
def delete_search(
    sid: DbId, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(require(Permission.SEARCH))
) -> dict[str, Any]:
    """Its owner, or an admin who sees it: :func:`responder.cases.delete_saved_search`
    decides (an admin holds no ``saved_search.write``, so only ``search`` is asked here)."""
    cases.delete_saved_search(ctx.store, actor, sid, now=ctx.now())
    return {"deleted": sid}
