"""Elasticsearch backend, with the same hits as the embedded one and no IK plugin.

Documents carry ``title_seg`` / ``text_seg``: the jieba search-mode tokens
from :mod:`responder.search.segment`, space-joined, indexed with a
whitespace + lowercase analyzer. Queries are segmented the same way in Python
(one ``multi_match`` per query word, all required), so Elasticsearch and the
embedded SQLite index agree on what matches.

Filters are ``bool.filter`` clauses on keyword / date fields, facets are
``terms`` aggregations over the whole matching set. Snippets and highlighted
titles are cut from the readable ``text`` / ``title`` in ``_source`` with
:func:`segment.snippet`: Elasticsearch's own highlighter could only mark up
the segmented field, which has a space between every word and no punctuation.

``index`` and ``delete`` use ``refresh="wait_for"``: when they return the
change is visible to search, as the backend contract requires.

Server versions: the 9.x Python client asks for ``compatible-with=9`` media
types, which an 8.x server rejects. On first use the backend reads the
server's version and, for an older server, sends its major version instead
(``_CompatTransport``); 8.x and 9.x servers both work. An OpenSearch server
(``version.distribution`` ``opensearch``; 2.x/3.x) knows no vendor media
types at all: it gets plain ``application/json`` / ``application/x-ndjson``,
and the client's Elasticsearch product check is skipped for it. The same
index, queries and aggregations serve both.

The index's mapping ``_meta.segmenter`` names the segmenter that cut its
``*_seg`` fields. An index cut by another one is reported at start: queries
would miss words cut differently until ``yuqing reindex --from-start`` has
sent every document again and recorded the current segmenter.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from elastic_transport import Transport
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

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

_COMPAT_RE = re.compile(r"compatible-with=(\d+)")
# A vendor media type and its plain form (for OpenSearch).
_VENDOR_RE = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+)(?:;\s*compatible-with=\d+)?")
_CLIENT_MAJOR = 9
_BULK_CHUNK = 500

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


class _CompatTransport(Transport):
    """Rewrites ``compatible-with=9`` to the server's major version when it is
    older, and vendor media types to plain ones for OpenSearch (``plain``)."""

    compat_major: int | None = None
    plain: bool = False

    def perform_request(self, method: str, target: str, *, headers: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        major = self.compat_major
        if self.plain and isinstance(headers, Mapping):
            headers = {
                k: _VENDOR_RE.sub(r"application/\1", v) if isinstance(v, str) else v for k, v in headers.items()
            }
        elif major is not None and isinstance(headers, Mapping):
            headers = {
                k: _COMPAT_RE.sub(f"compatible-with={major}", v) if isinstance(v, str) else v
                for k, v in headers.items()
            }
        if headers is None:
            return super().perform_request(method, target, **kw)
        return super().perform_request(method, target, headers=headers, **kw)


def _source(d: PostDoc) -> dict[str, Any]:
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
    # UTC, millisecond precision: what an Elasticsearch date holds.
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


def build_query(q: SearchQuery, terms: Sequence[str]) -> dict[str, Any]:
    """The ``query`` clause for ``q`` (exposed for inspection and debugging)."""
    must: list[dict[str, Any]] = [
        {"multi_match": {"query": t, "fields": ["title_seg^2", "text_seg"], "type": "most_fields"}}
        for t in terms
    ]
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


class ElasticSearch:
    """:class:`~responder.search.base.SearchBackend` on one Elasticsearch index."""

    def __init__(
        self,
        url: str,
        index: str,
        *,
        shards: int = 1,
        replicas: int = 0,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.index_name = index
        self._shards, self._replicas = shards, replicas
        # Credentials, if any, go in the URL: http://user:password@host:9200
        self._client = Elasticsearch(url, transport_class=_CompatTransport, request_timeout=request_timeout_s)
        self._ready = False
        self._lock = threading.Lock()

    # -- set-up on first use -------------------------------------------------

    def _es(self) -> Elasticsearch:
        if self._ready:
            return self._client
        with self._lock:
            if not self._ready:
                self._detect_version()
                self._create_index()
                self._ready = True
        return self._client

    def _detect_version(self) -> None:
        transport = self._client.transport
        # Plain JSON media types are accepted by every server version.
        resp = transport.perform_request("GET", "/", headers={"accept": "application/json"})
        version = resp.body["version"]
        number = str(version["number"])
        major = int(number.split(".")[0])
        self.distribution = str(version.get("distribution") or "elasticsearch")
        if self.distribution == "opensearch" and isinstance(transport, _CompatTransport):
            transport.plain = True
            # OpenSearch sends no "X-Elastic-Product" header, which the client
            # would refuse; the server was identified above instead.
            self._client._verified_elasticsearch = True
        elif major < _CLIENT_MAJOR and isinstance(transport, _CompatTransport):
            transport.compat_major = major
        self.server_version = number

    def _create_index(self) -> None:
        es = self._client
        if es.indices.exists(index=self.index_name):
            self._check_segmenter()
            return
        try:
            es.indices.create(
                index=self.index_name,
                settings={
                    "number_of_shards": self._shards,
                    "number_of_replicas": self._replicas,
                    "analysis": ANALYSIS,
                },
                mappings={**MAPPINGS, "_meta": {"segmenter": seg.SEGMENTER}},
            )
        except BadRequestError as e:
            # Another process created it between exists() and create().
            if e.error != "resource_already_exists_exception":
                raise

    def segmenter(self) -> str | None:
        """The segmenter the index records (``None`` for one made before it was recorded)."""
        self._es()
        return self._recorded_segmenter()

    def _recorded_segmenter(self) -> str | None:
        # Called while _es() sets up (holding its lock): the bare client, no _es().
        body = self._client.indices.get_mapping(index=self.index_name).body
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
        self._es().indices.put_mapping(index=self.index_name, meta={"segmenter": seg.SEGMENTER})

    def drop_index(self) -> None:
        """Delete the whole index (tests, re-indexing); the next call recreates it."""
        self._es().indices.delete(index=self.index_name, ignore_unavailable=True)
        self._ready = False

    # -- SearchBackend ------------------------------------------------------

    def index(self, docs: Sequence[PostDoc]) -> None:
        latest: dict[str, PostDoc] = {}
        for d in docs:
            latest[d.post_id] = d
        if not latest:
            return
        es = self._es()
        items = list(latest.values())
        for i in range(0, len(items), _BULK_CHUNK):
            ops: list[dict[str, Any]] = []
            for d in items[i : i + _BULK_CHUNK]:
                ops.append({"index": {"_index": self.index_name, "_id": d.post_id}})
                ops.append(_source(d))
            resp = es.bulk(operations=ops, refresh="wait_for")
            if resp.get("errors"):
                failed = [
                    f"{it['index'].get('_id')}: {it['index'].get('error')}"
                    for it in resp["items"]
                    if "error" in it.get("index", {})
                ]
                raise RuntimeError(
                    f"bulk index into {self.index_name} failed for {len(failed)}: {failed[:3]}"
                )

    def delete(self, post_id: str) -> None:
        try:
            self._es().delete(index=self.index_name, id=post_id, refresh="wait_for")
        except NotFoundError:
            pass

    def get(self, post_id: str) -> PostDoc | None:
        try:
            resp = self._es().get(index=self.index_name, id=post_id)
        except NotFoundError:
            return None
        return PostDoc.from_stored(resp["_source"])

    def count(self) -> int:
        return int(self._es().count(index=self.index_name)["count"])

    def search(self, q: SearchQuery) -> SearchResult:
        terms = seg.query_terms(q.text)
        resp = self._es().search(
            index=self.index_name,
            query=build_query(q, terms),
            sort=build_sort(q, bool(terms)),
            from_=q.offset,
            size=q.limit,
            track_total_hits=True,
            track_scores=True,
            aggs={f: {"terms": {"field": f, "size": 200}} for f in FACET_FIELDS},
            source_excludes=["title_seg", "text_seg"],
        )
        hits: list[SearchHit] = []
        for h in resp["hits"]["hits"]:
            d = PostDoc.from_stored(h["_source"])
            hits.append(
                SearchHit(
                    post_id=d.post_id,
                    score=float(h.get("_score") or 0.0) if terms else 0.0,
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
            f: {str(b["key"]): int(b["doc_count"]) for b in resp["aggregations"][f]["buckets"]}
            for f in FACET_FIELDS
        }
        return SearchResult(total=int(resp["hits"]["total"]["value"]), hits=hits, facets=facets)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ElasticSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
