"""Generic extraction from HTML: text of an element, article title, time, author, body.

Per-source CSS selectors (``Source.selectors``) win; the generic rules are
the fallback for sites without any: title from ``og:title`` / ``<h1>`` /
``<title>``, time from ``<meta>`` tags and the elements that usually carry it,
body from the element with the most paragraph text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree
from parsel import Selector

from crawlers.dates import Parsed, cn_dates_to_digits, parse_compact, parse_date
from crawlers.sources import Selectors
from stream.contracts import SHANGHAI

_BLOCK_TAGS = {
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "blockquote", "pre", "table", "ul", "ol", "dd", "dt",
}
_SKIP_TAGS = {"script", "style", "noscript", "iframe", "form", "button", "select", "textarea"}
_WS = re.compile(r"[ \t\r\f\v\u00a0\u2002\u2003\u2009\u3000]+")
_ALLWS = re.compile(r"[\s\u00a0\u2002\u2003\u2009\u3000]+")


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


def _meta_time(sel: Selector, now: datetime) -> Parsed | None:
    for css in _META_TIME:
        got = parse_date(sel.css(css).get(), now)
        if got:
            return got
    return None


# Publication times that pages hand to scripts rather than to <meta>: schema.org
# JSON-LD ("datePublished"), and the page-config objects of Chinese portals
# (Tencent "pubtime", Toutiao/Sohu "publish_time", "publishTime", "pubDate").
_SCRIPT_TIME = re.compile(
    r"""["']?(?:datePublished|pubtime|pubTime|publish_time|publishTime|publishDate|pubDate|pub_date)["']?"""
    r"""\s*[:=]\s*["']((?:19|20)\d\d[^"'<>]{4,30})["']"""
)


# The same keys holding a compact time (央视网 ``publishDate ="20250214120915"``) or epoch
# milliseconds (澎湃 ``"pubTimeLong":1736342040000``).
_SCRIPT_COMPACT = re.compile(
    r"""["']?(?:datePublished|pubtime|pubTime|pubTimeLong|publish_time|publishTime|publishDate|pubDate|pub_date)"""
    r"""["']?\s*[:=]\s*["']?(\d{8,14})(?!\d)"""
)


def _script_time(sel: Selector, now: datetime) -> Parsed | None:
    """The first publication time a <script> on the page declares (see ``_SCRIPT_TIME``); only full
    dates with a year count, and never one after the fetch time."""
    for text in sel.css("script::text").getall():
        for m in _SCRIPT_TIME.finditer(text):
            got = parse_date(m.group(1), now) or parse_compact(m.group(1), now)
            if got and got[0] <= now + timedelta(days=1):
                return got
        for m in _SCRIPT_COMPACT.finditer(text):
            if got := parse_compact(m.group(1), now):
                return got
    return None


_NOT_PUBLISHED_ATTR = re.compile(r"utime|update|modif|edit", re.I)


def _element_epoch(sel: Selector, now: datetime) -> Parsed | None:
    """An element marked as the time whose whole text is a machine time (环球网's
    ``<textarea class="article-time">1759289400000</textarea>``, filled into the page by script);
    not one marked as the update time."""
    for s in sel.css("[class*=time], [id*=time]"):
        if not isinstance(s.root, etree._Element):
            continue
        if _NOT_PUBLISHED_ATTR.search(f"{s.root.get('class') or ''} {s.root.get('id') or ''}"):
            continue
        text = "".join(s.root.itertext()).strip()
        if text.isdigit() and (got := parse_compact(text, now)):
            return got
    return None


# A date in the URL's path: /2025-06/18/, /20250803/, t20250827_, /2025/0412/, /2025/05-19/,
# /art/2025/4/9/ (CMSs file a page under the day it was published).
_URL_DAY = (
    re.compile(r"(?<!\d)((?:19|20)\d\d)[-/_]?(\d\d)[-/_]?(\d\d)(?!\d)"),
    re.compile(r"/((?:19|20)\d\d)/(\d{1,2})/(\d{1,2})/"),
)


def url_day(url: str | None, now: datetime) -> datetime | None:
    """The day a page's URL path names, or None; never after the fetch time."""
    path = urlsplit(url or "").path
    for rx in _URL_DAY:
        for m in rx.finditer(path):
            try:
                day = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=SHANGHAI)
            except ValueError:
                continue
            if day <= now + timedelta(days=1):
                return day
    return None


_CLOCK = re.compile(r"(?<!\d)(\d{1,2})\s*[:：]\s*(\d{2})(?!\d)")


