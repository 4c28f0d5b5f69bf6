"""What the Elasticsearch and OpenSearch backends share: one index layout,
one query builder, one way to read answers.

Documents carry ``title_seg`` / ``text_seg``: the jieba search-mode tokens
from :mod:`responder.search.segment`, space-joined, indexed with a
whitespace + lowercase analyzer. Queries are segmented the same way in Python
(one ``multi_match`` per query word, combined in ``bool`` clauses as the query
language of :mod:`responder.search.query` says: spaces AND, ``|`` OR, ``-``
NOT), so both servers and the embedded index agree on what matches; no IK or
other Chinese plugin is needed.

Filters are ``bool.filter`` clauses on keyword / date fields, facets are
``terms`` aggregations over the whole matching set. Snippets and highlighted
titles are cut from the readable ``text`` / ``title`` in ``_source`` with
:func:`segment.snippet`: a server's highlighter could only mark up the
segmented field, which has a space between every word and no punctuation.

``index`` and ``delete`` use ``refresh=wait_for``: when they return the
change is visible to search, as the backend contract requires.

The index mapping's ``_meta.segmenter`` names the segmenter that cut its
``*_seg`` fields. An index cut by another one is reported at start: queries
would miss words cut differently until ``yuqing reindex --from-start`` has
sent every document again and recorded the current segmenter.

:class:`RestSearch` holds all of that; a subclass adapts one client library
(``elasticsearch`` in :mod:`.elastic`, ``opensearch-py`` in :mod:`.opensearch`)
through a dozen small methods that take and return plain REST bodies.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from responder.search import query as qlang
from responder.search import segment as seg
from responder.search.base import (
    FACET_FIELDS,
    PostDoc,
    SearchHit,
    SearchQuery,
    SearchResult,
    as_values,
)

log = logging.getLogger(__name__)

BULK_CHUNK = 500
FACET_SIZE = 200
SEG_FIELDS = ["title_seg", "text_seg"]

ANALYSIS: dict[str, Any] = {
    "analyzer": {
        # The text is segmented by jieba before it is sent: split on spaces only.
        "yuqing_ws": {"type": "custom", "tokenizer": "whitespace", "filter": ["lowercase"]}
    }
}

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "post_id": {"type": "keyword"},
        "title": {"type": "text", "index": False},
        "text": {"type": "text", "index": False},
        "title_seg": {"type": "text", "analyzer": "yuqing_ws"},
        "text_seg": {"type": "text", "analyzer": "yuqing_ws"},
        "source_id": {"type": "keyword"},
        "source_kind": {"type": "keyword"},
        "url": {"type": "keyword", "index": False},
        "published_at": {"type": "date"},
        "place_code": {"type": "keyword"},
        "place_label": {"type": "keyword"},
        "topic": {"type": "keyword"},
        "severity": {"type": "keyword"},
        "event_id": {"type": "long"},
    },
}


def index_body(shards: int, replicas: int) -> dict[str, Any]:
    """The body of ``PUT /<index>``: settings, analysis, mapping, segmenter."""
    return {
        "settings": {"number_of_shards": shards, "number_of_replicas": replicas, "analysis": ANALYSIS},
        "mappings": {**MAPPINGS, "_meta": {"segmenter": seg.SEGMENTER}},
    }


def source(d: PostDoc) -> dict[str, Any]:
    """The stored document of one post."""
    return {
        "post_id": d.post_id,
        "title": d.title,
        "text": d.text,
        "title_seg": seg.segment(d.title),
        "text_seg": seg.segment(d.text),
        "source_id": d.source_id,
        "source_kind": d.source_kind,
        "url": d.url,
        "published_at": d.published_at.isoformat(),
        "place_code": d.place_code,
        "place_label": d.place_label,
        "topic": d.topic,
        "severity": d.severity,
        "event_id": d.event_id,
    }


def _iso(dt: datetime) -> str:
    # UTC, millisecond precision: what an Elasticsearch/OpenSearch date holds.
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


def _word(w: str) -> dict[str, Any]:
    return {"multi_match": {"query": w, "fields": ["title_seg^2", "text_seg"], "type": "most_fields"}}


def text_clause(node: qlang.Node) -> dict[str, Any]:
    """The query language's tree (:mod:`responder.search.query`) as a ``bool`` query."""
    if isinstance(node, qlang.Term):
        return _word(node.words[0]) if len(node.words) == 1 else {"bool": {"must": [_word(w) for w in node.words]}}
    if isinstance(node, qlang.Not):
        return {"bool": {"must_not": [text_clause(node.part)]}}
    if isinstance(node, qlang.Or):
        return {"bool": {"should": [text_clause(p) for p in node.parts], "minimum_should_match": 1}}
    must = [text_clause(p) for p in node.parts if not isinstance(p, qlang.Not)]
    must_not = [text_clause(p.part) for p in node.parts if isinstance(p, qlang.Not)]
    out: dict[str, Any] = {"must": must} if must else {}
    if must_not:
        out["must_not"] = must_not
    return {"bool": out}


