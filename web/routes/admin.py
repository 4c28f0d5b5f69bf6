"""The admin pages: users and the audit, within the admin's own jurisdiction
(rules in :mod:`responder.accounts`).

* ``GET /admin/users`` — the users within the admin's jurisdiction and a form
  to create one; ``GET /admin/users/{username}`` — one user, a form to change
  the display name, role, jurisdiction and department, and buttons to disable,
  enable or reset the password.
* Forms (``csrf_token`` field): ``POST /admin/users`` (``username``,
  ``display_name``, ``role``, ``jurisdiction``, ``department``) answers the
  new user's page with the generated password, shown this once;
  ``POST /admin/users/{username}`` (the same fields but the username),
  ``…/disable`` and ``…/enable`` go back to the user's page (303);
  ``…/reset-password`` answers the user's page with the new password, shown
  this once (the store keeps only its hash; the user must change it at the
  next sign-in).
* JSON for scripts: ``GET /api/admin/users``, ``POST /api/admin/users``
  ``{"username", "role", "jurisdiction", "department", "display_name",
  "password"}`` (201; without ``password`` one is generated and answered
  once), ``GET /api/admin/users/{username}``, ``POST /api/admin/users/{username}``
  ``{"role", "jurisdiction", "department", "display_name"}`` (only what is
  given), ``POST /api/admin/users/{username}/disable|enable|reset-password``.
* ``GET /admin/audit`` and ``GET /api/admin/audit`` — the audit within the
  admin's jurisdiction (:func:`responder.accounts.list_audit` scopes it in the
  query), newest first, filtered by ``user``, ``action``, ``outcome`` and
  ``from``/``to`` (days in Asia/Shanghai, inclusive), paged (``page``,
  ``size``).

A user outside the admin's jurisdiction is 404, like an unknown one. A refused
change (a jurisdiction above the admin's own, a bad role or code, a weak
password, one's own role) answers 422 with the domain's Chinese message and
changes nothing; a bad audit filter 400. Every change and every refusal is
audited under the signed-in admin (:mod:`responder.accounts`).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from responder import accounts
from responder.clocks import iso_shanghai
from responder.permissions import ROLE_LABEL, Actor, Permission, Role, place_prefix
from web.auth import form_fields, require
from web.context import WebContext, get_ctx
from web.templating import jurisdiction_label, render

router = APIRouter()

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The notes a form's redirect leaves on the user's page (?done=…); nothing else is shown.
DONE = {
    "updated": "已保存修改",
    "disabled": "已停用该账户：其登录会话和 API 令牌即刻失效",
    "enabled": "已启用该账户",
}
USERS = require(Permission.USERS_MANAGE)
AUDIT = require(Permission.AUDIT_READ)


# Bounds against abuse only: the domain refuses what is too long in Chinese.
class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=40)
    jurisdiction: str = Field(max_length=20)
    department: str | None = Field(None, max_length=1000)
    display_name: str | None = Field(None, max_length=1000)
    # Chosen by the operator: no forced change (responder.accounts.create_user). None: generated.
    password: str | None = Field(None, max_length=accounts.MAX_PASSWORD_CHARS)


class UserUpdate(BaseModel):
    role: str | None = Field(None, max_length=40)
    jurisdiction: str | None = Field(None, max_length=20)
    department: str | None = Field(None, max_length=1000)
    display_name: str | None = Field(None, max_length=1000)


class AuditFilterError(ValueError):
    """A bad audit filter (400); the message is Chinese."""


# --------------------------------------------------------------------------- views


def role_label(role: str | None) -> str:
    """An audit row's role as people read it (``cli`` is the command line)."""
    if role is None:
        return ""
    if role == "cli":
        return "命令行"
    try:
        return ROLE_LABEL[Role(role)]
    except ValueError:
        return role


