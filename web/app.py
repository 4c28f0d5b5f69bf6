"""The app factory: settings, store, clock and search backend in one context,
one router per area (``web/routes``), templates and static files, and the
mapping of the responder's domain errors to HTTP statuses.

Routes (the README's Web API section lists them with their bodies):

* board — ``GET /``, ``GET /fragment/tickets`` (:mod:`web.routes.board`);
* tickets and events — pages ``/tickets/{id}``, ``/events/{id}``, the ticket
  API and the duty officer's actions (:mod:`web.routes.tickets`, rules in
  :mod:`responder.cases`); a ticket's clock rule, ``POST
  /api/tickets/{id}/clock-rule`` (:mod:`web.routes.clock_rules`, rules in
  :mod:`responder.clock_rules`);
* search — ``/search``, ``/api/search``, ``/api/search/export``, saved searches
  (:mod:`web.routes.search`, :mod:`responder.archive`);
* briefs — ``/briefs``, ``/api/briefs`` (:mod:`web.routes.briefs`);
* reports — ``/api/reports/timeliness`` (:mod:`web.routes.reports`);
* sources — ``/api/sources``, ``/metrics``, ``/api/notices/unrouted``,
  ``/api/healthz`` (:mod:`web.routes.sources`);
* sign-in — ``/login``, ``/logout``, ``/password``, ``/api/login``,
  ``/api/logout``, ``/api/me``, ``/api/password``, ``/api/openapi.json``
  (:mod:`web.routes.auth`);
* admin — ``/admin/users`` (and a user's page and forms), ``/admin/audit``,
  ``/api/admin/users…``, ``/api/admin/audit`` (:mod:`web.routes.admin`, rules
  in :mod:`responder.accounts`).

Every route declares who may use it (:func:`web.auth.require`, or
``web.auth.PUBLIC``); a test enumerates them (default deny). Every answer
carries the security headers of :mod:`web.security`.

Every request body is limited to ``web.max_body_bytes`` (413 without the rest
being read); a path id outside the database's integer range is 404 like any
unknown id; only http(s) URLs become links (:mod:`responder.safety`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from responder.archive import SearchParamError
from responder.brief import BriefParamError
from responder.cases import CaseError, Conflict, Forbidden, Invalid, NotFound
from responder.safety import BodyLimitMiddleware, id_out_of_range
from responder.search.base import SearchBackend
from responder.store import Store, utcnow
from web import auth
from web.context import WebContext
from web.errors import http_message, validation_errors, validation_message
from web.routes import admin, board, briefs, clock_rules, reports, search, sources, tickets, trends
from web.routes import auth as auth_routes
from web.security import SecurityHeadersMiddleware
from web.templating import STATIC, render
from yuqing.settings import Settings

# One router per area, in the order their routes are matched.
ROUTERS = tuple(m.router for m in (auth_routes, board, tickets, clock_rules, search, briefs, trends, reports, sources,
                                    admin))
# The status each domain error answers with.
CASE_STATUS: dict[type[CaseError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403}


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    now: Callable[[], datetime] = utcnow,
    search: SearchBackend | None = None,
) -> FastAPI:
    """The web app. ``store`` defaults to ``Store(settings.store_url)``; ``now`` is
    the clock; ``search`` defaults to the backend ``settings.search`` names,
    opened on the first search (and tried again while it cannot be opened)."""
    st = store or Store(settings.store_url)
    # No interactive docs (they load from a CDN and run inline script); the schema
    # is /api/openapi.json for signed-in users (web.routes.auth).
    app = FastAPI(title="舆情监测与回应", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = WebContext(settings=settings, store=st, now=now, search=search)
    app.state.store = st
    app.state.settings = settings
    # Every request body is bounded (413 without reading the rest), JSON and forms alike.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.web.max_body_bytes)
    # Outermost: every answer, a 413 included, carries the security headers.
    app.add_middleware(SecurityHeadersMiddleware, https=settings.web.base_url.strip().lower().startswith("https://"))
    auth.install(app)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Any:
        # A path id outside the database's integer range names nothing: 404, like
        # any unknown id, instead of an overflow inside the database driver.
        err = id_out_of_range(list(exc.errors()))
        if err is not None:
            msg = f"编号 {err.get('input')} 不存在"
            if auth.wants_page(request):
                return render("error.html", status_code=404, request=request, title="未找到", message=msg)
            return JSONResponse({"detail": msg}, status_code=404)
        # Anything else: Chinese, naming each field and what is wrong, never the value sent
        # (a 100 KB field is not sent back; web.errors).
        errors = list(exc.errors())
        msg = validation_message(errors)
        if auth.wants_page(request):
            return render("error.html", status_code=422, request=request, title="请求有误", message=msg)
        return JSONResponse({"detail": msg, "errors": validation_errors(errors)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's own English details (Not Found, Method Not Allowed…) in Chinese.
        msg = http_message(exc.status_code, exc.detail)
        headers = dict(exc.headers or {})
        if auth.wants_page(request) and exc.status_code not in (304, 401):
            page = render("error.html", status_code=exc.status_code, request=request,
                          title="未找到" if exc.status_code == 404 else "请求未能完成", message=msg)
            page.headers.update(headers)
            return page
        return JSONResponse({"detail": msg}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(CaseError)
    async def _case_error(request: Request, exc: CaseError) -> Response:
        status = CASE_STATUS.get(type(exc), 422)
        if auth.wants_page(request):  # a person following a link sees a page, not JSON
            return render("error.html", status_code=status, request=request,
                          title="未找到" if status == 404 else "无法完成操作", message=exc.message)
        return JSONResponse({"detail": exc.message}, status_code=status)

    @app.exception_handler(SearchParamError)
    async def _search_param(request: Request, exc: SearchParamError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message}
        if exc.suggestions:
            body["suggestions"] = exc.suggestions
        return JSONResponse(body, status_code=400)

    @app.exception_handler(BriefParamError)
    async def _brief_param(request: Request, exc: BriefParamError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=400)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


__all__ = ["CASE_STATUS", "ROUTERS", "create_app"]
