"""Discuz!-style forums and 百度贴吧-style boards: thread list → thread pages.

A list page with 贴吧 links (``/p/N``, ``a.j_th_tit``) is read as 贴吧: each
thread page's ``div.l_post`` floors become posts (floor 1 the thread, the
others replies to it; ``data-field`` JSON gives post id and author), with
the thread's later pages (``pn=``) followed.

The first post of a thread and each reply become their own post; a reply's
``parent_id`` is the thread's post id (native id ``tid:N``), replies are
``pid:N``. Discuz! shows recent times as "5 分钟前" with the exact time in
the ``title`` attribute; the exact one is used when present.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import scrapy
from parsel import Selector
from scrapy.http import TextResponse

from crawlers.dates import parse_date
from crawlers.extract import clean_lines, element_text, sel_text
from crawlers.spiders.base import SourceSpider

_TIEBA_TID = re.compile(r"/p/(\d+)")
_TID_IN_URL = re.compile(r"(?:[?&]tid=|thread-)(\d+)")
_DIGITS = re.compile(r"\d+")


def _int(text: str | None) -> int | None:
    m = _DIGITS.search(text or "")
    return int(m.group(0)) if m else None


def _thread_url(page_url: str, tid: str) -> str:
    parts = urlsplit(page_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode({"mod": "viewthread", "tid": tid}), ""))


class ForumSpider(SourceSpider):
    name = "forum"

    def parse(self, response: scrapy.http.Response, page: int = 1, **kwargs: Any) -> Any:
        if not isinstance(response, TextResponse):
            self.reject(response.url, "列表页不是文本页面")
            return
        sels = self.source.selectors
        tieba = [h for h in (response.css("a.j_th_tit::attr(href)").getall()
                             or response.css("a::attr(href)").getall()) if _TIEBA_TID.search(h)]
        if tieba and not sels.list_links:
            yield from self._tieba_list(response, tieba, page)
            return
        css = sels.list_links or "tbody[id^=normalthread_] a.xst::attr(href), tbody[id^=normalthread_] th a::attr(href)"
        hrefs = response.css(css).getall() or [
            h for h in response.css("a::attr(href)").getall() if _TID_IN_URL.search(h)
        ]
        tids: dict[str, None] = {}
        for h in hrefs:
            m = _TID_IN_URL.search(h)
            if m:
                tids[m.group(1)] = None
        if not tids:
            self.logger.warning("论坛列表页 %s 没有找到主题", response.url)
            self.count("empty_lists")
        for tid in tids:
            url = _thread_url(response.url, tid)
            yield scrapy.Request(url, callback=self.parse_thread, errback=self.on_error,
                                 cb_kwargs={"tid": tid, "thread_url": url, "page": 1})
        if page < self.source.max_pages:
            nxt = sel_text(response.selector, sels.next_page) if sels.next_page else (
                response.css("div.pg a.nxt::attr(href)").get() or "")
            if nxt.strip():
                yield scrapy.Request(response.urljoin(nxt.strip()), callback=self.parse, errback=self.on_error,
                                     cb_kwargs={"page": page + 1})

    def parse_thread(self, response: scrapy.http.Response, tid: str, thread_url: str, page: int,
                     title: str | None = None, stats: dict[str, int | None] | None = None) -> Any:
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
        if title is None:
            title = clean_lines(" ".join(sel.css("#thread_subject ::text").getall()))
            if not title:
                title = clean_lines(sel.css("h1 ::text").get() or "")
        if stats is None:
            nums = [_int(t) for t in sel.css("div.hm span.xi1::text").getall()]
            stats = {"views": nums[0] if len(nums) > 0 else None, "replies": nums[1] if len(nums) > 1 else None}
        posts = sel.css("div[id^=post_], table[id^=pid]")
        seen: set[str] = set()
        found = 0
        for post in posts:
            pid = self._pid(post)
            if pid is None or pid in seen:
                continue
            seen.add(pid)
            msg = post.css(f"#postmessage_{pid}")
            if not msg:
                continue
            found += 1
            text = element_text(msg[0].root)
            author = clean_lines(post.css(".authi a.xw1::text").get() or post.css(".authi a::text").get() or "")
            posted_at = self._post_time(post, pid, fetched_at)
            is_first = page == 1 and found == 1
            if not text:
                self.reject(f"{thread_url}#pid{pid}", "帖子内容为空")
                continue
            if is_first:
                yield self.make_item(
                    native_id=f"tid:{tid}", url=thread_url, title=title or "", text=text, author=author,
                    published=posted_at, fetched_at=fetched_at,
                    engagement={"replies": stats.get("replies"), "views": stats.get("views")},
                )
            else:
                yield self.make_item(
                    native_id=f"pid:{pid}",
                    url=f"{urlunsplit(urlsplit(thread_url)[:3] + ('', ''))}?"
                        + urlencode({"mod": "redirect", "goto": "findpost", "ptid": tid, "pid": pid}),
                    title=f"回复：{title}" if title else "", text=text, author=author,
                    published=posted_at, fetched_at=fetched_at, parent_native_id=f"tid:{tid}",
                )
        if found == 0:
            notice = clean_lines(" ".join(sel.css("#messagetext ::text").getall()))
            self.reject(response.url, f"没有找到帖子（{notice or '页面结构不符或页面不完整'}）")
            return
        nxt = sel.css("div.pg a.nxt::attr(href)").get()
        if nxt and page < 50:
            yield scrapy.Request(response.urljoin(nxt), callback=self.parse_thread, errback=self.on_error,
                                 cb_kwargs={"tid": tid, "thread_url": thread_url, "page": page + 1,
                                            "title": title, "stats": stats})

    def _tieba_list(self, response: TextResponse, hrefs: list[str], page: int) -> Any:
        tids: dict[str, str] = {}
        for h in hrefs:
            m = _TIEBA_TID.search(h)
            if m and m.group(1) not in tids:
                tids[m.group(1)] = response.urljoin(h[:m.end()])
        for tid, url in tids.items():
            yield scrapy.Request(url, callback=self.parse_tieba_thread, errback=self.on_error,
                                 cb_kwargs={"tid": tid, "thread_url": url, "page": 1})
        if page < self.source.max_pages:
            nxt = response.css("a.next.pagination-item::attr(href)").get() or response.xpath(
                "//a[contains(text(), '下一页')]/@href").get()
            if nxt:
                yield scrapy.Request(response.urljoin(nxt), callback=self.parse, errback=self.on_error,
                                     cb_kwargs={"page": page + 1})

    def parse_tieba_thread(self, response: scrapy.http.Response, tid: str, thread_url: str, page: int,
                           title: str | None = None) -> Any:
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
        if title is None:
            title = clean_lines(sel.css(".core_title_txt::attr(title)").get()
                                or " ".join(sel.css(".core_title_txt ::text").getall())
                                or (sel.css("title::text").get() or "").split("_")[0])
        found = 0
        for post in sel.css("div.l_post"):
            field = _data_field(post)
            content = field.get("content") if isinstance(field.get("content"), dict) else {}
            author_f = field.get("author") if isinstance(field.get("author"), dict) else {}
            pid = str(content.get("post_id") or "")
            body = post.css("div.d_post_content")
            if not pid or not body:
                continue
            found += 1
            text = element_text(body[0].root)
            author = str(author_f.get("user_name") or author_f.get("user_nickname") or "")
            tails = " ".join(post.css(".tail-info::text, .post-tail-wrap span::text").getall())
            posted_at = parse_date(tails, fetched_at)
            floor = content.get("post_no")
            if not text:
                self.reject(f"{thread_url}#{pid}", "帖子内容为空")
                continue
            if floor == 1 or (floor is None and page == 1 and found == 1):
                yield self.make_item(native_id=f"tieba:{tid}", url=thread_url, title=title or "", text=text,
                                     author=author, published=posted_at, fetched_at=fetched_at)
            else:
                yield self.make_item(native_id=f"tieba:{tid}:{pid}", url=f"{thread_url}?pid={pid}#{pid}",
                                     title=f"回复：{title}" if title else "", text=text, author=author,
                                     published=posted_at, fetched_at=fetched_at, parent_native_id=f"tieba:{tid}")
        if found == 0:
            self.reject(response.url, "没有找到楼层（页面结构不符或页面不完整）")
            return
        nxt = response.xpath("//li[contains(@class, 'l_pager')]//a[contains(text(), '下一页')]/@href").get()
        if nxt and page < 50:
            yield scrapy.Request(response.urljoin(nxt), callback=self.parse_tieba_thread, errback=self.on_error,
                                 cb_kwargs={"tid": tid, "thread_url": thread_url, "page": page + 1, "title": title})

    @staticmethod
    def _pid(post: Selector) -> str | None:
        m = re.fullmatch(r"(?:post_|pid)(\d+)", post.attrib.get("id", ""))
        return m.group(1) if m else None

    @staticmethod
    def _post_time(post: Selector, pid: str, fetched_at: Any) -> Any:
        em = post.css(f"#authorposton{pid}")
        if not em:
            em = post.css("em[id^=authorposton]")
        if not em:
            return None
        exact = em.css("span::attr(title)").get()
        if exact:
            got = parse_date(exact, fetched_at)
            if got:
                return got
        return parse_date(" ".join(em.css("::text").getall()), fetched_at)


def _data_field(sel: Selector) -> dict[str, Any]:
    try:
        v = json.loads(sel.attrib.get("data-field") or "{}")
    except json.JSONDecodeError:
        return {}
    return v if isinstance(v, dict) else {}
