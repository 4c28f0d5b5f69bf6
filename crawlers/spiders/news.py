"""News portals (and government sites): list page → article pages.

The page's encoding comes from Scrapy's TextResponse (HTTP header, then
``<meta>``, then a guess), so GBK / GB2312 / UTF-8 sites need nothing special.
"""

from __future__ import annotations

from typing import Any

import scrapy
from scrapy.http import TextResponse

from crawlers.extract import extract_article, generic_list_links, sel_text
from crawlers.spiders.base import SourceSpider, canonical_url


class NewsSpider(SourceSpider):
    name = "news"

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "列表页不是文本页面")
            return
        sels = self.source.selectors
        if sels.list_links:
            links = [response.urljoin(h) for h in response.css(sels.list_links).getall() if h.strip()]
        else:
            links = generic_list_links(response.selector, response.url)
        if not links:
            self.logger.warning("列表页 %s 没有找到文章链接", response.url)
            self.count("empty_lists")
        for url in dict.fromkeys(links):
            yield scrapy.Request(url, callback=self.parse_article, errback=self.on_error)
        if sels.next_page and page < self.source.max_pages:
            nxt = sel_text(response.selector, sels.next_page)
            if nxt:
                yield scrapy.Request(response.urljoin(nxt.split()[0]), callback=self.parse, errback=self.on_error,
                                     cb_kwargs={"page": page + 1})

    def parse_article(self, response: scrapy.http.Response) -> Any:
        fetched_at = self.fetch_time()
        if not isinstance(response, TextResponse):
            self.reject(response.url, "不是文本页面")
            return
        self.check_complete(response)
        art = extract_article(response.selector, fetched_at, self.source.selectors)
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
