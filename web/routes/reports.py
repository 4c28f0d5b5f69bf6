"""``GET /api/reports/timeliness?from=&to=&by=department|region[&as_of=]`` — the
timeliness figures of SPEC §6 (:mod:`responder.report`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from responder.clocks import SHANGHAI
from responder.permissions import Actor, Permission
from responder.report import timeliness
from web.auth import require
from web.context import WebContext, get_ctx

router = APIRouter()


@router.get("/api/reports/timeliness")
def report_timeliness(
    date_from: str = Query(..., alias="from"),
    date_to: str = Query(..., alias="to"),
    by: str = "department",
    as_of: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    actor: Actor = Depends(require(Permission.REPORT_READ)),
) -> dict[str, Any]:
    try:
        f, t = date.fromisoformat(date_from), date.fromisoformat(date_to)
        at = datetime.fromisoformat(as_of) if as_of else ctx.now()
    except ValueError as e:
        raise HTTPException(status_code=422, detail=f"日期格式错误（应为 YYYY-MM-DD）：{e}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=SHANGHAI)
    if by not in ("department", "region"):
        raise HTTPException(status_code=422, detail="by 只能是 department 或 region")
    if t < f:
        raise HTTPException(status_code=422, detail="to 早于 from")
    return timeliness(ctx.store, f, t, by=by, as_of=at, actor=actor).to_dict()
