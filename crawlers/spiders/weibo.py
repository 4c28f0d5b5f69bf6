"""Weibo's mobile JSON API (m.weibo.cn ``/api/container/getIndex``).

Each ``mblog`` card becomes a post: HTML text → plain text with emoji kept as
their alt text ("[怒]"), counts in ``engagement``, ``created_at`` in either
the absolute form ("Sun Nov 22 14:05:00 +0800 2026") or the relative ones
("5分钟前", "刚刚", "昨天 12:30", "06-14"). A repost's ``parent_id`` is the
original's post id; the embedded original is emitted as a post too. Long
posts ("全文") are completed from ``/statuses/extend``. With
``fetch_comments`` each post's comments are read from ``/comments/hotflow``
(parent_id = the post). A keyword search is just another start URL:
``/api/container/getIndex?containerid=100103type%3D1%26q%3D关键词``
(its cards come in ``card_group``s).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import lxml.html
import scrapy
from scrapy.http import TextResponse

from crawlers.dates import parse_date
from crawlers.extract import element_text
from crawlers.items import PostItem
from crawlers.spiders.base import SourceSpider
from stream.contracts import content_hash

_FULLTEXT_LINK = re.compile(r"(?:\.\.\.|…)?\s*<a[^>]*href=['\"]/status/[^'\"]*['\"][^>]*>\s*全文\s*</a>\s*$")


def weibo_text(html_text: str) -> str:
    """m.weibo.cn's ``text`` HTML → plain text; emoji as "[怒]", links as their text."""
    html_text = _FULLTEXT_LINK.sub("", html_text or "")
    if not html_text.strip():
        return ""
    root = lxml.html.fragment_fromstring(html_text, create_parent="div")
    return element_text(root, img_alt=True)


