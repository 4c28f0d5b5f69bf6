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
  ``PUT /api/searches/{id}`` ``{"name"?, "params"}``,
  ``DELETE /api/searches/{id}`` — saved searches and monitoring schemes
  (监测方案: ``params.scheme`` holds 地域词/主体词/事件词/排除词, see
  :mod:`responder.schemes`), owned by the signed-in user who saved them,
  listed on the page with their matches in the last 24 hours.
* ``POST /schemes`` (new), ``POST /schemes/{id}`` (edit),
  ``POST /schemes/{id}/delete`` — the page's scheme form (``csrf_token``
  field): 303 to the scheme's search; a refusal shows the page with the
  Chinese message (400/409/422). ``/search?edit={id}`` fills the form.
* ``GET /schemes/{id}`` — a scheme's matches: marks them seen by the
  signed-in user (the board's 新增) and redirects to its search.

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
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from responder import cases
from responder import schemes as schemes_mod
from responder.archive import (
    FACET_LABEL,
    FACET_PARAM,
    KIND_LABEL,
    MAX_PAGE_SIZE,
    SCHEME_GROUPS,
    SORT_LABEL,
    SearchParamError,
    SearchParams,
    export,
    export_csv,
    export_xlsx,
    hit_json,
    params_from,
    scheme_views,
    vocabulary,
)
from responder.archive import search as archive_search
from responder.cases import CaseError, NotFound
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor, Permission
from responder.safety import DbId, valid_id
from responder.search.base import FACET_FIELDS, SearchResult
from web.auth import require
from web.context import WebContext, get_ctx
from web.routes.tickets import _form_page as form_page  # an unknown scheme: the 404 page, not JSON
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


class EditSearch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


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
                suggestions: list[dict[str, str]] | None = None, place_label: str = "",
                form: dict[str, Any] | None = None, form_error: str = "",
                recipients: list[str] | None = None) -> HTMLResponse:
    return render(
        "search.html",
        status_code=status_code,
        request=request,
        p=p,
        error=error,
        form=form or _blank_form(),
        form_error=form_error,
        recipients=recipients or [],
        group_label=schemes_mod.GROUP_LABEL,
        groups=SCHEME_GROUPS,
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


def _notify(ctx: WebContext) -> Any | None:
    """``config/notify.yaml`` (its recipients are whom a scheme's alert may reach); None when absent or unreadable."""
    from responder.notify.config import load_notify

    try:
        return load_notify(ctx.settings.config_dir)
    except Exception:
        return None


def _blank_form() -> dict[str, Any]:
    return {"id": None, "name": "", "place": "", "kind": [], "severity": [], "alert": False, "notify": "",
            **{k: "" for k in SCHEME_GROUPS}}


def _form_of(view: dict[str, Any]) -> dict[str, Any]:
    """The scheme form filled with a saved search (``scheme_views`` item)."""
    d = view["params"]
    return {"id": view["id"], "name": view["name"], "place": d.get("place") or "", "kind": list(d.get("kind") or []),
            "severity": list(d.get("severity") or []), "alert": bool(d.get("alert")), "notify": d.get("notify") or "",
            **schemes_mod.scheme_fields(d)}


@router.get("/search", response_class=HTMLResponse)
def page(
    request: Request,
    p: SearchParams = Depends(search_params),
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.SEARCH)),
) -> HTMLResponse:
    schemes = scheme_views(ctx.store, ctx.search_backend(), actor, ctx.now(), p.vocab)
    edit = request.query_params.get("edit", "")
    chosen = next((v for v in schemes if str(v["id"]) == edit), None)
    extra: dict[str, Any] = {"recipients": schemes_mod.recipients_for(_notify(ctx), actor),
                             "form": _form_of(chosen) if chosen is not None else None}
    try:
        res = archive_search(ctx.require_search(), actor, p)
    except HTTPException as e:
        return search_page(request, p, None, str(e.detail), schemes, e.status_code, **extra)
    except SearchParamError as e:
        return search_page(request, p, None, e.message, schemes, 400, suggestions=e.suggestions, **extra)
    return search_page(request, p, res, "", schemes, place_label=p.place_of(actor)[1], **extra)


# --------------------------------------------------------------------------- the scheme form


