"""The analyst's archive: full-text search over every assessed post (SPEC §1).

* ``GET /search`` — the search page (Chinese): keywords, jurisdiction,
  source kind, topic, severity, date range and order; hits with highlighted
  snippets, facet counts that narrow the search with one click, pages, and
  a CSV export of the whole result.
* ``GET /api/search`` — the same as JSON: ``total``, ``page``, ``size``,
  ``hits`` (times in Asia/Shanghai) and ``facets``.
* ``GET /api/search/export`` — CSV (UTF-8 with BOM, so Excel reads it) of
  every match, newest first, at most :data:`EXPORT_MAX` rows; the
  ``X-Total-Count`` header gives the full count and ``X-Truncated`` says
  when rows were left out.

* ``GET /api/searches``, ``POST /api/searches`` ``{"name", "officer",
  "params"}``, ``DELETE /api/searches/{id}?officer=`` — saved searches
  (监测方案): a name for a set of the parameters below, listed on the page
  with their matches in the last 24 hours; creating and deleting are audited.

Parameters, all optional: ``q`` (keywords, every word must occur), ``place``
(division code or prefix: ``34`` 安徽省 and everything in it), ``kind``,
``topic``, ``severity`` (each may repeat: any of them), ``from`` / ``to``
(dates ``YYYY-MM-DD``, both inclusive, or ISO times; without an offset they
are Asia/Shanghai), ``sort`` (``relevance``, ``time``, ``time_asc``),
``page`` and ``size``. A bad value gets 400 with a message that names it.
The backend is whichever ``search`` in ``settings.yaml`` names (SQLite FTS5
or Elasticsearch), the one the responder indexes into.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from responder.clocks import SHANGHAI, iso_shanghai
from responder.safety import DbId, link_html, spreadsheet_row
from responder.search.base import FACET_FIELDS, SearchBackend, SearchHit, SearchQuery, SearchResult
from responder.store import Audit, SavedSearch, Store

EXPORT_MAX = 10_000
MAX_PAGE_SIZE = 100

KIND_LABEL = {
    "news": "新闻网站",
    "forum": "论坛",
    "weibo": "微博",
    "comments": "新闻跟帖",
    "gov_board": "政府留言板",
    "official": "政务发布",
}
FACET_LABEL = {"source_kind": "来源类型", "topic": "主题", "severity": "级别"}
FACET_PARAM = {"source_kind": "kind", "topic": "topic", "severity": "severity"}
SORT_LABEL = {"relevance": "相关度", "time": "最新", "time_asc": "最早"}
_EM = re.compile(r"</?em>")
_DEFAULTS = {("page", 1), ("size", 20), ("sort", "relevance")}  # left out of links

_e = html.escape


@dataclass
class SearchParams:
    """The request's parameters, as given (for links) and as a query."""

    q: str
    place: str
    kind: list[str]
    topic: list[str]
    severity: list[str]
    date_from: str
    date_to: str
    sort: str
    page: int
    size: int

    def query(self, *, limit: int | None = None, offset: int | None = None) -> SearchQuery:
        try:
            return SearchQuery(
                text=self.q.strip(),
                place_code=self.place.strip() or None,
                source_kind=self.kind or None,
                topic=self.topic or None,
                severity=self.severity or None,
                published_from=parse_when(self.date_from, "from"),
                published_to=parse_when(self.date_to, "to", end=True),
                sort=self.sort,  # type: ignore[arg-type]
                limit=self.size if limit is None else limit,
                offset=(self.page - 1) * self.size if offset is None else offset,
            )
        except ValueError as e:
            raise HTTPException(status_code=400, detail=f"检索条件有误：{e}") from None

    def saved(self) -> dict[str, Any]:
        """The parameters worth keeping (no page, size or empty values)."""
        out: dict[str, Any] = {"q": self.q.strip(), "place": self.place.strip(), "kind": self.kind,
                               "topic": self.topic, "severity": self.severity, "from": self.date_from,
                               "to": self.date_to, "sort": self.sort}
        # Lists (kind, topic, severity) are never defaults; only scalars are looked up.
        return {k: v for k, v in out.items() if v and (isinstance(v, list) or (k, v) not in _DEFAULTS)}

    def link(self, **change: Any) -> str:
        """``/search?…`` with some parameters changed (``None`` drops one)."""
        values: dict[str, Any] = {
            "q": self.q, "place": self.place, "kind": self.kind, "topic": self.topic,
            "severity": self.severity, "from": self.date_from, "to": self.date_to,
            "sort": self.sort, "page": self.page, "size": self.size,
        }
        values.update(change)
        pairs = []
        for k, v in values.items():
            for x in v if isinstance(v, list) else [v]:
                if x in (None, "") or (k, x) in _DEFAULTS:
                    continue
                pairs.append((k, x))
        return "?" + urlencode(pairs) if pairs else "?"


