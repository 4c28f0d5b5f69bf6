"""News portals (and government sites): list page or RSS/Atom feed → article pages.

An article's encoding is the one that decodes the whole page into valid, plausible
text (``SourceSpider.fix_encoding``: HTTP header, ``<meta>``, then the bytes), so
GBK / GB2312 / GB18030 / Big5 / UTF-8 sites need nothing special, and a page no
encoding decodes is refused and counted rather than sent on as mojibake.
A start URL that answers with an RSS 2.0 or Atom feed is read as one: each
entry's link is fetched, and the feed's title and date win over the page's
(they are the publisher's own metadata).
"""

from __future__ import annotations

from typing import Any

import scrapy
from scrapy.http import TextResponse

from crawlers.dates import parse_date
from crawlers.extract import extract_article, generic_list_links
from crawlers.spiders.base import SourceSpider, canonical_url


class NewsSpider(SourceSpider):
    name = "news"

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "列表页不是文本页面")
            return
        if is_feed(response):
            yield from self.parse_feed(response)
            return
        links = self.list_links(response, lambda r: generic_list_links(r.selector, r.url))
        yield from self.follow_list(response, page, links, self.parse_article, "文章")

    def parse_feed(self, response: TextResponse) -> Any:
        sel = response.selector
        sel.remove_namespaces()
        entries = sel.xpath("//item") or sel.xpath("//entry")
        if not entries:
            self.logger.warning("订阅源 %s 没有条目", response.url)
            self.count("empty_lists")
        for e in entries:
            link = (e.xpath("link/text()").get() or e.xpath("link[@rel='alternate']/@href").get()
                    or e.xpath("link/@href").get() or "").strip()
            if not link:
                continue
            when = (e.xpath("pubDate/text()").get() or e.xpath("published/text()").get()
                    or e.xpath("updated/text()").get() or e.xpath("date/text()").get() or "").strip()
            yield scrapy.Request(response.urljoin(link), callback=self.parse_article, errback=self.on_error,
                                 cb_kwargs={"feed_title": (e.xpath("title/text()").get() or "").strip(),
                                            "feed_time": when,
                                            "feed_author": (e.xpath("author/name/text()").get()
                                                            or e.xpath("author/text()").get()
                                                            or e.xpath("creator/text()").get() or "").strip()})

    def parse_article(self, response: scrapy.http.Response, feed_title: str = "", feed_time: str = "",
                      feed_author: str = "") -> Any:
        fetched_at = self.fetch_time()
        if not isinstance(response, TextResponse):
            self.reject(response.url, "不是文本页面")
            return
        self.check_complete(response)
        decoded = self.fix_encoding(response)
        if decoded is None:
            return
        response = decoded
        art = extract_article(response.selector, fetched_at, self.source.selectors)
        if feed_title:
            art.title = feed_title
        if feed_time:
            art.published = parse_date(feed_time, fetched_at) or art.published
        if feed_author and not art.author:
            art.author = feed_author
        if not art.text:
            self.reject(response.url, "没有找到正文")
            return
        if not art.title:
            self.reject(response.url, "没有找到标题")
            return
        url = canonical_url(response.url)
        yield self.make_item(
            native_id=url,
            url=url,
            title=art.title,
            text=art.text,
            author=art.author,
            published=art.published,
            fetched_at=fetched_at,
        )


def is_feed(response: TextResponse) -> bool:
    """RSS 2.0 / RSS 1.0 / Atom, by content type or by the root element."""
    ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
    if "rss" in ctype or "atom" in ctype:
        return True
    head = response.body[:1024].lstrip().lower()
    return head.startswith(b"<?xml") and (b"<rss" in head or b"<feed" in head or b"<rdf:rdf" in head)
