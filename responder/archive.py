"""The analyst's archive: full-text search over every assessed post (SPEC §1).

The domain half of the search page, API and export (the routes and the page
are in ``web/routes/search.py``):

* :class:`SearchParams` — the parameters below, as given (for links) and as a
  :class:`SearchQuery` within the acting user's jurisdiction; a bad value
  raises :class:`SearchParamError`.
* :func:`hit_json` — a hit as the API gives it (times in Asia/Shanghai).
* :func:`export_rows` / :func:`export_csv` — every match, newest first, at
  most :data:`EXPORT_MAX` rows, as CSV (UTF-8 with BOM, so Excel reads it;
  cells that a spreadsheet would run as a formula are quoted);
  :func:`export` is :func:`export_rows` audited (``search_exported``: who,
  which query, how many rows of how many), for the web and the CLI alike.
* :func:`scheme_views` — saved searches (监测方案) with their matches in the
  last 24 hours; creating and deleting them is :mod:`responder.cases`.

Scope: every query carries the acting user's jurisdiction
(:class:`responder.search.base.Scope`) into the search backend's own query,
so hits, totals, facets and exports never count a post outside it. A saved
search belongs to its creator's jurisdiction: its creator and the users whose
scope covers that jurisdiction see it, each counting matches in their own
scope.

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
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import or_, select

from responder import accounts
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor, scope_prefix
from responder.safety import spreadsheet_row
from responder.search.base import Scope, SearchBackend, SearchHit, SearchQuery, SearchResult
from responder.store import SavedSearch, Store, utcnow

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


class SearchParamError(ValueError):
    """A search parameter with a bad value; ``message`` names it (Chinese). The web answers 400."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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

    def query(self, actor: Actor, *, limit: int | None = None, offset: int | None = None) -> SearchQuery:
        """The backend query, within ``actor``'s jurisdiction."""
        try:
            return SearchQuery(
                text=self.q.strip(),
                place_code=self.place.strip() or None,
                scope=Scope.of(actor),
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
            raise SearchParamError(f"检索条件有误：{e}") from None

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


def search(backend: SearchBackend, actor: Actor, p: SearchParams) -> SearchResult:
    """One page of hits, the total and the facets, within ``actor``'s jurisdiction."""
    return backend.search(p.query(actor))


def export_rows(backend: SearchBackend, actor: Actor, p: SearchParams) -> tuple[list[SearchHit], int]:
    """Every match in ``actor``'s jurisdiction, newest first (at most :data:`EXPORT_MAX`), and the full count."""
    hits: list[SearchHit] = []
    total = 0
    page = 1000
    while len(hits) < EXPORT_MAX:
        q = p.query(actor, limit=min(page, EXPORT_MAX - len(hits)), offset=len(hits))
        q.sort = "time" if p.sort == "relevance" else q.sort
        res = backend.search(q)
        total = res.total
        hits.extend(res.hits)
        if len(res.hits) < q.limit or len(hits) >= total:
            break
    return hits, total


def export(
    store: Store, backend: SearchBackend, actor: Actor, p: SearchParams, *, now: datetime | None = None
) -> tuple[list[SearchHit], int]:
    """:func:`export_rows`, audited (``search_exported``): the query, the rows
    handed out and the full count; bad parameters are audited as ``failed``."""
    at = now or utcnow()
    try:
        hits, total = export_rows(backend, actor, p)
    except SearchParamError as e:
        accounts.audit_alone(store, actor, "search_exported", "failed",
                             {"params": p.saved(), "reason": e.message}, at,
                             place_code=actor.jurisdiction or None)
        raise
    with store.transaction() as s:
        accounts.audit(s, actor, "search_exported", "ok", {"params": p.saved(), "rows": len(hits), "total": total},
                       at=at, place_code=actor.jurisdiction or None)
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


def saved_search_clause(actor: Actor) -> Any | None:
    """The saved searches ``actor`` may read (None: every one): its own, those
    made in a jurisdiction its scope covers, and those made at the top (``""``,
    e.g. from the CLI) when it is at the root, as with items in 待定."""
    prefix = scope_prefix(actor)
    if prefix == "":
        return None
    mine = [SavedSearch.created_by == actor.username, SavedSearch.jurisdiction.like(prefix + "%")]
    if actor.sees(None):
        mine.append(SavedSearch.jurisdiction == "")
    return or_(*mine)


def scheme_views(
    store: Store, backend: SearchBackend | None, actor: Actor, now: datetime
) -> list[dict[str, Any]]:
    """The saved searches ``actor`` may read, each with its link and its total and
    matches published in the last 24 hours within ``actor``'s jurisdiction."""
    with store.reader() as s:
        query = select(SavedSearch).order_by(SavedSearch.name)
        seen = saved_search_clause(actor)
        rows = s.scalars(query if seen is None else query.where(seen)).all()
        out = []
        for r in rows:
            p = params_from(r.params)
            item: dict[str, Any] = {"id": r.id, "name": r.name, "params": r.params, "link": "/search" + p.link(),
                                    "created_by": r.created_by, "created_at": iso_shanghai(r.created_at),
                                    "jurisdiction": r.jurisdiction, "total": None, "last_24h": None}
            if backend is not None:
                item["total"] = backend.search(p.query(actor, limit=0, offset=0)).total
                recent = p.query(actor, limit=0, offset=0)
                since = now - timedelta(hours=24)
                recent.published_from = max(since, recent.published_from) if recent.published_from else since
                item["last_24h"] = backend.search(recent).total
            out.append(item)
        return out