def user_json(u: accounts.User, now: datetime) -> dict[str, Any]:
    locked = u.locked_until is not None and u.locked_until > now
    return {
        "username": u.username,
        "display_name": u.display_name,
        "role": u.role.value,
        "role_label": u.role_label,
        "jurisdiction": u.jurisdiction,
        "jurisdiction_label": jurisdiction_label(u.jurisdiction),
        "department": u.department,
        "active": u.active,
        "must_change": u.must_change,
        "locked_until": iso_shanghai(u.locked_until) if locked else None,
        "created_at": iso_shanghai(u.created_at),
        "changed_at": iso_shanghai(u.changed_at),
    }


def audit_json(e: accounts.AuditEntry) -> dict[str, Any]:
    request = e.detail.get("request")
    subject = e.detail.get("username") or (request.get("username") if isinstance(request, dict) else None)
    place = place_prefix(e.place_code)
    return {
        "id": e.id,
        "at": iso_shanghai(e.at),
        "actor": e.actor,
        "actor_role": e.actor_role,
        "actor_role_label": role_label(e.actor_role),
        "actor_jurisdiction": e.actor_jurisdiction,
        "actor_jurisdiction_label": None if e.actor_jurisdiction is None else jurisdiction_label(e.actor_jurisdiction),
        "action": e.action,
        "action_label": accounts.action_label(e.action),
        "outcome": e.outcome,
        "outcome_label": accounts.OUTCOME_LABEL.get(e.outcome, e.outcome),
        "ticket_id": e.ticket_id,
        "event_id": e.event_id,
        "user": subject if isinstance(subject, str) else None,
        "place_code": e.place_code,
        "place_label": None if place is None else jurisdiction_label(place),
        "remote_addr": e.remote_addr,
        "detail": e.detail,
    }


def _status(e: accounts.AuthError) -> int:
    return 404 if isinstance(e, accounts.NotFound) else 422


def _refused(e: accounts.AuthError) -> JSONResponse:
    return JSONResponse({"detail": str(e)}, status_code=_status(e))


def _not_found_page(request: Request, e: accounts.AuthError) -> HTMLResponse:
    return render("error.html", status_code=404, request=request, title="未找到", message=str(e))


def _user_path(username: str) -> str:
    return "/admin/users/" + quote(username, safe="")


def _roles() -> dict[str, str]:
    return {r.value: ROLE_LABEL[r] for r in Role}


# --------------------------------------------------------------------------- users: the domain calls


def _list(ctx: WebContext, actor: Actor) -> list[accounts.User]:
    return accounts.list_users(ctx.store, actor)


def _create(ctx: WebContext, actor: Actor, body: UserIn) -> tuple[accounts.User, str | None]:
    return accounts.create_user(ctx.store, actor, body.username, body.role, body.jurisdiction,
                                department=body.department, display_name=body.display_name,
                                password=body.password, settings=ctx.settings, now=ctx.now())


