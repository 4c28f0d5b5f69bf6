"""The alert board and JSON API (FastAPI).

* ``GET /`` — the live board (Chinese): open tickets, most severe first,
  each deadline with a countdown computed in the page from ``due_at``
  (已超时 once past), an acknowledge button, auto-refresh every 5 s.
  Server-rendered HTML plus a little inline JavaScript; no external assets.
* ``GET /api/tickets`` — open tickets; ``GET /api/tickets/{id}`` — one
  ticket with its posts and audit trail.
* ``POST /api/tickets/{id}/ack`` ``{"officer": "张三"}`` — records who,
  when (Asia/Shanghai) and from which address, in the ticket and the audit.
  Acknowledging never touches a deadline. A repeat by the **same** officer
  returns 200 with the unchanged state (a retried request or a double
  click); by **another** officer it returns 409 and says who acknowledged
  first. Unknown ticket → 404, missing/blank officer → 422.
* ``POST /api/tickets/{id}/milestones`` ``{"milestone", "officer",
  "evidence_url"}`` — the milestone is met: its clock stops. Repeating it
  returns 200 with the first record unchanged; an unknown milestone → 422.
* ``POST /api/tickets/{id}/assign`` ``{"officer", "department"}`` — assign
  the responsible department (audited; closed ticket → 409).
* ``POST /api/tickets/{id}/close`` ``{"officer", "outcome"}`` — close with a
  handling outcome (audited; repeating returns 200 unchanged). Ticket
  states: new → acknowledged → closed (new → closed allowed).
* ``POST /api/events/{id}/merge`` ``{"officer", "into"}`` — a duty officer
  merges two open events (audited; see :func:`create_app`).
* ``POST /api/events/{id}/split`` ``{"post_ids", "officer", "reason"}`` — a
  duty officer moves wrongly grouped posts into a new event with its own
  ticket (audited; :mod:`responder.split`).
* ``GET /tickets/{id}`` — one ticket on the board's layout (notification links).
* ``GET /api/reports/timeliness?from=&to=&by=department|region[&as_of=]`` —
  the timeliness figures of SPEC §6 (:mod:`responder.report`).
* ``GET /briefs?period=day|week&date=YYYY-MM-DD`` — the daily or weekly
  brief (舆情日报/周报, :mod:`responder.brief`) as a page; default: today in
  Shanghai, ``day``. ``GET /api/briefs?period=&date=[&as_of=]`` — the same as
  JSON (times ISO, Asia/Shanghai). A bad ``period``, ``date`` or ``as_of`` →
  400 naming it.
* ``GET /api/healthz``.
* ``GET /api/sources`` — every crawled source's latest health (problems
  first); the page shows a warning strip while any source is dark or blocked.
* ``GET /metrics`` — Prometheus text: source health, lag, error rate, tickets,
  notices nobody received (``yuqing_notices_unrouted_total``, ``…_24h``).
* ``GET /api/notices/unrouted`` — notices of the last 24 h that no recipient of
  ``config/notify.yaml`` covered, with why; the page shows an alert strip too.
* ``GET /search``, ``GET /api/search``, ``GET /api/search/export`` — the
  archive search (:mod:`responder.archive`); ``GET /events/{id}`` — the
  ticket of an event (the link from a search hit).

The client address is the TCP peer (``request.client.host``); behind a
reverse proxy run uvicorn with ``--proxy-headers`` so it is the real one.

Every request body is limited to ``web.max_body_bytes`` (413 without the
rest being read); a path id outside the database's integer range is 404 like
any unknown id; only http(s) URLs become links (:mod:`responder.safety`).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from responder.archive import search_router
from responder.clocks import SHANGHAI, iso_shanghai
from responder.notify.unrouted import unrouted_banner_html, unrouted_summary
from responder.safety import BodyLimitMiddleware, DbId, id_out_of_range, link_html, valid_id
from responder.search.base import SearchBackend
from responder.sources import banner_html, metrics_text, source_views
from responder.store import (
    SEVERITY_RANK,
    Audit,
    Deadline,
    DeadlineWarning,
    Event,
    Post,
    Store,
    Ticket,
    emit_fact,
    utcnow,
)
from yuqing.settings import Settings

log = logging.getLogger("yuqing.web")

SEVERITY_COLOUR = {"特别重大": "#c62828", "重大": "#ef6c00", "较大": "#f9a825", "一般": "#1565c0"}
STATUS_LABEL = {"new": "待确认", "acknowledged": "已确认", "closed": "已办结"}
PRECISION_LABEL = {
    "second": "精确到秒",
    "minute": "精确到分钟",
    "hour": "精确到小时",
    "day": "仅有日期，按当日0时起算",
    "unknown": "发布时间不详",
}
RULE_LABEL = {
    "major_emergency": "重大突发事件（5小时/24小时）",
    "response_48h": "政务舆情回应（48小时）",
    "suggestion": "网民意见建议（7个工作日）",
    "complaint": "咨询投诉（15个工作日）",
    "none": "无法定时限",
}


class AckIn(BaseModel):
    officer: str = Field(min_length=1, max_length=100)

    @field_validator("officer")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("确认人姓名不能为空")
        return v


class AssignIn(AckIn):
    department: str = Field(min_length=1, max_length=100)


class CloseIn(AckIn):
    outcome: str = Field(min_length=1, max_length=2000)


class MergeIn(AckIn):
    into: int = Field(ge=1)


class SplitIn(AckIn):
    post_ids: list[str] = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("拆分理由不能为空")
        return v


class MilestoneIn(AckIn):
    milestone: str = Field(min_length=1, max_length=40)
    evidence_url: str | None = Field(None, max_length=2000)


# --------------------------------------------------------------------------- views


def _fmt(dt: datetime | None) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if dt else ""


def _primary(responders: list[Any] | None, department: str | None) -> str:
    for r in responders or []:
        if isinstance(r, dict) and r.get("role") == "primary" and r.get("name"):
            return str(r["name"])
    return department or "待指定"


def ticket_view(s: Session, t: Ticket, now: datetime) -> dict[str, Any]:
    ev = s.get(Event, t.event_id)
    assert ev is not None
    place = dict(ev.place or {})
    deadlines = s.scalars(select(Deadline).where(Deadline.ticket_id == t.id).order_by(Deadline.due_at)).all()
    return {
        "id": t.id,
        "status": t.status,
        "status_label": STATUS_LABEL.get(t.status, t.status),
        "event": {
            "id": ev.id,
            "title": ev.title,
            "t0": iso_shanghai(ev.t0),
            "t0_precision": ev.t0_precision,
            "t0_post_id": ev.t0_post_id,
            "crawl_lag_seconds": ev.t0_crawl_lag_s,
            "post_count": ev.post_count,
            "event_type": ev.event_type,
            "event_subtype": ev.event_subtype,
        },
        "severity": t.severity,
        "severity_reason": t.severity_reason,
        "place": {
            "province": place.get("province"),
            "city": place.get("city"),
            "county": place.get("county"),
            "code": t.place_code,
            "label": t.place_label or "待定",
        },
        "department": t.department,
        "primary_responder": _primary(t.responders, t.department),
        "responders": t.responders or [],
        "rule": t.rule,
        "rule_label": RULE_LABEL.get(t.rule, t.rule),
        "deadlines": [
            {
                "milestone": d.milestone,
                "rule": d.rule,
                "due_at": iso_shanghai(d.due_at),
                "met_at": iso_shanghai(d.met_at),
                "met_by": d.met_by,
                "evidence_url": d.evidence_url,
                "fired_at": iso_shanghai(d.fired_at),
                "seconds_left": int((d.due_at - now).total_seconds()),
                "overdue": d.met_at is None and d.due_at <= now,
            }
            for d in deadlines
        ],
        "created_at": iso_shanghai(t.created_at),
        "acknowledged_by": t.acknowledged_by,
        "acknowledged_at": iso_shanghai(t.acknowledged_at),
        "acknowledged_from": t.acknowledged_from,
    }


def open_tickets(s: Session, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    rows = s.scalars(
        select(Ticket).where(Ticket.status != "closed").order_by(Ticket.created_at.desc()).limit(limit)
    ).all()
    rows = sorted(rows, key=lambda t: (-SEVERITY_RANK.get(t.severity, 0), -t.created_at.timestamp(), -t.id))
    return [ticket_view(s, t, now) for t in rows]


# --------------------------------------------------------------------------- HTML

_e = html.escape

PAGE_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#263238;color:#fff;padding:12px 20px;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:20px;margin:0}
main{padding:16px 20px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e0e0e0;padding:8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#eceff1}
.sev{color:#fff;padding:2px 8px;border-radius:3px;white-space:nowrap}
.pending-place{color:#b71c1c;font-weight:bold}
.dl{margin:2px 0;white-space:nowrap}
.countdown{font-family:monospace}
.countdown.soon{color:#ef6c00;font-weight:bold}
.countdown.overdue{color:#c62828;font-weight:bold}
.met{color:#2e7d32}
button{cursor:pointer;padding:4px 10px}
.muted{color:#777;font-size:12px}
.empty{padding:24px;text-align:center;color:#777;background:#fff}
.source-alert{background:#fff3e0;border-left:4px solid #e65100;color:#bf360c;padding:8px 12px;margin-bottom:12px}
"""