def _display_zone(sel: Selector, published: Parsed) -> Parsed:
    """Keep the instant, show it in the zone the page itself shows it in.

    Overseas Chinese-language sites print ``<time datetime="...T12:48:06+00:00">06/02/2022 -
    13:48</time>``: the attribute is the instant, the text the wall-clock time in the site's own
    zone (here UTC+1). When a ``<time>`` element's instant is the published instant and its text
    shows a clock reading that differs from it by a whole offset, published_at carries that offset
    (the same instant, the wall time the page displays). Pages without such an element stay in
    Asia/Shanghai, the zone a page without an offset is read in.
    """
    dt, prec = published
    for t in sel.css("time[datetime]"):
        attr = parse_date(t.attrib.get("datetime"), dt)
        if attr is None or abs((attr[0] - dt).total_seconds()) >= 60:
            continue
        text = clean_lines(" ".join(t.css("::text").getall()))
        m = _CLOCK.search(text)
        if not m or int(m.group(1)) > 23:
            continue
        utc = dt.astimezone(UTC)
        shown = int(m.group(1)) * 60 + int(m.group(2))
        delta = (shown - (utc.hour * 60 + utc.minute)) % 1440
        if delta > 14 * 60:
            delta -= 1440  # west of Greenwich
        if delta % 15 == 0 and -12 * 60 <= delta <= 14 * 60:
            return dt.astimezone(timezone(timedelta(minutes=delta))), prec
    return published


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


_COMMENT_BOX = re.compile(r"comment|reply|cmt|remark|discuss|tie", re.I)


def _not_this_articles(el: etree._Element, text: str) -> bool:
    """A commenter (inside a comment list) or another article's author (inside a
    link whose text goes on: "<a><span class=author>X：</span>Other title</a>")."""
    for anc in el.iterancestors():
        if _COMMENT_BOX.search(f"{anc.get('class') or ''} {anc.get('id') or ''}"):
            return True
        if anc.tag == "a" and len("".join(anc.itertext()).strip()) > len(text) + 4:
            return True
    return False


def _author_element(sel: Selector) -> str:
    """An element marked as the author (class="author"), label stripped; not a commenter."""
    for s in sel.css("[class*=author]"):
        if not isinstance(s.root, etree._Element):
            continue
        t = element_text(s.root)
        if t and len(t) <= 40 and "\n" not in t and not _not_this_articles(s.root, t):
            a = _clean_author(_strip_label(t))
            if 2 <= len(a) <= 30:
                return a
    return ""


def _strip_label(t: str) -> str:
    t = t.split("\n")[0].strip()
    t = re.sub(r"^(?:作者|来源|编辑|责任编辑)\s*[:：]\s*", "", t).strip()
    # A role before the name ("本报记者 汪建国"): the author is the person.
    return re.sub(r"^(?:本报|本台|特约|实习)?(?:记者|通讯员)\s*[:：]?\s*", "", t).strip()


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
    return detect_content(root)


def extract_article(sel: Selector, now: datetime, selectors: Selectors | None = None) -> Article:
    """Title, body, author and time of an article page; per-source selectors first, then generic rules."""
    page_url = sel.root.base if isinstance(sel.root, etree._Element) else None
    title = extract_title(sel, selectors)
    body = sel.css("body")
    root = body[0].root if body else sel.root
    blocks = _blocks(root) if isinstance(root, etree._Element) else []
    span = _content_span(blocks)
    text = ""
    if selectors and selectors.content:
        text = sel_text(sel, selectors.content)
    if not text:
        text = _span_text(blocks, *span)
    published = None
    if selectors and selectors.time:
        published = parse_date(sel_text(sel, selectors.time), now)
    title_idx = _title_index(blocks, title)
    if published is None and title_idx >= 0:
        # The date printed between the title and the body is what readers see: a by-line, so
        # a long paragraph in that window (the body's first lines) is not searched.
        published = _date_in(blocks, title_idx, min(max(span[0], title_idx) + 4, span[1] + 1), now,
                             max_len=_BYLINE_MAX, keep=title_idx, labelled=False)
    if published is None:
        published = _meta_time(sel, now) or _script_time(sel, now) or _element_epoch(sel, now)
        if published is not None and published[1] == "day":
            # <meta> with the date only: the page may print the same day with its time.
            near = time_near_title(blocks, title_idx, span, now)
            if near is not None and near[0].date() == published[0].date() and near[1] != "day":
                published = near
    if published is None and title_idx >= 0:
        # "3小时前", "昨天 09:15", "11-21 08:00" printed under the title.
        for b in blocks[title_idx + 1:max(span[0], title_idx) + 4]:
            # a line of prose ("2月27日，记者从…获悉") is the body, not a by-line
            if len(b.joined) <= 80 and not _prose(b.joined) and (got := parse_date(b.joined, now)) is not None:
                published = got
                break
    weak = False
    if published is None:
        got_near = _near_title(blocks, title_idx, span, now)
        if got_near is not None:
            published, weak = got_near
    published = _check_with_url(published, weak, url_day(page_url, now))
    if published is not None and published[1] != "day":
        published = _display_zone(sel, published)
    author = ""
    if selectors and selectors.author:
        author = _strip_label(sel_text(sel, selectors.author))
    if not author:
        author = _author_element(sel)
    if not author:
        author = author_from_blocks(blocks, title_idx, span)
    return Article(title=title, text=text, author=author, published=published)


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


