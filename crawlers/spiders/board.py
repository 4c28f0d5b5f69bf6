"""问政 / 领导留言板 (gov_board): message list → message pages.

A message page holds the citizen's message and, once answered, the official
reply with its own time. The message becomes a post (kind ``gov_board``); the
reply becomes its own post with ``source_kind = "official"``, ``parent_id`` =
the message's post id and the replying unit as author, so the 5 h / 24 h /
48 h clocks can be checked against the real reply time.

Per-source ``selectors`` (list_links, title, time, author, content) override
the defaults for the message; the reply is found by its usual classes
(``.reply`` / ``.answer`` / ``.huifu``, or a block labelled 答复/回复).
"""

from __future__ import annotations

import re
from typing import Any

import scrapy
from lxml import etree
from parsel import Selector
from scrapy.http import TextResponse

from crawlers.dates import parse_date
from crawlers.extract import clean_lines, element_text, extract_article, generic_list_links, sel_text
from crawlers.spiders.base import SourceSpider, canonical_url

_REPLY_CSS = ("div.reply", "div.answer", "div.huifu", "[class*=reply]", "[class*=answer]", "[class*=huifu]")
_LABEL = re.compile(r"^(?:留言人|网友|答复单位|回复单位|办理单位|答复时间|回复时间|留言时间|时间|答复内容|回复内容)\s*[:：]\s*")
_ORG = re.compile(r"(?:答复单位|回复单位|办理单位|回复机构)\s*[:：]\s*(\S+)")
_MSG_ID = re.compile(r"(\d{3,})(?:\.s?html?)?(?:$|\?)")


def _strip(t: str) -> str:
    return _LABEL.sub("", t.strip()).strip()


def _first(sel: Selector, css_list: tuple[str, ...]) -> Selector | None:
    for css in css_list:
        found = sel.css(css)
        if found:
            return found[0]
    return None


def _message_links(response: TextResponse) -> list[str]:
    links = [response.urljoin(h) for h in response.css("a::attr(href)").getall()
             if re.search(r"(?:msg|message|detail|content|view|liuyan|tid=)\D{0,3}\d{3,}", h)]
    return links or generic_list_links(response.selector, response.url)


class GovBoardSpider(SourceSpider):
    name = "gov_board"

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "列表页不是文本页面")
            return
        links = self.list_links(response, _message_links)
        yield from self.follow_list(response, page, links, self.parse_message, "留言")

    def parse_message(self, response: scrapy.http.Response) -> Any:
        fetched_at = self.fetch_time()
        if not isinstance(response, TextResponse):
            self.reject(response.url, "不是文本页面")
            return
        self.check_complete(response)
        decoded = self.fix_encoding(response)
        if decoded is None:
            return
        response = decoded
        sel = response.selector
        sels = self.source.selectors
        reply_sel = _first(sel, _REPLY_CSS)
        # The message without the reply block, so the generic extraction never mixes them.
        msg_root = Selector(text=response.text, base_url=response.url)
        for r in msg_root.css(", ".join(_REPLY_CSS)):
            if isinstance(r.root, etree._Element) and r.root.getparent() is not None:
                r.root.getparent().remove(r.root)
        title = _strip(sel_text(msg_root, sels.title or ".title, h1").split("\n")[0])
        text = sel_text(msg_root, sels.content) if sels.content else sel_text(msg_root, ".msg-content, .content")
        author = _strip(sel_text(msg_root, sels.author or ".msg-author, .author").split("\n")[0])
        published = parse_date(sel_text(msg_root, sels.time or ".msg-time, .time"), fetched_at)
        if not text or not title or published is None:
            art = extract_article(msg_root, fetched_at, sels)
            title = title or art.title
            text = text or art.text
            author = author or art.author
            published = published or art.published
        if not text:
            self.reject(response.url, "没有找到留言内容")
            return
        url = canonical_url(response.url)
        m = _MSG_ID.search(url)
        native = f"msg:{m.group(1)}" if m else url
        yield self.make_item(native_id=native, url=url, title=title, text=text, author=author,
                             published=published, fetched_at=fetched_at)
        if reply_sel is None:
            return
        yield from self._reply(reply_sel, native, url, title, fetched_at)

    def _reply(self, reply: Selector, parent: str, url: str, title: str, fetched_at: Any) -> Any:
        whole = element_text(reply.root) if isinstance(reply.root, etree._Element) else ""
        org_m = _ORG.search(whole)
        org = _strip(" ".join(reply.css(".reply-org ::text, .org ::text").getall())) or (org_m.group(1) if org_m else "")
        when = parse_date(" ".join(reply.css(".reply-time ::text, .time ::text").getall()), fetched_at)
        if when is None:
            m = re.search(r"(?:答复|回复)时间\s*[:：]\s*([^\n]+)", whole)
            when = parse_date(m.group(1), fetched_at) if m else None
        content = reply.css(".reply-content, .content")
        text = element_text(content[0].root) if content and isinstance(content[0].root, etree._Element) else "\n".join(
            line for line in whole.split("\n") if not _LABEL.match(line))
        text = clean_lines(text)
        if not text:
            return
        item = self.make_item(native_id=f"reply:{parent}", url=url, title=f"答复：{title}" if title else "",
                              text=text, author=org, published=when, fetched_at=fetched_at, parent_native_id=parent)
        item["source_kind"] = "official"  # the reply is the government's, not the citizen's
        self.count("official_replies")
        yield item
