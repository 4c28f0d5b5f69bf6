"""Which of the dates a page shows becomes published_at (generic rules, pages written here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crawlers.extract import extract_page, url_day
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


def test_url_day_forms() -> None:
    for url, day in [
        ("http://www.news.cn/local/2025-06/18/c_1131725648.htm", (2025, 6, 18)),
        ("https://news.ifeng.com/a/20250330/60123456_0.shtml", (2025, 3, 30)),
        ("http://www.cxian.gov.cn/zwgk/tzgg/202508/t20250827_4561234.html", (2025, 8, 27)),
        ("https://www.zj.gov.cn/art/2025/6/3/art_1554467_60234567.html", (2025, 6, 3)),
        ("http://politics.people.com.cn/n1/2025/0412/c1001-40458812.html", (2025, 4, 12)),
        ("https://www.chinanews.com.cn/sh/2025/05-19/10423456.shtml", (2025, 5, 19)),
    ]:
        got = url_day(url, NOW)
        assert got is not None and (got.year, got.month, got.day) == day, url
    # ids that are no date, a query string, a day after the fetch time
    for url in ("https://www.sohu.com/a/876543210_121106842", "https://x.cn/s?id=20251120123",
                "https://x.cn/2027-01/05/a.html", "https://x.cn/a/20251340.html", ""):
        assert url_day(url, NOW) is None, url


def test_url_gives_the_day_when_the_page_prints_none() -> None:
    html = page(top="<p>来源：某某网 <span id='pubDate'></span></p>")
    out = extract_page(html, "http://www.x.cn/news/2025-01/17/content_1.html", NOW)
    assert out["published_at"] == "2025-01-17T00:00:00+08:00" and out["published_precision"] == "day"
    assert extract_page(html, "", NOW)["published_at"] is None


def test_url_beats_a_date_in_the_body_but_not_the_by_line() -> None:
    body = "　　会议传达了2025年10月29日全市安全生产电视电话会议精神，安排部署今冬明春安全生产工作。"
    html = page(body=body)
    url = "http://www.x.gov.cn/xxgk/202511/t20251103_1.html"
    assert extract_page(html, url, NOW)["published_at"] == "2025-11-03T00:00:00+08:00"
    assert extract_page(html, "", NOW)["published_at"] == "2025-10-29T00:00:00+08:00"  # only a guess without it
    # A by-line that names another day than the URL wins: the URL can be the day the draft was filed.
    byline = page(top="<p>发布时间：2025-11-04 09:00 来源：县应急局</p>", body=body)
    assert extract_page(byline, url, NOW)["published_at"] == "2025-11-04T09:00:00+08:00"


def test_url_gives_the_year_to_a_by_line_without_one() -> None:
    html = page(top='<div class="time-source"><span class="time">08-03 14:05</span> 来源：某某网</div>')
    fetched = datetime(2025, 9, 10, 9, 0, tzinfo=SHANGHAI)
    assert extract_page(html, "https://x.cn/xw/20240803/a.shtml", fetched)["published_at"] == "2024-08-03T14:05:00+08:00"
    assert extract_page(html, "https://x.cn/xw/a.shtml", fetched)["published_at"] == "2025-08-03T14:05:00+08:00"


def test_updated_stamp_is_not_the_publication_time() -> None:
    both = page(top="<p>更新时间：2025-06-11 16:40　发布时间：2025-06-10 08:00　来源：某某网</p>")
    assert extract_page(both, "", NOW)["published_at"] == "2025-06-10T08:00:00+08:00"
    # Only the update is printed; the JSON-LD has the publication (UTC).
    ld = page(head='<script type="application/ld+json">{"@type":"NewsArticle","dateModified":"2025-03-04T02:00:00Z",'
                   '"datePublished":"2025-03-03T06:05:00Z"}</script>',
              top="<p>记者 周洁 · 更新于 2025-03-04 10:00</p>")
    assert extract_page(ld, "", NOW)["published_at"] == "2025-03-03T14:05:00+08:00"
    # With nothing else on the page the update is still the best there is.
    alone = page(top="<p>记者 周洁 · 更新于 2025-03-04 10:00</p>")
    assert extract_page(alone, "", NOW)["published_at"] == "2025-03-04T10:00:00+08:00"


def test_period_and_deadline_dates_are_not_the_publication() -> None:
    body = "　　现将候选名单予以公示，公示期为2025年5月7日至2025年5月13日。各单位于2025年4月30日前报送材料。"
    html = page(body=body, tail="<p>发布日期：2025-05-06 15:02 | 信息来源：市发展改革委</p>")
    assert extract_page(html, "", NOW)["published_at"] == "2025-05-06T15:02:00+08:00"


def test_prose_under_the_title_is_not_a_relative_by_line() -> None:
    # "2月27日，记者从…" is the body's first sentence; the posting stamp after the body is the date.
    html = page(body="　　2月27日，记者从市行政审批服务局了解到相关情况。", tail="<p>编辑：陈晨</p><p>发布日期：2025-03-02</p>")
    assert extract_page(html, "", NOW)["published_at"] == "2025-03-02T00:00:00+08:00"


def test_chinese_numeral_and_split_by_lines() -> None:
    cn = page(top="<p>发布单位：县委组织部　日期：二○二五年十一月二十八日</p>")
    assert extract_page(cn, "", NOW)["published_at"] == "2025-11-28T00:00:00+08:00"
    # 新华网: year, month/day and clock in separate elements of one line
    xh = page(top='<div class="header-time"><span class="year"><em> 2025</em></span><span class="day"><em> 06</em>/'
                  '<em>18</em></span><span class="time"> 16:42:31</span></div>',
              tail='<ul class="related"><li>2025-06-12</li></ul>')
    assert extract_page(xh, "", NOW)["published_at"] == "2025-06-18T16:42:31+08:00"


def test_machine_times_in_scripts_and_elements() -> None:
    cctv = page(head='<script>var itemid1="ARTI";var publishDate ="20250721193601";</script>')
    assert extract_page(cctv, "", NOW)["published_at"] == "2025-07-21T19:36:01+08:00"
    hq = page(top='<textarea class="article-time">1759289400000</textarea>'
                  '<textarea class="article-utime">1759300000000</textarea>')
    assert extract_page(hq, "", NOW)["published_at"] == "2025-10-01T11:30:00+08:00"
    # the update time alone is not read as the publication
    upd = page(top='<textarea class="article-utime">1759300000000</textarea>')
    assert extract_page(upd, "", NOW)["published_at"] is None


def test_by_line_separators_and_short_comma_lines_stay_by_lines() -> None:
    # a dash before the outlet, an outlet named 起点…: no period, no deadline
    for top in ("<p>2025-06-10 08:00 — 新华社</p>", "<p>2025-06-10 08:00 起点新闻</p>"):
        assert extract_page(page(top=top), "", NOW)["published_at"] == "2025-06-10T08:00:00+08:00", top
    # a short by-line with a comma is no sentence of the body
    assert extract_page(page(top="<p>来源：某某网，2小时前</p>"), "", NOW)["published_at"] == "2026-11-22T10:00:00+08:00"