# -- pages from bytes: encoding, then everything in one dict -----------------
#
# The encoding chosen is the first that yields valid, plausible text for the whole page:
# what the page declares (BOM, HTTP header, then <meta>), then what its bytes show (UTF-8,
# GB18030, Big5), a declared Western single-byte charset last (on a Chinese site such a
# header is a server default, and Latin-1 "decodes" anything). "Valid": at most 2% of the
# page's non-ASCII bytes undecodable (a UTF-8 page with a few stray bytes stays UTF-8, the
# stray bytes become U+FFFD); bytes of a character cut off at the very end do not count.
# "Plausible", for the legacy Chinese encodings only: see ``plausibility``. A page that no
# encoding decodes cleanly raises ``PageEncodingError`` rather than becoming mojibake.

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_\-]+)""", re.I)
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "gb_2312-80", "x-gbk", "cp936", "euc-cn", "gb2312-80", "hz-gb-2312"}
_BIG5_FAMILY = {"big5", "big5-hkscs", "cn-big5", "x-x-big5", "cp950"}
_SCORED = {"gb18030", "big5hkscs"}  # legacy Chinese encodings: decode almost anything, so the text is scored
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-]+)", re.I)
_ESCAPED = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of an undecodable byte
_ASCII = bytes(range(0x80))
_MAX_INVALID = 0.02  # undecodable share of the non-ASCII bytes a decoding may have
_MIN_PLAUSIBLE = 0.7  # plausibility below this is mojibake (see ``plausibility``)
_MIN_SCORED = 10  # fewer non-ASCII characters than this: too few to judge


def _charset_table(enc: str, leads: range, trails: list[int]) -> set[str]:
    out = set()
    for a in leads:
        for b in trails:
            try:
                out.add(bytes((a, b)).decode(enc))
            except UnicodeDecodeError:
                pass
    return out


_GB_TRAILS = list(range(0xA1, 0xFF))
_BIG5_TRAILS = list(range(0x40, 0x7F)) + list(range(0xA1, 0xFF))
# GB2312 level 1 (the 3,755 常用字, rows 16-55), its punctuation (row 1) and full-width forms
# (row 3), and Big5's 5,401 常用字 (A440-C67E) and its symbols (A140-A3BF), so a correctly
# decoded traditional-Chinese page is as plausible as a simplified one.
_COMMON = frozenset(
    _charset_table("gb2312", range(0xB0, 0xD8), _GB_TRAILS) | _charset_table("gb2312", range(0xA1, 0xA4, 2), _GB_TRAILS)
    | _charset_table("big5", range(0xA4, 0xC7), _BIG5_TRAILS) | _charset_table("big5", range(0xA1, 0xA4), _BIG5_TRAILS)
)
_COMMON_RE = re.compile("[" + "".join(map(re.escape, sorted(_COMMON))) + "]")  # one C-level scan


def plausibility(text: str) -> tuple[float, int]:
    """Share of the non-ASCII characters that are common Chinese characters or punctuation, and
    how many non-ASCII characters there are.

    Real Chinese pages score 0.93-1.0; UTF-8 bytes read as GBK (鍙戝竷 for 发布, 鏂伴椈 for 新闻)
    land on rare characters and score at most 0.34 (measured on the 117 pages of
    ``../shared/data/news_extraction``, each read correctly and as mojibake); the cut-off
    ``_MIN_PLAUSIBLE`` is 0.7."""
    n = len(text) - len(text.encode("ascii", "ignore"))
    if not n:
        return 1.0, 0
    return len(_COMMON_RE.findall(text)) / n, n


def _allowed_invalid(high: int) -> int:
    return max(1, int(high * _MAX_INVALID))


@dataclass(frozen=True)
class Decoding:
    """One encoding tried on a page: how many bytes it could not decode, how plausible the text is."""

    encoding: str
    invalid: int
    high: int  # non-ASCII bytes in the page
    plausible: float | None  # None: not scored (not a legacy Chinese encoding, or too little text)
    text: str

    @property
    def ok(self) -> bool:
        if self.invalid > _allowed_invalid(self.high):
            return False
        return self.plausible is None or self.plausible >= _MIN_PLAUSIBLE

    def why(self) -> str:
        """Why it was not used, for the operator."""
        parts = []
        if self.invalid:
            parts.append(f"{self.invalid} 个字节无法解码（占非 ASCII 字节 {self.invalid / max(1, self.high):.1%}）")
        if self.plausible is not None and self.plausible < _MIN_PLAUSIBLE:
            parts.append(f"疑似乱码（常用汉字占 {self.plausible:.0%}）")
        return f"{self.encoding}：{'，'.join(parts) or '可用'}"


class PageEncodingError(ValueError):
    """No encoding decodes the page into valid, plausible text: it is not sent on as a post."""

    def __init__(self, tried: list[Decoding]) -> None:
        self.tried = tried
        super().__init__("无法识别页面编码（" + "；".join(d.why() for d in tried) + "）")


def norm_charset(name: str | None) -> str | None:
    if not name:
        return None
    n = name.strip().strip("\"'").lower().replace("_", "-")
    if n in {"utf8", "utf-8"}:
        return "utf-8"
    if n.replace("-", "") in {x.replace("-", "") for x in _GB_FAMILY}:
        return "gb18030"  # GB2312 / GBK pages use GBK characters: GB18030 is their superset
    if n in _BIG5_FAMILY:
        return "big5hkscs"  # the superset, as browsers read Big5
    try:
        import codecs

        return codecs.lookup(n).name
    except LookupError:
        return None


def content_type_charset(content_type: str | bytes | None) -> str | None:
    """The charset of a Content-Type header value, or None."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    m = _HEADER_CHARSET.search(content_type or "")
    return m.group(1) if m else None


