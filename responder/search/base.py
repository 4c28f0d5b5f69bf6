"""The search contract shared by every backend.

A backend indexes :class:`PostDoc` (one assessed post), answers a
:class:`SearchQuery` with a :class:`SearchResult` and is interchangeable with
every other backend: the same documents and query give the same hits, totals
and facets (scores differ; each engine has its own BM25 numbers).

Semantics every backend keeps (``tests/test_search_contract.py`` checks them):

* ``index`` is an idempotent upsert keyed by ``post_id``; when it returns, the
  documents are searchable (no refresh lag).
* Query text is segmented with :mod:`responder.search.segment`; every query
  word must occur in the title or the text (AND).
* ``place_code`` is a jurisdiction prefix: ``34`` (or ``340000``) is Anhui and
  everything in it, ``3415`` (or ``341500``) is Lu'an city and its counties.
  A city scope does not see province-level posts: a user sees their own
  jurisdiction and the ones below it, not above.
* ``scope`` (:class:`Scope`) is the user's jurisdiction: a filter inside the
  query like ``place_code``, so hits, totals and facets never count a post
  outside it; posts with no place (待定) only when ``scope.unplaced``.
* ``published_from`` is inclusive, ``published_to`` exclusive.
* Facets count the whole matching set (all filters applied), not one page;
  documents without a topic / severity are not counted under those facets.
* Snippets and ``title_html`` are HTML-safe: the document text is escaped and
  the only markup is ``<em>…</em>`` around matched words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

SortOrder = Literal["relevance", "time", "time_asc"]
FACET_FIELDS: tuple[str, ...] = ("source_kind", "topic", "severity")

MAX_LIMIT = 1000
_PLACE_RE = re.compile(r"^\d{1,6}$")


def _require_aware(name: str, dt: datetime | None) -> None:
    if dt is not None and (dt.tzinfo is None or dt.utcoffset() is None):
        raise ValueError(f"{name} must carry a UTC offset (got naive {dt.isoformat()})")


@dataclass
class PostDoc:
    """One post as the search index holds it."""

    post_id: str
    title: str
    text: str
    source_id: str
    source_kind: str
    url: str
    published_at: datetime  # tz-aware
    place_code: str | None = None  # 6-digit division code of the most specific level
    place_label: str = ""
    topic: str | None = None
    severity: str | None = None
    event_id: int | None = None

    def __post_init__(self) -> None:
        if not self.post_id:
            raise ValueError("post_id must not be empty")
        _require_aware("published_at", self.published_at)

    @classmethod
    def from_stored(cls, row: Mapping[str, Any]) -> PostDoc:
        """Rebuild a doc from a backend's stored row (published_at as ISO text)."""
        values = {f.name: row[f.name] for f in fields(cls)}
        values["published_at"] = datetime.fromisoformat(row["published_at"])
        values["place_label"] = values["place_label"] or ""
        return cls(**values)


def place_prefix(code: str) -> str:
    """The prefix that scopes a jurisdiction: ``340000`` → ``34``, ``341500`` → ``3415``.

    Division codes are PPCCXX: a province is ``PP0000``, a city ``PPCC00``; a
    county never ends in ``00``. Shorter prefixes (``34``, ``3415``) are
    accepted as they are.
    """
    code = code.strip()
    if not _PLACE_RE.match(code):
        raise ValueError(f"place_code must be 1-6 digits, not {code!r}")
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


@dataclass(frozen=True)
class Scope:
    """What a user may find: posts placed under ``prefix`` (``""``: any place)
    and, when ``unplaced``, the posts with no place (待定)."""

    prefix: str
    unplaced: bool

    def __post_init__(self) -> None:
        if self.prefix:
            object.__setattr__(self, "prefix", place_prefix(self.prefix))

    @classmethod
    def of(cls, actor: Any) -> Scope | None:
        """The scope of a :class:`responder.permissions.Actor`; None when it sees everything."""
        from responder.permissions import scope_prefix

        scope = cls(scope_prefix(actor), actor.sees(None))
        return None if scope.everything else scope

    @property
    def everything(self) -> bool:
        return self.prefix == "" and self.unplaced


def as_values(v: str | Sequence[str] | None) -> list[str]:
    """A filter value as a list: one string, a sequence of them, or nothing."""
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [x for x in v]


@dataclass
class SearchQuery:
    """What to look for. Every filter left at ``None`` does not filter."""

    text: str = ""
    place_code: str | None = None  # jurisdiction prefix, see place_prefix()
    source_kind: str | Sequence[str] | None = None  # one kind or any of several
    topic: str | Sequence[str] | None = None
    severity: str | Sequence[str] | None = None
    event_id: int | None = None
    # The user's jurisdiction (Scope.of(actor)); None: no limit (the CLI, the indexer).
    scope: Scope | None = None
    published_from: datetime | None = None  # inclusive
    published_to: datetime | None = None  # exclusive
    # "relevance" (BM25, newest first on ties; without text it is "time"),
    # "time" (newest first) or "time_asc" (oldest first).
    sort: SortOrder = "relevance"
    limit: int = 20
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in ("relevance", "time", "time_asc"):
            raise ValueError(f"sort must be relevance, time or time_asc, not {self.sort!r}")
        if not 0 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be within 0..{MAX_LIMIT}, not {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, not {self.offset}")
        _require_aware("published_from", self.published_from)
        _require_aware("published_to", self.published_to)
        if self.place_code is not None:
            self.place_code = place_prefix(self.place_code)


@dataclass
class SearchHit:
    post_id: str
    score: float
    title: str
    title_html: str  # escaped title with <em> around matched words
    snippet: str  # escaped excerpt of the text with <em> around matched words
    published_at: datetime
    source_id: str
    source_kind: str
    url: str
    place_code: str | None
    place_label: str
    topic: str | None
    severity: str | None
    event_id: int | None


@dataclass
class SearchResult:
    total: int
    hits: list[SearchHit] = field(default_factory=list)
    # facet name ("source_kind", "topic", "severity") → value → count
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


@runtime_checkable
class SearchBackend(Protocol):
    def index(self, docs: Sequence[PostDoc]) -> None:
        """Insert or replace by ``post_id``; searchable when this returns."""

    def delete(self, post_id: str) -> None:
        """Remove one post; deleting an unknown id is not an error."""

    def get(self, post_id: str) -> PostDoc | None: ...

    def search(self, q: SearchQuery) -> SearchResult: ...

    def count(self) -> int: ...

    def record_segmenter(self) -> None:
        """Every document has been indexed again: the index is cut by the current segmenter."""

    def close(self) -> None: ...
