"""Which of the dates a page shows becomes published_at (generic rules, pages written here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crawlers.extract import extract_page
from stream.contracts import SHANGHAI

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)
PARA = ("　　这是正文的一段话，讲述了事情的经过，其中有足够多的文字和标点，让正文检测把它认作正文。"
        "记者在现场看到，有关部门已经到场处置，周边交通有序，群众情绪稳定。")

# Link lists between the text and what follows it (the end of the body).
SHARE = ('<div class="related"><a href="/a/1.html">相关新闻：某地召开会议部署工作</a>'
         '<a href="/a/2.html">相关新闻：某地开展专项整治行动</a></div>')


def page(head: str = "", top: str = "", body: str = "", tail: str = "") -> str:
    return (f"<html><head><title>某地发生一起事件_某某网</title>{head}</head><body>"
            '<div class="nav"><a href="/">首页</a> | <a href="/n/">新闻</a></div>'
            f"<h1>某地发生一起事件</h1>{top}"
            f'<div class="article"><p>{body or PARA}</p>{f"<p>{PARA}</p>" * 5}</div>'
            f"{tail}<div class=\"footer\">版权所有 某某网</div></body></html>")


def test_overseas_page_keeps_the_zone_it_displays_and_the_instant() -> None:
    # The meta and the <time> attribute give the instant in UTC; the page prints the clock of
    # its own zone (UTC+1). published_at: the same instant, in the zone the page shows.
    html = page(head='<meta property="article:published_time" content="2022-02-06T12:48:06+00:00">',
                top='<p class="m-pub-dates">发表时间： <time datetime="2022-02-06T12:48:06+00:00">'
                    "06/02/2022 - 13:48</time></p>")
    out = extract_page(html, "", NOW)
    got = datetime.fromisoformat(out["published_at"] or "")
    assert got == datetime(2022, 2, 6, 12, 48, 6, tzinfo=UTC)  # the instant is untouched
    assert got.utcoffset() == timedelta(hours=1) and (got.hour, got.minute) == (13, 48)
    assert out["published_precision"] == "second"


def test_time_element_that_disagrees_with_the_instant_changes_nothing() -> None:
    # A <time> for another instant (a related article) never re-zones the publication time.
    html = page(head='<meta property="article:published_time" content="2022-02-06T12:48:06+00:00">',
                tail='<time datetime="2022-02-05T10:00:00+00:00">05/02/2022 - 11:00</time>')
    out = extract_page(html, "", NOW)
    assert out["published_at"] == "2022-02-06T20:48:06+08:00"


def test_chinese_time_element_stays_in_shanghai() -> None:
    html = page(top='<p><time datetime="2026-11-22T01:05:00Z">2026-11-22 09:05</time> 来源：某某网</p>')
    assert extract_page(html, "", NOW)["published_at"] == "2026-11-22T09:05:00+08:00"


def test_after_the_body_only_a_posting_stamp_counts() -> None:
    # A fact-sheet date after the text ("发行日期" in a discography) is not when the page was
    # posted; the blog footer "发表于 … 12:30" is.
    html = page(tail=SHARE + "<ul><li>发行日期：2001年12月14日</li></ul>" + SHARE * 3 +
                     "<div>作者:zboygirl 阅读(1660) 评论(5) 发表于:2005-07-31 12:30</div>")
    out = extract_page(html, "", NOW)
    assert out["published_at"] == "2005-07-31T12:30:00+08:00"


def test_labelled_day_only_footer_is_a_stamp() -> None:
    html = page(tail=SHARE + "<ul><li>发行日期：2001年12月14日</li></ul>" + SHARE * 3 + "<p>发表于 2006年12月27日</p>")
    assert extract_page(html, "", NOW)["published_at"] == "2006-12-27T00:00:00+08:00"


def test_long_paragraph_under_the_title_is_body_not_byline() -> None:
    # The by-line is split over elements the date rules cannot join; the first paragraph of
    # the body names another date. The page's config object has the publication time.
    first = ("　　“我在马路边捡到一分钱”等歌曲，都出自著名音乐家潘振声之手。他因病经多方医治无效，"
             "2009年5月14日在南京逝世，享年77岁。他创作的大量儿童歌曲，在全国各地报刊电台发表、热播。")
    html = page(head='<script>window.DATA = {"title": "x", "pubtime": "2019-09-07 19:02:26", "id": 1};</script>',
                top="<div><span>2019</span></div><div>09/07</div><div>19:02</div>", body=first)
    out = extract_page(html, "", NOW)
    assert out["published_at"] == "2019-09-07T19:02:26+08:00"


def test_json_ld_date_published() -> None:
    html = page(head='<script type="application/ld+json">{"@type":"NewsArticle",'
                     '"datePublished":"2026-11-20T08:30:00+08:00","dateModified":"2026-11-21T09:00:00+08:00"}'
                     "</script>",
                top="<p>昨天</p>")
    out = extract_page(html, "", NOW)
    # The machine-readable time beats "昨天" read against the fetch time.
    assert out["published_at"] == "2026-11-20T08:30:00+08:00"


def test_script_time_after_the_fetch_time_is_ignored() -> None:
    html = page(head='<script>var cfg = {publish_time: "2027-05-01 10:00:00"};</script>',
                top="<p>2026-11-21 10:15 来源：某某网</p>")
    # The by-line wins anyway; without it the future script time is still refused.
    assert extract_page(html, "", NOW)["published_at"] == "2026-11-21T10:15:00+08:00"
    html = page(head='<script>var cfg = {publish_time: "2027-05-01 10:00:00"};</script>')
    assert extract_page(html, "", NOW)["published_at"] is None


def test_gov_page_release_date_wins_over_the_written_date() -> None:
    # 政府信息公开 pages list 成文日期 (signed) and 发布日期 (put online); the release is when the
    # public could read it, the time a response milestone is met.
    html = page(top="<table><tr><td>成文日期：</td><td>2022年01月27日</td></tr>"
                    "<tr><td>发布日期：</td><td>2022年01月28日</td></tr></table>",
                tail="<p>2022年1月27日</p>")
    # The written date comes first in the table here on purpose.
    assert extract_page(html, "", NOW)["published_at"] == "2022-01-28T00:00:00+08:00"
    inline = page(top="<p>成文日期：2022年01月27日 发布日期：2022年01月28日</p>")
    assert extract_page(inline, "", NOW)["published_at"] == "2022-01-28T00:00:00+08:00"
    only_written = page(top="<p>成文日期：2022年01月27日</p>")
    assert extract_page(only_written, "", NOW)["published_at"] == "2022-01-27T00:00:00+08:00"


def test_bbs_by_line_names_the_author_powered_by_does_not() -> None:
    html = page(top="<p>〓 网易娱乐 周黎明留言板 发布时间 2005/05/17 22:11:42 by 眉间尺 〓</p>")
    out = extract_page(html, "", NOW)
    assert out["author"] == "眉间尺" and out["published_at"] == "2005-05-17T22:11:42+08:00"
    footer = page(tail='<div class="copy">Powered by Discuz! X3.4</div>')
    assert extract_page(footer, "", NOW)["author"] == ""
