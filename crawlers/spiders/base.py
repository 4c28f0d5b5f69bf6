"""What every source spider shares: its source, item building, error counting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure
from w3lib.url import canonicalize_url

from crawlers.dates import Parsed
from crawlers.extract import PageEncodingError, choose_decoding, content_type_charset, norm_charset, sel_text
from crawlers.items import PostItem
from crawlers.sources import Source
from stream.contracts import SHANGHAI, content_hash, make_post_id
from stream.transport import Producer
from yuqing.settings import LimitsSettings


@dataclass
class CrawlContext:
    """Handed to each spider; the pipeline sends through it."""

    producer: Producer
    topic: str
    state_path: Path
    health_topic: str | None = None  # crawl.health, when the stage reports health
    # Text over limits.max_text_chars is cut before it is sent (crawlers.pipelines).
    limits: LimitsSettings = field(default_factory=LimitsSettings)


def canonical_url(url: str) -> str:
    return canonicalize_url(url, keep_fragments=False)


class SourceSpider(scrapy.Spider):
    """Base of the per-kind spiders. One instance crawls one configured source once."""

    name = "source"
    kind_label = "信息源"

    def __init__(self, source: Source, ctx: CrawlContext | None = None, **kwargs: Any) -> None:
        super().__init__(name=source.id, **kwargs)
        self.source = source
        self.ctx = ctx
        self.start_urls = list(source.start_urls)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse, errback=self.on_error, cb_kwargs={"page": 1},
                                 dont_filter=True)

    def parse(self, response: scrapy.http.Response, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- helpers -------------------------------------------------------

    def fetch_time(self) -> datetime:
        return datetime.now(SHANGHAI).replace(microsecond=0)

    def post_id(self, native_id: str) -> str:
        return make_post_id(self.source.id, native_id)

    def count(self, key: str, n: int = 1) -> None:
        if self.crawler is not None and self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"yuqing/{key}", n)

    def reject(self, url: str, reason: str) -> None:
        """An item that cannot become a post: say why, count it, go on."""
        self.logger.warning("丢弃 %s：%s", url, reason)
        self.count("rejected")

    def check_complete(self, response: scrapy.http.TextResponse) -> None:
        """An HTML page cut off before ``</html>``: still used, but said and counted."""
        if b"</html" not in response.body[-4096:].lower():
            self.logger.warning("页面 %s 不完整（没有 </html>），只取到部分内容", response.url)
            self.count("truncated_pages")

    def fix_encoding(self, response: scrapy.http.TextResponse) -> scrapy.http.TextResponse | None:
        """The page decoded in the encoding that yields valid text for all of it
        (:func:`crawlers.extract.choose_decoding`: HTTP header, <meta>, then the bytes), not
        the one Scrapy picked from the header or <meta> alone: a UTF-8 page with a few stray
        bytes stays UTF-8, a page that says GBK but is UTF-8 is read as UTF-8.

        None for a page that no encoding decodes cleanly: it is not sent on as a post, but
        logged and counted (``encoding_failed``, shown by ``yuqing crawl-health``)."""
        try:
            d = choose_decoding(response.body, content_type_charset(response.headers.get(b"Content-Type")))
        except PageEncodingError as e:
            self.reject(response.url, str(e))
            self.count("encoding_failed")
            if self.crawler is not None and self.crawler.stats is not None:
                self.crawler.stats.set_value("yuqing/encoding_failed_url", response.url)
            return None
        if d.encoding != norm_charset(response.encoding):
            self.count("encoding_fixed")
        # The text as decoded here, whatever the page's <meta> says.
        return response.replace(body=d.text.encode("utf-8"), encoding="utf-8")

    def on_error(self, failure: Failure) -> None:
        """A page that failed (HTTP error, timeout, refused): logged, counted, crawl goes on."""
        request = getattr(failure, "request", None)
        url = request.url if request is not None else "?"
        if failure.check(IgnoreRequest) and "robots.txt" in (failure.getErrorMessage() or ""):
            # The site's robots.txt forbids it and the source obeys robots.txt: a choice, not
            # a failure (Scrapy counts it in robotstxt/forbidden).
            self.logger.info("robots.txt 不允许抓取 %s，已跳过", url)
            self.count("robots_forbidden")
            return
        if failure.check(HttpError):
            status = failure.value.response.status
            self.logger.warning("抓取失败 %s：HTTP %s", url, status)
        else:
            self.logger.warning("抓取失败 %s：%s", url, failure.getErrorMessage() or failure.type.__name__)
        self.count("errors")

    def make_item(
        self,
        *,
        native_id: str,
        url: str,
        title: str,
        text: str,
        author: str,
        published: Parsed | None,
        fetched_at: datetime,
        parent_native_id: str | None = None,
        engagement: dict[str, int | None] | None = None,
    ) -> PostItem:
        if published is None:
            # No date on the page: the fetch time bounds it, and the
            # precision says it is not the page's own.
            self.logger.warning("%s 没有可识别的发布时间，以抓取时间代替（精度 unknown）", url)
            self.count("no_date")
            published_at, precision = fetched_at, "unknown"
        else:
            published_at, precision = published
        return PostItem(
            post_id=self.post_id(native_id),
            native_id=native_id,
            source_id=self.source.id,
            source_kind=self.source.kind,
            source_name=self.source.name,
            url=url,
            title=title.strip(),
            text=text.strip().rstrip("\ufffd").strip(),
            author=author.strip(),
            published_at=published_at,
            published_precision=precision,
            fetched_at=fetched_at,
            source_region=self.source.region,
            parent_id=self.post_id(parent_native_id) if parent_native_id else None,
            engagement={k: v for k, v in (engagement or {}).items() if v is not None},
            content_hash=content_hash(title.strip(), text.strip().rstrip("\ufffd").strip()),
        )


    def list_links(self, response: TextResponse, fallback: Callable[[TextResponse], list[str]]) -> list[str]:
        """Links of a list page: the source's ``list_links`` selector, else ``fallback``."""
        css = self.source.selectors.list_links
        if css:
            return [response.urljoin(h) for h in response.css(css).getall() if h.strip()]
        return fallback(response)

    def follow_list(
        self, response: TextResponse, page: int, links: list[str], callback: Callable[..., Any], what: str
    ) -> Iterator[scrapy.Request]:
        """Request each linked item once, then the next list page (up to ``max_pages``)."""
        if not links:
            self.logger.warning("列表页 %s 没有找到%s链接", response.url, what)
            self.count("empty_lists")
        for url in dict.fromkeys(links):
            yield scrapy.Request(url, callback=callback, errback=self.on_error)
        css = self.source.selectors.next_page
        if css and page < self.source.max_pages:
            nxt = sel_text(response.selector, css)
            if nxt:
                yield scrapy.Request(response.urljoin(nxt.split()[0]), callback=self.parse, errback=self.on_error,
                                     cb_kwargs={"page": page + 1})
