"""The analyst's archive: full-text search over every assessed post (SPEC §1).

The domain half of the search page, API and export (the routes and the page
are in ``web/routes/search.py``):

* :class:`SearchParams` — the parameters below, as given (for links) and as a
  :class:`SearchQuery` within the acting user's jurisdiction; a bad value
  raises :class:`SearchParamError`.
* :func:`hit_json` — a hit as the API gives it (times in Asia/Shanghai).
* :func:`export_rows` / :func:`export_csv` / :func:`export_xlsx` — every
  match, newest first, at most :data:`EXPORT_MAX` rows, as CSV (UTF-8 with
  BOM, so Excel reads it) or as an Excel workbook, the same rows (cells that a
  spreadsheet would run as a formula are quoted);
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
(division code or prefix: ``34`` 安徽省 and everything in it; or a place name
from the gazetteer, full, short, former or alias: 合肥 → ``3401``, 蜀山区 →
``340104``, 安徽省合肥市 → ``3401``), ``kind``, ``topic``, ``severity`` (each
may repeat: any of them), ``from`` / ``to`` (dates ``YYYY-MM-DD``, both
inclusive, or ISO times; without an offset they are Asia/Shanghai), ``sort``
(``relevance``, ``time``, ``time_asc``), ``page`` and ``size``. A bad value
gets 400 with a message that names it (:class:`SearchParamError`): a place
name or code the gazetteer does not know, a name several places bear (鼓楼区:
the error carries ``suggestions``, each place with its code; a name with
exactly one of them inside the user's jurisdiction means that one), a
source kind, severity or topic (``config/taxonomy.yaml``) that does not
exist, and ``from`` after ``to``. Never a silent 0 hits.
The backend is whichever ``search`` in ``settings.yaml`` names (embedded tantivy,
Elasticsearch or OpenSearch), the one the responder indexes into.
"""

from __future__ import annotations

import csv
import html
import io
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlencode

from sqlalchemy import or_, select

from responder import accounts
from responder.clocks import SHANGHAI, iso_shanghai
from responder.permissions import Actor, scope_prefix
from responder.safety import spreadsheet_row
from responder.search import query as qlang
from responder.search.base import Scope, SearchBackend, SearchHit, SearchQuery, SearchResult, place_prefix
from responder.store import SavedSearch, Store, utcnow
from stream.contracts import Severity

if TYPE_CHECKING:
    from classifiers.places import Division, Gazetteer

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


SEVERITIES: tuple[str, ...] = get_args(Severity)
MAX_SUGGESTIONS = 12


