"""What every route needs: the settings, the store, the clock and the search
backend. The acting user comes from :func:`web.auth.require`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, Request

from responder.clocks import Clocks
from responder.search.base import SearchBackend
from responder.store import Store
from yuqing.settings import Settings

log = logging.getLogger("yuqing.web")


@dataclass
class WebContext:
    settings: Settings
    store: Store
    now: Callable[[], datetime]
    # Opened on the first search (and tried again while it cannot be opened).
    search: SearchBackend | None = None

    def search_backend(self) -> SearchBackend | None:
        """The configured search backend, or None (logged) while it cannot be opened."""
        if self.search is None:
            from responder.search import open_search

            try:
                self.search = open_search(self.settings)
            except Exception:
                log.exception("无法打开全文检索后端")
                return None
        return self.search

    def require_search(self) -> SearchBackend:
        b = self.search_backend()
        if b is None:
            raise HTTPException(status_code=503, detail="全文检索后端不可用（见 settings.yaml 的 search 配置）")
        return b

    def clocks(self) -> Clocks:
        from responder.service import clocks_for

        return clocks_for(self.settings)


def get_ctx(request: Request) -> WebContext:
    """FastAPI dependency: the app's context."""
    return request.app.state.ctx  # type: ignore[no-any-return]


def client_addr(request: Request) -> str | None:
    """The TCP peer; behind a reverse proxy run uvicorn with ``--proxy-headers``."""
    return request.client.host if request.client else None