def _single_byte(enc: str) -> bool:
    """Latin-1, cp1252, ASCII and the like: every byte is one character (or none)."""
    try:
        return len(bytes(range(0x80, 0x100)).decode(enc, errors="replace")) == 0x80
    except LookupError:
        return False


def _try(body: bytes, enc: str, high: int) -> Decoding:
    try:
        text, invalid = body.decode(enc), 0  # the usual case, and the fast one
    except UnicodeDecodeError:
        try:
            text = body.decode(enc, errors="surrogateescape")
        except (LookupError, UnicodeError):
            return Decoding(enc, high or 1, high, None, "")
        invalid = len(_ESCAPED.findall(text))
        cut = 0
        while cut < min(4, len(text)) and "\udc80" <= text[-1 - cut] <= "\udcff":
            cut += 1
        if cut <= 3:
            invalid -= cut  # a page cut off inside its last character
        if invalid > _allowed_invalid(high):
            return Decoding(enc, invalid, high, None, "")
        text = _ESCAPED.sub("\ufffd", text)
    except (LookupError, UnicodeError):  # not a text encoding ("rot13")
        return Decoding(enc, high or 1, high, None, "")
    plausible: float | None = None
    if enc in _SCORED:
        score, n = plausibility(text.replace("\ufffd", ""))
        plausible = score if n >= _MIN_SCORED else None
    return Decoding(enc, invalid, high, plausible, text)


def choose_decoding(body: bytes, header_charset: str | None = None) -> Decoding:
    """The first encoding whose text is valid and plausible (see the comment above); raises
    ``PageEncodingError`` naming each one tried when there is none."""
    declared: list[str] = []
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
        declared.append("utf-8")
    elif body.startswith((b"\xff\xfe", b"\xfe\xff")):
        declared.append("utf-16")
    for name in (header_charset, *(m.group(1).decode("ascii", "ignore") for m in
                                   (_XML_ENCODING.search(body[:1024]), _META_CHARSET.search(body[:8192])) if m)):
        enc = norm_charset(name)
        if enc and enc not in declared:
            declared.append(enc)
    trusted = [e for e in declared if e == "utf-8" or not _single_byte(e)]
    order = list(dict.fromkeys([*trusted, "utf-8", "gb18030", *declared, "big5hkscs"]))
    high = len(body.translate(None, _ASCII))  # the non-ASCII bytes
    tried = []
    for enc in order:
        d = _try(body, enc, high)
        if d.ok:
            return d
        tried.append(d)
    raise PageEncodingError(tried)


def decode_html(body: bytes, header_charset: str | None = None) -> tuple[str, str]:
    """Text of an HTML page and the encoding used (see ``choose_decoding``); undecodable bytes
    become U+FFFD. Raises ``PageEncodingError`` when no encoding decodes the page cleanly."""
    d = choose_decoding(body, header_charset)
    return d.text, d.encoding


def extract_page(html: str, url: str, fetched_at: datetime, selectors: Selectors | None = None) -> dict[str, str | None]:
    """Everything ``yuqing extract`` prints: title, time and its precision, author, source, content."""
    sel = Selector(text=html, base_url=url or None)
    art = extract_article(sel, fetched_at, selectors)
    return {
        "url": url or None,
        "title": art.title,
        "published_at": art.published[0].isoformat() if art.published else None,
        "published_precision": art.published[1] if art.published else "unknown",
        "author": art.author,
        "source": extract_source(sel),
        "content": art.text,
    }


_SOURCE_RE = re.compile(r"来源\s*[:：]\s*[\[【]?\s*([^\s|｜　:：\]】]{2,30})")


