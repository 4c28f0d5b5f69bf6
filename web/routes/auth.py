"""Sign-in, sign-out and the own password (rules in :mod:`responder.accounts`).

* ``GET /login?next=`` — the sign-in page; ``POST /login`` (form: ``username``,
  ``password``, ``next``, ``csrf_token``) starts a session and goes to ``next``
  when it is a path on this site (no open redirect), else to ``/``.
* ``POST /api/login`` ``{"username", "password"}`` — the same for scripts:
  sets the session cookie and answers the user and the session's
  ``csrf_token`` (for the ``X-CSRF-Token`` header). Wrong name or password:
  401; locked: 429 with ``Retry-After``; disabled: 403.
* ``POST /logout`` (form) and ``POST /api/logout`` — end the session.
* ``GET /password``, ``POST /password`` (form: ``old``, ``new``, ``confirm``),
  ``POST /api/password`` ``{"old", "new"}`` — change the own password; the
  only pages a user whose password must be changed can reach.
* ``GET /api/openapi.json`` — the API schema, for signed-in users.

The session cookie (:data:`web.auth.SESSION_COOKIE`) holds a random token
(the store keeps its hash), HttpOnly, SameSite=Lax, Secure when
``web.base_url`` is https. The sign-in form itself carries a CSRF token
checked against a short-lived cookie (double submit), so no other site can
sign a browser in under another account.
"""

from __future__ import annotations

import hmac
import math
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from responder import accounts
from responder.permissions import Actor
from web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_REFUSED,
    PUBLIC,
    SESSION_COOKIE,
    current_actor,
    form_fields,
    local_next,
    signed_in,
)
from web.context import WebContext, client_addr, get_ctx
from web.templating import render

router = APIRouter()

LOGIN_CSRF_COOKIE = "yuqing_login_csrf"
LOGIN_EXPIRED = "登录页面已过期，请重新输入"
PASSWORDS_DIFFER = "两次输入的新密码不一致"


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=accounts.MAX_PASSWORD_CHARS)


class PasswordIn(BaseModel):
    old: str = Field(min_length=1, max_length=accounts.MAX_PASSWORD_CHARS)
    new: str = Field(min_length=1, max_length=accounts.MAX_PASSWORD_CHARS)


def _secure(ctx: WebContext) -> bool:
    return ctx.settings.web.base_url.strip().lower().startswith("https://")


def set_session_cookie(response: Response, ctx: WebContext, token: str) -> None:
    # A browser-session cookie: closing the browser signs out; the store enforces
    # the idle and absolute limits either way.
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=_secure(ctx), path="/")


def clear_session_cookie(response: Response, ctx: WebContext) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=_secure(ctx), path="/")


def _refusal(e: accounts.AuthError, now: datetime) -> tuple[int, dict[str, str]]:
    """The status (and headers) of a refused sign-in."""
    if isinstance(e, accounts.AccountLocked):
        wait = max(1, math.ceil((e.until - now).total_seconds()))
        return 429, {"Retry-After": str(wait)}
    if isinstance(e, accounts.AccountDisabled):
        return 403, {}
    return 401, {}


def _login(ctx: WebContext, request: Request, username: str, password: str) -> tuple[str, Actor]:
    return accounts.login(ctx.store, username, password, client_addr(request), ctx.now(), settings=ctx.settings)


# --------------------------------------------------------------------------- pages


def _login_page(ctx: WebContext, next_path: str, error: str = "", username: str = "",
                status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = render("login.html", status_code=status_code, error=error, username=username, next=next_path,
                  csrf_token=token)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(ctx),
                    path="/login", max_age=3600)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