PAGE_JS = """
var skewMs = 0;
function readSkew(){
  var root = document.getElementById('tickets-root');
  if (root && root.dataset.now) { skewMs = Date.parse(root.dataset.now) - Date.now(); }
}
function fmt(sec){
  sec = Math.floor(Math.abs(sec));
  var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600),
      m = Math.floor(sec % 3600 / 60), s = sec % 60;
  return (d ? d + '天' : '') + h + '小时' + m + '分' + s + '秒';
}
function tick(){
  var now = Date.now() + skewMs;
  document.querySelectorAll('.countdown').forEach(function(el){
    if (el.dataset.met) { return; }
    var left = (Date.parse(el.dataset.due) - now) / 1000;
    if (left <= 0) {
      el.textContent = '已超时 ' + fmt(left);
      el.classList.add('overdue'); el.classList.remove('soon');
    } else {
      el.textContent = '剩余 ' + fmt(left);
      el.classList.toggle('soon', left < 3600);
    }
  });
}
var busy = false;
async function refresh(){
  if (busy) { return; }
  try {
    var r = await fetch('/fragment/tickets', {cache: 'no-store'});
    if (r.ok) {
      document.getElementById('tickets').innerHTML = await r.text();
      readSkew(); tick();
      document.getElementById('updated').textContent = '更新于 ' + new Date().toLocaleTimeString('zh-CN');
    }
  } catch (e) {
    document.getElementById('updated').textContent = '刷新失败，稍后重试';
  }
}
async function post(url, body){
  var r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                            body: JSON.stringify(body)});
  var j = {};
  try { j = await r.json(); } catch (e) {}
  if (!r.ok) {
    var msg = typeof j.detail === 'string' ? j.detail : JSON.stringify(j.detail || r.status);
    alert('操作失败：' + msg);
  }
  return r.ok;
}
async function ack(id){
  busy = true;
  var name = prompt('请输入确认人（值班员）姓名：');
  busy = false;
  if (!name || !name.trim()) { return; }
  await post('/api/tickets/' + id + '/ack', {officer: name.trim()});
  refresh();
}
async function meet(id, milestone){
  busy = true;
  var name = prompt('「' + milestone + '」已完成。请输入登记人姓名：');
  var url = name ? prompt('请输入佐证链接（发布稿、发布会通知等网址，可留空）：', '') : null;
  busy = false;
  if (!name || !name.trim()) { return; }
  await post('/api/tickets/' + id + '/milestones',
             {milestone: milestone, officer: name.trim(), evidence_url: url || null});
  refresh();
}
readSkew(); tick();
setInterval(tick, 1000);
setInterval(refresh, 5000);
"""