def _form(f: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The named fields of a form, trimmed and bounded (the domain checks what they hold)."""
    return {k: f.get(k, "").strip()[:200] for k in names}


def _update(ctx: WebContext, actor: Actor, username: str, body: UserUpdate) -> accounts.User:
    return accounts.update_user(ctx.store, actor, username, role=body.role, jurisdiction=body.jurisdiction,
                                department=body.department, display_name=body.display_name,
                                settings=ctx.settings, now=ctx.now())


def _set_active(ctx: WebContext, actor: Actor, username: str, active: bool) -> accounts.User:
    return accounts.set_active(ctx.store, actor, username, active, now=ctx.now())


def _reset(ctx: WebContext, actor: Actor, username: str) -> tuple[accounts.User, str]:
    pw = accounts.reset_password(ctx.store, actor, username, now=ctx.now(), settings=ctx.settings)
    return accounts.get_user(ctx.store, actor, username), pw


# --------------------------------------------------------------------------- users: pages


def _users_page(request: Request, ctx: WebContext, actor: Actor, *, error: str = "",
                form: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    users = _list(ctx, actor)
    return render("admin_users.html", status_code=status_code, request=request, now=ctx.now(),
                  users=[user_json(u, ctx.now()) for u in users], roles=_roles(), error=error,
                  form=form or {"username": "", "display_name": "", "role": Role.DUTY.value,
                                "jurisdiction": actor.jurisdiction, "department": ""})


def _user_page(request: Request, ctx: WebContext, actor: Actor, user: accounts.User, *, note: str = "",
               password: str = "", created: bool = False, error: str = "", form: dict[str, str] | None = None,
               status_code: int = 200) -> HTMLResponse:
    u = user_json(user, ctx.now())
    return render("admin_user.html", status_code=status_code, request=request, u=u, roles=_roles(),
                  note=note, password=password, created=created, error=error,
                  form=form or {k: u[k] or "" for k in ("display_name", "role", "jurisdiction", "department")},
                  own=user.username == actor.username)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> HTMLResponse:
    return _users_page(request, ctx, actor)


@router.post("/admin/users", response_class=HTMLResponse)
async def create_user_form(request: Request, ctx: WebContext = Depends(get_ctx),
                           actor: Actor = Depends(USERS)) -> Response:
    f = await form_fields(request)
    form = _form(f, ("username", "display_name", "role", "jurisdiction", "department"))
    # A generated password only: the admin never picks one (the API may, for provisioning scripts).
    body = UserIn.model_construct(password=None, **form)
    try:
        user, pw = await run_in_threadpool(_create, ctx, actor, body)
    except accounts.AuthError as e:
        return await run_in_threadpool(_users_page, request, ctx, actor, error=str(e), form=form,
                                       status_code=_status(e))
    return await run_in_threadpool(_user_page, request, ctx, actor, user, password=pw or "", created=True)


@router.get("/admin/users/{username}", response_class=HTMLResponse)
def user_page(username: str, request: Request, done: str = "", ctx: WebContext = Depends(get_ctx),
              actor: Actor = Depends(USERS)) -> HTMLResponse:
    try:
        user = accounts.get_user(ctx.store, actor, username)
    except accounts.NotFound as e:
        return _not_found_page(request, e)
    return _user_page(request, ctx, actor, user, note=DONE.get(done, ""))


@router.post("/admin/users/{username}", response_class=HTMLResponse)
async def update_user_form(username: str, request: Request, ctx: WebContext = Depends(get_ctx),
                           actor: Actor = Depends(USERS)) -> Response:
    f = await form_fields(request)
    form = _form(f, ("display_name", "role", "jurisdiction", "department"))
    # A field the form leaves out is not changed; an empty department clears it.
    body = UserUpdate.model_construct(**{k: (v if k in f else None) for k, v in form.items()})
    try:
        await run_in_threadpool(_update, ctx, actor, username, body)
    except accounts.AuthError as e:
        return await run_in_threadpool(_form_refused, request, ctx, actor, username, e, form)
    return RedirectResponse(_user_path(username) + "?done=updated", status_code=303)


def _form_refused(request: Request, ctx: WebContext, actor: Actor, username: str, e: accounts.AuthError,
                  form: dict[str, str] | None = None) -> HTMLResponse:
    """A refused form on a user's page: 404 for a user out of scope, else the page with the message."""
    if isinstance(e, accounts.NotFound):
        return _not_found_page(request, e)
    try:
        user = accounts.get_user(ctx.store, actor, username)
    except accounts.NotFound as gone:
        return _not_found_page(request, gone)
    return _user_page(request, ctx, actor, user, error=str(e), form=form, status_code=_status(e))


async def _active_form(request: Request, ctx: WebContext, actor: Actor, username: str, active: bool) -> Response:
    try:
        await run_in_threadpool(_set_active, ctx, actor, username, active)
    except accounts.AuthError as e:
        return await run_in_threadpool(_form_refused, request, ctx, actor, username, e)
    return RedirectResponse(_user_path(username) + ("?done=enabled" if active else "?done=disabled"),
                            status_code=303)


@router.post("/admin/users/{username}/disable", response_class=HTMLResponse)
async def disable_form(username: str, request: Request, ctx: WebContext = Depends(get_ctx),
                       actor: Actor = Depends(USERS)) -> Response:
    return await _active_form(request, ctx, actor, username, False)


@router.post("/admin/users/{username}/enable", response_class=HTMLResponse)
async def enable_form(username: str, request: Request, ctx: WebContext = Depends(get_ctx),
                      actor: Actor = Depends(USERS)) -> Response:
    return await _active_form(request, ctx, actor, username, True)


@router.post("/admin/users/{username}/reset-password", response_class=HTMLResponse)
async def reset_form(username: str, request: Request, ctx: WebContext = Depends(get_ctx),
                     actor: Actor = Depends(USERS)) -> Response:
    try:
        user, pw = await run_in_threadpool(_reset, ctx, actor, username)
    except accounts.AuthError as e:
        return await run_in_threadpool(_form_refused, request, ctx, actor, username, e)
    return await run_in_threadpool(_user_page, request, ctx, actor, user, password=pw)


# --------------------------------------------------------------------------- users: JSON


@router.get("/api/admin/users")
def api_users(ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> dict[str, Any]:
    users = _list(ctx, actor)
    return {"count": len(users), "users": [user_json(u, ctx.now()) for u in users]}


@router.post("/api/admin/users")
def api_create_user(body: UserIn, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> Response:
    try:
        user, pw = _create(ctx, actor, body)
    except accounts.AuthError as e:
        return _refused(e)
    # The generated password is answered this once (the store keeps its hash).
    return JSONResponse({"user": user_json(user, ctx.now()), "password": pw}, status_code=201)


@router.get("/api/admin/users/{username}")
def api_user(username: str, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> Response:
    try:
        return JSONResponse({"user": user_json(accounts.get_user(ctx.store, actor, username), ctx.now())})
    except accounts.AuthError as e:
        return _refused(e)


@router.post("/api/admin/users/{username}")
def api_update_user(username: str, body: UserUpdate, ctx: WebContext = Depends(get_ctx),
                    actor: Actor = Depends(USERS)) -> Response:
    try:
        return JSONResponse({"user": user_json(_update(ctx, actor, username, body), ctx.now())})
    except accounts.AuthError as e:
        return _refused(e)


@router.post("/api/admin/users/{username}/disable")
def api_disable(username: str, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> Response:
    try:
        return JSONResponse({"user": user_json(_set_active(ctx, actor, username, False), ctx.now())})
    except accounts.AuthError as e:
        return _refused(e)


@router.post("/api/admin/users/{username}/enable")
def api_enable(username: str, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> Response:
    try:
        return JSONResponse({"user": user_json(_set_active(ctx, actor, username, True), ctx.now())})
    except accounts.AuthError as e:
        return _refused(e)


@router.post("/api/admin/users/{username}/reset-password")
def api_reset(username: str, ctx: WebContext = Depends(get_ctx), actor: Actor = Depends(USERS)) -> Response:
    try:
        user, pw = _reset(ctx, actor, username)
    except accounts.AuthError as e:
        return _refused(e)
    return JSONResponse({"user": user_json(user, ctx.now()), "password": pw})


# --------------------------------------------------------------------------- audit


class AuditQuery:
    """The audit filters of the page and the API (the query string)."""

    def __init__(
        self,
        user: str = Query("", max_length=100),
        action: str = Query("", max_length=60),
        outcome: str = Query("", max_length=20),
        date_from: str = Query("", alias="from", max_length=20),
        date_to: str = Query("", alias="to", max_length=20),
        page: int = Query(1, ge=1, le=100_000),
        size: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> None:
        self.user, self.action, self.outcome = user.strip(), action.strip(), outcome.strip()
        self.date_from, self.date_to = date_from.strip(), date_to.strip()
        self.page, self.size = page, size

    def days(self) -> tuple[date | None, date | None]:
        """The date range, or :class:`AuditFilterError`."""
        got = []
        for label, raw in (("起始日期", self.date_from), ("截止日期", self.date_to)):
            try:
                got.append(date.fromisoformat(raw) if raw else None)
            except ValueError:
                raise AuditFilterError(f"{label} {raw!r} 无效：应为 YYYY-MM-DD（北京时间的日期）") from None
        if got[0] and got[1] and got[0] > got[1]:
            raise AuditFilterError("起始日期晚于截止日期")
        if self.outcome and self.outcome not in accounts.OUTCOMES:
            raise AuditFilterError(f"结果 {self.outcome!r} 无效：应为 {'、'.join(accounts.OUTCOMES)}")
        return got[0], got[1]

    def link(self, **change: Any) -> str:
        """This query with ``change`` applied, as ``?…`` (empty values left out)."""
        q = {"user": self.user, "action": self.action, "outcome": self.outcome, "from": self.date_from,
             "to": self.date_to, "page": self.page, "size": self.size if self.size != PAGE_SIZE else ""}
        q.update(change)
        return "?" + urlencode({k: v for k, v in q.items() if v not in ("", None) and not (k == "page" and v == 1)})


def _audit(ctx: WebContext, actor: Actor, q: AuditQuery) -> dict[str, Any]:
    """The page of rows, their total and the filter's choices; AuditFilterError for a bad filter."""
    d_from, d_to = q.days()
    args = (ctx.store, actor, q.user or None, q.action or None, d_from, d_to)
    total = accounts.count_audit(*args, outcome=q.outcome or None)
    rows = accounts.list_audit(*args, outcome=q.outcome or None, limit=q.size, offset=(q.page - 1) * q.size)
    return {"total": total, "rows": [audit_json(e) for e in rows]}


@router.get("/api/admin/audit")
def api_audit(q: AuditQuery = Depends(), ctx: WebContext = Depends(get_ctx),
              actor: Actor = Depends(AUDIT)) -> Response:
    try:
        got = _audit(ctx, actor, q)
    except (AuditFilterError, accounts.AuthError) as e:
        return JSONResponse({"detail": str(e)}, status_code=400)
    return JSONResponse({"total": got["total"], "page": q.page, "size": q.size, "items": got["rows"]})


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(request: Request, q: AuditQuery = Depends(), ctx: WebContext = Depends(get_ctx),
               actor: Actor = Depends(AUDIT)) -> HTMLResponse:
    error, status, got = "", 200, {"total": 0, "rows": []}
    try:
        got = _audit(ctx, actor, q)
    except (AuditFilterError, accounts.AuthError) as e:
        error, status = str(e), 400
    actions = accounts.audit_actions(ctx.store, actor)
    if q.action and q.action not in actions:
        actions.append(q.action)
    users = [u.username for u in accounts.list_users(ctx.store, actor)] if actor.can(Permission.USERS_MANAGE) else []
    pages = max(1, -(-got["total"] // q.size))
    for r in got["rows"]:
        r["detail_text"] = json.dumps(r["detail"], ensure_ascii=False, sort_keys=True) if r["detail"] else ""
    return render(
        "admin_audit.html", status_code=status, request=request, q=q, error=error, total=got["total"],
        rows=got["rows"], pages=pages, users=users,
        actions={a: accounts.action_label(a) for a in actions}, outcomes=accounts.OUTCOME_LABEL,
        prev_query=q.link(page=q.page - 1) if q.page > 1 else None,
        next_query=q.link(page=q.page + 1) if q.page < pages else None,
    )


__all__ = ["audit_json", "router", "user_json"]
