"""News comments (跟帖) where the site has a JSON comment API.

List page → article pages → the article's comment API (``comment_api``
template with ``{doc}`` / ``{offset}``, or the page's ``data-comment-api``
attribute), paged by offset. Each comment is a post of kind ``comments``
whose ``parent_id`` is the article's post id under ``parent_source`` (the
news source that crawls the article; this source itself when unset). The
article is not sent again here.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import scrapy
from scrapy.http import TextResponse

from crawlers.dates import parse_date
from crawlers.extract import generic_list_links, html_fragment_text
from crawlers.spiders.base import SourceSpider, canonical_url
from stream.contracts import make_post_id

_DOC = re.compile(r"(\d{2,})(?:\.s?html?)?$")


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        cur: Any = d
        for part in k.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur not in (None, ""):
            return cur
    return None


class CommentsSpider(SourceSpider):
    name = "comments"

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "列表页不是文本页面")
            return
        links = self.list_links(response, lambda r: generic_list_links(r.selector, r.url) or [
            r.urljoin(h) for h in r.css("li a::attr(href)").getall()])
        yield from self.follow_list(response, page, links, self.parse_article, "文章")

    def parse_article(self, response: scrapy.http.Response) -> Any:
        if not isinstance(response, TextResponse):
            return
        article = canonical_url(response.url)
        api = response.css("[data-comment-api]::attr(data-comment-api)").get()
        if not api and self.source.comment_api:
            m = _DOC.search(urlsplit(article).path)
            if m:
                api = self.source.comment_api.format(doc=m.group(1), offset=0)
        if not api:
            self.logger.warning("文章 %s 没有找到评论接口", response.url)
            self.count("no_comment_api")
            return
        yield scrapy.Request(response.urljoin(api), callback=self.parse_comments, errback=self.on_error,
                             cb_kwargs={"article": article, "title": (response.css("h1 ::text").get() or "").strip()},
                             headers={"Accept": "application/json", "Referer": response.url})

    def parse_comments(self, response: scrapy.http.Response, article: str, title: str) -> Any:
        fetched_at = self.fetch_time()
        try:
            data = json.loads(response.text)
        except (json.JSONDecodeError, AttributeError):
            self.reject(response.url, "评论接口返回的不是 JSON")
            return
        comments = _get(data, "comments", "data.comments", "data.list", "list", "data") if isinstance(data, dict) else data
        if isinstance(comments, dict):
            comments = list(comments.values())
        if not isinstance(comments, list):
            self.reject(response.url, "评论接口没有评论列表")
            return
        parent = make_post_id(self.source.parent_source or self.source.id, article)
        for c in comments:
            if not isinstance(c, dict):
                continue
            cid = _get(c, "commentId", "id", "comment_id", "cid")
            content = _get(c, "content", "text", "body")
            if cid is None or not isinstance(content, str):
                self.reject(response.url, "评论缺少 id 或内容")
                continue
            when = _get(c, "createTime", "created_at", "time", "ctime")
            published = parse_date(str(when), fetched_at) if when is not None else None
            item = self.make_item(
                native_id=f"comment:{cid}", url=f"{article}#comment-{cid}", title=f"评论：{title}" if title else "",
                text=html_fragment_text(content) if "<" in content else content,
                author=str(_get(c, "user.nickname", "user.screen_name", "user_name", "nickname", "author") or ""),
                published=published, fetched_at=fetched_at,
                engagement={"likes": _int(_get(c, "vote", "likes", "like_count"))},
            )
            item["parent_id"] = parent
            yield item
        nxt = _get(data, "next_offset", "data.next_offset") if isinstance(data, dict) else None
        if isinstance(nxt, int) and comments:
            parts = urlsplit(response.url)
            q = parse_qs(parts.query)
            q["offset"] = [str(nxt)]
            yield scrapy.Request(urlunsplit(parts._replace(query=urlencode(q, doseq=True))),
                                 callback=self.parse_comments, errback=self.on_error,
                                 cb_kwargs={"article": article, "title": title})


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None
