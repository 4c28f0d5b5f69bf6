"""What the web UI and the exports let through.

* :func:`safe_url` — only absolute ``http``/``https`` URLs become links;
  anything else (``javascript:``, ``data:``, relative or malformed addresses)
  is shown as escaped text. Every external link in the UI goes through it
  (the ``link`` macro of ``web/templates/_macros.html``).
* :func:`spreadsheet_cell` — a cell of a CSV or xlsx export that a
  spreadsheet would read as a formula (it begins with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return) gets a leading single quote, as OWASP
  recommends against CSV injection; numbers stay numbers.
* :data:`MAX_DB_ID` and :data:`DbId` — a path id beyond the database's
  integer range (BIGINT on PostgreSQL, INTEGER on SQLite: both signed 64-bit)
  is an unknown id (404), never a database error.
* :class:`BodyLimitMiddleware` — a request body over ``web.max_body_bytes``
  gets 413 without the rest being read.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Path
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# --------------------------------------------------------------------------- links

_SAFE_SCHEMES = ("http", "https")
# Browsers drop tabs and newlines inside a URL ("java\tscript:"), so any control
# character or whitespace inside one makes it unsafe rather than cleaned up.
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\s]")


def safe_url(url: str | None) -> str | None:
    """``url`` (trimmed) when it is an absolute http(s) URL with a host, else None."""
    if not url:
        return None
    u = str(url).strip()
    if not u or _BAD_URL_CHARS.search(u):
        return None
    try:
        parts = urlsplit(u)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.hostname:
        return None
    return u


# --------------------------------------------------------------------------- spreadsheets

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_cell(value: Any) -> Any:
    """One export cell, safe to open in Excel, WPS or LibreOffice.

    None, booleans, numbers, dates and times pass through; text that begins
    with a formula character is prefixed with ``'`` unless it is a plain
    number such as ``-1.5`` (a spreadsheet reads that as the number, not a
    formula). Everything else is returned as text.
    """
    if value is None or isinstance(value, (bool, int, float, datetime, date)):
        return value
    s = value if isinstance(value, str) else str(value)
    if s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        return "'" + s
    return s


def spreadsheet_row(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [spreadsheet_cell(v) for v in values]


# --------------------------------------------------------------------------- ids

MAX_DB_ID = 2**63 - 1  # BIGINT (PostgreSQL) and INTEGER (SQLite) are signed 64-bit
# A path id outside 1..MAX_DB_ID names nothing: the app's validation handler
# answers 404 for it (see :func:`id_out_of_range`), like any unknown id.
DbId = Annotated[int, Path(ge=1, le=MAX_DB_ID)]

_RANGE_ERRORS = {"greater_than_equal", "less_than_equal"}


def id_out_of_range(errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first path-parameter range error among validation ``errors``, or None."""
    for err in errors:
        loc = err.get("loc") or ()
        if len(loc) >= 2 and loc[0] == "path" and err.get("type") in _RANGE_ERRORS:
            return err
    return None


def valid_id(value: int) -> bool:
    return 1 <= value <= MAX_DB_ID


# --------------------------------------------------------------------------- body size

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; FastAPI
    passes an HTTPException from body reading through to its handler (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"请求体过大：上限 {limit} 字节",
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, without reading the rest.

    A ``Content-Length`` over the limit is refused before the app runs (so
    nothing is read, and no ``100 Continue`` is sent); a body without one
    (chunked) is counted as it streams in and refused at the chunk that
    passes the limit. The 413 carries ``Connection: close`` so the server
    closes the connection instead of draining what the client still sends.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            # Raised where no exception handler turned it into the 413 already.
            if started:
                raise
            await _send_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 rejects these before us; count the chunks then
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"请求体过大：上限 {limit} 字节"}, ensure_ascii=False).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "MAX_DB_ID",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "DbId",
    "id_out_of_range",
    "safe_url",
    "spreadsheet_cell",
    "spreadsheet_row",
    "valid_id",
]
