"""Who is asking, and may they: the one dependency every route declares.

* ``Depends(require(Permission.X))`` — the acting
  :class:`~responder.permissions.Actor` of the request: an API token
  (``Authorization: Bearer yq_…``) or the session cookie
  (:data:`SESSION_COOKIE`), resolved through :mod:`responder.accounts`.
  Not signed in: 401 (JSON for the API, fragments, ``/metrics`` and every
  non-GET; a redirect to ``/login?next=…`` for pages). The role lacks the
  permission: 403 (for a state-changing request, audited as
  ``permission_denied``). A session's state-changing request (anything but GET,
  HEAD, OPTIONS) must carry its CSRF token in the :data:`CSRF_HEADER` header
  or a ``csrf_token`` form field, else 403; tokens need none (no browser
  sends them by itself).
* ``Depends(signed_in())`` — any signed-in user (their own password, the
  API schema).
* ``dependencies=[PUBLIC]`` — explicitly public (the sign-in page, the health
  check); :data:`PUBLIC_MOUNTS` — mounted apps that are public (``/static``).

A user whose password must be changed (generated or reset) reaches only the
password page and sign-out: pages redirect to ``/password``, the API answers
403. :func:`route_access` says what a route declared, for the default-deny test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount

from responder import accounts
from responder.permissions import Actor, Permission
from web.context import WebContext, client_addr

SESSION_COOKIE = "yuqing_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Mounted apps anyone may fetch (CSS and JS; nothing about the data).
PUBLIC_MOUNTS = frozenset({"/static"})
# What a route may declare besides a Permission.
AUTHENTICATED = "authenticated"
PUBLIC_ACCESS = "public"
# The attribute on a dependency callable that says what it requires.
ACCESS_ATTR = "__yuqing_access__"

NOT_SIGNED_IN = "未登录或登录已过期，请重新登录"
MUST_CHANGE = "须先修改初始密码（或重置后的密码）才能继续使用"
CSRF_REFUSED = "请求缺少有效的 CSRF 令牌（请刷新页面后重试）"
TOKEN_ONLY = "此接口只接受 API 令牌（Authorization: Bearer）"


class SignInRequired(Exception):
    """Nobody (alive) is signed in: 401, or a redirect to the sign-in page."""


class PasswordChangeRequired(Exception):
    """The user must change the password first: a redirect, or 403 for the API."""


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


# --------------------------------------------------------------------------- who


def ctx_of(request: Request) -> WebContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def bearer_token(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def resolve_actor(request: Request) -> Actor | None:
    """The actor of the request (cached on ``request.state``), or None.

    A bearer token, when given, decides alone: a bad one is not made good by a
    cookie. Blocking (store reads): call from a thread."""
    if hasattr(request.state, "actor"):
        return request.state.actor  # type: ignore[no-any-return]
    ctx = ctx_of(request)
    addr = client_addr(request)
    token = bearer_token(request)
    if request.headers.get("authorization"):
        actor = accounts.resolve_token(ctx.store, token, ctx.now(), settings=ctx.settings, remote_addr=addr)
    else:
        actor = accounts.resolve_session(ctx.store, request.cookies.get(SESSION_COOKIE), ctx.now(),
                                         settings=ctx.settings, remote_addr=addr)
    request.state.actor = actor
    return actor


async def current_actor(request: Request) -> Actor | None:
    return await run_in_threadpool(resolve_actor, request)


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as fields (first value of
    each); {} for anything else. The body is already bounded (web.max_body_bytes)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


async def submitted_csrf(request: Request) -> str | None:
    return request.headers.get(CSRF_HEADER) or (await form_fields(request)).get(CSRF_FIELD)


# --------------------------------------------------------------------------- the dependency


def _mark(fn: Callable[..., Any], access: Permission | str) -> Callable[..., Any]:
    setattr(fn, ACCESS_ATTR, access)
    return fn


def require(
    perm: Permission | None,
    *,
    token_only: bool = False,
    while_must_change: bool = False,
) -> Callable[[Request], Awaitable[Actor]]:
    """A FastAPI dependency: the request's :class:`Actor`, who must hold ``perm``
    (None: any signed-in user). ``token_only``: refuse sessions (``/metrics``).
    ``while_must_change``: reachable before the forced password change."""

    async def dependency(request: Request) -> Actor:
        actor = await current_actor(request)
        if actor is None:
            raise SignInRequired()
        if token_only and actor.via != "token":
            raise Forbidden(TOKEN_ONLY)
        if actor.must_change and not while_must_change:
            raise PasswordChangeRequired()
        if perm is not None and not actor.can(perm):
            if request.method not in SAFE_METHODS:
                # An action the role may not take is audited as denied (reads are not).
                ctx = ctx_of(request)
                await run_in_threadpool(
                    accounts.audit_alone, ctx.store, actor, "permission_denied", "denied",
                    {"permission": perm.value, "method": request.method, "path": request.url.path[:300]},
                    ctx.now(), place_code=actor.jurisdiction or None,
                )
            raise Forbidden(f"无权执行此操作（{actor.role_label}）")
        if request.method not in SAFE_METHODS and not actor.check_csrf(await submitted_csrf(request)):
            raise Forbidden(CSRF_REFUSED)
        return actor

    dependency.__name__ = f"require_{perm.value.replace('.', '_') if perm else 'signed_in'}"
    return _mark(dependency, perm if perm is not None else AUTHENTICATED)  # type: ignore[return-value]


def signed_in(*, while_must_change: bool = False) -> Callable[[Request], Awaitable[Actor]]:
    """Any signed-in user (no particular permission)."""
    return require(None, while_must_change=while_must_change)


def _public() -> None:
    """Marks a route as public (no sign-in)."""


_mark(_public, PUBLIC_ACCESS)
PUBLIC = Depends(_public)


def iter_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route an app answers, included routers expanded (FastAPI keeps
    them as one entry each, with their prefix and dependencies applied)."""
    for r in routes:
        candidates = getattr(r, "effective_candidates", None)
        if candidates is None:
            yield r
            continue
        yield from iter_routes(candidates())
        yield from getattr(r, "effective_low_priority_routes", list)()