class SearchParamError(ValueError):
    """A search parameter with a bad value; ``message`` names it (Chinese). The web answers 400.

    ``suggestions``: for a place name that is ambiguous or unknown, the places
    it may mean, each ``{"label": "江苏省南京市鼓楼区", "code": "320106"}``."""

    def __init__(self, message: str, suggestions: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions or []


@dataclass(frozen=True)
class Vocabulary:
    """What a parameter may name: the gazetteer's places (with regions.yaml)
    and the taxonomy's topics, from one config directory."""

    gazetteer: Gazetteer
    topics: tuple[str, ...]

    @classmethod
    def load(cls, config_dir: Path | str) -> Vocabulary:
        from classifiers.places import Gazetteer
        from classifiers.taxonomy import Taxonomy

        d = Path(config_dir)
        return cls(Gazetteer.load(d / "regions.yaml"), tuple(Taxonomy.load(d / "taxonomy.yaml").topic_names))

    def place(self, value: str, scope: Scope | None = None) -> tuple[str, str]:
        """``value`` (a code, prefix or name) as the prefix to search and its label;
        :class:`SearchParamError` with suggestions when it is unknown or ambiguous."""
        v = value.strip()
        gaz = self.gazetteer
        if v.isdigit():
            try:
                prefix = place_prefix(v)
            except ValueError:
                prefix = ""
            if not prefix or not any(c.startswith(prefix) for c in gaz.by_code):
                raise SearchParamError(f"检索条件有误：属地代码 {v} 不存在（如 34 安徽省、3401 合肥市、340104 蜀山区，也可填地名）")
            d = gaz.get(prefix) or gaz.by_code.get(v)
            return prefix, gaz.describe(d) if d is not None else v
        found = gaz.lookup(v) or self._whole_name(v)
        if len(found) > 1 and scope is not None and scope.prefix:
            mine = [d for d in found if d.code.startswith(scope.prefix)]
            found = mine if len(mine) == 1 else found
        if len(found) == 1:
            return place_prefix(found[0].code), gaz.describe(found[0])
        if found:
            raise SearchParamError(
                f"检索条件有误：“{v}”有 {len(found)} 处同名，请选择其一（或填行政区划代码）",
                self._suggest(found),
            )
        near = self._near(v)
        hint = "，是否要找：" + "、".join(x["label"] for x in near) if near else "（可填省、市、县名称或行政区划代码，如 合肥、3401）"
        raise SearchParamError(f"检索条件有误：没有名为“{v}”的属地{hint}", near)

    def _whole_name(self, v: str) -> list[Division]:
        # 安徽省合肥市蜀山区: a chain of names, each inside the one before, and nothing else.
        res = self.gazetteer.resolve(v)
        if res.ambiguous or res.division is None or len(res.places) != 1:
            return []
        if "".join(m.surface for m in res.mentions) != v:
            return []
        return [res.division]

    def _suggest(self, ds: list[Division]) -> list[dict[str, str]]:
        ds = sorted(ds, key=lambda d: d.code)[:MAX_SUGGESTIONS]
        return [{"label": self.gazetteer.describe(d), "code": d.code} for d in ds]

    def _near(self, v: str) -> list[dict[str, str]]:
        if len(v) < 2:
            return []
        ds = [d for d in self.gazetteer.by_code.values() if v in d.name or any(v in s for s in d.short)]
        ds.sort(key=lambda d: (not d.name.startswith(v), len(d.name), d.code))
        return self._suggest(ds[:MAX_SUGGESTIONS])


_vocabularies: dict[str, Vocabulary] = {}
_vocab_lock = threading.Lock()


def vocabulary(config_dir: Path | str | None = None) -> Vocabulary:
    """The :class:`Vocabulary` of ``config_dir`` (default: ``$YUQING_CONFIG_DIR`` or the
    project's ``config/``), loaded once per directory."""
    from yuqing.settings import config_dir as default_dir

    d = str(Path(config_dir if config_dir is not None else default_dir()).resolve())
    with _vocab_lock:
        if d not in _vocabularies:
            _vocabularies[d] = Vocabulary.load(d)
        return _vocabularies[d]


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
    # Places and topics to check against (None: the default config's, see vocabulary()).
    vocab: Vocabulary | None = field(default=None, repr=False, compare=False)

    def _vocab(self) -> Vocabulary:
        return self.vocab if self.vocab is not None else vocabulary()

    def place_of(self, actor: Actor) -> tuple[str | None, str]:
        """The place as the prefix to search and its label (``None, ""``: none given)."""
        if not self.place.strip():
            return None, ""
        return self._vocab().place(self.place, Scope.of(actor))

    def check(self, actor: Actor, backend: SearchBackend | None = None) -> None:
        """Source kinds, severities and topics that exist; raise :class:`SearchParamError`.
        A topic is one of the taxonomy's, or (with ``backend``) one that posts within
        ``actor``'s jurisdiction still carry (filed before the taxonomy changed)."""
        for name, label, values, known in (
            ("kind", "来源类型", self.kind, tuple(KIND_LABEL)),
            ("severity", "级别", self.severity, SEVERITIES),
            ("topic", "主题", self.topic, self._vocab().topics if self.topic else ()),
        ):
            bad = [v for v in values if v not in known]
            if bad and name == "topic" and backend is not None:
                bad = [v for v in bad
                       if not backend.search(SearchQuery(scope=Scope.of(actor), topic=[v], limit=0)).total]
            if bad:
                shown = "、".join(f"{KIND_LABEL[k]} {k}" for k in known) if name == "kind" else "、".join(known)
                raise SearchParamError(f"检索条件有误：{label} {name}=“{'、'.join(bad)}”不存在（可选：{shown}）")

    def query(self, actor: Actor, *, limit: int | None = None, offset: int | None = None,
              backend: SearchBackend | None = None) -> SearchQuery:
        """The backend query, within ``actor``'s jurisdiction (``backend``: see :meth:`check`)."""
        self.check(actor, backend)
        try:
            qlang.parse(self.q)  # the backend parses it again; a syntax error is the user's
        except qlang.QuerySyntaxError as e:
            raise SearchParamError(f"检索式有误：{e}（写法：合肥 (地铁 | 公交) -广告）") from None
        place, _ = self.place_of(actor)
        try:
            since = parse_when(self.date_from, "from")
            until = parse_when(self.date_to, "to", end=True)
        except ValueError as e:
            raise SearchParamError(f"检索条件有误：{e}") from None
        if since is not None and until is not None and since >= until:
            raise SearchParamError(
                f"检索条件有误：起始 from（{self.date_from.strip()}）晚于截止 to（{self.date_to.strip()}），没有这样的时间段"
            )
        try:
            return SearchQuery(
                text=self.q.strip(),
                place_code=place,
                scope=Scope.of(actor),
                source_kind=self.kind or None,
                topic=self.topic or None,
                severity=self.severity or None,
                published_from=since,
                published_to=until,
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
# What a monitoring scheme keeps besides (responder.schemes): its word groups, the alert and who hears it.
SCHEME_KEYS = ("scheme", "alert", "notify")
SCHEME_GROUPS = ("regions", "subjects", "events", "excludes")


def scheme_text(d: dict[str, Any]) -> str:
    """The query text of saved parameters: a scheme's groups (:func:`query.scheme_query`), else ``q``."""
    groups = d.get("scheme")
    if isinstance(groups, dict):
        def words(k: str) -> list[str]:
            v = groups.get(k) or []
            return [str(x) for x in ([v] if isinstance(v, str) else v)]

        return qlang.scheme_query(*(words(k) for k in SCHEME_GROUPS))
    return str(d.get("q") or "")


def params_from(d: dict[str, Any], vocab: Vocabulary | None = None) -> SearchParams:
    """Saved parameters (as :meth:`SearchParams.saved` writes them, or a scheme's) → the first page."""
    unknown = set(d) - set(PARAM_KEYS) - set(SCHEME_KEYS)
    if unknown:
        raise ValueError(f"未知的检索参数：{'、'.join(sorted(unknown))}（可用：{'、'.join(PARAM_KEYS + SCHEME_KEYS)}）")

    def many(k: str) -> list[str]:
        v = d.get(k) or []
        return [str(x) for x in ([v] if isinstance(v, str) else v) if str(x).strip()]

    return SearchParams(scheme_text(d), str(d.get("place") or ""), many("kind"), many("topic"),
                        many("severity"), str(d.get("from") or ""), str(d.get("to") or ""),
                        str(d.get("sort") or "relevance"), 1, 20, vocab)


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
    return backend.search(p.query(actor, backend=backend))


def export_rows(backend: SearchBackend, actor: Actor, p: SearchParams) -> tuple[list[SearchHit], int]:
    """Every match in ``actor``'s jurisdiction, newest first (at most :data:`EXPORT_MAX`), and the full count."""
    hits: list[SearchHit] = []
    total = 0
    page = 1000
    while len(hits) < EXPORT_MAX:
        q = p.query(actor, limit=min(page, EXPORT_MAX - len(hits)), offset=len(hits), backend=backend)
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


EXPORT_HEADER = ["发布时间", "标题", "来源类型", "来源", "属地", "属地代码", "主题", "级别", "事件编号", "链接", "摘要"]


def export_row(h: SearchHit) -> list[Any]:
    """One hit as a row of the CSV and the xlsx (the same cells, formula-safe)."""
    return spreadsheet_row([
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
    ])


def export_csv(hits: list[SearchHit]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_HEADER)
    for h in hits:
        w.writerow(export_row(h))
    return "\ufeff" + buf.getvalue()


def export_xlsx(hits: list[SearchHit], *, total: int | None = None) -> bytes:
    """The rows of :func:`export_csv` as an Excel workbook (sheet 检索结果); with
    ``total``, sheet 说明 says how many matched and whether rows were left out."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "检索结果"
    ws.append(EXPORT_HEADER)
    for c in ws[1]:
        c.font = Font(bold=True)
    for h in hits:
        ws.append(export_row(h))
    ws.freeze_panes = "A2"
    for col, width in zip("ABCDEFGHIJK", (20, 40, 10, 16, 24, 10, 12, 8, 10, 40, 60), strict=True):
        ws.column_dimensions[col].width = width
    if total is not None:
        # Apart from the rows, so that the first sheet holds exactly the CSV's rows.
        note = wb.create_sheet("说明")
        note.append([f"共 {total} 条，导出 {len(hits)} 条（最新在前）"
                     + (f"；超过 {EXPORT_MAX} 条的部分未导出，请缩小检索范围" if total > len(hits) else "")])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


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
    store: Store, backend: SearchBackend | None, actor: Actor, now: datetime, vocab: Vocabulary | None = None
) -> list[dict[str, Any]]:
    """The saved searches ``actor`` may read, each with its link and its total and
    matches published in the last 24 hours within ``actor``'s jurisdiction (no
    counts, and ``error``, for one whose parameters no longer hold: a topic
    taken out of the taxonomy)."""
    with store.reader() as s:
        query = select(SavedSearch).order_by(SavedSearch.name)
        seen = saved_search_clause(actor)
        rows = s.scalars(query if seen is None else query.where(seen)).all()
        out = []
        for r in rows:
            p = params_from(r.params, vocab)
            item: dict[str, Any] = {"id": r.id, "name": r.name, "params": r.params, "link": "/search" + p.link(),
                                    "created_by": r.created_by, "created_at": iso_shanghai(r.created_at),
                                    "jurisdiction": r.jurisdiction, "total": None, "last_24h": None}
            if backend is not None:
                try:
                    whole = p.query(actor, limit=0, offset=0, backend=backend)
                except SearchParamError as e:
                    item["error"] = e.message
                    out.append(item)
                    continue
                item["total"] = backend.search(whole).total
                recent = p.query(actor, limit=0, offset=0, backend=backend)
                since = now - timedelta(hours=24)
                recent.published_from = max(since, recent.published_from) if recent.published_from else since
                item["last_24h"] = backend.search(recent).total
            out.append(item)
        return out
