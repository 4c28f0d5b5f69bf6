"""Full-text search over assessed posts: one contract, three backends.

* ``embedded``: a tantivy index over the rjieba tokens plus a SQLite file of
  the posts, in ``data_dir`` (laptops, tests, demos; fast at a million posts);
* ``elasticsearch``: an Elasticsearch 8.x/9.x index, no Chinese analyzer plugin
  needed (production);
* ``opensearch``: the same index on OpenSearch 2.x/3.x through ``opensearch-py``.

The two servers share :mod:`responder.search.rest` (mapping, queries, answers);
:mod:`.elastic` and :mod:`.opensearch` only adapt a client. All backends index
text pre-segmented by :mod:`responder.search.segment`, so they return the same
hits. Pick one with ``search.kind`` in ``config/settings.yaml`` or by setting
``YUQING_ES_URL`` / ``YUQING_OPENSEARCH_URL``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from responder.search.base import (
    FACET_FIELDS,
    PostDoc,
    Scope,
    SearchBackend,
    SearchHit,
    SearchQuery,
    SearchResult,
    place_prefix,
)

if TYPE_CHECKING:
    from yuqing.settings import Settings

__all__ = [
    "FACET_FIELDS",
    "PostDoc",
    "Scope",
    "SearchBackend",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "open_search",
    "place_prefix",
]


def open_search(settings: Settings) -> SearchBackend:
    """The backend ``settings.search`` names; the caller closes it."""
    s = settings.search
    if s.kind == "elasticsearch":
        from responder.search.elastic import ElasticSearch

        return ElasticSearch(s.url, s.index)
    if s.kind == "opensearch":
        from responder.search.opensearch import OpenSearch

        return OpenSearch(s.url, s.index)
    if s.kind == "embedded":
        from responder.search.embedded import EmbeddedSearch

        return EmbeddedSearch(settings.data_path(s.embedded_path))
    raise ValueError(f"unknown search.kind {s.kind!r}")