def _deadline_html(tid: int, d: dict[str, Any]) -> str:
    ms = _e(d["milestone"])
    if d["met_at"]:
        evidence = f" {link_html(d['evidence_url'], '佐证')}" if d.get("evidence_url") else ""
        return (
            f'<div class="dl">{ms}：<span class="met">已完成 {_e(d["met_at"][:16].replace("T", " "))}'
            f"（{_e(d['met_by'] or '')}）</span>{evidence}</div>"
        )
    due_txt = _e(d["due_at"][:16].replace("T", " "))
    ms_js = _e(json.dumps(d["milestone"], ensure_ascii=False))
    initial = "已超时" if d["overdue"] else "剩余"
    return (
        f'<div class="dl">{ms}：截止 {due_txt} '
        f'<span class="countdown{" overdue" if d["overdue"] else ""}" data-due="{_e(d["due_at"])}">{initial}</span> '
        f'<button class="meet" onclick="meet({tid}, {ms_js})">登记完成</button></div>'
    )


def tickets_fragment(tickets: list[dict[str, Any]], now: datetime) -> str:
    now_iso = _e(now.astimezone(SHANGHAI).isoformat())
    if not tickets:
        return f'<div id="tickets-root" data-now="{now_iso}"><div class="empty">当前没有待处理的舆情工单</div></div>'
    rows = []
    for t in tickets:
        colour = SEVERITY_COLOUR.get(t["severity"], "#555")
        place = t["place"]["label"]
        place_html = '<span class="pending-place">待定（属地未明）</span>' if place == "待定" else _e(place)
        if t["acknowledged_at"]:
            ack_html = (
                f'<span class="met">已确认</span><div class="muted">{_e(t["acknowledged_by"] or "")} '
                f"{_e(t['acknowledged_at'][:16].replace('T', ' '))}</div>"
            )
        else:
            ack_html = f'<button class="ack" onclick="ack({t["id"]})">确认接收</button>'
        deadlines = (
            "".join(_deadline_html(t["id"], d) for d in t["deadlines"]) or '<span class="muted">无</span>'
        )
        ev = t["event"]
        rows.append(
            f'<tr data-ticket="{t["id"]}">'
            f"<td>#{t['id']}</td>"
            f'<td><span class="sev" style="background:{colour}">{_e(t["severity"])}</span>'
            f'<div class="muted">{_e(t["severity_reason"] or "")}</div></td>'
            f'<td>{_e(ev["title"])}<div class="muted">首发 {_e((ev["t0"] or "")[:16].replace("T", " "))}'
            f"（{_e(PRECISION_LABEL.get(ev['t0_precision'], ev['t0_precision']))}） · {ev['post_count']} 条</div></td>"
            f"<td>{place_html}</td>"
            f'<td>{_e(t["primary_responder"])}<div class="muted">{_e(t["rule_label"])}</div></td>'
            f"<td>{deadlines}</td>"
            f"<td>{_e(t['status_label'])}</td>"
            f"<td>{ack_html}</td>"
            "</tr>"
        )
    return (
        f'<div id="tickets-root" data-now="{now_iso}"><table><thead><tr>'
        "<th>编号</th><th>级别</th><th>事件</th><th>属地</th><th>回应主体</th><th>时限</th>"
        "<th>状态</th><th>确认</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def page(tickets: list[dict[str, Any]], now: datetime, *, live: bool = True, banner: str = "") -> str:
    js = PAGE_JS if live else PAGE_JS.replace("setInterval(refresh, 5000);", "")
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>舆情监测与回应</title><style>{PAGE_CSS}</style></head><body>"
        '<header><h1>舆情监测与回应 · 预警工单</h1><span><a href="/search" style="color:#fff">全库检索</a> '
        '<a href="/briefs" style="color:#fff">日报/周报</a> '
        f'<span id="updated" class="muted">更新于 {_e(now.astimezone(SHANGHAI).strftime("%H:%M:%S"))}</span></span></header>'
        f'<main><div id="tickets">{banner}{tickets_fragment(tickets, now)}</div>'
        '<p class="muted">时限自事件首发时间（T0）起算；确认接收不停止法定时限，'
        "只有登记相应节点完成才停止计时。页面每 5 秒自动刷新。</p></main>"
        f"<script>{js}</script></body></html>"
    )


