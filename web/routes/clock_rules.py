"""A ticket's clock rule, changed by a duty officer with a reason.

* ``POST /api/tickets/{id}/clock-rule`` ``{"rule", "reason"}`` — ``rule`` a name
  in ``config/clocks.yaml`` (major_emergency, suggestion, complaint,
  response_48h); the deadlines are recomputed from T0 and the change audited
  (:func:`responder.clock_rules.change_rule`). Unknown rule or no reason: 422;
  a closed ticket: 409; another jurisdiction's ticket: 404. Permission: 指派责任部门
  (the duty officer's, like assigning the responsible department).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from responder.clock_rules import MAX_REASON, change_rule
from responder.permissions import Actor, Permission
from responder.safety import DbId
from web.auth import require
from web.context import WebContext, get_ctx

router = APIRouter()


class ClockRuleIn(BaseModel):
    rule: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=MAX_REASON)


@router.post("/api/tickets/{tid}/clock-rule")
def clock_rule(tid: DbId, body: ClockRuleIn, ctx: WebContext = Depends(get_ctx),
               actor: Actor = Depends(require(Permission.TICKET_ASSIGN))) -> dict[str, Any]:
    return change_rule(ctx.store, actor, tid, body.rule, body.reason, clocks=ctx.clocks(), now=ctx.now()).to_dict()
