"""Jinja2 templates of the console (``web/templates``), autoescaped.

Every page is rendered here; no HTML is assembled in Python strings. What
templates may use besides their context:

* ``link(url, label, cls="")`` (macro in ``_macros.html``) — an ``<a>`` only
  for what :func:`responder.safety.safe_url` accepts; anything else is shown
  as text, nothing lost. :func:`link_html` is the same from Python.
* filters ``safe_url``, ``hm`` (an ISO time → ``YYYY-MM-DD HH:MM``),
  ``shanghai`` (a datetime → the same in Asia/Shanghai), ``sev_class`` (a
  severity → its CSS class: no inline style, the CSP forbids it),
  ``jurisdiction`` (a division-code prefix → ``安徽省合肥市（3401）``).
* ``me`` (the signed-in :class:`~responder.permissions.Actor` or None),
  ``csrf_token`` (the session's, for forms and the ``csrf-token`` meta tag the
  scripts read), ``csp_nonce`` and ``P`` (:class:`~responder.permissions.Permission`,
  so a page shows only the actions ``me.can(...)``) — when rendered with ``request``.
"""

from __future__ import annotations

import functools
import html
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from responder.clocks import SHANGHAI
from responder.permissions import Permission
from responder.safety import safe_url

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

SEVERITY_COLOUR = {"特别重大": "#c62828", "重大": "#ef6c00", "较大": "#f9a825", "一般": "#1565c0"}
# The CSS class of each severity (web/static/app.css gives it SEVERITY_COLOUR's colour).
SEVERITY_CLASS = {"特别重大": "sev-1", "重大": "sev-2", "较大": "sev-3", "一般": "sev-4"}
PRECISION_LABEL = {
    "second": "精确到秒",
    "minute": "精确到分钟",
    "hour": "精确到小时",
    "day": "仅有日期，按当日0时起算",
    "unknown": "发布时间不详",
}


def _hm(iso: str | None) -> str:
    """``2026-11-02T15:00:00+08:00`` → ``2026-11-02 15:00`` (already Shanghai time)."""
    return (iso or "")[:16].replace("T", " ")


def _shanghai(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return dt.astimezone(SHANGHAI).strftime(fmt) if dt else ""


@functools.lru_cache(maxsize=1)
def _gazetteer() -> Any:
    from classifiers.places import Gazetteer

    return Gazetteer.load()


def jurisdiction_label(code: str | None) -> str:
    """A jurisdiction prefix as people read it: ``3401`` → ``安徽省合肥市（3401）``, ``""`` → ``全部``."""
    if not code:
        return "全部"
    try:
        g = _gazetteer()
        d = g.get(code)
    except Exception:  # the label is a courtesy; the code says it all
        logging.getLogger("yuqing.web").exception("无法加载行政区划表")
        return code
    return f"{g.describe(d)}（{code}）" if d is not None else code


def _finalize(value: Any) -> Any:
    """Every ``{{ … }}`` is escaped the way :func:`html.escape` does it (``&quot;``, ``&#x27;``),
    like the rest of the project's output; None prints as nothing. Markup (already escaped) passes."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    return Markup(html.escape(str(value)))


env = Environment(
    finalize=_finalize,
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(safe_url=safe_url, hm=_hm, shanghai=_shanghai, sev_class=lambda s: SEVERITY_CLASS.get(s, "sev-0"),
                   jurisdiction=jurisdiction_label)
env.globals.update(SEVERITY_COLOUR=SEVERITY_COLOUR, PRECISION_LABEL=PRECISION_LABEL, P=Permission,
                   me=None, csrf_token="", csp_nonce="")


def request_context(request: Request | None) -> dict[str, Any]:
    """What every page shows of the request: the signed-in user, the CSRF token, the CSP nonce."""
    if request is None:
        return {}
    me = getattr(request.state, "actor", None)
    return {
        "me": me,
        "csrf_token": (me.csrf_token or "") if me is not None else "",
        "csp_nonce": getattr(request.state, "csp_nonce", ""),
    }


def render_str(name: str, request: Request | None = None, **context: Any) -> str:
    return env.get_template(name).render(**{**request_context(request), **context})


def render(name: str, status_code: int = 200, *, request: Request | None = None, **context: Any) -> HTMLResponse:
    return HTMLResponse(render_str(name, request, **context), status_code=status_code)


def link_html(url: str | None, label_html: str | None = None, *, cls: str = "", new_tab: bool = True) -> str:
    """An ``<a>`` to ``url`` when :func:`responder.safety.safe_url` accepts it, else text.

    ``label_html`` is markup the caller has already escaped (default: the URL,
    escaped). An unsafe URL gives the label as plain text and, when the label
    is not the URL itself, the URL as escaped text after it, so nothing is lost.
    """
    label = Markup(label_html) if label_html is not None else None
    macro = env.get_template("_macros.html").module.link  # type: ignore[attr-defined]
    return str(macro(url, label, cls=cls, new_tab=new_tab))
