"""Crawl health in the responder: who is told when a source goes dark.

The crawler stage reports each source's health on ``crawl.health``
(:class:`stream.contracts.CrawlHealth`). The responder keeps the latest
report per source (:class:`responder.store.SourceHealthRow`) and, in the
same transaction, writes an outbox row for the notification dispatcher:

* ``source_alert`` — the first report of each alerting state (``dark``,
  ``blocked``, ``cookie_expired``, or any report flagged ``alert``) within
  one problem spell. A spell starts when the source leaves ``ok`` and ends
  when it reports ``ok`` again; a redelivered or repeated report of the
  same state in the same spell notifies nobody twice (unique outbox key).
* ``source_recovered`` — the source reports ``ok`` after a spell that was
  alerted.

These rows carry no ticket, so they are not relayed to ``tickets.events``
(``sent_at`` is set when written); only the dispatcher routes them, to the
recipients with role ``admin`` (``config/notify.yaml``). A dark source can
cost the 5-hour clock, so quiet hours never defer them.

The same rows feed ``GET /api/sources``, the warning strip on the duty page
and the Prometheus text at ``GET /metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import CLI_ACTOR, Actor, scope_clause
from responder.store import Outbox, SourceHealthRow, Store, Ticket, utcnow
from stream.contracts import CrawlHealth

log = logging.getLogger(__name__)

ALERTING = ("dark", "blocked", "cookie_expired")
STATE_LABEL = {
    "ok": "正常",
    "failing": "抓取失败",
    "blocked": "被拦截",
    "cookie_expired": "Cookie失效",
    "dark": "失联",
    "never": "从未成功",
}
SOURCE_KINDS = ("source_alert", "source_recovered")


def _iso(dt: datetime | None) -> str | None:
    return iso_shanghai(dt) if dt is not None else None


def _payload(row: SourceHealthRow, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "detail": {
            "source_id": row.source_id,
            "source_name": row.source_name or row.source_id,
            "state": row.state,
            "state_label": STATE_LABEL.get(row.state, row.state),
            "reason": row.reason,
            "checked_at": _iso(row.checked_at),
            "last_success_at": _iso(row.last_success_at),
            "newest_item_at": _iso(row.newest_item_at),
            "dark_s": row.dark_s,
            "lag_s": row.lag_s,
            "problem_since": _iso(row.problem_since),
        },
    }


def _outbox(s: Any, row: SourceHealthRow, kind: str, key: str, now: datetime) -> None:
    if s.scalar(select(Outbox.id).where(Outbox.key == key)) is not None:
        return
    s.add(Outbox(key=key, ticket_id=None, kind=kind, payload=_payload(row, kind), created_at=now, sent_at=now))


def record_health(store: Store, reports: Sequence[CrawlHealth], now: datetime | None = None) -> int:
    """Store the reports (oldest first per source) and write the admin notices they call for.

    A report older than the one already stored for its source changes nothing
    (reports can arrive out of order after a redelivery). Returns the number
    of outbox rows written.
    """
    now = now or utcnow()
    written = 0
    with store.transaction() as s:
        for h in sorted(reports, key=lambda r: r.checked_at):
            row = s.get(SourceHealthRow, h.source_id)
            if row is not None and h.checked_at < row.checked_at:
                continue
            if row is None:
                row = SourceHealthRow(source_id=h.source_id, state=h.state, checked_at=h.checked_at, alerted=[])
                s.add(row)
            alerted = list(row.alerted or [])
            spell = row.problem_since
            row.source_name = h.source_name or row.source_name
            row.state = h.state
            row.checked_at = h.checked_at
            row.last_success_at = h.last_success_at
            row.newest_item_at = h.newest_item_at
            row.lag_s = h.lag_s
            row.dark_s = h.dark_s
            row.error_rate = h.error_rate
            row.reason = h.reason
            row.alert = h.alert
            row.updated_at = now
            if h.state == "ok":
                if spell is not None and alerted:
                    _outbox(s, row, "source_recovered", f"source:{h.source_id}:{spell.isoformat()}:ok", now)
                    written += 1
                row.problem_since = None
                row.alerted = []
                continue
            if spell is None:  # the source just left ok: a new problem spell
                spell = h.checked_at
                alerted = []
                row.problem_since = spell
            if (h.alert or h.state in ALERTING) and h.state not in alerted:
                _outbox(s, row, "source_alert", f"source:{h.source_id}:{spell.isoformat()}:{h.state}", now)
                alerted.append(h.state)
                written += 1
                log.warning("信息源 %s %s：%s", row.source_name or h.source_id,
                            STATE_LABEL.get(h.state, h.state), h.reason)
            row.alerted = alerted
    return written


def source_views(store: Store) -> list[dict[str, Any]]:
    """Every source's latest health, problems first."""
    with store.reader() as s:
        rows = s.scalars(select(SourceHealthRow).order_by(SourceHealthRow.source_id)).all()
        out = [
            {
                "source_id": r.source_id,
                "source_name": r.source_name or r.source_id,
                "state": r.state,
                "state_label": STATE_LABEL.get(r.state, r.state),
                "alert": bool(r.alert or r.state in ALERTING),
                "reason": r.reason,
                "checked_at": _iso(r.checked_at),
                "last_success_at": _iso(r.last_success_at),
                "newest_item_at": _iso(r.newest_item_at),
                "lag_s": r.lag_s,
                "dark_s": r.dark_s,
                "error_rate": r.error_rate,
                "problem_since": _iso(r.problem_since),
            }
            for r in rows
        ]
    return sorted(out, key=lambda v: (not v["alert"], v["state"] == "ok", v["source_id"]))


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "未知"
    m = int(seconds // 60)
    return f"{m // 60}小时{m % 60}分" if m >= 60 else f"{m}分钟"


def render_alert(detail: dict[str, Any]) -> list[str]:
    """The body lines of a source notice (Chinese, Asia/Shanghai times)."""

    def fmt(iso: str | None) -> str:
        return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if iso else "无"

    return [
        f"- 信息源：{detail.get('source_name')}（{detail.get('source_id')}）",
        f"- 状态：{detail.get('state_label')}；{detail.get('reason') or ''}",
        f"- 最近一次成功抓取：{fmt(detail.get('last_success_at'))}（距今{_span(detail.get('dark_s'))}）",
        f"- 最新一条内容发布于：{fmt(detail.get('newest_item_at'))}",
        "- 信息源失联期间的舆情可能漏报，影响5小时等法定时限，请尽快处理（检查网络、Cookie、反爬限制）。",
    ]


def metrics_text(store: Store, now: datetime | None = None, actor: Actor = CLI_ACTOR) -> str:
    """Prometheus text exposition: per-source health, ticket counts, notices nobody received.

    The ticket and notice counts are ``actor``'s jurisdiction's (a filter in the
    query), like every other figure; sources belong to no jurisdiction."""
    from responder.notify.unrouted import unrouted_metrics

    lines = [
        "# HELP yuqing_source_up 1 when the source's last crawl health is ok.",
        "# TYPE yuqing_source_up gauge",
    ]
    views = source_views(store)

    def lbl(v: dict[str, Any]) -> str:
        sid = v["source_id"].replace("\\", "\\\\").replace('"', '\\"')
        return f'{{source="{sid}",state="{v["state"]}"}}'

    for v in views:
        lines.append(f"yuqing_source_up{lbl(v)} {1 if v['state'] == 'ok' else 0}")
    for name, field, help_ in (
        ("yuqing_source_lag_seconds", "lag_s", "Seconds since the newest item the source yielded."),
        ("yuqing_source_dark_seconds", "dark_s", "Seconds since the source's last successful crawl."),
        ("yuqing_source_error_rate", "error_rate", "Failed pages / pages over the recent crawls."),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        lines += [f"{name}{lbl(v)} {float(v[field])}" for v in views if v[field] is not None]
    seen = scope_clause(actor, Ticket.place_code)
    scope = [] if seen is None else [seen]
    with store.reader() as s:
        counts = dict(
            s.execute(select(Ticket.status, func.count()).where(*scope).group_by(Ticket.status)).all()  # type: ignore[arg-type]
        )
    lines += ["# HELP yuqing_tickets Tickets by status.", "# TYPE yuqing_tickets gauge"]
    lines += [f'yuqing_tickets{{status="{k}"}} {int(counts.get(k, 0))}' for k in ("new", "acknowledged", "closed")]
    lines += unrouted_metrics(store, now or utcnow(), actor)
    return "\n".join(lines) + "\n"