# --------------------------------------------------------------------------- app


def _open_search_or_none(settings: Settings) -> SearchBackend | None:
    """The configured search backend, or None (logged) when it cannot be opened."""
    from responder.search import open_search

    try:
        return open_search(settings)
    except Exception:
        log.exception("无法打开全文检索后端")
        return None


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    now: Callable[[], datetime] = utcnow,
    search: SearchBackend | None = None,
) -> FastAPI:
    """The web app. ``store`` defaults to ``Store(settings.store_url)``; ``now`` is
    the clock; ``search`` defaults to the backend ``settings.search`` names,
    opened on the first search (and tried again while it cannot be opened)."""
    st = store or Store(settings.store_url)
    app = FastAPI(title="舆情监测与回应", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.store = st
    app.state.settings = settings
    app.state.search = search
    # Every request body is bounded (413 without reading the rest), JSON and forms alike.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.web.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Any:
        # A path id outside the database's integer range names nothing: 404, like
        # any unknown id, instead of an overflow inside the database driver.
        err = id_out_of_range(list(exc.errors()))
        if err is not None:
            return JSONResponse({"detail": f"编号 {err.get('input')} 不存在"}, status_code=404)
        return await request_validation_exception_handler(request, exc)

    def search_backend() -> SearchBackend | None:
        if app.state.search is None:
            app.state.search = _open_search_or_none(settings)
        return app.state.search

    app.include_router(search_router(search_backend, st, now))

    def _get_ticket(s: Session, tid: int, lock: bool = False) -> Ticket:
        # FOR UPDATE (PostgreSQL): two officers acknowledging at once queue up
        # and the second sees the first; SQLite writers are serial anyway.
        t = s.get(Ticket, tid, with_for_update=lock or None)
        if t is None:
            raise HTTPException(status_code=404, detail=f"工单 {tid} 不存在")
        return t

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        n = now()
        with st.reader() as s:
            banner = banner_html(source_views(st)) + unrouted_banner_html(unrouted_summary(st, n))
            return page(open_tickets(s, n), n, banner=banner)

    @app.get("/fragment/tickets", response_class=HTMLResponse)
    def fragment() -> str:
        n = now()
        with st.reader() as s:
            banner = banner_html(source_views(st)) + unrouted_banner_html(unrouted_summary(st, n))
            return banner + tickets_fragment(open_tickets(s, n), n)

    @app.get("/api/sources")
    def sources() -> dict[str, Any]:
        """Every crawled source's latest health (from ``crawl.health``), problems first."""
        items = source_views(st)
        return {"now": iso_shanghai(now()), "alerts": sum(v["alert"] for v in items), "sources": items}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus text: source health and ticket counts, and each stage loop's health."""
        from stream.health import metrics_text as stage_metrics
        from stream.stage import STATE_DIR

        return metrics_text(st, now()) + stage_metrics(settings.data_path(STATE_DIR))

    @app.get("/api/notices/unrouted")
    def notices_unrouted() -> dict[str, Any]:
        """Notices of the last 24 h that no recipient of notify.yaml covered, with why."""
        n = now()
        return {"now": iso_shanghai(n), **unrouted_summary(st, n, limit=200)}

    @app.get("/tickets/{tid}", response_class=HTMLResponse)
    def ticket_page(tid: DbId) -> str:
        """One ticket on its own page (the link in notifications)."""
        n = now()
        with st.reader() as s:
            t = _get_ticket(s, tid)
            return page([ticket_view(s, t, n)], n, live=False)

    @app.get("/events/{eid}", response_class=HTMLResponse)
    def event_page(eid: DbId) -> str:
        """The ticket of one event (the link from a search hit)."""
        n = now()
        with st.reader() as s:
            t = s.scalars(select(Ticket).where(Ticket.event_id == eid)).first()
            if t is None:
                raise HTTPException(status_code=404, detail=f"事件 {eid} 没有工单（可能已并入其他事件）")
            return page([ticket_view(s, t, n)], n, live=False)

    @app.get("/api/reports/timeliness")
    def report_timeliness(
        date_from: str = Query(..., alias="from"),
        date_to: str = Query(..., alias="to"),
        by: str = "department",
        as_of: str | None = None,
    ) -> dict[str, Any]:
        from datetime import date as _date

        from responder.report import timeliness

        try:
            f, t = _date.fromisoformat(date_from), _date.fromisoformat(date_to)
            at = datetime.fromisoformat(as_of) if as_of else now()
        except ValueError as e:
            raise HTTPException(status_code=422, detail=f"日期格式错误（应为 YYYY-MM-DD）：{e}") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=SHANGHAI)
        if by not in ("department", "region"):
            raise HTTPException(status_code=422, detail="by 只能是 department 或 region")
        if t < f:
            raise HTTPException(status_code=422, detail="to 早于 from")
        return timeliness(st, f, t, by=by, as_of=at).to_dict()

    def _brief(period: str | None, day: str | None, as_of: str | None) -> Any:
        from responder.brief import BriefParamError, brief, parse_params

        try:
            p, d, at = parse_params(period, day, as_of, now())
        except BriefParamError as e:
            raise HTTPException(status_code=400, detail=e.message) from None
        return brief(st, p, d, as_of=at)

    @app.get("/api/briefs")
    def api_brief(
        period: str | None = None, day: str | None = Query(None, alias="date"), as_of: str | None = None
    ) -> dict[str, Any]:
        """The daily / weekly brief as JSON (:mod:`responder.brief`)."""
        return _brief(period, day, as_of).to_dict()

    @app.get("/briefs", response_class=HTMLResponse)
    def brief_page(
        period: str | None = None, day: str | None = Query(None, alias="date"), as_of: str | None = None
    ) -> HTMLResponse:
        """The daily / weekly brief (舆情日报/周报) as a page."""
        from responder.brief import brief_error_html, brief_html

        try:
            b = _brief(period, day, as_of)
        except HTTPException as e:
            return HTMLResponse(brief_error_html(str(e.detail)), status_code=e.status_code)
        return HTMLResponse(brief_html(b))

    @app.get("/api/healthz")
    def healthz() -> JSONResponse:
        try:
            with st.reader() as s:
                s.execute(text("SELECT 1"))
                n_open = s.scalar(select(func.count()).select_from(Ticket).where(Ticket.status != "closed"))
        except Exception as e:  # report, do not crash
            return JSONResponse({"status": "error", "db": f"{type(e).__name__}: {e}"}, status_code=503)
        return JSONResponse({"status": "ok", "db": st.dialect, "open_tickets": int(n_open or 0)})

    @app.get("/api/tickets")
    def list_tickets() -> dict[str, Any]:
        n = now()
        with st.reader() as s:
            items = open_tickets(s, n)
        return {"now": iso_shanghai(n), "count": len(items), "tickets": items}

    @app.get("/api/tickets/{tid}")
    def get_ticket(tid: DbId) -> dict[str, Any]:
        n = now()
        with st.reader() as s:
            t = _get_ticket(s, tid)
            out = ticket_view(s, t, n)
            posts = s.scalars(
                select(Post).where(Post.event_id == t.event_id).order_by(Post.published_at)
            ).all()
            out["posts"] = [
                {
                    "post_id": p.post_id,
                    "source_id": p.source_id,
                    "source_kind": p.source_kind,
                    "source_name": p.source_name,
                    "url": p.url,
                    "title": p.title,
                    "text": p.text[:500],
                    "published_at": iso_shanghai(p.published_at),
                    "precision": p.precision,
                    "fetched_at": iso_shanghai(p.fetched_at),
                    "crawl_lag_seconds": (p.fetched_at - p.published_at).total_seconds(),
                    "place_label": p.place_label,
                    "severity": p.severity,
                }
                for p in posts
            ]
            audits = s.scalars(select(Audit).where(Audit.ticket_id == tid).order_by(Audit.at, Audit.id)).all()
            out["audit"] = [
                {
                    "at": iso_shanghai(a.at),
                    "actor": a.actor,
                    "action": a.action,
                    "detail": a.detail,
                    "remote_addr": a.remote_addr,
                }
                for a in audits
            ]
        return out

    @app.post("/api/tickets/{tid}/ack")
    def acknowledge(tid: DbId, body: AckIn, request: Request) -> JSONResponse:
        n = now()
        addr = request.client.host if request.client else None
        with st.transaction() as s:
            t = _get_ticket(s, tid, lock=True)
            if t.acknowledged_at is not None:
                if t.acknowledged_by != body.officer:
                    raise HTTPException(
                        status_code=409,
                        detail=f"工单 {tid} 已由 {t.acknowledged_by} 于 {_fmt(t.acknowledged_at)} 确认接收",
                    )
                return JSONResponse({"already": True, "ticket": ticket_view(s, t, n)})
            t.acknowledged_at = n
            t.acknowledged_by = body.officer
            t.acknowledged_from = addr
            if t.status == "new":
                t.status = "acknowledged"
            emit_fact(
                s,
                ticket=t,
                kind="acknowledged",
                key=f"{t.id}:ack",
                at=n,
                actor=body.officer,
                detail={"officer": body.officer, "at": iso_shanghai(n), "from": addr},
                outbox=True,
                remote_addr=addr,
            )
            return JSONResponse({"already": False, "ticket": ticket_view(s, t, n)})

    @app.post("/api/tickets/{tid}/assign")
    def assign(tid: DbId, body: AssignIn, request: Request) -> JSONResponse:
        """Assign the responsible department (new/acknowledged tickets; audited)."""
        n = now()
        addr = request.client.host if request.client else None
        with st.transaction() as s:
            t = _get_ticket(s, tid, lock=True)
            if t.status == "closed":
                raise HTTPException(status_code=409, detail=f"工单 {tid} 已办结，不能再指派")
            dept = body.department.strip()
            if t.department == dept:
                return JSONResponse({"already": True, "ticket": ticket_view(s, t, n)})
            count = s.scalar(
                select(func.count())
                .select_from(Audit)
                .where(Audit.ticket_id == tid, Audit.action == "assigned")
            )
            old = t.department
            t.department = dept
            emit_fact(
                s,
                ticket=t,
                kind="assigned",
                key=f"{t.id}:assigned:{int(count or 0) + 1}",
                at=n,
                actor=body.officer,
                detail={"from": old, "to": dept, "officer": body.officer, "at": iso_shanghai(n)},
                outbox=True,
                remote_addr=addr,
            )
            return JSONResponse({"already": False, "ticket": ticket_view(s, t, n)})

    @app.post("/api/tickets/{tid}/close")
    def close(tid: DbId, body: CloseIn, request: Request) -> JSONResponse:
        """Close with a handling outcome (办结). Unmet statutory milestones keep their
        clocks (only a milestone stops one) and count as breaches in the reports.
        A pending 持续发布 follow-up is dropped: the event is over."""
        from responder.scheduler import drop_open_followups

        n = now()
        addr = request.client.host if request.client else None
        with st.transaction() as s:
            # The events lock before the ticket's row lock, in the responder's order.
            st.lock_events(s)
            t = _get_ticket(s, tid, lock=True)
            if t.status == "closed":
                return JSONResponse({"already": True, "ticket": ticket_view(s, t, n)})
            t.status = "closed"
            t.closed_at = n
            ev = s.get(Event, t.event_id)
            if ev is not None:
                ev.status = "closed"
                st.stamp_events(s, ev)  # responders drop it from the events a post may join
            dropped = drop_open_followups(s, t)
            open_ms = s.scalars(
                select(Deadline.milestone).where(Deadline.ticket_id == tid, Deadline.met_at.is_(None))
            ).all()
            emit_fact(
                s,
                ticket=t,
                kind="closed",
                key=f"{t.id}:closed",
                at=n,
                actor=body.officer,
                detail={
                    "officer": body.officer,
                    "outcome": body.outcome.strip(),
                    "at": iso_shanghai(n),
                    "open_milestones": list(open_ms),
                    "followups_dropped": dropped,
                },
                outbox=True,
                remote_addr=addr,
            )
            return JSONResponse({"already": False, "ticket": ticket_view(s, t, n)})

    @app.post("/api/events/{eid}/merge")
    def merge(eid: DbId, body: MergeIn, request: Request) -> JSONResponse:
        """A duty officer merges event ``eid`` into event ``into`` (audited).

        The posts move; the target's T0 becomes the earlier of the two (its open
        deadlines move with it) and its severity the higher; the merged event's
        ticket is closed (fact ``closed`` with ``merged_into``) and its unmet
        deadlines are removed — the target's clocks cover the incident — and
        listed in the audit.
        """
        from responder.events import upgrade_rule
        from responder.scheduler import recompute_deadlines
        from responder.service import clocks_for

        n = now()
        addr = request.client.host if request.client else None
        if body.into == eid:
            raise HTTPException(status_code=422, detail="不能将事件合并到自身")
        if not valid_id(body.into):
            raise HTTPException(status_code=404, detail=f"事件 {body.into} 不存在")
        with st.transaction() as s:
            st.lock_events(s)
            src, dst = s.get(Event, eid, with_for_update=True), s.get(Event, body.into, with_for_update=True)
            if src is None or dst is None:
                raise HTTPException(
                    status_code=404, detail=f"事件 {eid if src is None else body.into} 不存在"
                )
            if src.status != "open" or dst.status != "open":
                raise HTTPException(status_code=409, detail="只能合并两个未关闭的事件")
            st_ticket = s.scalar(select(Ticket).where(Ticket.event_id == src.id))
            dt_ticket = s.scalar(select(Ticket).where(Ticket.event_id == dst.id))
            assert st_ticket is not None and dt_ticket is not None
            s.execute(
                update(Post)
                .where(Post.event_id == src.id)
                .values(event_id=dst.id)
                .execution_options(synchronize_session=False)
            )
            dst.post_count = (dst.post_count or 0) + (src.post_count or 0)
            dst.last_published_at = max(dst.last_published_at, src.last_published_at)
            moved: list[dict[str, Any]] = []
            if src.t0 < dst.t0:
                dst.t0, dst.t0_post_id, dst.t0_precision = src.t0, src.t0_post_id, src.t0_precision
                dst.t0_crawl_lag_s = src.t0_crawl_lag_s
                moved = recompute_deadlines(s, clocks_for(settings), dt_ticket, dst.t0)
            added: list[dict[str, Any]] = []
            if SEVERITY_RANK.get(src.severity, 0) > SEVERITY_RANK.get(dst.severity, 0) or (
                src.is_emergency and not dst.is_emergency
            ):
                if SEVERITY_RANK.get(src.severity, 0) > SEVERITY_RANK.get(dst.severity, 0):
                    dst.severity, dst.severity_reason = src.severity, src.severity_reason
                    dt_ticket.severity, dt_ticket.severity_reason = src.severity, src.severity_reason
                if src.is_emergency and not dst.is_emergency:
                    dst.is_emergency = True
                    dst.event_type = dst.event_type or src.event_type
                    dst.event_subtype = dst.event_subtype or src.event_subtype
                # The stricter clock (e.g. 5 h / 24 h) applies from the merged T0.
                added = [
                    {"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)}
                    for d in upgrade_rule(s, clocks_for(settings), dst, dt_ticket)
                ]
            removed = []
            for d in s.scalars(
                select(Deadline).where(Deadline.ticket_id == st_ticket.id, Deadline.met_at.is_(None))
            ):
                removed.append({"milestone": d.milestone, "due_at": iso_shanghai(d.due_at)})
                s.execute(
                    DeadlineWarning.__table__.delete().where(DeadlineWarning.deadline_id == d.id)  # type: ignore[attr-defined]
                )
                s.delete(d)
            src.status = "merged"
            st.stamp_events(s, src, dst)  # responders reload both
            st_ticket.status, st_ticket.closed_at = "closed", n
            detail = {
                "from_event": src.id,
                "into_event": dst.id,
                "from_ticket": st_ticket.id,
                "into_ticket": dt_ticket.id,
                "officer": body.officer,
                "deadlines_removed": removed,
                "deadlines_moved": moved,
                "deadlines_added": added,
                "rule": dt_ticket.rule,
            }
            s.add(
                Audit(
                    ticket_id=dt_ticket.id,
                    event_id=dst.id,
                    at=n,
                    actor=body.officer,
                    action="event_merged",
                    detail=detail,
                    remote_addr=addr,
                )
            )
            emit_fact(
                s,
                ticket=st_ticket,
                kind="closed",
                key=f"{st_ticket.id}:closed",
                at=n,
                actor=body.officer,
                detail={"outcome": f"合并至工单 #{dt_ticket.id}", "merged_into": dt_ticket.id, **detail},
                outbox=True,
                audit_action="event_merged",
                remote_addr=addr,
            )
            return JSONResponse({"ticket": ticket_view(s, dt_ticket, n), "closed_ticket": st_ticket.id})

    @app.post("/api/events/{eid}/split")
    def split(eid: DbId, body: SplitIn, request: Request) -> JSONResponse:
        """A duty officer splits ``post_ids`` off event ``eid`` into a new event (audited).

        The posts must all belong to the event and may not be all of them
        (422); unknown event → 404, closed or merged event → 409. The new
        event's ticket is opened as the grouper opens one (T0, severity, place,
        rule and deadlines from the moved posts); the original event's T0,
        severity and post count are recomputed from the remaining posts and its
        open deadlines follow a later T0 (met milestones stay met). Both
        tickets get an ``event_split`` audit row and a ticket event.
        """
        from responder.service import clocks_for
        from responder.split import SplitError, split_event

        n = now()
        addr = request.client.host if request.client else None
        with st.transaction() as s:
            st.lock_events(s)
            ev = s.get(Event, eid, with_for_update=True)
            if ev is None:
                raise HTTPException(status_code=404, detail=f"事件 {eid} 不存在")
            try:
                res = split_event(
                    s,
                    clocks_for(settings),
                    ev,
                    body.post_ids,
                    officer=body.officer,
                    reason=body.reason,
                    now=n,
                    remote_addr=addr,
                )
            except SplitError as e:
                raise HTTPException(status_code=e.status, detail=e.message) from None
            return JSONResponse(
                {
                    "ticket": ticket_view(s, res.original, n),
                    "new_ticket": ticket_view(s, res.new, n),
                    "moved_post_ids": res.moved_post_ids,
                    "deadlines_moved": res.deadlines_moved,
                }
            )

    @app.post("/api/tickets/{tid}/milestones")
    def milestone(tid: DbId, body: MilestoneIn, request: Request) -> JSONResponse:
        from responder.scheduler import plan_followup
        from responder.service import clocks_for

        n = now()
        addr = request.client.host if request.client else None
        with st.transaction() as s:
            t = _get_ticket(s, tid, lock=True)
            d = s.scalar(
                select(Deadline).where(Deadline.ticket_id == tid, Deadline.milestone == body.milestone)
            )
            if d is None:
                known = s.scalars(select(Deadline.milestone).where(Deadline.ticket_id == tid)).all()
                raise HTTPException(
                    status_code=422,
                    detail=f"工单 {tid} 没有节点「{body.milestone}」（可选：{'、'.join(known) or '无'}）",
                )
            if d.met_at is not None:
                return JSONResponse({"already": True, "ticket": ticket_view(s, t, n)})
            d.met_at = n
            d.met_by = body.officer
            d.evidence_url = body.evidence_url
            # Its warning points are moot now: close them so the scheduler never looks again.
            s.execute(
                update(DeadlineWarning)
                .where(DeadlineWarning.deadline_id == d.id, DeadlineWarning.fired_at.is_(None))
                .values(fired_at=n, outcome="moot")
                .execution_options(synchronize_session=False)
            )
            on_time = n <= d.due_at
            nxt = plan_followup(s, clocks_for(settings), t, d)
            emit_fact(
                s,
                ticket=t,
                kind="milestone",
                key=f"{t.id}:{d.milestone}:met",
                at=n,
                actor=body.officer,
                detail={
                    "milestone": d.milestone,
                    "due_at": iso_shanghai(d.due_at),
                    "met_at": iso_shanghai(n),
                    "on_time": on_time,
                    "evidence_url": body.evidence_url,
                    "officer": body.officer,
                    "next_followup": {"milestone": nxt.milestone, "due_at": iso_shanghai(nxt.due_at)}
                    if nxt
                    else None,
                },
                outbox=True,
                remote_addr=addr,
            )
            return JSONResponse({"already": False, "ticket": ticket_view(s, t, n)})

    return app
