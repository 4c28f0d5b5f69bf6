"""Notices that reached nobody: the board's alert strip, ``/api/notices/unrouted`` and ``/metrics``.

The dispatcher (responder process) writes an :class:`~responder.store.UnroutedNotice`
row when escalation steps apply to a notice but no recipient of
``config/notify.yaml`` covers it; the web process reads those rows here.
The board and the list show a user the notices of its jurisdiction only (by
the notice's place code, in the query); so does ``/metrics`` (the token's user).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from responder.clocks import iso_shanghai
from responder.notify.dispatcher import KIND_LABEL
from responder.permissions import CLI_ACTOR, Actor, scope_clause
from responder.store import Store, UnroutedNotice

WINDOW = timedelta(hours=24)


def unrouted_summary(store: Store, now: datetime, actor: Actor, *, limit: int = 20) -> dict[str, Any]:
    """Unrouted notices of ``actor``'s jurisdiction: those of the last 24 h
    (newest first, at most ``limit``) and counts."""
    since = now - WINDOW
    seen = scope_clause(actor, UnroutedNotice.place_code)
    scope = [] if seen is None else [seen]
    with store.reader() as s:
        recent = int(
            s.scalar(
                select(func.count()).select_from(UnroutedNotice).where(UnroutedNotice.created_at > since, *scope)
            )
            or 0
        )
        by_kind = dict(
            s.execute(
                select(UnroutedNotice.kind, func.count()).where(*scope).group_by(UnroutedNotice.kind)  # type: ignore[arg-type]
            ).all()
        )
        rows = s.scalars(
            select(UnroutedNotice)
            .where(UnroutedNotice.created_at > since, *scope)
            .order_by(UnroutedNotice.created_at.desc(), UnroutedNotice.id.desc())
            .limit(limit)
        ).all()
        items = [
            {
                "key": r.key,
                "kind": r.kind,
                "kind_label": KIND_LABEL.get(r.kind, r.kind),
                "ticket_id": r.ticket_id,
                "place_code": r.place_code,
                "department": r.department,
                "reason": r.reason,
                "created_at": iso_shanghai(r.created_at),
            }
            for r in rows
        ]
    return {
        "last_24h": recent,
        "total_by_kind": {str(k): int(v) for k, v in by_kind.items()},
        "items": items,
    }


def unrouted_metrics(store: Store, now: datetime, actor: Actor = CLI_ACTOR) -> list[str]:
    """Prometheus lines: a counter per notice kind and a gauge of the last 24 h,
    of ``actor``'s jurisdiction (the token's user; the CLI counts them all)."""
    summary = unrouted_summary(store, now, actor, limit=0)
    lines = [
        "# HELP yuqing_notices_unrouted_total Notices that no recipient of notify.yaml covered, by kind.",
        "# TYPE yuqing_notices_unrouted_total counter",
    ]
    kinds = sorted(set(KIND_LABEL) | set(summary["total_by_kind"]))
    lines += [f'yuqing_notices_unrouted_total{{kind="{k}"}} {summary["total_by_kind"].get(k, 0)}' for k in kinds]
    lines += [
        "# HELP yuqing_notices_unrouted_24h Notices in the last 24 hours that no recipient covered.",
        "# TYPE yuqing_notices_unrouted_24h gauge",
        f"yuqing_notices_unrouted_24h {summary['last_24h']}",
    ]
    return lines