def build_query(q: SearchQuery, node: qlang.Node | None) -> dict[str, Any]:
    """The ``query`` clause for ``q`` and its parsed text (exposed for inspection and debugging)."""
    must: list[dict[str, Any]] = [text_clause(node)] if node is not None else []
    flt: list[dict[str, Any]] = []
    if q.place_code is not None:
        flt.append({"prefix": {"place_code": q.place_code}})
    if q.scope is not None and not q.scope.everything:
        placed: dict[str, Any] = (
            {"prefix": {"place_code": q.scope.prefix}} if q.scope.prefix else {"exists": {"field": "place_code"}}
        )
        unplaced = {"bool": {"must_not": [{"exists": {"field": "place_code"}}]}}
        flt.append({"bool": {"should": [placed, unplaced], "minimum_should_match": 1}} if q.scope.unplaced else placed)
    for field, value in (("source_kind", q.source_kind), ("topic", q.topic), ("severity", q.severity)):
        values = as_values(value)
        if values:
            flt.append({"terms": {field: values}})
    if q.event_id is not None:
        flt.append({"term": {"event_id": q.event_id}})
    rng: dict[str, str] = {}
    if q.published_from is not None:
        rng["gte"] = _iso(q.published_from)
    if q.published_to is not None:
        rng["lt"] = _iso(q.published_to)
    if rng:
        flt.append({"range": {"published_at": rng}})
    if not must and not flt:
        return {"match_all": {}}
    return {"bool": {"must": must or [{"match_all": {}}], "filter": flt}}


def build_sort(q: SearchQuery, has_terms: bool) -> list[Any]:
    if q.sort == "time_asc":
        return [{"published_at": {"order": "asc"}}, {"post_id": {"order": "asc"}}]
    if q.sort == "time" or not has_terms:
        return [{"published_at": {"order": "desc"}}, {"post_id": {"order": "asc"}}]
    return ["_score", {"published_at": {"order": "desc"}}, {"post_id": {"order": "asc"}}]


def build_search(q: SearchQuery, node: qlang.Node | None) -> dict[str, Any]:
    """The whole body of ``POST /<index>/_search`` for ``q`` and its parsed text."""
    return {
        "query": build_query(q, node),
        "sort": build_sort(q, qlang.has_positive(node)),
        "from": q.offset,
        "size": q.limit,
        "track_total_hits": True,
        "track_scores": True,
        "aggs": {f: {"terms": {"field": f, "size": FACET_SIZE}} for f in FACET_FIELDS},
        "_source": {"excludes": SEG_FIELDS},
    }


def read_result(resp: dict[str, Any], terms: Sequence[str], scored: bool | None = None) -> SearchResult:
    """A :class:`SearchResult` from a ``_search`` answer; ``terms`` are highlighted."""
    scored = bool(terms) if scored is None else scored
    hits: list[SearchHit] = []
    for h in resp["hits"]["hits"]:
        d = PostDoc.from_stored(h["_source"])
        hits.append(
            SearchHit(
                post_id=d.post_id,
                score=float(h.get("_score") or 0.0) if scored else 0.0,
                title=d.title,
                title_html=seg.highlight(d.title, terms),
                snippet=seg.snippet(d.text, terms),
                published_at=d.published_at,
                source_id=d.source_id,
                source_kind=d.source_kind,
                url=d.url,
                place_code=d.place_code,
                place_label=d.place_label,
                topic=d.topic,
                severity=d.severity,
                event_id=d.event_id,
            )
        )
    facets = {
        f: {str(b["key"]): int(b["doc_count"]) for b in resp["aggregations"][f]["buckets"]} for f in FACET_FIELDS
    }
    return SearchResult(total=int(resp["hits"]["total"]["value"]), hits=hits, facets=facets)


def bulk_errors(resp: dict[str, Any]) -> list[str]:
    """``id: error`` for every failed item of a ``_bulk`` answer."""
    if not resp.get("errors"):
        return []
    return [
        f"{it['index'].get('_id')}: {it['index'].get('error')}"
        for it in resp.get("items", [])
        if "error" in it.get("index", {})
    ]


