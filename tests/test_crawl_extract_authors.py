"""Which name on a page becomes the article's author (generic rules, pages written here)."""

from __future__ import annotations

from datetime import datetime

from crawlers.extract import extract_page
from stream.contracts import SHANGHAI

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)
PARA = ("　　这是正文的一段话，讲述了事情的经过，其中有足够多的文字和标点，让正文检测把它认作正文。"
        "有关部门已经到场处置，周边交通有序，群众情绪稳定，后续情况仍在进一步核实之中。")


def page(top: str = "", first: str = "", tail: str = "") -> str:
    return ("<html><head><title>某地发生一起事件_某某网</title></head><body>"
            '<div class="nav"><a href="/">首页</a> | <a href="/n/">新闻</a></div>'
            f"<h1>某地发生一起事件</h1>{top}"
            f'<div class="article"><p>{first or PARA}</p>{f"<p>{PARA}</p>" * 5}</div>'
            f'{tail}<div class="footer">版权所有 某某网</div></body></html>')


def author(html: str) -> str:
    return extract_page(html, "", NOW)["author"]


def test_reporter_verb_is_not_a_name_and_the_real_by_line_wins() -> None:
    said = "记者表示，现场已经清理完毕。" + PARA
    assert author(page(first=said)) == ""
    assert author(page(top="<p>记者 于文凯</p>", first=said)) == "于文凯"
    assert author(page(first="记者了解到，" + PARA)) == ""


def test_next_label_on_the_by_line_is_cut_off() -> None:
    assert author(page(top="<p>作者：芊草凡凡 时间：2005-08-22 19:13:18</p>")) == "芊草凡凡"
    assert author(page(top='<span class="author">作者：林子沛 发表于 2019-09-09</span>')) == "林子沛"


def test_commenters_and_other_articles_authors_are_not_the_author() -> None:
    comments = ('<div id="comment_list"><div class="item"><span class="author">恒大水军总顾问</span>'
                "<p>说得好</p></div></div>")
    assert author(page(tail=comments)) == ""
    related = ('<ul class="hot"><li><a href="/b/1.html"><span class="author fright">超级感悟：</span>'
               "时间节点跨越 市场强于预期</a></li></ul>")
    assert author(page(tail=related)) == ""
    # The article's own author element, linked to the author's page, still counts.
    own = '<p class="author"><a href="/u/7">郭明煜：</a></p>'
    assert author(page(top=own, tail=comments + related)) == "郭明煜"
