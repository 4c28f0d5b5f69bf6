"""Security headers on every answer of the console.

* ``Content-Security-Policy``: everything from this origin only; scripts only
  from ``/static`` or carrying this request's nonce (``csp_nonce`` in
  templates; the console has no inline script today), no inline style,
  ``frame-ancestors 'none'`` (no framing: clickjacking), forms post only here.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (a
  link out to a crawled site does not tell it which ticket was open),
  ``X-Frame-Options: DENY`` for old browsers, HSTS when ``web.base_url`` is https.
* ``Cache-Control: no-store`` on everything but ``/static``: pages and API
  answers carry signed-in data, never to be kept by a browser or proxy.

A header the route set itself is left as it is.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_PREFIX = "/static/"


def csp(nonce: str) -> str:
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        # request.state.csp_nonce (web.templating puts it into every page).
        scope.setdefault("state", {})["csp_nonce"] = nonce
        static = str(scope.get("path", "")).startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                defaults = {
                    "Content-Security-Policy": csp(nonce),
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin",
                    "X-Frame-Options": "DENY",
                }
                if not static:
                    defaults["Cache-Control"] = "no-store"
                if self.https:
                    defaults["Strict-Transport-Security"] = "max-age=31536000"
                for k, v in defaults.items():
                    if k not in h:
                        h[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["SecurityHeadersMiddleware", "csp"]