def extract_source(sel: Selector) -> str:
    """The outlet a page names as its source (来源：新华社), or ""."""
    for css in ("[class*=source]", "[id*=source]", "[class*=info]", "[class*=time]"):
        for s in sel.css(css):
            if not isinstance(s.root, etree._Element):
                continue
            t = element_text(s.root)
            if len(t) > 200:
                continue
            m = _SOURCE_RE.search(t)
            if m:
                return m.group(1)
    body = sel.css("body")
    text = element_text(body[0].root)[:5000] if body else ""
    m = _SOURCE_RE.search(text)
    return m.group(1) if m else ""


# -- generic body detection: text blocks, scored, densest contiguous run -----

_PUNCT = set("，。！？；：、“”‘’（）《》…,.!?;:")
_BOILER_ATTR = re.compile(
    r"(?:^|[\s_-])(?:nav|menu|footer|foot|header|sidebar|side|breadcrumb|crumb|copyright|share|related|recommend|"
    r"comment|login|toolbar|topbar|ad|ads|advert|banner|hot|rank|tags?|pagination|pager)(?:$|[\s_\d-])",
    re.I,
)
_CONTENT_ATTR = re.compile(r"(?:content|article|artibody|main[-_]?text|post|text|body|detail|endtext|message)", re.I)
_STOP_LINE = re.compile(
    r"^(?:【?(?:发表评论|打印|关闭窗口|推荐给朋友|收藏|返回顶部|我要说说|分享到?|相关(?:报道|新闻|阅读|文章)|责任编辑|"
    r"更多|上一篇|下一篇|点击排行|热点推荐|精彩推荐|最新评论|免责声明|版权声明|copyright)).{0,40}$",
    re.I,
)
_BLOCK_SKIP = {"script", "style", "noscript", "iframe", "button", "select", "textarea", "option", "head", "title"}
_BLOCKISH = _BLOCK_TAGS | {"td", "th", "center", "form", "main", "header", "footer", "nav", "aside", "body", "hr"}


_DATE_ONLY = re.compile(r"[(（\[]?\s*(?:19|20)\d\d[-/.年]\d{1,2}[-/.月]\d{1,2}日?\s*\d{1,2}:\d{2}(?::\d{2})?\s*[)）\]]?")


_DATE_TIME = re.compile(r"(?:19|20)\d\d[-/.年]\d{1,2}[-/.月]\d{1,2}日?\s*\d{1,2}:\d{2}")


@dataclass
class _Block:
    text: list[str]
    link_chars: int = 0
    boiler: bool = False
    content_hint: bool = False
    heading: bool = False

    @property
    def joined(self) -> str:
        return _ALLWS.sub(" ", "".join(self.text)).strip()


def _blocks(root: etree._Element) -> list[_Block]:
    """The page as a sequence of text blocks (lines between block tags and <br>), in document order."""
    out: list[_Block] = []
    cur = _Block(text=[])

    def flush(boiler: bool, hint: bool) -> None:
        nonlocal cur
        if cur.joined:
            out.append(cur)
        cur = _Block(text=[], boiler=boiler, content_hint=hint)

    def _add(s: str, link: bool) -> None:
        cur.text.append(s)
        if link:
            cur.link_chars += len(_ALLWS.sub("", s))

    def visit(node: etree._Element, in_link: bool, boiler: bool, hint: bool) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag and tag not in _BLOCK_SKIP:
            attrs = f"{node.get('class') or ''} {node.get('id') or ''}"
            b, h = boiler, hint
            if tag in ("nav", "footer", "aside") or (attrs.strip() and _BOILER_ATTR.search(attrs)
                                                     and not _CONTENT_ATTR.search(attrs)):
                b = True
            if attrs.strip() and _CONTENT_ATTR.search(attrs):
                h = True
            link = in_link or tag == "a"
            if tag in _BLOCKISH or tag == "br":
                flush(b, h)
                if tag in ("h1", "h2", "h3"):
                    cur.heading = True
            cur.boiler = cur.boiler or b
            cur.content_hint = cur.content_hint or h
            if node.text:
                _add(node.text, link)
            for child in node:
                visit(child, link, b, h)
            if tag in _BLOCKISH:
                flush(boiler, hint)
        if node.tail:
            _add(node.tail, in_link)

    for child in root:
        visit(child, False, False, False)
    flush(False, False)
    return out


def _block_weight(b: _Block) -> float:
    text = b.joined
    n = len(_ALLWS.sub("", text))
    nonlink = max(0, n - b.link_chars)
    punct = sum(1 for c in text if c in _PUNCT)
    link_density = b.link_chars / n if n else 1.0
    if link_density > 0.3:
        return -8.0 - 0.5 * n
    if _STOP_LINE.match(text):
        return -30.0
    w = float(nonlink) if punct else nonlink * 0.4
    w += 4.0 * punct
    if b.boiler:
        return -8.0 - 0.3 * n
    if b.content_hint:
        w *= 1.3
    return w - 12.0