PARAM_KEYS = ("q", "place", "kind", "topic", "severity", "from", "to", "sort")


def params_from(d: dict[str, Any]) -> SearchParams:
    """Saved parameters (as :meth:`SearchParams.saved` writes them) → the first page."""
    unknown = set(d) - set(PARAM_KEYS)
    if unknown:
        raise ValueError(f"未知的检索参数：{'、'.join(sorted(unknown))}（可用：{'、'.join(PARAM_KEYS)}）")

    def many(k: str) -> list[str]:
        v = d.get(k) or []
        return [str(x) for x in ([v] if isinstance(v, str) else v) if str(x).strip()]

    return SearchParams(str(d.get("q") or ""), str(d.get("place") or ""), many("kind"), many("topic"),
                        many("severity"), str(d.get("from") or ""), str(d.get("to") or ""),
                        str(d.get("sort") or "relevance"), 1, 20)


def parse_when(value: str, name: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (a whole day in Asia/Shanghai; as ``to`` it includes that
    day) or an ISO time (no offset: Asia/Shanghai); empty → None."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value):
            y, m, d = (int(x) for x in value.split("-"))
            at = datetime.combine(date(y, m, d), time(0), tzinfo=SHANGHAI)
            return at + timedelta(days=1) if end else at
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} 应为日期 YYYY-MM-DD 或 ISO 时间，而不是 {value!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=SHANGHAI)


def hit_json(h: SearchHit) -> dict[str, Any]:
    return {
        "post_id": h.post_id,
        "title": h.title,
        "title_html": h.title_html,
        "snippet": h.snippet,
        "published_at": iso_shanghai(h.published_at),
        "source_id": h.source_id,
        "source_kind": h.source_kind,
        "source_kind_label": KIND_LABEL.get(h.source_kind, h.source_kind),
        "url": h.url,
        "place_code": h.place_code,
        "place_label": h.place_label,
        "topic": h.topic,
        "severity": h.severity,
        "event_id": h.event_id,
        "score": round(h.score, 4),
    }


def export_rows(backend: SearchBackend, p: SearchParams) -> tuple[list[SearchHit], int]:
    """Every match, newest first (at most :data:`EXPORT_MAX`), and the full count."""
    hits: list[SearchHit] = []
    total = 0
    page = 1000
    while len(hits) < EXPORT_MAX:
        q = p.query(limit=min(page, EXPORT_MAX - len(hits)), offset=len(hits))
        q.sort = "time" if p.sort == "relevance" else q.sort
        res = backend.search(q)
        total = res.total
        hits.extend(res.hits)
        if len(res.hits) < q.limit or len(hits) >= total:
            break
    return hits, total


def export_csv(hits: list[SearchHit]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["发布时间", "标题", "来源类型", "来源", "属地", "属地代码", "主题", "级别", "事件编号", "链接", "摘要"])
    for h in hits:
        w.writerow(spreadsheet_row([
            h.published_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            h.title,
            KIND_LABEL.get(h.source_kind, h.source_kind),
            h.source_id,
            h.place_label,
            h.place_code or "",
            h.topic or "",
            h.severity or "",
            h.event_id if h.event_id is not None else "",
            h.url,
            html.unescape(_EM.sub("", h.snippet)),
        ]))
    return "\ufeff" + buf.getvalue()


# --------------------------------------------------------------------------- page