def _count(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip().replace(",", "").replace("+", "")
        try:
            if s.endswith("万"):
                return int(float(s[:-1]) * 10000)
            if s.endswith("亿"):
                return int(float(s[:-1]) * 100_000_000)
            return int(s)
        except ValueError:
            return None
    return None


class WeiboSpider(SourceSpider):
    name = "weibo"
    custom_headers = {
        "Accept": "application/json, text/plain, */*",
        "X-Requested-With": "XMLHttpRequest",
        "MWeibo-Pwa": "1",
    }

    async def start(self) -> Any:
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse, errback=self.on_error, headers=self.custom_headers,
                                 cb_kwargs={"page": 1}, dont_filter=True)

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "接口返回的不是文本")
            return
        try:
            data = json.loads(response.text)
        except json.JSONDecodeError as e:
            self.reject(response.url, f"接口返回的不是 JSON：{e.msg}（第 {e.lineno} 行）")
            return
        if not isinstance(data, dict) or data.get("ok") != 1:
            msg = data.get("msg") if isinstance(data, dict) else None
            if page == 1:
                self.logger.warning("微博接口 %s 没有内容：%s", response.url, msg or "ok != 1")
                self.count("empty_lists")
            return
        body = data.get("data") or {}
        cards = body.get("cards") or []
        fetched_at = self.fetch_time()
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(response.url))
        for card in self._mblog_cards(cards):
            yield from self._from_mblog(card, origin, fetched_at, response.url)
        info = body.get("cardlistInfo") or {}
        nxt = info.get("page")
        if cards and isinstance(nxt, int) and nxt > page and page < self.source.max_pages:
            yield scrapy.Request(self._with_page(response.url, nxt), callback=self.parse, errback=self.on_error,
                                 headers=self.custom_headers, cb_kwargs={"page": page + 1})

    @staticmethod
    def _mblog_cards(cards: list[Any]) -> Iterator[dict[str, Any]]:
        for card in cards:
            if not isinstance(card, dict):
                continue
            if isinstance(card.get("mblog"), dict):
                yield card["mblog"]
            for sub in card.get("card_group") or []:  # card_type 11 wraps a group
                if isinstance(sub, dict) and isinstance(sub.get("mblog"), dict):
                    yield sub["mblog"]

    @staticmethod
    def _with_page(url: str, page: int) -> str:
        parts = urlsplit(url)
        q = parse_qs(parts.query)
        q["page"] = [str(page)]
        return urlunsplit(parts._replace(query=urlencode(q, doseq=True)))

    def _from_mblog(self, mblog: dict[str, Any], origin: str, fetched_at: Any, page_url: str) -> Iterator[Any]:
        original = mblog.get("retweeted_status")
        parent_native: str | None = None
        if isinstance(original, dict) and original.get("id"):
            parent_native = str(original.get("id"))
            yield from self._from_mblog(original, origin, fetched_at, page_url)
        mid = str(mblog.get("id") or mblog.get("mid") or "")
        if not mid:
            self.reject(page_url, "微博卡片缺少 id")
            return
        text_html = mblog.get("text")
        if not isinstance(text_html, str):
            self.reject(page_url, f"微博 {mid} 缺少 text")
            return
        user = mblog.get("user") if isinstance(mblog.get("user"), dict) else {}
        bid = mblog.get("bid")
        url = f"{origin}/status/{bid}" if bid else f"{origin}/detail/{mid}"
        created = mblog.get("created_at")
        published = parse_date(created, fetched_at) if isinstance(created, str) else None
        item = self.make_item(
            native_id=mid,
            url=url,
            title="",
            text=weibo_text(text_html),
            author=str(user.get("screen_name") or ""),
            published=published,
            fetched_at=fetched_at,
            parent_native_id=parent_native,
            engagement={
                "reposts": _count(mblog.get("reposts_count")),
                "comments": _count(mblog.get("comments_count")),
                "likes": _count(mblog.get("attitudes_count")),
            },
        )
        if self.source.fetch_comments and (_count(mblog.get("comments_count")) or 0) > 0:
            yield scrapy.Request(
                f"{origin}/comments/hotflow?id={mid}&mid={mid}&max_id_type=0", callback=self.parse_comments,
                errback=self.on_error, headers=self.custom_headers, cb_kwargs={"mid": mid, "url": url},
            )
        if mblog.get("isLongText"):
            yield scrapy.Request(
                f"{origin}/statuses/extend?id={mid}", callback=self.parse_long_text,
                errback=self.long_text_failed, headers=self.custom_headers, cb_kwargs={"item": item},
                dont_filter=True,
            )
        else:
            yield item

    def parse_comments(self, response: scrapy.http.Response, mid: str, url: str) -> Any:
        """``comments/hotflow``: each comment a post whose parent is the Weibo post."""
        fetched_at = self.fetch_time()
        try:
            data = json.loads(response.text)
        except (json.JSONDecodeError, AttributeError, ValueError):
            self.reject(response.url, "评论接口返回的不是 JSON")
            return
        if not isinstance(data, dict) or data.get("ok") != 1:
            return  # no comments visible (ok: 0 "暂无数据")
        body = data.get("data") or {}
        for c in body.get("data") or []:
            if not isinstance(c, dict) or not c.get("id") or not isinstance(c.get("text"), str):
                continue
            user = c.get("user") if isinstance(c.get("user"), dict) else {}
            created = c.get("created_at")
            yield self.make_item(
                native_id=f"comment:{c['id']}", url=f"{url}#comment-{c['id']}", title="",
                text=weibo_text(c["text"]), author=str(user.get("screen_name") or ""),
                published=parse_date(created, fetched_at) if isinstance(created, str) else None,
                fetched_at=fetched_at, parent_native_id=mid,
                engagement={"likes": _count(c.get("like_count"))},
            )
        max_id = body.get("max_id")
        if max_id:
            yield scrapy.Request(
                f"{response.url.split('&max_id=')[0]}&max_id={max_id}", callback=self.parse_comments,
                errback=self.on_error, headers=self.custom_headers, cb_kwargs={"mid": mid, "url": url},
            )

    def parse_long_text(self, response: scrapy.http.Response, item: PostItem) -> Any:
        try:
            data = json.loads(response.text)
            content = (data.get("data") or {}).get("longTextContent")
        except (json.JSONDecodeError, AttributeError, ValueError):
            content = None
        if isinstance(content, str) and content.strip():
            text = weibo_text(content)
            item = self._with_text(item, text)
        else:
            self.logger.warning("微博 %s 的全文取不到，保留截断的正文", item.get("native_id"))
            self.count("long_text_missing")
        yield item

    def long_text_failed(self, failure: Any) -> Any:
        self.on_error(failure)
        item = failure.request.cb_kwargs.get("item")
        if item is not None:
            yield item  # the truncated text is still the post

    @staticmethod
    def _with_text(item: PostItem, text: str) -> PostItem:
        item["text"] = text
        item["content_hash"] = content_hash(item.get("title") or "", text)
        return item


__all__ = ["WeiboSpider", "weibo_text"]