@router.get("/login", response_class=HTMLResponse, dependencies=[PUBLIC])
async def login_page(request: Request, next: str = "/", ctx: WebContext = Depends(get_ctx)) -> Response:
    target = local_next(next)
    if await current_actor(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(ctx, target)


@router.post("/login", response_class=HTMLResponse, dependencies=[PUBLIC])
async def login_form(request: Request, ctx: WebContext = Depends(get_ctx)) -> Response:
    f = await form_fields(request)
    target = local_next(f.get("next"))
    username = f.get("username", "").strip()[:64]
    sent, expected = f.get(CSRF_FIELD, ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_page(ctx, target, LOGIN_EXPIRED, username, 403)
    try:
        token, actor = await run_in_threadpool(_login, ctx, request, username, f.get("password", ""))
    except accounts.AuthError as e:
        status, headers = _refusal(e, ctx.now())
        return _login_page(ctx, target, str(e), username, status, headers)
    if actor.must_change:
        target = f"/password?next={quote(target, safe='')}" if target != "/" else "/password"
    resp = RedirectResponse(target, status_code=303)
    set_session_cookie(resp, ctx, token)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout", dependencies=[PUBLIC])
async def logout_form(request: Request, ctx: WebContext = Depends(get_ctx)) -> Response:
    """Sign out (a live session needs its CSRF token: no other site can sign a user out)."""
    done = await _logout(request, ctx)
    if isinstance(done, Response):
        return render("error.html", status_code=403, request=request, title="退出登录", message=CSRF_REFUSED)
    out = RedirectResponse("/login", status_code=303)
    clear_session_cookie(out, ctx)
    return out


async def _logout(request: Request, ctx: WebContext) -> Response | bool:
    actor = await current_actor(request)
    if actor is not None and actor.via == "session":
        sent = request.headers.get(CSRF_HEADER) or (await form_fields(request)).get(CSRF_FIELD)
        if not actor.check_csrf(sent):
            return JSONResponse({"detail": CSRF_REFUSED}, status_code=403)
        return await run_in_threadpool(accounts.end_session, ctx.store, request.cookies.get(SESSION_COOKIE),
                                       ctx.now(), remote_addr=client_addr(request))
    return False


def _password_page(request: Request, ctx: WebContext, actor: Actor, target: str, error: str = "",
                   status_code: int = 200) -> HTMLResponse:
    a = ctx.settings.auth
    return render("password.html", status_code=status_code, request=request, error=error, next=target,
                  forced=actor.must_change, min_length=a.password_min_length, classes=a.password_classes)


@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, next: str = "/", ctx: WebContext = Depends(get_ctx),
                  actor: Actor = Depends(signed_in(while_must_change=True))) -> HTMLResponse:
    return _password_page(request, ctx, actor, local_next(next))


@router.post("/password", response_class=HTMLResponse)
async def password_form(request: Request, ctx: WebContext = Depends(get_ctx),
                        actor: Actor = Depends(signed_in(while_must_change=True))) -> Response:
    f = await form_fields(request)
    target = local_next(f.get("next"))
    new = f.get("new", "")
    error = ""
    if new != f.get("confirm", ""):
        error = PASSWORDS_DIFFER
    else:
        try:
            await run_in_threadpool(_change, ctx, actor, f.get("old", ""), new)
        except accounts.AuthError as e:
            error = str(e)
    if error:
        return _password_page(request, ctx, actor, target, error, 400)
    return RedirectResponse(target, status_code=303)


def _change(ctx: WebContext, actor: Actor, old: str, new: str) -> None:
    accounts.change_password(ctx.store, actor, old, new, settings=ctx.settings, now=ctx.now())


# --------------------------------------------------------------------------- API


def _me(actor: Actor) -> dict[str, Any]:
    return {
        "username": actor.username,
        "display_name": actor.display_name,
        "role": actor.role.value if actor.role else None,
        "role_label": actor.role_label,
        "jurisdiction": actor.jurisdiction,
        "department": actor.department,
        "must_change": actor.must_change,
        "via": actor.via,
    }


@router.post("/api/login", dependencies=[PUBLIC])
async def api_login(body: LoginIn, request: Request, ctx: WebContext = Depends(get_ctx)) -> JSONResponse:
    try:
        token, actor = await run_in_threadpool(_login, ctx, request, body.username, body.password)
    except accounts.AuthError as e:
        status, headers = _refusal(e, ctx.now())
        return JSONResponse({"detail": str(e)}, status_code=status, headers=headers)
    resp = JSONResponse({**_me(actor), "csrf_token": actor.csrf_token, "csrf_header": CSRF_HEADER})
    set_session_cookie(resp, ctx, token)
    return resp


@router.post("/api/logout", dependencies=[PUBLIC])
async def api_logout(request: Request, ctx: WebContext = Depends(get_ctx)) -> Response:
    done = await _logout(request, ctx)
    if isinstance(done, Response):
        return done
    resp = JSONResponse({"signed_out": bool(done)})
    clear_session_cookie(resp, ctx)
    return resp


@router.get("/api/me")
def api_me(actor: Actor = Depends(signed_in(while_must_change=True))) -> dict[str, Any]:
    """Who is signed in (and the session's CSRF token, for scripts that signed in with a cookie)."""
    return {**_me(actor), "csrf_token": actor.csrf_token}


@router.post("/api/password")
async def api_password(body: PasswordIn, ctx: WebContext = Depends(get_ctx),
                       actor: Actor = Depends(signed_in(while_must_change=True))) -> JSONResponse:
    try:
        await run_in_threadpool(_change, ctx, actor, body.old, body.new)
    except accounts.AuthError as e:
        return JSONResponse({"detail": str(e)}, status_code=400)
    return JSONResponse({"changed": True})


@router.get("/api/openapi.json")
def openapi(request: Request, actor: Actor = Depends(signed_in())) -> dict[str, Any]:
    """The API schema (for signed-in users; the interactive docs would need a CDN and inline script)."""
    return request.app.openapi()  # type: ignore[no-any-return]
