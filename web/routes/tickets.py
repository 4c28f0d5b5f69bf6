"""Tickets and events: the pages, the JSON API and the duty officer's actions.

* ``GET /tickets/{id}`` — the ticket screen, the whole case (``ticket.html``:
  posts, responders, clocks and evidence, milestone candidates, the audit
  trail, and the actions the user may take as forms; the link in
  notifications); ``GET /events/{id}`` — the ticket of an event (the link
  from a search hit); ``?merge_q=`` lists the open events to merge into.
* The page's forms, ``POST /tickets/{id}/ack|assign|milestone|candidate|
  extend|escalate|clock-rule|close|reopen|merge|split`` (``csrf_token`` field): 303 back
  to the ticket with ``?done=…``, or the ticket again with the refusal (409 /
  422); a ticket out of sight is the 404 page.
* ``GET /api/events/{id}/merge-targets?q=`` — open events in the user's
  jurisdiction whose title holds the words (the merge picker).
* ``GET /api/tickets`` — open tickets; ``GET /api/tickets/{id}`` — one ticket
  with its posts and audit trail.
* ``POST /api/tickets/{id}/ack`` (no body), ``…/milestones``
  ``{"milestone", "evidence_url", "met_at"}`` (an http(s) URL, required),
  ``…/assign`` ``{"department"}`` (configured for the place), ``…/close``
  ``{"outcome", "note"}`` (outcome: responded / no_response_needed /
  false_alarm / other, or its label; a note is required for other),
  ``…/reopen`` ``{"reason"}``, ``…/extend`` ``{"milestone", "reason"}``,
  ``…/escalate`` ``{"reason"}``, ``POST /api/events/{id}/merge``
  ``{"into", "confirm_places"}``, ``POST /api/events/{id}/split``
  ``{"post_ids", "reason"}`` — the rules are :mod:`responder.cases` (its
  state machine) and :mod:`responder.casework`; their NotFound / Conflict /
  Invalid answer 404 / 409 / 422 (``web.app``).

Whoever acts is the signed-in user (:func:`web.auth.require`): the name in
the record comes from the account, never from the request body.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from responder import accounts, cases, casework, clock_rules
from responder.cases import CaseError, NotFound
from responder.clocks import iso_shanghai
from responder.notify.departments import DepartmentNames
from responder.permissions import Actor, Permission
from responder.safety import DbId, valid_id
from web.auth import require
from web.context import WebContext, get_ctx
from web.templating import render

router = APIRouter()
# The status a refused form answers with (web.app maps the same errors of the JSON API alike).
FORM_STATUS: dict[type[CaseError], int] = {cases.Conflict: 409, cases.Invalid: 422, cases.Forbidden: 403}


class AssignIn(BaseModel):
    department: str = Field(min_length=1, max_length=100)


class CloseIn(BaseModel):
    outcome: str = Field(min_length=1, max_length=100)
    note: str | None = Field(None, max_length=2000)


class ReopenIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class MergeIn(BaseModel):
    into: int = Field(ge=1)
    # Across jurisdictions: the user has confirmed the message naming both places.
    confirm_places: bool = False


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class ExtendIn(BaseModel):
    milestone: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=2000)


class SplitIn(BaseModel):
    post_ids: list[str] = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("拆分理由不能为空")
        return v


class MilestoneIn(BaseModel):
    milestone: str = Field(min_length=1, max_length=40)
    evidence_url: str | None = Field(None, max_length=2000)
    # When it was met (ISO 8601 with its offset): the release's publication time; default now.
    met_at: datetime | None = None


# --------------------------------------------------------------------------- pages

# The notes a form's redirect leaves on the ticket page (?done=…); nothing else is shown.
DONE = {
    "ack": "已确认接收",
    "assign": "已指派责任部门",
    "milestone": "已登记节点完成",
    "candidate": "已按官方发布确认节点完成（以其发布时间为完成时间、其链接为佐证）",
    "extend": "已延长时限",
    "rule": "已更改时限规则：未完成的节点已按新规则自首发时间（T0）重算",
    "escalate": "已发出督办通知",
    "close": "工单已办结",
    "reopen": "工单已重新打开",
    "merge": "事件已合并",
    "split": "已拆分：选中的帖子已移入新工单",
    "same": "无变化：该操作此前已完成",
}


def _departments(ctx: WebContext) -> DepartmentNames:
    return DepartmentNames.load(ctx.settings.config_dir)


def _screen(request: Request, ctx: WebContext, actor: Actor, tid: int, *, note: str = "", error: str = "",
            status_code: int = 200, merge_q: str = "", confirm: dict[str, Any] | None = None,
            new_ticket: int | None = None) -> HTMLResponse:
    n = ctx.now()
    with ctx.store.reader() as s:
        t = casework.ticket_screen(s, actor, tid, n, clocks=ctx.clocks(), departments=_departments(ctx))
        targets = casework.merge_targets(s, actor, t["event"]["id"], merge_q) if merge_q.strip() else None
    state = t["status"]
    allowed = {action: state in moves for action, moves in cases.TRANSITIONS.items()}
    return render("ticket.html", status_code=status_code, request=request, t=t, now_iso=iso_shanghai(n),
                  allowed=allowed, note=note, error=error, merge_q=merge_q, merge_targets=targets,
                  confirm=confirm, new_ticket=new_ticket, audit_rows=[audit_row(a) for a in t["audit"]],
                  ROLE_NAMES=RESPONDER_ROLE, rules=clock_rules.rule_choices(ctx.clocks()))


RESPONDER_ROLE = {"primary": "牵头回应", "co": "协同回应", "coordinator": "组织协调", "leader": "领导责任"}
# What the trail shows of an audit row's detail: these keys, in this order, by these names.
AUDIT_KEYS = (
    ("outcome", "结果"), ("note", "说明"), ("reason", "理由"), ("milestone", "节点"), ("met_at", "完成时间"),
    ("on_time", "是否按时"), ("evidence_url", "佐证"), ("from", "原"), ("to", "新"), ("department", "部门"),
    ("from_due_at", "原截止"), ("due_at", "截止"), ("escalate_to", "督办对象"), ("into_ticket", "并入工单"),
    ("from_ticket", "来自工单"), ("new_ticket", "新工单"), ("post_id", "帖子"), ("source", "来源"),
    ("published_at", "发布时间"), ("rule", "时限规则"),
)


# Where a key means something else in one action's detail (an acknowledgement's "from" is
# the address it came from, not a previous value).
AUDIT_KEY_BY_ACTION = {"acknowledged": {"from": "来自地址"}}


def audit_row(a: dict[str, Any]) -> dict[str, Any]:
    """An audit row for the trail: the action by its name and the known parts of its detail
    (plain values; an evidence link goes through the link macro in the template)."""
    detail = a.get("detail") or {}
    labels = {**dict(AUDIT_KEYS), **AUDIT_KEY_BY_ACTION.get(a["action"], {})}
    parts = []
    for key, _ in AUDIT_KEYS:
        v = detail.get(key)
        if v is None or v == "" or v == []:
            continue
        label = labels[key]
        if key == "on_time":
            v = "按时" if v else "超时"
        elif key == "rule":
            v = cases.RULE_LABEL.get(str(v), v)
        elif isinstance(v, list):
            v = "、".join(str(x) for x in v)
        elif isinstance(v, dict):
            continue
        elif isinstance(v, str) and len(v) == 25 and v[10:11] == "T" and v.endswith("+08:00"):
            v = v[:16].replace("T", " ")
        parts.append({"key": key, "label": label, "value": str(v)[:300]})
    return {"at": a["at"], "actor": a["actor"], "action": a["action"],
            "label": accounts.action_label(a["action"]), "parts": parts}


@router.get("/tickets/{tid}", response_class=HTMLResponse)
def ticket_page(tid: DbId, request: Request, done: str = "", merge_q: str = Query("", max_length=100),
                new: int | None = Query(None, ge=1, le=2**53), ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.TICKET_READ))) -> HTMLResponse:
    """The whole case on one page: posts, responders, clocks, milestones and their evidence,
    milestone candidates, the trail, and the duty officer's actions as forms."""
    return _screen(request, ctx, actor, tid, note=DONE.get(done, ""), merge_q=merge_q,
                   new_ticket=new if done == "split" else None)