async def _form_fields(request: Request) -> dict[str, list[str]]:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    return parse_qs((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)


def _scheme_form(f: dict[str, list[str]]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, params, the form as typed) from the scheme form's fields."""
    def one(k: str, limit: int = 2000) -> str:
        return (f.get(k) or [""])[0][:limit].strip()

    many = {k: [v.strip() for v in f.get(k) or [] if v.strip()] for k in ("kind", "severity")}
    typed = {"name": one("name", 200), "place": one("place", 100), "alert": one("alert") in ("1", "on", "true"),
             "notify": one("notify", 200), **many, **{k: one(k) for k in SCHEME_GROUPS}}
    params: dict[str, Any] = {"scheme": {k: schemes_mod.split_words(typed[k]) for k in SCHEME_GROUPS},
                              "place": typed["place"], **many, "alert": typed["alert"]}
    if typed["notify"]:
        params["notify"] = typed["notify"]
    return typed["name"], params, typed


def _empty_params(ctx: WebContext) -> SearchParams:
    return SearchParams("", "", [], [], [], "", "", "relevance", 1, 20, vocabulary(ctx.settings.config_dir))


def _form_refused(request: Request, ctx: WebContext, actor: Actor, typed: dict[str, Any], sid: int | None,
                  message: str, status: int, suggestions: list[dict[str, str]] | None = None) -> HTMLResponse:
    p = _empty_params(ctx)
    schemes = scheme_views(ctx.store, ctx.search_backend(), actor, ctx.now(), p.vocab)
    return search_page(request, p, None, "", schemes, status, form={**typed, "id": sid}, form_error=message,
                       recipients=schemes_mod.recipients_for(_notify(ctx), actor), suggestions=suggestions)


def _to_scheme(sid: int) -> RedirectResponse:
    return RedirectResponse(f"/schemes/{sid}", status_code=303)


def _scheme_id(raw: str) -> int:
    sid = int(raw) if raw.isdigit() and len(raw) <= 20 else 0
    if not valid_id(sid):
        raise NotFound(f"监测方案 {raw[:40]} 不存在")
    return sid


FORM_STATUS = {"Conflict": 409, "Invalid": 422, "Forbidden": 403}


async def _save_form(request: Request, ctx: WebContext, actor: Actor, sid: int | None) -> Response:
    name, params, typed = _scheme_form(await _form_fields(request))
    vocab, notify = vocabulary(ctx.settings.config_dir), _notify(ctx)
    try:
        if sid is None:
            sid = await run_in_threadpool(lambda: cases.save_search(ctx.store, actor, name, params, now=ctx.now(),
                                                                    notify=notify, vocab=vocab))
        else:
            done = sid
            await run_in_threadpool(lambda: cases.update_saved_search(ctx.store, actor, done, name, params,
                                                                      now=ctx.now(), notify=notify, vocab=vocab))
    except NotFound:
        raise
    except SearchParamError as e:
        return _form_refused(request, ctx, actor, typed, sid, e.message, 400, e.suggestions)
    except CaseError as e:
        return _form_refused(request, ctx, actor, typed, sid, e.message, FORM_STATUS.get(type(e).__name__, 422))
    return _to_scheme(sid)


@router.post("/schemes", response_class=HTMLResponse)
async def create_scheme_form(request: Request, ctx: WebContext = Depends(get_ctx),
                             actor: Actor = Depends(require(Permission.SAVED_SEARCH_WRITE))) -> Response:
    return await _save_form(request, ctx, actor, None)


@router.post("/schemes/{sid}", response_class=HTMLResponse)
@form_page
async def edit_scheme_form(sid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                           actor: Actor = Depends(require(Permission.SEARCH))) -> Response:
    """Its owner, or an admin who sees it (:func:`responder.cases.update_saved_search` decides)."""
    return await _save_form(request, ctx, actor, _scheme_id(sid))


@router.post("/schemes/{sid}/delete", response_class=HTMLResponse)
@form_page
async def delete_scheme_form(sid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                             actor: Actor = Depends(require(Permission.SEARCH))) -> Response:
    num = _scheme_id(sid)
    try:
        await run_in_threadpool(lambda: cases.delete_saved_search(ctx.store, actor, num, now=ctx.now()))
    except NotFound:
        raise
    except CaseError as e:
        return _form_refused(request, ctx, actor, _blank_form(), None, e.message,
                             FORM_STATUS.get(type(e).__name__, 422))
    return RedirectResponse("/search", status_code=303)


@router.get("/schemes/{sid}")
def open_scheme(sid: str, ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.SEARCH))) -> RedirectResponse:
    """A scheme's matches: seen from now on by this user (the board counts only newer ones)."""
    num = _scheme_id(sid)
    view = next((v for v in scheme_views(ctx.store, None, actor, ctx.now(), vocabulary(ctx.settings.config_dir))
                 if v["id"] == num), None)
    if view is None:
        raise NotFound(f"监测方案 {num} 不存在")
    schemes_mod.mark_seen(ctx.store, actor, num, ctx.now())
    p = params_from(view["params"], vocabulary(ctx.settings.config_dir))
    return RedirectResponse("/search" + p.link(sort="time"), status_code=303)


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
    vocab = vocabulary(ctx.settings.config_dir)
    rid = cases.save_search(ctx.store, actor, body.name, body.params, now=at, notify=_notify(ctx), vocab=vocab)
    item = next(v for v in scheme_views(ctx.store, ctx.search_backend(), actor, at, vocab) if v["id"] == rid)
    return JSONResponse(item, status_code=201)


@router.put("/api/searches/{sid}")
def edit_search(sid: DbId, body: EditSearch, ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.SEARCH))) -> dict[str, Any]:
    """Its owner, or an admin who sees it (as delete)."""
    at = ctx.now()
    vocab = vocabulary(ctx.settings.config_dir)
    cases.update_saved_search(ctx.store, actor, sid, body.name, body.params, now=at, notify=_notify(ctx),
                              vocab=vocab)
    return next(v for v in scheme_views(ctx.store, ctx.search_backend(), actor, at, vocab) if v["id"] == sid)


@router.delete("/api/searches/{sid}")
def delete_search(
    sid: DbId, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(require(Permission.SEARCH))
) -> dict[str, Any]:
    """Its owner, or an admin who sees it: :func:`responder.cases.delete_saved_search`
    decides (an admin holds no ``saved_search.write``, so only ``search`` is asked here)."""
    cases.delete_saved_search(ctx.store, actor, sid, now=ctx.now())
    return {"deleted": sid}
