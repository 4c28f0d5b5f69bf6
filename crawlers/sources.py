"""The source registry: ``config/sources.yaml``.

Each source says what to crawl (``start_urls``), how (``kind`` picks the
spider, optional CSS ``selectors`` override generic extraction), how often
(``schedule.every_s``), how politely (``politeness``) and which jurisdiction
it belongs to (``region``, used when a post names no place).

``{demo}`` in a URL becomes ``http://HOST:PORT`` of the demo site from the
settings, so the demo port can be overridden (``YUQING_DEMO_PORT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from yuqing.configfile import ConfigError, read_yaml, validate

if TYPE_CHECKING:
    from yuqing.settings import Settings

SOURCES_FILE = "sources.yaml"

SourceKind = Literal["news", "forum", "weibo", "comments", "gov_board", "official"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Model):
    every_s: float = Field(gt=0)


class Selectors(_Model):
    """CSS selectors (Scrapy/parsel syntax, ``::text`` / ``::attr()`` allowed)."""

    list_links: str | None = None  # on a list page: links to items
    next_page: str | None = None  # on a list page: link to the next list page
    title: str | None = None
    time: str | None = None
    author: str | None = None
    content: str | None = None


class Politeness(_Model):
    robots_txt: bool = True
    download_delay_s: float = Field(1.0, ge=0)
    concurrency: int = Field(2, ge=1, le=64)
    timeout_s: float = Field(20.0, gt=0)
    user_agent: str | None = None
    # Scrapy AutoThrottle on top of download_delay_s (adapts to the site's latency).
    autothrottle: bool = True
    # Retries of a failed page (5xx, timeouts), each after a longer pause.
    retries: int = Field(2, ge=0, le=10)
    retry_backoff_s: float = Field(0.5, ge=0)
    # Optional HTTP proxy for this source ("http://host:port").
    proxy: str | None = None


class Source(_Model):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str = Field(min_length=1)
    kind: SourceKind
    start_urls: list[str] = Field(min_length=1)
    schedule: Schedule
    region: str | None = None
    selectors: Selectors = Field(default_factory=Selectors)
    politeness: Politeness = Field(default_factory=Politeness)
    enabled: bool = True
    # List pages (news, forum) or API pages (weibo) to read per crawl.
    max_pages: int = Field(1, ge=1, le=50)
    # Also read the comments of each item where the site has a comment API
    # (Weibo ``comments/hotflow``).
    fetch_comments: bool = False
    # kind "comments": URL template of the site's JSON comment API, "{doc}" the
    # article's numeric id, "{offset}" the paging offset (or the article page's
    # data-comment-api attribute); parent_source: the source id that crawls the
    # articles themselves, so a comment's parent_id is that article's post id.
    comment_api: str | None = None
    parent_source: str | None = None
    # Health: no successful crawl for this long → "dark", alerted.
    dark_after_min: float = Field(60.0, gt=0)
    # Health, optional: crawls succeed but the newest item the source shows is older than
    # this → "dark" too (content stalled: stale cache, selectors that no longer match, an
    # API answering with nothing). Only for sources busy enough that silence is a fault.
    max_lag_min: float | None = Field(None, gt=0)

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or len(v) != 6 or not v.isdigit():
            raise ValueError("region must be a 6-digit division code such as 340000, or null")
        return v

    @field_validator("start_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not (u.startswith(("http://", "https://", "{demo}"))):
                raise ValueError(f"not an http(s) URL: {u!r}")
        return v


class SourcesFile(_Model):
    sources: list[Source] = Field(default_factory=list)


def demo_base(settings: Settings) -> str:
    return f"http://{settings.demo_site.host}:{settings.demo_site.port}"


def load_sources(settings: Settings, *, enabled_only: bool = False) -> list[Source]:
    """Read ``sources.yaml`` from the config dir; raise ConfigError (file:line: field: why)."""
    path = settings.config_path(SOURCES_FILE)
    data, lines = read_yaml(path)
    parsed = validate(path, data, lines, SourcesFile)
    seen: dict[str, int] = {}
    problems: list[tuple[int | None, str, str]] = []
    for i, s in enumerate(parsed.sources):
        if s.id in seen:
            problems.append((lines.get(("sources", i, "id")), f"sources.{i}.id",
                             f"duplicate source id {s.id!r} (first used in sources.{seen[s.id]})"))
        else:
            seen[s.id] = i
    if problems:
        raise ConfigError(path, problems)
    base = demo_base(settings)
    out = []
    for s in parsed.sources:
        s.start_urls = [u.replace("{demo}", base) for u in s.start_urls]
        if enabled_only and not s.enabled:
            continue
        out.append(s)
    return out


class UnknownSourceError(KeyError):
    """No source with that id in ``sources.yaml``; ``str()`` lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "未知的信息源"


def get_source(settings: Settings, source_id: str) -> Source:
    sources = load_sources(settings)
    for s in sources:
        if s.id == source_id:
            return s
    known = "、".join(s.id for s in sources) or "（无）"
    raise UnknownSourceError(f"未知的信息源 {source_id!r}，可用的信息源：{known}")
