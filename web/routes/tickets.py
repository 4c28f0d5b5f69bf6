"""Tickets and events: the pages, the JSON API and the duty officer's actions.

* ``GET /tickets/{id}`` — one ticket on the board's layout (notification links);
  ``GET /events/{id}`` — the ticket of an event (the link from a search hit).
* ``GET /api/tickets`` — open tickets; ``GET /api/tickets/{id}`` — one ticket
  with its posts and audit trail.
* ``POST /api/tickets/{id}/ack`` (no body), ``…/milestones``
  ``{"milestone", "evidence_url"}`` (an http(s) URL, required),
  ``…/assign`` ``{"department"}``, ``…/close`` ``{"outcome", "note"}``
  (outcome: responded / no_response_needed / false_alarm / other, or its
  label; a note is required for other), ``…/reopen`` ``{"reason"}``,
  ``POST /api/events/{id}/merge`` ``{"into"}``,
  ``POST /api/events/{id}/split`` ``{"post_ids", "reason"}`` — the rules are
  :mod:`responder.cases` (its state machine); its NotFound / Conflict /
  Invalid answer 404 / 409 / 422 (``web.app``).

Whoever acts is the signed-in user (:func:`web.auth.require`): the name in
the record comes from the account, never from the request body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator

from responder import cases
from responder.clocks import iso_shanghai
from responder.permissions import Actor, Permission
from responder.safety import DbId
from web.auth import require
from web.context import WebContext, get_ctx
from web.routes.board import board_context
from web.templating import render

router = APIRouter()


class AssignIn(BaseModel):
    department: str = Field(min_length=1, max_length=100)


class CloseIn(BaseModel):
    outcome: str = Field(min_length=1, max_length=100)
    note: str | None = Field(None, max_length=2000)


class ReopenIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class MergeIn(BaseModel):
    into: int = Field(ge=1)


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


# --------------------------------------------------------------------------- pages


@router.get("/tickets/{tid}", response_class=HTMLResponse)
def ticket_page(tid: DbId, request: Request, ctx: WebContext = Depends(get_ctx),
                actor: Actor = Depends(require(Permission.TICKET_READ))) -> HTMLResponse:
    """One ticket on its own page (the link in notifications)."""
    n = ctx.now()
    with ctx.store.reader() as s:
        view = cases.ticket_view(s, cases.get_ticket(s, actor, tid), n)
    return render("board.html", request=request, live=False, bad_sources=[], unrouted={"last_24h": 0},
                  **board_context([view], n))


@router.get("/events/{eid}", response_class=HTMLResponse)
def event_page(eid: DbId, request: Request, ctx: WebContext = Depends(get_ctx),
               actor: Actor = Depends(require(Permission.TICKET_READ))) -> HTMLResponse:
    """The ticket of one event (the link from a search hit)."""
    n = ctx.now()
    with ctx.store.reader() as s:
        view = cases.ticket_view(s, cases.event_ticket(s, actor, eid), n)
    return render("board.html", request=request, live=False, bad_sources=[], unrouted={"last_24h": 0},
                  **board_context([view], n))


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
    return cases.assign(ctx.store, actor, tid, body.department, now=ctx.now()).to_dict()


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
        ctx.store, actor, tid, body.milestone, clocks=ctx.clocks(), evidence_url=body.evidence_url, now=ctx.now()
    ).to_dict()


@router.post("/api/events/{eid}/merge")
def merge(eid: DbId, body: MergeIn, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.EVENT_MERGE))) -> dict[str, Any]:
    return cases.merge(ctx.store, actor, eid, body.into, clocks=ctx.clocks(), now=ctx.now()).to_dict()


@router.post("/api/events/{eid}/split")
def split(eid: DbId, body: SplitIn, ctx: WebContext = Depends(get_ctx),
          actor: Actor = Depends(require(Permission.EVENT_SPLIT))) -> dict[str, Any]:
    return cases.split(ctx.store, actor, eid, body.post_ids, body.reason, clocks=ctx.clocks(), now=ctx.now()).to_dict()
