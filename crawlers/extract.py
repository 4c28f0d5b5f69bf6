"""Generic extraction from HTML: text of an element, article title, time, author, body.

Per-source CSS selectors (``Source.selectors``) win; the generic rules are
the fallback for sites without any: title from ``og:title`` / ``<h1>`` /
``<title>``, time from ``<meta>`` tags and the elements that usually carry it,
body from the element with the most paragraph text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree
from parsel import Selector

from crawlers.dates import Parsed, parse_date
from crawlers.sources import Selectors

_BLOCK_TAGS = {
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "blockquote", "pre", "table", "ul", "ol", "dd", "dt",
}
_SKIP_TAGS = {"script", "style", "noscript", "iframe", "form", "button", "select", "textarea"}
_WS = re.compile(r"[ \t\r\f\v\u00a0\u2002\u2003\u2009\u3000]+")


def clean_lines(text: str) -> str:
    """Collapse spaces inside lines, drop empty lines and the 全角 indents."""
    lines = (_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def element_text(el: etree._Element, *, img_alt: bool = False) -> str:
    """Readable text of an lxml element: blocks and <br> become line breaks."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in _SKIP_TAGS:
            if node.tail:
                parts.append(node.tail)
            return
        if tag == "br":
            parts.append("\n")
        elif tag == "img" and img_alt:
            parts.append(node.get("alt") or "")
        if tag in _BLOCK_TAGS:
            parts.append("\n")
        if isinstance(node.tag, str) and node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
        if tag in _BLOCK_TAGS:
            parts.append("\n")
        if node.tail:
            parts.append(node.tail)

    if el.text:
        parts.append(el.text)
    for child in el:
        walk(child)
    return clean_lines("".join(parts))


def html_fragment_text(fragment: str, *, img_alt: bool = True) -> str:
    """Text of an HTML fragment (Weibo's ``text``): emoji <img alt> kept as "[怒]"."""
    if not fragment or not fragment.strip():
        return ""
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    return element_text(root, img_alt=img_alt)


def sel_text(sel: Selector, css: str) -> str:
    """Text under a CSS selector; ``::text`` / ``::attr()`` selectors return their strings."""
    if "::" in css:
        return clean_lines(" ".join(s for s in sel.css(css).getall()))
    found = sel.css(css)
    if not found:
        return ""
    return "\n".join(element_text(s.root) for s in found if isinstance(s.root, etree._Element))


@dataclass
class Article:
    title: str
    text: str
    author: str
    published: Parsed | None


_META_TIME = (
    'meta[property="article:published_time"]::attr(content)',
    'meta[name="publishdate"]::attr(content)',
    'meta[name="PubDate"]::attr(content)',
    'meta[name="pubdate"]::attr(content)',
    'meta[name="publish_time"]::attr(content)',
    'meta[itemprop="datePublished"]::attr(content)',
    'meta[property="og:release_date"]::attr(content)',
)
_TIME_CSS = (
    "[class*=pubtime]", "[class*=pub-time]", "[class*=pub_time]", "[id*=pubtime]", "[class*=publish]",
    "[class*=time]", "[id*=time]", "[class*=date]", "[id*=date]", "[class*=info]", "[class*=source]",
)
_FULL_DATE = re.compile(r"(?:19|20)\d\d\s*(?:[-/.]|年)\s*\d{1,2}\s*(?:[-/.]|月)\s*\d{1,2}\s*日?(?:\s*\d{1,2}[:：时]\d{1,2}(?:[:：分]\d{1,2})?)?")
_AUTHOR_RE = re.compile(r"(?:作者|记者|编辑|文|来源)\s*[:：]?\s*([^\s|｜　]{2,30}(?:\s+[^\s|｜　:：]{2,6})?)")
_TITLE_SPLIT = re.compile(r"\s*(?:_|\||｜|—{1,2}|--| - )\s*")


def extract_title(sel: Selector, selectors: Selectors | None = None) -> str:
    if selectors and selectors.title:
        t = sel_text(sel, selectors.title)
        if t:
            return t.split("\n")[0].strip()
    og = (sel.css('meta[property="og:title"]::attr(content)').get() or "").strip()
    if og:
        return og
    for h in sel.css("h1"):
        t = element_text(h.root)
        if len(t) >= 4:
            return t.replace("\n", " ")
    page_title = clean_lines(sel.css("title::text").get() or "")
    return _TITLE_SPLIT.split(page_title)[0] if page_title else ""