SEARCH_CSS = """
form.search{background:#fff;padding:12px;display:flex;flex-wrap:wrap;gap:8px;align-items:center}
form.search input[name=q]{flex:1 1 320px;font-size:16px;padding:6px}
form.search input,form.search select{padding:4px}
.layout{display:flex;gap:16px;margin-top:12px}
.facets{flex:0 0 200px;background:#fff;padding:8px 12px;align-self:flex-start}
.facets h3{font-size:14px;margin:10px 0 4px}
.facets a{display:block;font-size:13px;color:#1565c0;text-decoration:none;margin:2px 0}
.facets a.on{font-weight:bold;color:#222}
.results{flex:1}
.hit{background:#fff;padding:10px 12px;margin-bottom:8px}
.hit .t{font-size:16px;color:#1565c0;text-decoration:none}
.hit em{color:#c62828;font-style:normal}
.hit .s{font-size:14px;margin:4px 0}
.pager a{margin-right:12px}
.schemes,.save{background:#fff;padding:8px 12px;margin-bottom:8px;font-size:14px}
.save{margin-top:8px}
"""


def _options(values: dict[str, str], chosen: str) -> str:
    return "".join(
        f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e(label)}</option>' for v, label in values.items()
    )


def search_page(p: SearchParams, res: SearchResult | None, error: str = "",
                schemes: list[dict[str, Any]] | None = None) -> str:
    from responder.web import PAGE_CSS, SEVERITY_COLOUR

    kinds = {"": "全部来源", **KIND_LABEL}
    sev = {"": "全部级别", **{s: s for s in SEVERITY_COLOUR}}
    form = (
        '<form class="search" method="get" action="/search">'
        f'<input name="q" value="{_e(p.q)}" placeholder="关键词（空格分隔，须全部出现）" autofocus>'
        f'<input name="place" value="{_e(p.place)}" size="8" placeholder="属地代码" title="行政区划代码或前缀，如 34、3401">'
        f'<select name="kind">{_options(kinds, p.kind[0] if len(p.kind) == 1 else "")}</select>'
        f'<input name="topic" value="{_e(p.topic[0] if len(p.topic) == 1 else "")}" size="10" placeholder="主题">'
        f'<select name="severity">{_options(sev, p.severity[0] if len(p.severity) == 1 else "")}</select>'
        f'<input type="date" name="from" value="{_e(p.date_from)}" title="起始日期（含）">'
        f'<input type="date" name="to" value="{_e(p.date_to)}" title="截止日期（含）">'
        f'<select name="sort">{_options(SORT_LABEL, p.sort)}</select>'
        "<button>检索</button></form>"
    )
    body = ""
    if error:
        body = f'<div class="source-alert">{_e(error)}</div>'
    elif res is not None:
        facets = []
        for name in FACET_FIELDS:
            counts = res.facets.get(name) or {}
            if not counts:
                continue
            param = FACET_PARAM[name]
            chosen = getattr(p, param)
            links = []
            for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                label = KIND_LABEL.get(value, value) if name == "source_kind" else value
                on = value in chosen
                href = p.link(**{param: [] if on else [value], "page": 1})
                links.append(f'<a class="{"on" if on else ""}" href="/search{_e(href)}">{_e(label)}（{n}）</a>')
            facets.append(f"<h3>{FACET_LABEL[name]}</h3>" + "".join(links))
        hits = []
        for h in res.hits:
            meta = " · ".join(
                x for x in (
                    h.published_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
                    _e(KIND_LABEL.get(h.source_kind, h.source_kind)),
                    _e(h.source_id),
                    _e(h.place_label or "待定"),
                    _e(h.topic or ""),
                    _e(h.severity or ""),
                    f'<a href="/events/{h.event_id}">事件 #{h.event_id}</a>' if h.event_id is not None else "",
                ) if x
            )
            # title_html and snippet are escaped by the backend; their only markup is <em>.
            # Only an http(s) URL becomes a link; anything else stays text.
            hits.append(
                f'<div class="hit">{link_html(h.url, h.title_html or "（无标题）", cls="t")}'
                f'<div class="s">{h.snippet}</div><div class="muted">{meta}</div></div>'
            )
        pages = max(1, -(-res.total // p.size))
        pager = []
        if p.page > 1:
            pager.append(f'<a href="/search{_e(p.link(page=p.page - 1))}">上一页</a>')
        if p.page < pages:
            pager.append(f'<a href="/search{_e(p.link(page=p.page + 1))}">下一页</a>')
        export = f'/api/search/export{_e(p.link(page=None, size=None))}'
        summary = (
            f'<p class="muted">共 {res.total} 条，第 {p.page}/{pages} 页 · '
            f'<a href="{export}">导出全部结果（CSV）</a></p>'
        )
        body = (
            f'<div class="layout"><div class="facets">{"".join(facets) or "<span class=muted>无</span>"}</div>'
            f'<div class="results">{summary}{"".join(hits) or "<div class=empty>没有符合条件的信息</div>"}'
            f'<div class="pager">{"".join(pager)}</div></div></div>'
        )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>舆情检索</title><style>{PAGE_CSS}{SEARCH_CSS}</style></head><body>"
        '<header><h1>舆情监测与回应 · 全库检索</h1><a href="/" style="color:#fff">返回预警工单</a></header>'
        f"<main>{_schemes_html(schemes or [])}{form}{_save_form(p)}{body}</main>"
        f"<script>{SAVE_JS}</script></body></html>"
    )


def _schemes_html(schemes: list[dict[str, Any]]) -> str:
    if not schemes:
        return ""
    items = []
    for v in schemes:
        counts = "" if v["total"] is None else f"（近24小时 {v['last_24h']} 条 / 共 {v['total']} 条）"
        items.append(f'<a href="{_e(v["link"])}">{_e(v["name"])}</a><span class="muted">{counts}</span>')
    return '<div class="schemes">监测方案：' + " · ".join(items) + "</div>"


def _save_form(p: SearchParams) -> str:
    saved = html.escape(json.dumps(p.saved(), ensure_ascii=False), quote=True)
    return (
        f'<div class="save" data-params="{saved}">保存当前条件为监测方案：'
        '<input id="scheme-name" placeholder="方案名称" size="12"> '
        '<input id="scheme-officer" placeholder="保存人" size="8"> '
        '<button onclick="saveScheme()">保存</button> <span id="save-msg" class="muted"></span></div>'
    )


SAVE_JS = """
function saveScheme(){
  var box = document.querySelector('.save');
  var name = document.getElementById('scheme-name').value.trim();
  var officer = document.getElementById('scheme-officer').value.trim();
  var msg = document.getElementById('save-msg');
  if (!name || !officer) { msg.textContent = '请填写方案名称和保存人'; return; }
  fetch('/api/searches', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({name: name, officer: officer, params: JSON.parse(box.dataset.params)})})
    .then(function(r){ return r.json().then(function(b){ return [r.status, b]; }); })
    .then(function(x){
      if (x[0] === 201) { location.reload(); }
      else { msg.textContent = (x[1] && x[1].detail) ? String(x[1].detail) : ('保存失败：' + x[0]); }
    })
    .catch(function(){ msg.textContent = '保存失败：网络错误'; });
}
"""


# --------------------------------------------------------------------------- routes


def search_params(
    q: str = "",
    place: str = "",
    kind: list[str] = Query([]),
    topic: list[str] = Query([]),
    severity: list[str] = Query([]),
    date_from: str = Query("", alias="from"),
    date_to: str = Query("", alias="to"),
    sort: str = "relevance",
    page: int = Query(1, ge=1, le=10_000),
    size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
) -> SearchParams:
    """The query-string parameters of every route below."""
    clean = [[x for x in v if x.strip()] for v in (kind, topic, severity)]
    return SearchParams(q, place, *clean, date_from, date_to, sort, page, size)


class SaveSearch(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    officer: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", "officer")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


def scheme_views(store: Store, backend: SearchBackend | None, now: datetime) -> list[dict[str, Any]]:
    """Every saved search with its link, total and matches published in the last 24 hours."""
    with store.reader() as s:
        rows = s.scalars(select(SavedSearch).order_by(SavedSearch.name)).all()
        out = []
        for r in rows:
            p = params_from(r.params)
            item: dict[str, Any] = {"id": r.id, "name": r.name, "params": r.params, "link": "/search" + p.link(),
                                    "created_by": r.created_by, "created_at": iso_shanghai(r.created_at),
                                    "total": None, "last_24h": None}
            if backend is not None:
                item["total"] = backend.search(p.query(limit=0, offset=0)).total
                recent = p.query(limit=0, offset=0)
                since = now - timedelta(hours=24)
                recent.published_from = max(since, recent.published_from) if recent.published_from else since
                item["last_24h"] = backend.search(recent).total
            out.append(item)
        return out


def search_router(
    get_backend: Callable[[], SearchBackend | None], store: Store, now: Callable[[], datetime]
) -> APIRouter:
    """The routes above; ``get_backend`` returns the open backend or None (→ 503)."""
    router = APIRouter()

    def backend() -> SearchBackend:
        b = get_backend()
        if b is None:
            raise HTTPException(status_code=503, detail="全文检索后端不可用（见 settings.yaml 的 search 配置）")
        return b

    @router.get("/api/search")
    def api_search(p: SearchParams = Depends(search_params)) -> dict[str, Any]:
        res = backend().search(p.query())
        return {"total": res.total, "page": p.page, "size": p.size,
                "hits": [hit_json(h) for h in res.hits], "facets": res.facets}

    @router.get("/api/search/export")
    def api_export(p: SearchParams = Depends(search_params)) -> Response:
        hits, total = export_rows(backend(), p)
        stamp = datetime.now(SHANGHAI).strftime("%Y%m%d-%H%M")
        name = quote(f"舆情检索_{stamp}.csv")
        headers = {
            "Content-Disposition": f"attachment; filename=\"yuqing-search-{stamp}.csv\"; filename*=UTF-8''{name}",
            "X-Total-Count": str(total),
            "X-Truncated": "true" if total > len(hits) else "false",
        }
        return Response(export_csv(hits), media_type="text/csv; charset=utf-8", headers=headers)

    @router.get("/search", response_class=HTMLResponse)
    def page(p: SearchParams = Depends(search_params)) -> HTMLResponse:
        b = get_backend()
        schemes = scheme_views(store, b, now())
        try:
            res = backend().search(p.query())
        except HTTPException as e:
            return HTMLResponse(search_page(p, None, str(e.detail), schemes), status_code=e.status_code)
        return HTMLResponse(search_page(p, res, "", schemes))

    @router.get("/api/searches")
    def list_searches() -> dict[str, Any]:
        return {"now": iso_shanghai(now()), "searches": scheme_views(store, get_backend(), now())}

    @router.post("/api/searches", status_code=201)
    def save_search(body: SaveSearch, request: Request) -> JSONResponse:
        try:
            p = params_from(body.params)
            p.query()  # 400 on a bad value, before anything is saved
        except ValueError as e:
            raise HTTPException(status_code=400, detail=f"检索条件有误：{e}") from None
        at = now()
        try:
            with store.transaction() as s:
                row = SavedSearch(name=body.name, params=p.saved(), created_by=body.officer, created_at=at)
                s.add(row)
                s.flush()
                s.add(Audit(at=at, actor=body.officer, action="saved_search_created",
                            detail={"id": row.id, "name": row.name, "params": row.params},
                            remote_addr=request.client.host if request.client else None))
                rid = row.id
        except IntegrityError:
            raise HTTPException(status_code=409, detail=f"已有名为“{body.name}”的监测方案") from None
        item = next(v for v in scheme_views(store, get_backend(), at) if v["id"] == rid)
        return JSONResponse(item, status_code=201)

    @router.delete("/api/searches/{sid}")
    def delete_search(sid: DbId, request: Request, officer: str = Query(..., min_length=1)) -> dict[str, Any]:
        at = now()
        with store.transaction() as s:
            row = s.get(SavedSearch, sid)
            if row is None:
                raise HTTPException(status_code=404, detail=f"监测方案 {sid} 不存在")
            s.add(Audit(at=at, actor=officer.strip(), action="saved_search_deleted",
                        detail={"id": row.id, "name": row.name, "params": row.params},
                        remote_addr=request.client.host if request.client else None))
            s.delete(row)
        return {"deleted": sid}

    return router
