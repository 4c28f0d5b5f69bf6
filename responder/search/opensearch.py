"""The OpenSearch backend: :class:`~responder.search.rest.RestSearch` on
``opensearch-py``, the client OpenSearch ships (2.x and 3.x servers; Huawei
Cloud's and other hosted OpenSearch services).

The official Elasticsearch client cannot serve here: it refuses a server
without the ``X-Elastic-Product`` header and sends vendor media types that
OpenSearch answers with 406. Index layout, queries and answers are the ones
:mod:`responder.search.rest` builds for both servers.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import NotFoundError, RequestError
from opensearchpy import OpenSearch as OpenSearchClient

from responder.search.rest import RestSearch


class OpenSearch(RestSearch):
    """:class:`~responder.search.base.SearchBackend` on one OpenSearch index."""

    distribution = "opensearch"

    def __init__(
        self,
        url: str,
        index: str,
        *,
        shards: int = 1,
        replicas: int = 0,
        request_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(url, index, shards=shards, replicas=replicas)
        # Credentials, if any, go in the URL: https://user:password@host:9200
        self._client = OpenSearchClient(hosts=[url], timeout=request_timeout_s)

    def _info(self) -> dict[str, Any]:
        return dict(self._client.info())

    def _exists(self) -> bool:
        return bool(self._client.indices.exists(index=self.index_name))

    def _create(self, body: dict[str, Any]) -> bool:
        try:
            self._client.indices.create(index=self.index_name, body=body)
        except RequestError as e:
            if e.error == "resource_already_exists_exception":
                return False
            raise
        return True

    def _mapping(self) -> dict[str, Any]:
        return dict(self._client.indices.get_mapping(index=self.index_name))

    def _put_meta(self, meta: dict[str, Any]) -> None:
        self._client.indices.put_mapping(index=self.index_name, body={"_meta": meta})

    def _drop(self) -> None:
        self._client.indices.delete(index=self.index_name, params={"ignore_unavailable": "true"})

    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._client.bulk(body=operations, params={"refresh": "wait_for"}))

    def _delete_doc(self, doc_id: str) -> None:
        try:
            self._client.delete(index=self.index_name, id=doc_id, params={"refresh": "wait_for"})
        except NotFoundError:
            pass

    def _get_doc(self, doc_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.get(index=self.index_name, id=doc_id)["_source"])
        except NotFoundError:
            return None

    def _count(self) -> int:
        return int(self._client.count(index=self.index_name)["count"])

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._client.search(index=self.index_name, body=body))

    def close(self) -> None:
        self._client.close()