@router.get("/events/{eid}", response_class=HTMLResponse)
def event_page(eid: DbId, request: Request, ctx: WebContext = Depends(get_ctx),
               actor: Actor = Depends(require(Permission.TICKET_READ))) -> HTMLResponse:
    """The ticket of one event (the link from a search hit)."""
    with ctx.store.reader() as s:
        tid = cases.event_ticket(s, actor, eid).id
    return _screen(request, ctx, actor, tid)


# --------------------------------------------------------------------------- the page's forms
#
# Plain HTML forms with the session's csrf_token field: success goes back to the ticket
# (303, a note); a refusal shows the ticket again with the domain's Chinese message and
# its status (409 / 422); a ticket out of sight is the 404 page, as an unknown one.


def _form_page(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A form of the ticket page answers a ticket out of sight (or a number that names no
    ticket) with the 404 page, as a browser shows it, not JSON."""
    @functools.wraps(fn)
    async def page(*args: Any, **kwargs: Any) -> Response:
        try:
            return await fn(*args, **kwargs)
        except NotFound as e:
            return render("error.html", status_code=404, request=kwargs.get("request"), title="未找到",
                          message=e.message)
    return page


def _ticket_id(raw: str) -> int:
    """A ticket number from a form's path; anything that names no ticket is NotFound."""
    tid = int(raw) if raw.isdigit() and len(raw) <= 20 else 0
    if not valid_id(tid):
        raise NotFound(f"工单 {raw[:40]} 不存在")
    return tid


def _back(tid: int, done: str, **extra: Any) -> RedirectResponse:
    q = "&".join(f"{k}={v}" for k, v in extra.items())
    return RedirectResponse(f"/tickets/{tid}?done={done}" + (f"&{q}" if q else ""), status_code=303)


async def _fields(request: Request) -> dict[str, list[str]]:
    """A form body with every value of each field (the split form's post checkboxes)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    return parse_qs((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)


def _one(f: dict[str, list[str]], name: str, limit: int = 2000) -> str:
    return (f.get(name) or [""])[0][:limit]


async def _refused(request: Request, ctx: WebContext, actor: Actor, tid: int, e: CaseError,
                   confirm: dict[str, Any] | None = None) -> HTMLResponse:
    msg, code = e.message, FORM_STATUS.get(type(e), 422)
    return await run_in_threadpool(lambda: _screen(request, ctx, actor, tid, error=msg, status_code=code,
                                                   confirm=confirm))


def _event_of(ctx: WebContext, actor: Actor, tid: int) -> int:
    with ctx.store.reader() as s:
        return cases.get_ticket(s, actor, tid).event_id


async def _act(request: Request, ctx: WebContext, actor: Actor, tid: int, done: str,
               call: Callable[[], Any], **extra: Any) -> Response:
    try:
        out = await run_in_threadpool(call)
    except NotFound:
        raise  # the 404 page (_form_page)
    except CaseError as e:
        return await _refused(request, ctx, actor, tid, e)
    if isinstance(out, cases.Outcome) and out.already:
        done = "same"
    return _back(tid, done, **{k: (v(out) if callable(v) else v) for k, v in extra.items()})


@router.post("/tickets/{tid}/ack", response_class=HTMLResponse)
@_form_page
async def ack_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                   actor: Actor = Depends(require(Permission.TICKET_ACK))) -> Response:
    num = _ticket_id(tid)
    return await _act(request, ctx, actor, num, "ack", lambda: cases.acknowledge(ctx.store, actor, num, now=ctx.now()))


@router.post("/tickets/{tid}/assign", response_class=HTMLResponse)
@_form_page
async def assign_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                      actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> Response:
    num = _ticket_id(tid)
    dept = _one(await _fields(request), "department", 200)
    return await _act(request, ctx, actor, num, "assign", lambda: cases.assign(
        ctx.store, actor, num, dept, departments=_departments(ctx), now=ctx.now()))


@router.post("/tickets/{tid}/milestone", response_class=HTMLResponse)
@_form_page
async def milestone_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                         actor: Actor = Depends(require(Permission.TICKET_MILESTONE))) -> Response:
    num = _ticket_id(tid)
    f = await _fields(request)
    ms, url = _one(f, "milestone", 40), _one(f, "evidence_url")
    return await _act(request, ctx, actor, num, "milestone", lambda: cases.record_milestone(
        ctx.store, actor, num, ms, clocks=ctx.clocks(), evidence_url=url, now=ctx.now()))


@router.post("/tickets/{tid}/candidate", response_class=HTMLResponse)
@_form_page
async def candidate_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                         actor: Actor = Depends(require(Permission.TICKET_MILESTONE))) -> Response:
    num = _ticket_id(tid)
    f = await _fields(request)
    pid, ms = _one(f, "post_id", 200), _one(f, "milestone", 40)
    return await _act(request, ctx, actor, num, "candidate", lambda: casework.confirm_candidate(
        ctx.store, actor, num, pid, ms, clocks=ctx.clocks(), now=ctx.now()))


@router.post("/tickets/{tid}/extend", response_class=HTMLResponse)
@_form_page
async def extend_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                      actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> Response:
    num = _ticket_id(tid)
    f = await _fields(request)
    ms, why = _one(f, "milestone", 40), _one(f, "reason", 2001)
    return await _act(request, ctx, actor, num, "extend", lambda: casework.extend_deadline(
        ctx.store, actor, num, ms, why, clocks=ctx.clocks(), now=ctx.now()))


@router.post("/tickets/{tid}/escalate", response_class=HTMLResponse)
@_form_page
async def escalate_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                        actor: Actor = Depends(require(Permission.TICKET_ESCALATE))) -> Response:
    num = _ticket_id(tid)
    why = _one(await _fields(request), "reason", 2001)
    return await _act(request, ctx, actor, num, "escalate", lambda: casework.escalate(
        ctx.store, actor, num, why, now=ctx.now()))


@router.post("/tickets/{tid}/clock-rule", response_class=HTMLResponse)
@_form_page
async def clock_rule_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                          actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> Response:
    """Change the clock rule with a reason (:func:`responder.clock_rules.change_rule`)."""
    num = _ticket_id(tid)
    f = await _fields(request)
    rule, why = _one(f, "rule", 40), _one(f, "reason", 2001)
    return await _act(request, ctx, actor, num, "rule", lambda: clock_rules.change_rule(
        ctx.store, actor, num, rule, why, clocks=ctx.clocks(), now=ctx.now()))


@router.post("/tickets/{tid}/close", response_class=HTMLResponse)
@_form_page
async def close_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                     actor: Actor = Depends(require(Permission.TICKET_CLOSE))) -> Response:
    num = _ticket_id(tid)
    f = await _fields(request)
    outcome, note = _one(f, "outcome", 100), _one(f, "note")
    return await _act(request, ctx, actor, num, "close", lambda: cases.close(
        ctx.store, actor, num, outcome, note=note, now=ctx.now()))


@router.post("/tickets/{tid}/reopen", response_class=HTMLResponse)
@_form_page
async def reopen_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                      actor: Actor = Depends(require(Permission.TICKET_REOPEN))) -> Response:
    num = _ticket_id(tid)
    why = _one(await _fields(request), "reason")
    return await _act(request, ctx, actor, num, "reopen", lambda: cases.reopen(
        ctx.store, actor, num, why, now=ctx.now()))


@router.post("/tickets/{tid}/merge", response_class=HTMLResponse)
@_form_page
async def merge_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                     actor: Actor = Depends(require(Permission.EVENT_MERGE))) -> Response:
    """Merge this ticket's event into the event of the ticket picked (``into``, a ticket number);
    across jurisdictions only with ``confirm_places`` — without it the page asks, naming both places."""
    num = _ticket_id(tid)
    f = await _fields(request)
    raw, confirmed = _one(f, "into", 20).strip(), _one(f, "confirm_places", 5) == "1"
    await run_in_threadpool(_event_of, ctx, actor, num)  # this ticket out of sight: 404 first
    into = int(raw) if raw.isdigit() and len(raw) <= 15 else 0
    if not into:
        return await run_in_threadpool(lambda: _screen(request, ctx, actor, num, status_code=422,
                                                       error="请先检索并选择要并入的目标事件"))
    try:
        await run_in_threadpool(lambda: cases.merge_tickets(ctx.store, actor, num, into, clocks=ctx.clocks(),
                                                            confirm_places=confirmed, now=ctx.now()))
    except NotFound:
        raise  # the 404 page (_form_page)
    except CaseError as e:
        ask = None
        if isinstance(e, cases.Invalid) and e.message.startswith("跨属地合并"):
            ask = {"into": into, "message": e.message}
        return await _refused(request, ctx, actor, num, e, confirm=ask)
    return _back(num, "merge")


@router.post("/tickets/{tid}/split", response_class=HTMLResponse)
@_form_page
async def split_form(tid: str, request: Request, ctx: WebContext = Depends(get_ctx),
                     actor: Actor = Depends(require(Permission.EVENT_SPLIT))) -> Response:
    num = _ticket_id(tid)
    f = await _fields(request)
    posts = [p[:200] for p in (f.get("post_ids") or [])[:1000]]
    why = _one(f, "reason")
    eid = await run_in_threadpool(_event_of, ctx, actor, num)
    if not posts:
        return await run_in_threadpool(lambda: _screen(request, ctx, actor, num, status_code=422,
                                                       error="请勾选要拆分出去的帖子"))
    return await _act(request, ctx, actor, num, "split", lambda: cases.split(
        ctx.store, actor, eid, posts, why, clocks=ctx.clocks(), now=ctx.now()),
        new=lambda out: out.new_ticket["id"])


@router.get("/api/events/{eid}/merge-targets")
def merge_targets(eid: DbId, q: str = Query("", max_length=100), ctx: WebContext = Depends(get_ctx),
                  actor: Actor = Depends(require(Permission.EVENT_MERGE))) -> dict[str, Any]:
    """Open events in the user's jurisdiction whose title holds the words of ``q`` (the merge
    picker), each with its place and, across jurisdictions, the confirmation to ask."""
    with ctx.store.reader() as s:
        items = casework.merge_targets(s, actor, eid, q)
    return {"count": len(items), "events": items}


# --------------------------------------------------------------------------- API


@router.get("/api/tickets")
def list_tickets(ctx: WebContext = Depends(get_ctx),
                 actor: Actor = Depends(require(Permission.TICKET_READ))) -> dict[str, Any]:
    n = ctx.now()
    with ctx.store.reader() as s:
        items = cases.open_tickets(s, actor, n)
    return {"now": iso_shanghai(n), "count": len(items), "tickets": items}


@router.get("/api/tickets/{tid}")
def get_ticket(tid: DbId, ctx: WebContext = Depends(get_ctx),
               actor: Actor = Depends(require(Permission.TICKET_READ))) -> dict[str, Any]:
    n = ctx.now()
    with ctx.store.reader() as s:
        return cases.ticket_detail(s, actor, tid, n)


@router.post("/api/tickets/{tid}/ack")
def acknowledge(tid: DbId, ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.TICKET_ACK))) -> dict[str, Any]:
    return cases.acknowledge(ctx.store, actor, tid, now=ctx.now()).to_dict()


@router.post("/api/tickets/{tid}/assign")
def assign(tid: DbId, body: AssignIn, ctx: WebContext = Depends(get_ctx),
           actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> dict[str, Any]:
    return cases.assign(ctx.store, actor, tid, body.department, departments=_departments(ctx),
                        now=ctx.now()).to_dict()


@router.post("/api/tickets/{tid}/close")
def close(tid: DbId, body: CloseIn, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.TICKET_CLOSE))) -> dict[str, Any]:
    return cases.close(ctx.store, actor, tid, body.outcome, note=body.note, now=ctx.now()).to_dict()


@router.post("/api/tickets/{tid}/reopen")
def reopen(tid: DbId, body: ReopenIn, ctx: WebContext = Depends(get_ctx),
           actor: Actor = Depends(require(Permission.TICKET_REOPEN))) -> dict[str, Any]:
    return cases.reopen(ctx.store, actor, tid, body.reason, now=ctx.now()).to_dict()


@router.post("/api/tickets/{tid}/milestones")
def milestone(tid: DbId, body: MilestoneIn, ctx: WebContext = Depends(get_ctx),
              actor: Actor = Depends(require(Permission.TICKET_MILESTONE))) -> dict[str, Any]:
    return cases.record_milestone(
        ctx.store, actor, tid, body.milestone, clocks=ctx.clocks(), evidence_url=body.evidence_url,
        met_at=body.met_at, now=ctx.now()
    ).to_dict()


@router.post("/api/tickets/{tid}/extend")
def extend(tid: DbId, body: ExtendIn, ctx: WebContext = Depends(get_ctx),
           actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> dict[str, Any]:
    return casework.extend_deadline(ctx.store, actor, tid, body.milestone, body.reason, clocks=ctx.clocks(),
                                    now=ctx.now()).to_dict()


@router.post("/api/tickets/{tid}/escalate")
def escalate(tid: DbId, body: ReasonIn, ctx: WebContext = Depends(get_ctx),
             actor: Actor = Depends(require(Permission.TICKET_ESCALATE))) -> dict[str, Any]:
    return casework.escalate(ctx.store, actor, tid, body.reason, now=ctx.now()).to_dict()


@router.post("/api/events/{eid}/merge")
def merge(eid: DbId, body: MergeIn, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.EVENT_MERGE))) -> dict[str, Any]:
    return cases.merge(ctx.store, actor, eid, body.into, clocks=ctx.clocks(), confirm_places=body.confirm_places,
                       now=ctx.now()).to_dict()


@router.post("/api/events/{eid}/split")
def split(eid: DbId, body: SplitIn, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.EVENT_SPLIT))) -> dict[str, Any]:
    return cases.split(ctx.store, actor, eid, body.post_ids, body.reason, clocks=ctx.clocks(), now=ctx.now()).to_dict()