def _content_span(blocks: list[_Block]) -> tuple[int, int]:
    """Main text of a page: the contiguous run of blocks with the largest weight (Kadane),
    blocks weighted by their own text and punctuation, link-heavy, boilerplate and short
    blocks costing; link-heavy blocks inside the run are dropped."""
    if not blocks:
        return 0, -1
    weights = [_block_weight(b) for b in blocks]
    best, best_span = float("-inf"), (0, 0)
    run, start = 0.0, 0
    for i, w in enumerate(weights):
        if run <= 0:
            run, start = w, i
        else:
            run += w
        if run > best:
            best, best_span = run, (start, i)
    lo, hi = best_span
    # A blog page listing several posts ("title / 2005-06-14 03:25:55 / text"
    # again and again): the first post only.
    seen_chars = 0
    for i in range(lo, hi + 1):
        text = blocks[i].joined
        if seen_chars >= 200 and (_DATE_ONLY.fullmatch(text) or (len(text) <= 60 and _DATE_TIME.search(text))):
            hi = i - 1
            if hi > lo and len(blocks[hi].joined) <= 40 and not any(c in _PUNCT for c in blocks[hi].joined[:-1]):
                hi -= 1
            break
        seen_chars += len(_ALLWS.sub("", text))
    return lo, hi


def detect_content(root: etree._Element) -> str:
    """Main text of a page: the contiguous run of blocks with the largest weight (Kadane),
    blocks weighted by their own text and punctuation, link-heavy, boilerplate and short
    blocks costing; link-heavy blocks inside the run are dropped."""
    blocks = _blocks(root)
    lo, hi = _content_span(blocks)
    return _span_text(blocks, lo, hi)


_EDITOR_LINE = re.compile(r"^[（(\[【]?\s*(?:责任编辑|责编|编辑|校对|审核)\s*[:：]")
_META_LINE = re.compile(r"来源|作者|记者|编辑|责编|发布时间|发表于|时间[:：]|浏览|阅读|点击")


def _is_meta_line(b: _Block, now: datetime | None = None) -> bool:
    """A by-line under the title ("3小时前 来源：皖江网 记者 王晓明"), not body text."""
    t = b.joined
    return len(t) <= 60 and bool(_META_LINE.search(t) or _DATE_TIME.search(t) or _FULL_DATE.fullmatch(t))


def _span_text(blocks: list[_Block], lo: int, hi: int) -> str:
    while lo < hi and _is_meta_line(blocks[lo]):
        lo += 1
    while hi > lo and len(blocks[hi].joined) <= 40 and _EDITOR_LINE.match(blocks[hi].joined):
        hi -= 1
    lines = []
    for b in blocks[lo:hi + 1]:
        text = b.joined
        n = len(_ALLWS.sub("", text))
        if n and b.link_chars / n > 0.5:
            continue
        lines.append(text)
    return clean_lines("\n".join(lines))


def _title_index(blocks: list[_Block], title: str) -> int:
    if not title:
        return -1
    key = _ALLWS.sub("", title)[:12]
    if not key:
        return -1
    fallback = -1
    for i, b in enumerate(blocks):
        t = _ALLWS.sub("", b.joined)
        if key in t and len(t) <= len(_ALLWS.sub("", title)) + 40:
            if b.heading:
                return i
            if fallback < 0:
                fallback = i
    return fallback


# A by-line under a title ("2005-04-25 08:24:06 来源: 第一财经日报 网友评论 0 条") is short; a
# longer block in that window is already body text, whose dates are what the text is about.
_BYLINE_MAX = 80


def _date_text(text: str) -> str:
    """A block's text with the date forms ``_FULL_DATE`` does not read written as it reads them:
    Chinese numerals (二〇二五年八月三日), and 新华网's "2025 06/18 16:42:31" (year, then month/day)."""
    return _YEAR_SPACE_MD.sub(r"\1-\2-\3", cn_dates_to_digits(text))


_YEAR_SPACE_MD = re.compile(r"(?<!\d)((?:19|20)\d\d)\s+(\d{1,2})\s*/\s*(\d{1,2})(?=\s+\d{1,2}:\d{2})")
# A date that bounds a period or a deadline is not when the page was put up: "公示期为2025年5月7日至
# 5月13日", "于2025年4月30日前报送", "自2025年3月1日起施行", "2019年8月31日前出生".
_PERIOD_AFTER = re.compile(r"^\s*(?:至|到|起(?!点)|前|之前|以前|以后|之后|止|[—－~～]\s*[\d一二三四五六七八九十])")
_PERIOD_BEFORE = re.compile(r"(?:至|到|自|从|截至|截止)\s*$")