class RestSearch(ABC):
    """:class:`~responder.search.base.SearchBackend` on one index of a REST search server."""

    #: What ``GET /`` must report in ``version.distribution`` ("elasticsearch" when absent).
    distribution: str = ""

    def __init__(self, url: str, index: str, *, shards: int = 1, replicas: int = 0) -> None:
        self.url = url
        self.index_name = index
        self._shards, self._replicas = shards, replicas
        self._ready = False
        self._lock = threading.Lock()
        self.server_version = ""

    # -- what a client adapter provides (plain REST bodies in and out) ------

    @abstractmethod
    def _info(self) -> dict[str, Any]:
        """``GET /``."""

    @abstractmethod
    def _exists(self) -> bool:
        """``HEAD /<index>``."""

    @abstractmethod
    def _create(self, body: dict[str, Any]) -> bool:
        """``PUT /<index>``; False when another process created it first."""

    @abstractmethod
    def _mapping(self) -> dict[str, Any]:
        """``GET /<index>/_mapping``."""

    @abstractmethod
    def _put_meta(self, meta: dict[str, Any]) -> None:
        """``PUT /<index>/_mapping`` with ``_meta``."""

    @abstractmethod
    def _drop(self) -> None:
        """``DELETE /<index>``, nothing when it is missing."""

    @abstractmethod
    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /_bulk?refresh=wait_for``."""

    @abstractmethod
    def _delete_doc(self, doc_id: str) -> None:
        """``DELETE /<index>/_doc/<id>?refresh=wait_for``, nothing when it is missing."""

    @abstractmethod
    def _get_doc(self, doc_id: str) -> dict[str, Any] | None:
        """``_source`` of ``GET /<index>/_doc/<id>``, None when missing."""

    @abstractmethod
    def _count(self) -> int:
        """``GET /<index>/_count``."""

    @abstractmethod
    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /<index>/_search``."""

    @abstractmethod
    def close(self) -> None:
        """Close the client's connections."""

    def _on_server(self, distribution: str, number: str) -> None:  # noqa: B027 - optional hook
        """Hook after ``GET /``: adapt the client to the server version."""

    # -- set-up on first use -------------------------------------------------

    def _setup(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self._detect_server()
                if self._exists():
                    self._check_segmenter()
                else:
                    self._create(index_body(self._shards, self._replicas))
                self._ready = True

    def _detect_server(self) -> None:
        version = self._info()["version"]
        number = str(version["number"])
        distribution = str(version.get("distribution") or "elasticsearch")
        if distribution != self.distribution:
            want = "opensearch" if distribution == "opensearch" else "elasticsearch"
            raise RuntimeError(
                f"{self.url} 是 {distribution} {number}，不是 {self.distribution}："
                f"请在 config/settings.yaml 中设 search.kind: {want}"
            )
        self.server_version = number
        self._on_server(distribution, number)

    def segmenter(self) -> str | None:
        """The segmenter the index records (``None`` for one made before it was recorded)."""
        self._setup()
        return self._recorded_segmenter()

    def _recorded_segmenter(self) -> str | None:
        body = self._mapping()
        meta = next(iter(body.values()), {}).get("mappings", {}).get("_meta") or {}
        value = meta.get("segmenter")
        return value if isinstance(value, str) else None

    def _check_segmenter(self) -> None:
        found = self._recorded_segmenter()
        if found != seg.SEGMENTER:
            log.warning(
                "全文索引 %s 由分词器 %s 切分，与当前 %s 不同：部分检索词可能查不到，请运行 yuqing reindex --from-start",
                self.index_name,
                found or "（未记录）",
                seg.SEGMENTER,
            )

    def record_segmenter(self) -> None:
        """After every document was sent again: the index is cut by the current segmenter."""
        self._setup()
        self._put_meta({"segmenter": seg.SEGMENTER})

    def drop_index(self) -> None:
        """Delete the whole index (tests, re-indexing); the next call recreates it."""
        self._setup()
        self._drop()
        self._ready = False

    # -- SearchBackend ------------------------------------------------------

    def index(self, docs: Sequence[PostDoc]) -> None:
        latest: dict[str, PostDoc] = {}
        for d in docs:
            latest[d.post_id] = d
        if not latest:
            return
        self._setup()
        items = list(latest.values())
        for i in range(0, len(items), BULK_CHUNK):
            ops: list[dict[str, Any]] = []
            for d in items[i : i + BULK_CHUNK]:
                ops.append({"index": {"_index": self.index_name, "_id": d.post_id}})
                ops.append(source(d))
            failed = bulk_errors(self._bulk(ops))
            if failed:
                raise RuntimeError(f"bulk index into {self.index_name} failed for {len(failed)}: {failed[:3]}")

    def delete(self, post_id: str) -> None:
        self._setup()
        self._delete_doc(post_id)

    def get(self, post_id: str) -> PostDoc | None:
        self._setup()
        found = self._get_doc(post_id)
        return None if found is None else PostDoc.from_stored(found)

    def count(self) -> int:
        self._setup()
        return self._count()

    def search(self, q: SearchQuery) -> SearchResult:
        node = qlang.parse(q.text)
        self._setup()
        terms = qlang.positive_words(node)
        return read_result(self._search(build_search(q, node)), terms, scored=qlang.has_positive(node))

    def __enter__(self) -> RestSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
