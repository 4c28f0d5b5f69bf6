"""``GET /api/reports/timeliness?from=&to=&by=department|region[&as_of=][&place=]`` — the
timeliness figures of SPEC §6 (:mod:`responder.report`).

``place`` narrows the report to a division within the user's jurisdiction, by
code (``3401``) or name (``合肥``, ``蜀山区``, ``安徽省合肥市``), or ``待定``, read
as the search and the board read it (:meth:`responder.archive.Vocabulary.place`):
an unknown or ambiguous name, or one outside the jurisdiction, is 400 with the
Chinese reason and, for a name, ``suggestions`` (each place with its code)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from responder.archive import SearchParamError, vocabulary
from responder.clocks import SHANGHAI
from responder.permissions import Actor, Permission, within
from responder.report import UNPLACED, timeliness
from responder.search.base import Scope
from web.auth import require
from web.context import WebContext, get_ctx

router = APIRouter()


@router.get("/api/reports/timeliness")
def report_timeliness(
    date_from: str = Query(..., alias="from"),
    date_to: str = Query(..., alias="to"),
    by: str = "department",
    as_of: str | None = None,
    place: str = Query("", max_length=100),
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
    prefix, label = report_place(ctx, actor, place)
    return timeliness(ctx.store, f, t, by=by, as_of=at, actor=actor, place=prefix, place_label=label).to_dict()


def report_place(ctx: WebContext, actor: Actor, value: str) -> tuple[str | None, str]:
    """A report's ``place`` as a division-code prefix (or 待定) and its label; SearchParamError (400)."""
    v = value.strip()
    if v in ("", "all", "全部"):
        return None, ""
    if v in (UNPLACED, "none"):
        if not actor.sees(None):
            raise SearchParamError("筛选条件有误：属地待定的工单不在本人属地范围内")
        return UNPLACED, "属地待定"
    try:
        prefix, label = vocabulary(ctx.settings.config_dir).place(v, Scope.of(actor))
    except SearchParamError as e:
        raise SearchParamError(e.message.replace("检索条件有误", "筛选条件有误"), e.suggestions) from None
    if not actor.is_cli and not within(prefix, actor.jurisdiction):
        raise SearchParamError(f"筛选条件有误：{label or prefix} 不在本人属地范围内")
    return prefix, label
