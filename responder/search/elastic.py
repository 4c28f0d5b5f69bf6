"""The Elasticsearch backend: :class:`~responder.search.rest.RestSearch` on
the official ``elasticsearch`` client.

Server versions: the 9.x Python client asks for ``compatible-with=9`` media
types, which an 8.x server rejects. On first use the backend reads the
server's version and, for an older server, sends its major version instead
(``_CompatTransport``); 8.x and 9.x servers both work. An OpenSearch server
is refused with a message naming ``search.kind: opensearch``
(:mod:`responder.search.opensearch` speaks to it with its own client).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from elastic_transport import Transport
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from responder.search.rest import RestSearch

_COMPAT_RE = re.compile(r"compatible-with=(\d+)")
_CLIENT_MAJOR = 9


class _CompatTransport(Transport):
    """Rewrites ``compatible-with=9`` to the server's major version when it is older."""

    compat_major: int | None = None

    def perform_request(self, method: str, target: str, *, headers: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        major = self.compat_major
        if major is not None and isinstance(headers, Mapping):
            headers = {
                k: _COMPAT_RE.sub(f"compatible-with={major}", v) if isinstance(v, str) else v
                for k, v in headers.items()
            }
        if headers is None:
            return super().perform_request(method, target, **kw)
        return super().perform_request(method, target, headers=headers, **kw)


class ElasticSearch(RestSearch):
    """:class:`~responder.search.base.SearchBackend` on one Elasticsearch 8.x/9.x index."""

    distribution = "elasticsearch"

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
        # Credentials, if any, go in the URL: http://user:password@host:9200
        self._client = Elasticsearch(url, transport_class=_CompatTransport, request_timeout=request_timeout_s)

    def _info(self) -> dict[str, Any]:
        # Plain JSON media types are accepted by every server version.
        resp = self._client.transport.perform_request("GET", "/", headers={"accept": "application/json"})
        return dict(resp.body)

    def _on_server(self, distribution: str, number: str) -> None:
        major = int(number.split(".")[0])
        transport = self._client.transport
        if major < _CLIENT_MAJOR and isinstance(transport, _CompatTransport):
            transport.compat_major = major

    def _exists(self) -> bool:
        return bool(self._client.indices.exists(index=self.index_name))

    def _create(self, body: dict[str, Any]) -> bool:
        try:
            self._client.indices.create(index=self.index_name, settings=body["settings"], mappings=body["mappings"])
        except BadRequestError as e:
            if e.error == "resource_already_exists_exception":
                return False
            raise
        return True

    def _mapping(self) -> dict[str, Any]:
        return dict(self._client.indices.get_mapping(index=self.index_name).body)

    def _put_meta(self, meta: dict[str, Any]) -> None:
        self._client.indices.put_mapping(index=self.index_name, meta=meta)

    def _drop(self) -> None:
        self._client.indices.delete(index=self.index_name, ignore_unavailable=True)

    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._client.bulk(operations=operations, refresh="wait_for").body)

    def _delete_doc(self, doc_id: str) -> None:
        try:
            self._client.delete(index=self.index_name, id=doc_id, refresh="wait_for")
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
        return dict(self._client.search(index=self.index_name, body=body).body)

    def close(self) -> None:
        self._client.close()