def route_access(route: BaseRoute) -> Permission | str | None:
    """What a route declared: a Permission, :data:`AUTHENTICATED`,
    :data:`PUBLIC_ACCESS`, or None (nothing: the default-deny test fails)."""
    if isinstance(route, Mount):
        return PUBLIC_ACCESS if route.path in PUBLIC_MOUNTS else None
    dependant: Dependant | None = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found = list(_accesses(dependant.dependencies))
    return found[0] if found else None


def _accesses(deps: Iterable[Dependant]) -> Iterable[Permission | str]:
    for d in deps:
        access = getattr(d.call, ACCESS_ATTR, None)
        if access is not None:
            yield access
        yield from _accesses(d.dependencies)


# --------------------------------------------------------------------------- answers


def wants_page(request: Request) -> bool:
    """A page a person opened (redirect to sign-in), not a script's request (401)."""
    path = request.url.path
    return request.method in ("GET", "HEAD") and not path.startswith(("/api/", "/fragment/", "/metrics"))


def is_local_path(target: str | None) -> bool:
    """Whether ``target`` is a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def local_next(target: str | None, default: str = "/") -> str:
    return target if target is not None and is_local_path(target) else default


def _here(request: Request) -> str:
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def login_url(next_path: str | None) -> str:
    return "/login" if not next_path or next_path == "/" else f"/login?next={quote(next_path, safe='')}"


def install(app: FastAPI) -> None:
    """The answers to the refusals above, on ``app``."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if wants_page(request):
            return RedirectResponse(login_url(_here(request)), status_code=303)
        if request.url.path.startswith("/metrics"):
            return PlainTextResponse(NOT_SIGNED_IN, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse({"detail": NOT_SIGNED_IN}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PasswordChangeRequired)
    async def _must_change(request: Request, exc: PasswordChangeRequired) -> Response:
        if wants_page(request):
            return RedirectResponse(f"/password?next={quote(_here(request), safe='')}", status_code=303)
        return JSONResponse({"detail": MUST_CHANGE}, status_code=403)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if wants_page(request):
            from web.templating import render

            return render("error.html", status_code=403, request=request, title="无权访问", message=exc.message)
        return JSONResponse({"detail": exc.message}, status_code=403)


__all__ = [
    "AUTHENTICATED", "CSRF_FIELD", "CSRF_HEADER", "PUBLIC", "PUBLIC_ACCESS", "PUBLIC_MOUNTS", "SESSION_COOKIE",
    "Forbidden", "PasswordChangeRequired", "SignInRequired", "bearer_token", "current_actor", "form_fields",
    "install", "is_local_path", "iter_routes", "local_next", "login_url", "require", "resolve_actor", "route_access",
    "signed_in", "submitted_csrf",
]