def _date_in(blocks: list[_Block], lo: int, hi: int, now: datetime, *, max_len: int | None = None,
             keep: int = -1, stamp_only: bool = False, labelled: bool = True) -> Parsed | None:
    """The first full date (with year) in ``blocks[lo:hi]`` that is not after the fetch time.

    ``max_len``: skip blocks longer than that (block ``keep``, the title, excepted);
    ``stamp_only``: only a posting stamp counts (see ``_is_stamp``). A date labelled as the
    written (成文) or the updated one only counts when no other date is there (and ``labelled``:
    the by-line is read first for the release, then the page's machine-readable time)."""
    lo = max(0, lo)
    written: Parsed | None = None
    for i, b in enumerate(blocks[lo:max(0, hi)], start=lo):
        text = b.joined
        if max_len is not None and i != keep and (len(text) > max_len or "。" in text):
            continue  # a by-line is short and no sentence: "会议传达了2025年10月29日…精神。" is the body
        text = _date_text(text)
        for m in _FULL_DATE.finditer(text):
            if stamp_only and not _is_stamp(text, m):
                continue
            if _PERIOD_AFTER.match(text[m.end():]) or _PERIOD_BEFORE.search(text[:m.start()]):
                continue
            got = parse_date(m.group(0), now)
            if got and got[0] <= now + timedelta(days=1):
                label = text[:m.start()] or (blocks[i - 1].joined if i > 0 and len(blocks[i - 1].joined) <= 12 else "")
                if _WRITTEN_LABEL.search(label[-12:]) or _UPDATED_LABEL.search(label[-12:]):
                    written = written or got
                    continue
                return got
    return written if labelled else None


# 政府信息公开 pages print the date a document was signed (成文日期) as well as the date it was
# put online (发布日期), in either order; the release is when the public could read it, so a
# date labelled as the written one only counts when no other date is there.
_WRITTEN_LABEL = re.compile(r"(?:成文|印发|签发|发文|生成)(?:日期|时间)\s*[:：]?\s*$")
# "更新时间：…", "更新于 …", "最后修改 …": the page changed then, it was published before.
_UPDATED_LABEL = re.compile(r"(?:更新|修改|修订|编辑)(?:于|日期|时间)?\s*[:：]?\s*$")
def _prose(text: str) -> bool:
    """A sentence of the body, not a by-line: a full stop, or a comma in a longer line."""
    return "。" in text or ("，" in text and len(text) > 30)


_POST_LABEL = re.compile(r"发表|发布|发帖|发贴|贴于|帖于|posted|published|更新", re.I)


def _is_stamp(text: str, m: re.Match[str]) -> bool:
    """A date that stamps a post: it has a clock time ("2005-07-31 12:30"), or the line says it
    was posted ("发表于 2006-12-27", "发布日期：2022-01-28") — not a date a fact sheet lists
    ("发行日期：2001年12月14日" in a discography under a wiki article)."""
    return bool(re.search(r"\d[:：时]\d", m.group(0)) or _POST_LABEL.search(text))


def time_near_title(blocks: list[_Block], title_idx: int, span: tuple[int, int], now: datetime) -> Parsed | None:
    """The first full date between the title and the start of the body; else a posting stamp just
    after the body (blog and BBS footers: "发表于 2004年12月27日 12:40"); else the first full date
    anywhere on the page."""
    got = _near_title(blocks, title_idx, span, now)
    return got[0] if got else None


def _near_title(blocks: list[_Block], title_idx: int, span: tuple[int, int],
                now: datetime) -> tuple[Parsed, bool] | None:
    """:func:`time_near_title`, and whether the date is only a guess (weak): found anywhere on the
    page or only a month, not in the by-line nor as a posting stamp."""
    lo, hi = span
    start = title_idx if 0 <= title_idx <= lo else max(0, lo - 8)
    got = (_date_in(blocks, start, lo + 2, now, max_len=_BYLINE_MAX, keep=title_idx)
           or _date_in(blocks, hi + 1, hi + 16, now, stamp_only=True))
    if got is not None:
        return got, False
    # a date in the body's first lines is what the text is about, as much a guess as one anywhere
    got = (_date_in(blocks, start, lo + 2, now) or _date_in(blocks, 0, len(blocks), now)
           or _year_month_in(blocks, start, hi + 16))
    return (got, True) if got is not None else None


def _check_with_url(published: Parsed | None, weak: bool, day: datetime | None) -> Parsed | None:
    """The URL's day (``url_day``) against the date the page gave: it fills a page without a date,
    replaces a guess from elsewhere on the page (a date in the body, a related link), and gives the
    year to a by-line printed without one ("08-03 14:05" read a year later)."""
    if day is None:
        return published
    if published is None:
        return day, "day"
    dt, prec = published
    local = dt.astimezone(SHANGHAI)
    if local.date() == day.date():
        return published
    if (local.month, local.day) == (day.month, day.day):
        return dt.replace(year=day.year), prec
    return (day, "day") if weak else published