def extract_time(sel: Selector, now: datetime, selectors: Selectors | None = None) -> Parsed | None:
    if selectors and selectors.time:
        got = parse_date(sel_text(sel, selectors.time), now)
        if got:
            return got
    for css in _META_TIME:
        got = parse_date(sel.css(css).get(), now)
        if got:
            return got
    # The elements that usually carry the time, in document order; a full date
    # (with year) first, so "11-21" in a related-articles list never wins.
    for css in _TIME_CSS:
        for s in sel.css(css):
            if not isinstance(s.root, etree._Element):
                continue
            text = element_text(s.root)
            if len(text) > 200:
                continue
            m = _FULL_DATE.search(text)
            if m:
                got = parse_date(m.group(0), now)
                if got:
                    return got
    body = sel.css("body")
    text = element_text(body[0].root) if body else ""
    m = _FULL_DATE.search(text)
    return parse_date(m.group(0), now) if m else None


def extract_author(sel: Selector, selectors: Selectors | None = None) -> str:
    if selectors and selectors.author:
        t = sel_text(sel, selectors.author)
        if t:
            return _strip_label(t)
    for css in ("[class*=author]", "[class*=editor]", "[class*=source]", "[class*=info]"):
        for s in sel.css(css):
            t = element_text(s.root) if isinstance(s.root, etree._Element) else ""
            if not t or len(t) > 120:
                continue
            if css == "[class*=author]":
                return _strip_label(t)
            m = _AUTHOR_RE.search(t)
            if m:
                return m.group(1).strip()
    return ""


def _strip_label(t: str) -> str:
    t = t.split("\n")[0].strip()
    return re.sub(r"^(?:作者|来源|编辑|责任编辑)\s*[:：]\s*", "", t).strip()


def _link_text_len(el: etree._Element) -> int:
    return sum(len("".join(a.itertext())) for a in el.iter("a"))


def extract_content(sel: Selector, selectors: Selectors | None = None) -> str:
    if selectors and selectors.content:
        t = sel_text(sel, selectors.content)
        if t:
            return t
    body = sel.css("body")
    root = body[0].root if body else sel.root
    if not isinstance(root, etree._Element):
        return ""
    best: tuple[float, etree._Element | None] = (0.0, None)
    # The block whose direct <p> children hold the most text, links discounted.
    for el in root.iter("div", "article", "section", "td", "main"):
        ps = [c for c in el if isinstance(c.tag, str) and c.tag == "p"]
        if not ps:
            continue
        score = sum(len("".join(p.itertext()).strip()) - 2 * _link_text_len(p) for p in ps)
        if score > best[0]:
            best = (score, el)
    if best[1] is not None:
        return element_text(best[1])
    # No paragraphs: the text block with the most non-link text.
    for el in root.iter("div", "article", "section", "td"):
        own = len("".join(el.itertext())) - 2 * _link_text_len(el)
        if own > best[0]:
            best = (own, el)
    return element_text(best[1]) if best[1] is not None else ""


def extract_article(sel: Selector, now: datetime, selectors: Selectors | None = None) -> Article:
    return Article(
        title=extract_title(sel, selectors),
        text=extract_content(sel, selectors),
        author=extract_author(sel, selectors),
        published=extract_time(sel, now, selectors),
    )


_ARTICLE_URL = re.compile(
    r"(?:/\d{4}[-_/]?\d{2}(?:[-_/]?\d{2})?/|content_\d+|/t\d{8}_\d+|/article|/detail|/\d{5,}\.s?html?$|"
    r"/[a-z]*\d{6,}\.s?html?$)",
    re.I,
)


def generic_list_links(sel: Selector, page_url: str) -> list[str]:
    """Links on a list page that look like articles of the same site."""
    host = urlsplit(page_url).netloc
    out: list[str] = []
    for a in sel.css("a[href]"):
        href = (a.attrib.get("href") or "").strip()
        if not href or href.startswith(("#", "javascript:", "mailto:")):
            continue
        text = clean_lines("".join(a.css("::text").getall()))
        if len(text) < 5:
            continue  # navigation: 首页, 更多, 下一页
        url = urljoin(page_url, href)
        parts = urlsplit(url)
        if parts.netloc != host or url.split("#")[0] == page_url.split("#")[0]:
            continue
        if _ARTICLE_URL.search(parts.path):
            out.append(url)
    return list(dict.fromkeys(out))