_YEAR_MONTH = re.compile(r"(?<!\d)((?:19|20)\d\d)\s*年\s*(\d{1,2})\s*月(?!\s*\d)")


def _year_month_in(blocks: list[_Block], lo: int, hi: int) -> Parsed | None:
    """A page that only names its month (a magazine issue: 《北京之春》1998年3月号): the 1st of it,
    precision "day" being the coarsest the contract has."""
    for b in blocks[max(0, lo):max(0, hi)]:
        m = _YEAR_MONTH.search(b.joined)
        if m and 1 <= int(m.group(2)) <= 12:
            return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=SHANGHAI), "day"
    return None


# -- author ------------------------------------------------------------------

_NAME = r"[\u4e00-\u9fa5·]{2,4}"
_NAMES = rf"{_NAME}(?:[ 　、,，]+{_NAME}){{0,5}}"
_AUTHOR_LABELED = re.compile(
    r"(?:(?:作\s*者|发布者|发表者|发帖人|楼\s*主|撰\s*稿|执笔人?|撰文)\s*[:：]|(?:^|\s)(?:文\s*/|文／|[Pp]osted by|(?<!owered )(?<!esigned )[Bb]y)"
    r")\s*\[?\s*([^\s|｜:：\[\]()（）<>]{2,30}(?:[ 　][\u4e00-\u9fa5]{2,4}){0,5})")
_AUTHOR_REPORTER = re.compile(
    rf"(?:本报|本刊|本台|特约|实习|总台|[\u4e00-\u9fa5]{{2,6}}报)?记者\s*[:：]?\s*({_NAMES})(?=$|\s|[）)，,/]|报道|发自|摄)")
_AUTHOR_PAREN = re.compile(rf"[（(]\s*(?:记者|文|编辑|通讯员)?\s*[:：/]?\s*({_NAMES})\s*(?:[\u4e00-\u9fa5]{{2,6}}报道)?\s*[)）]\s*$")
_AUTHOR_BBS = re.compile(r"本贴由\s*(\S{2,20}?)\s*于")
_AUTHOR_EDITOR = re.compile(r"(?:责任编辑|编辑|责编)\s*[:：]\s*([^\s|｜)）]{2,20})")
# Words that follow 记者/作者 in running text but are not names ("记者表示", "记者了解到").
_NOT_NAME = re.compile(r"^(?:报道|发自|摄影|摄|通讯员|本报|记者|来源|编辑|时间|日期|点击|阅读|评论|表示|获悉|了解|"
                       r"介绍|指出|看到|注意到|发现|采访|调查|证实|确认|现场|近日|日前|昨日|今日|昨天|今天)")
# A by-line's next label ("作者：某某 时间：…") is not part of the name.
_TRAILING_LABEL = re.compile(r"[ 　]+(?:时间|日期|发表|发布|来源|点击|阅读|评论|回复|浏览).*$")


def _clean_author(a: str) -> str:
    a = _TRAILING_LABEL.sub("", a.strip())
    a = re.sub(r"(?:发自\S*|报道|摄)$", "", a).strip(" ：:，,")
    return "" if (not a or _NOT_NAME.match(a)) else a


def author_from_blocks(blocks: list[_Block], title_idx: int, span: tuple[int, int]) -> str:
    """作者/记者/文/发布者 near the title or at the ends of the body; （记者 X） at the end;
    BBS "本贴由X于"; an editor only when nothing else names someone."""
    lo, hi = span
    start = title_idx if 0 <= title_idx <= lo else max(0, lo - 8)
    head = blocks[start:lo + 3]
    tail = blocks[max(lo, hi - 3):hi + 10]
    for region in (head, tail):
        for b in region:
            t = b.joined
            if len(t) > 300:
                t = t[:120] + " " + t[-120:]
            for rx in (_AUTHOR_LABELED, _AUTHOR_REPORTER, _AUTHOR_BBS):
                m = rx.search(t)
                if m:
                    a = _clean_author(m.group(1))
                    if a:
                        return a
    for b in blocks[lo:hi + 1][-3:]:
        m = _AUTHOR_PAREN.search(b.joined)
        if m:
            a = _clean_author(m.group(1))
            if a:
                return a
    for b in head + tail:
        m = _AUTHOR_EDITOR.search(b.joined)
        if m:
            a = _clean_author(m.group(1))
            if a:
                return a
    return ""


_WRAPPER = re.compile(rb"^\s*<text\s+id=\"?([^\"\s>]*)\"?[^>]*>[ \t]*\r?\n?", re.I)


def strip_wrapper(raw: bytes) -> tuple[bytes, str]:
    """Pages saved by some corpora start with ``<text id="URL" ...>``: drop it, return the URL."""
    m = _WRAPPER.match(raw)
    if not m:
        return raw, ""
    return raw[m.end():], m.group(1).decode("latin-1")
