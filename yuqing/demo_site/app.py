"""The demo source site: a local news portal, a Discuz! forum and a Weibo-like API.

URL layout (all times on the pages are Asia/Shanghai, the site's own
publication times):

* ``/`` index page linking the three sources.
* ``/news/`` list of articles of 江淮晨讯网 (GBK, charset only in ``<meta>``);
  ``/news/YYYY-MM/DD/content_N.htm`` article pages (GBK or GB2312, charset in
  the header and in ``<meta>``).
* ``/forum/forum.php?mod=forumdisplay&fid=2[&page=P]`` thread list of 皖城论坛;
  ``/forum/forum.php?mod=viewthread&tid=N[&page=P]`` a thread, 10 posts a page.
* ``/api/container/getIndex?containerid=102803[&page=P]`` the Weibo-like feed
  (``containerid=107603<uid>`` one user's posts); ``/statuses/extend?id=MID``
  the full text of a long post; ``/status/BID`` a post's page.
* ``/robots.txt``; operator endpoints ``POST /_demo/publish``,
  ``POST /_demo/edit``, ``GET /_demo/items`` (not for crawlers).
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from stream.contracts import SHANGHAI
from yuqing.demo_site.model import DemoSite, Item, Kind, now_sh

NEWS_NAME = "江淮晨讯网"
FORUM_NAME = "皖城论坛"
BOARD_NAME = "百姓关注"
BOARD_FID = 2
WEIBO_NAME = "微博（演示）"
FEED_CONTAINER = "102803"
THREADS_PER_PAGE = 20
POSTS_PER_PAGE = 10
CARDS_PER_PAGE = 10
LONG_TEXT_CHARS = 140

_EMOJI = {
    "怒": "nu", "泪": "lei", "祈祷": "qidao", "蜡烛": "lazhu", "赞": "zan", "吃惊": "chijing",
    "馋嘴": "chanzui", "太开心": "taikaixin", "允悲": "yunbei", "哈哈": "haha", "心": "xin",
}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def _fmt(dt: datetime, style: str = "dash") -> str:
    t = dt.astimezone(SHANGHAI)
    if style == "cn":
        return f"{t.year}年{t.month:02d}月{t.day:02d}日 {t:%H:%M}"
    return f"{t:%Y-%m-%d %H:%M}"


def _paras(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n|\n", text) if p.strip()]


# ---------------------------------------------------------------- pages


def _page(title: str, body: str, charset: str = "utf-8") -> str:
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}" />\n'
        f"<title>{_e(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _news_nav() -> str:
    return (
        '<div class="top-nav"><a href="/">首页</a> | <a href="/news/">本地新闻</a> | '
        '<a href="/news/">时政要闻</a> | <a href="/forum/forum.php">皖城论坛</a> | '
        '<a href="/news/">专题报道</a></div>\n'
        f'<div class="logo"><a href="/news/">{NEWS_NAME}</a></div>'
    )


def _news_footer() -> str:
    return (
        '<div class="footer"><p>江淮晨讯网 版权所有 未经书面授权不得转载</p>'
        "<p>本站为舆情监测系统的演示站点，所有内容均为虚构。</p>"
        '<p>违法和不良信息举报电话：0551-00000000</p></div>'
    )


def _encode_gbk(text: str) -> bytes:
    return text.encode("gbk", errors="xmlcharrefreplace")


def _faulty(item: Item, body: bytes, media_type: str) -> Response:
    if item.fault == "error":
        return Response(_encode_gbk(_page("500 服务器内部错误", "<h1>服务器繁忙，请稍后再试</h1>", "gbk")),
                        status_code=500, media_type="text/html; charset=GBK")
    # A page cut off in the middle, mid-character if it falls there.
    return Response(body[: int(len(body) * 0.55)], media_type=media_type)


class Pages:
    def __init__(self, site: DemoSite):
        self.site = site

    # ----------------------------------------------------------- index

    async def index(self, request: Request) -> Response:
        now = now_sh()
        counts = {k: len(self.site.visible(k, now)) for k in ("news", "forum", "weibo")}
        body = (
            "<h1>舆情监测演示信息源</h1>\n"
            "<p>本站模拟三个本地信息源，新内容会随时间陆续发布。所有单位、人物和事件均为虚构。</p>\n"
            "<ul>\n"
            f'<li><a href="/news/">{NEWS_NAME}</a>（地方新闻门户，GBK 编码，已发布 {counts["news"]} 篇）</li>\n'
            f'<li><a href="/forum/forum.php?mod=forumdisplay&amp;fid={BOARD_FID}">{FORUM_NAME}·{BOARD_NAME}</a>'
            f"（Discuz! 论坛，已发布 {counts['forum']} 个主题）</li>\n"
            f'<li><a href="/api/container/getIndex?containerid={FEED_CONTAINER}">{WEIBO_NAME}</a>'
            f"（m.weibo.cn 风格的 JSON 接口，已发布 {counts['weibo']} 条）</li>\n"
            "</ul>\n"
            f"<p>站点时间：{_fmt(now)}（北京时间）。</p>\n"
            "<p>测试接口：<code>POST /_demo/publish</code> 立即发布一条内容。</p>"
        )
        return Response(_page("舆情监测演示信息源", body), media_type="text/html; charset=utf-8")

    async def robots(self, request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /_demo/\nDisallow: /forum/home.php\n")

    # ----------------------------------------------------------- news

    async def news_list(self, request: Request) -> Response:
        items = self.site.visible("news")[:60]
        lis = "\n".join(
            f'<li><a href="{_e(i.path())}" target="_blank" title="{_e(i.title)}">{_e(i.title)}</a>'
            f'<span class="date">{_fmt(i.published_at)}</span></li>'
            for i in items
        )
        body = (
            f"{_news_nav()}\n"
            '<div class="crumb">当前位置：<a href="/">首页</a> &gt; 本地新闻</div>\n'
            f'<div class="list-box"><h2>本地新闻</h2>\n<ul class="news-list">\n{lis}\n</ul></div>\n'
            f"{_news_footer()}"
        )
        # Charset only in <meta>, as many old CMSes do (Starlette would add
        # "; charset=utf-8" to a text/* media type, so set the header by hand).
        resp = Response(_encode_gbk(_page(f"本地新闻_{NEWS_NAME}", body, "gbk")))
        resp.headers["content-type"] = "text/html"
        return resp

    async def news_article(self, request: Request) -> Response:
        item = self.site.get("news", request.path_params["nid"])
        if item is None or item.path() != request.url.path:
            return Response(_encode_gbk(_page("404 页面不存在", "<h1>您访问的页面不存在或已被删除</h1>", "gbk")),
                            status_code=404, media_type="text/html; charset=GBK")
        related = [i for i in self.site.visible("news") if i.id != item.id][:5]
        rel = "\n".join(
            f'<li><a href="{_e(i.path())}">{_e(i.title)}</a><span>{i.published_at.astimezone(SHANGHAI):%m-%d}</span></li>'
            for i in related
        )
        paras = "\n".join(f"<p>\u3000\u3000{_e(p)}</p>" for p in _paras(item.text))
        author = f'<span class="author">作者：{_e(item.author)}</span>' if item.author else ""
        summary = _paras(item.text)[0][:80] if item.text.strip() else ""
        body = (
            f"{_news_nav()}\n"
            '<div class="crumb">当前位置：<a href="/">首页</a> &gt; <a href="/news/">本地新闻</a> &gt; 正文</div>\n'
            '<div class="article">\n'
            f'<h1 class="article-title">{_e(item.title)}</h1>\n'
            f'<div class="article-info"><span class="pubtime">{_fmt(item.published_at, item.date_style)}</span>'
            f'\u3000<span class="source">来源：{_e(item.source or NEWS_NAME)}</span>\u3000{author}'
            '\u3000<span class="fontsize">字号：<a href="#">大</a> <a href="#">中</a> <a href="#">小</a></span></div>\n'
            f'<div class="article-content">\n{paras}\n</div>\n'
            '<div class="editor">（责任编辑：陈静）</div>\n'
            "</div>\n"
            f'<div class="related"><h3>相关阅读</h3><ul>\n{rel}\n</ul></div>\n'
            f"{_news_footer()}"
        )
        page = _page(f"{item.title}_{NEWS_NAME}", body, item.charset).replace(
            "</title>\n",
            f'</title>\n<meta name="description" content="{_e(summary)}" />\n'
            f'<meta property="og:title" content="{_e(item.title)}" />\n',
            1,
        )
        media = f"text/html; charset={item.charset.upper()}"
        data = _encode_gbk(page)
        if item.fault:
            return _faulty(item, data, media)
        return Response(data, media_type=media)

    # ----------------------------------------------------------- forum

    def _forum_page(self, title: str, crumbs: str, body: str) -> Response:
        page = _page(
            f"{title} - Powered by Discuz!",
            f'<div id="hd"><div class="wp"><h2><a href="forum.php" title="{FORUM_NAME}">{FORUM_NAME}</a></h2></div></div>\n'
            f'<div id="wp" class="wp">\n<div id="pt" class="bm cl"><div class="z">'
            f'<a href="./" class="nvhm" title="首页">{FORUM_NAME}</a> <em>&raquo;</em> '
            f'<a href="forum.php">论坛</a>{crumbs}</div></div>\n{body}\n</div>\n'
            '<div id="ft" class="wp cl"><p>Powered by <strong>Discuz!</strong> X3.4</p>'
            "<p>本论坛为舆情监测系统的演示站点，帖子内容均为虚构。</p></div>",
        )
        return Response(page, media_type="text/html; charset=utf-8")

    async def forum(self, request: Request) -> Response:
        mod = request.query_params.get("mod", "")
        if mod == "forumdisplay":
            return self._forumdisplay(request)
        if mod == "viewthread":
            return self._viewthread(request)
        board = (f'<div class="bm bmw"><table class="fl_tb"><tr><td class="fl_g">'
                 f'<h2><a href="forum.php?mod=forumdisplay&amp;fid={BOARD_FID}">{BOARD_NAME}</a></h2>'
                 "<p>百姓身边事，有话大家说</p></td></tr></table></div>")
        return self._forum_page(FORUM_NAME, "", board)

    def _discuz_time(self, at: datetime, now: datetime) -> str:
        """Discuz!'s display: recent times relative, with the exact one in title."""
        exact = _fmt(at)
        age = now - at
        t = at.astimezone(SHANGHAI)
        if age < timedelta(hours=1):
            return f'<span title="{exact}">{max(1, int(age.total_seconds() // 60))}&nbsp;分钟前</span>'
        if t.date() == now.astimezone(SHANGHAI).date():
            return f'<span title="{exact}">{int(age.total_seconds() // 3600)}&nbsp;小时前</span>'
        if t.date() == (now.astimezone(SHANGHAI) - timedelta(days=1)).date():
            return f'<span title="{exact}">昨天&nbsp;{t:%H:%M}</span>'
        return exact

    def _pager(self, base: str, page: int, pages: int) -> str:
        if pages <= 1:
            return ""
        links = []
        for p in range(1, pages + 1):
            links.append(f"<strong>{p}</strong>" if p == page else f'<a href="{base}&amp;page={p}">{p}</a>')
        if page < pages:
            links.append(f'<a href="{base}&amp;page={page + 1}" class="nxt">下一页</a>')
        return f'<div class="pg">{"".join(links)}</div>'

    def _forumdisplay(self, request: Request) -> Response:
        if request.query_params.get("fid") != str(BOARD_FID):
            return self._forum_page("提示信息", "", '<div id="messagetext" class="alert_error"><p>抱歉，指定的版块不存在</p></div>')
        now = now_sh()
        threads = sorted(self.site.visible("forum", now), key=lambda i: i.last_post_at(now), reverse=True)
        page = max(1, _int(request.query_params.get("page"), 1))
        pages = max(1, -(-len(threads) // THREADS_PER_PAGE))
        rows = []
        for t in threads[(page - 1) * THREADS_PER_PAGE: page * THREADS_PER_PAGE]:
            replies = t.visible_replies(now)
            last_author = replies[-1].author if replies else t.author
            href = f"forum.php?mod=viewthread&amp;tid={t.id}&amp;extra=page%3D{page}"
            rows.append(
                f'<tbody id="normalthread_{t.id}"><tr>\n'
                f'<td class="icn"><a href="{href}" title="有新回复 - 新窗口打开" target="_blank">'
                '<img src="static/image/common/folder_new.gif" /></a></td>\n'
                f'<th class="new"><a href="{href}" onclick="atarget(this)" class="s xst">{_e(t.title)}</a></th>\n'
                f'<td class="by"><cite><a href="home.php?mod=space&amp;uid={t.uid}" c="1">{_e(t.author)}</a></cite>'
                f"<em><span>{t.published_at.astimezone(SHANGHAI):%Y-%m-%d}</span></em></td>\n"
                f'<td class="num"><a href="{href}" class="xi2">{len(replies)}</a><em>{t.views}</em></td>\n'
                f'<td class="by"><cite><a href="home.php?mod=space&amp;username={quote(last_author)}" c="1">'
                f"{_e(last_author)}</a></cite><em><a href=\"forum.php?mod=redirect&amp;tid={t.id}&amp;goto=lastpost#lastpost\">"
                f"{self._discuz_time(t.last_post_at(now), now)}</a></em></td>\n"
                "</tr></tbody>"
            )
        base = f"forum.php?mod=forumdisplay&amp;fid={BOARD_FID}"
        body = (
            f'<div class="bm bml pbn"><div class="bm_h cl"><h1 class="xs2"><a href="{base}">{BOARD_NAME}</a></h1>'
            f'<span class="xs1 xw0 i">今日: <strong class="xi1">{len(threads)}</strong></span></div></div>\n'
            '<div id="threadlist" class="tl bm bmw"><div class="bm_c"><form method="post" name="moderate" id="moderate">\n'
            f'<table summary="forum_{BOARD_FID}" cellspacing="0" cellpadding="0" id="threadlisttableid">\n'
            + "\n".join(rows)
            + "\n</table></form></div></div>\n"
            + self._pager(base, page, pages)
        )
        return self._forum_page(f"{BOARD_NAME} - {FORUM_NAME}",
                                f' <em>&rsaquo;</em> <a href="{base}">{BOARD_NAME}</a>', body)

    def _viewthread(self, request: Request) -> Response:
        now = now_sh()
        t = self.site.get("forum", _int(request.query_params.get("tid"), -1), now)
        if t is None:
            return self._forum_page(
                "提示信息", "",
                '<div id="messagetext" class="alert_error"><p>抱歉，指定的主题不存在或已被删除或正在被审核</p></div>')
        posts: list[tuple[int, str, str, datetime]] = [(t.first_pid, t.author, t.text, t.published_at)]
        posts += [(r.pid, r.author, r.text, r.published_at) for r in t.visible_replies(now)]
        pages = max(1, -(-len(posts) // POSTS_PER_PAGE))
        page = min(max(1, _int(request.query_params.get("page"), 1)), pages)
        blocks = []
        for n, (pid, author, text, at) in enumerate(posts[(page - 1) * POSTS_PER_PAGE: page * POSTS_PER_PAGE],
                                                      start=(page - 1) * POSTS_PER_PAGE + 1):
            floor = {1: "楼主", 2: "沙发", 3: "板凳", 4: "地板"}.get(n, f"{n}<sup>#</sup>")
            message = "<br />\r\n".join(_e(p) for p in _paras(text))
            blocks.append(
                f'<div id="post_{pid}"><table id="pid{pid}" class="plhin" summary="pid{pid}" cellspacing="0" cellpadding="0">\n<tr>\n'
                f'<td class="pls" rowspan="2"><div class="pi"><div class="authi">'
                f'<a href="home.php?mod=space&amp;username={quote(author)}" target="_blank" class="xw1">{_e(author)}</a>'
                "</div></div></td>\n"
                f'<td class="plc"><div class="pi"><strong><a href="forum.php?mod=redirect&amp;goto=findpost&amp;ptid={t.id}&amp;pid={pid}"'
                f' id="postnum{pid}">{floor}</a></strong>\n'
                f'<div class="pti"><div class="authi"><em id="authorposton{pid}">发表于 {self._discuz_time(at, now)}</em>'
                '<span class="pipe">|</span><a href="#">只看该作者</a></div></div></div>\n'
                f'<div class="pct"><div class="pcb"><div class="t_fsz">\n'
                f'<div class="t_f" id="postmessage_{pid}">\r\n{message}</div>\n'
                "</div></div></div></td></tr>\n</table></div>"
            )
        base = f"forum.php?mod=viewthread&amp;tid={t.id}"
        body = (
            f'<div id="postlist" class="pl bm">\n<table cellspacing="0" cellpadding="0"><tr>'
            f'<td class="pls ptn pbn"><div class="hm ptn"><span class="xg1">查看:</span> <span class="xi1">{t.views}</span>'
            f'<span class="pipe">|</span><span class="xg1">回复:</span> <span class="xi1">{len(posts) - 1}</span></div></td>\n'
            f'<td class="plc ptm pbn vwthd"><h1 class="ts"><span id="thread_subject">{_e(t.title)}</span></h1></td>'
            "</tr></table>\n" + "\n".join(blocks) + "\n</div>\n" + self._pager(base, page, pages)
        )
        resp = self._forum_page(
            f"{t.title} - {BOARD_NAME} - {FORUM_NAME}",
            f' <em>&rsaquo;</em> <a href="forum.php?mod=forumdisplay&amp;fid={BOARD_FID}">{BOARD_NAME}</a>'
            f' <em>&rsaquo;</em> <a href="{base}">{_e(t.title)}</a>',
            body,
        )
        if t.fault:
            return _faulty(t, resp.body, "text/html; charset=utf-8")
        return resp

    # ----------------------------------------------------------- weibo

    def _created_at(self, item: Item, now: datetime) -> str:
        t = item.published_at.astimezone(SHANGHAI)
        if not item.relative_time:
            return f"{_WEEKDAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t:%d %H:%M:%S} +0800 {t.year}"
        age = now - item.published_at
        n = now.astimezone(SHANGHAI)
        if age < timedelta(minutes=1):
            return "刚刚"
        if age < timedelta(hours=1):
            return f"{int(age.total_seconds() // 60)}分钟前"
        if t.date() == n.date():
            return f"{int(age.total_seconds() // 3600)}小时前"
        if t.date() == (n - timedelta(days=1)).date():
            return f"昨天 {t:%H:%M}"
        if t.year == n.year:
            return f"{t:%m-%d}"
        return f"{t:%Y-%m-%d}"

    def _weibo_html(self, item: Item, limit: int | None = None) -> tuple[str, bool]:
        plain = f"【{item.title}】{item.text}" if item.title else item.text
        long_text = limit is not None and len(plain) > limit
        if long_text:
            plain = plain[:limit]
            if plain.count("#") % 2:  # do not cut a #话题# in half
                plain = plain[: plain.rfind("#")]
            if plain.rfind("[") > plain.rfind("]"):  # nor an [表情]
                plain = plain[: plain.rfind("[")]
        out = weibo_markup(plain)
        if long_text:
            out += f'...<a href="/status/{item.id}">全文</a>'
        return out, long_text

    def _mblog(self, item: Item, now: datetime, containerid: str, nested: bool = False) -> dict[str, Any]:
        text, long_text = self._weibo_html(item, LONG_TEXT_CHARS)
        mblog: dict[str, Any] = {
            "created_at": self._created_at(item, now),
            "id": str(item.id),
            "idstr": str(item.id),
            "mid": str(item.id),
            "can_edit": False,
            "show_additional_indication": 0,
            "text": text,
            "textLength": len(text.encode("gbk", errors="replace")),
            "source": "iPhone客户端" if item.id % 3 else "微博 weibo.com",
            "favorited": False,
            "pic_ids": [],
            "pic_types": "",
            "is_paid": False,
            "mblog_vip_type": 0,
            "user": {
                "id": item.uid,
                "screen_name": item.author,
                "profile_image_url": f"/static/avatar/{item.uid}.jpg",
                "profile_url": f"/u/{item.uid}?uid={item.uid}&luicode=10000011&lfid={containerid}",
                "statuses_count": 100 + item.uid % 5000,
                "verified": item.author.endswith(("发布厅", "身边事", "资讯", "生活圈")),
                "verified_type": 0 if item.author.endswith(("发布厅",)) else -1,
                "close_blue_v": False,
                "description": "",
                "gender": "m" if item.uid % 2 else "f",
                "mbtype": 0,
                "urank": 5 + item.uid % 30,
                "mbrank": 0,
                "follow_me": False,
                "following": False,
                "followers_count": 10 + item.uid % 90000,
                "follow_count": 10 + item.uid % 500,
            },
            "reposts_count": item.reposts,
            "comments_count": item.comments,
            "attitudes_count": item.likes,
            "pending_approval_count": 0,
            "isLongText": long_text,
            "reward_exhibition_type": 0,
            "hide_flag": 0,
            "visible": {"type": 0, "list_id": 0},
            "mblogtype": 0,
            "more_info_type": 0,
            "content_auth": 0,
            "edit_config": {"edited": item.edited},
            "bid": item.bid,
        }
        if item.edited:
            mblog["edit_count"] = 1
            mblog["edit_at"] = self._created_at(item, now)
        if item.retweet_of is not None and not nested:
            original = self.site.get("weibo", item.retweet_of, now)
            if original is not None:
                mblog["retweeted_status"] = self._mblog(original, now, containerid, nested=True)
        return mblog

    async def weibo_index(self, request: Request) -> Response:
        containerid = request.query_params.get("containerid", "")
        now = now_sh()
        items = self.site.visible("weibo", now)
        if containerid.startswith("107603") and containerid[6:].isdigit():
            uid = int(containerid[6:])
            items = [i for i in items if i.uid == uid]
        elif containerid != FEED_CONTAINER:
            return JSONResponse({"ok": 0, "msg": "这里还没有内容", "data": {"cards": []}})
        page = max(1, _int(request.query_params.get("page"), 1))
        chunk = items[(page - 1) * CARDS_PER_PAGE: page * CARDS_PER_PAGE]
        more = len(items) > page * CARDS_PER_PAGE
        cards = [
            {
                "card_type": 9,
                "itemid": f"{containerid}_-_{i.id}",
                "scheme": f"{request.base_url}status/{i.bid}?mblogid={i.bid}&luicode=10000011&lfid={containerid}",
                "mblog": self._mblog(i, now, containerid),
            }
            for i in chunk
        ]
        if not cards:
            return JSONResponse({"ok": 0, "msg": "这里还没有内容", "data": {"cards": []}})
        return JSONResponse({
            "ok": 1,
            "data": {
                "cardlistInfo": {"containerid": containerid, "v_p": 42, "show_style": 1, "total": len(items),
                                 "page": page + 1 if more else None},
                "cards": cards,
                "scheme": f"sinaweibo://cardlist?containerid={containerid}",
                "showAppTips": 0,
            },
        })

    async def weibo_extend(self, request: Request) -> Response:
        item = self.site.get("weibo", _int(request.query_params.get("id"), -1))
        if item is None:
            return JSONResponse({"ok": 0, "msg": "微博不存在或暂无查看权限!"})
        text, _ = self._weibo_html(item)
        return JSONResponse({"ok": 1, "data": {"ok": 1, "longTextContent": text, "reposts_count": item.reposts,
                                                 "comments_count": item.comments, "attitudes_count": item.likes}})

    async def weibo_status(self, request: Request) -> Response:
        key = request.path_params["bid"]
        for i in self.site.visible("weibo"):
            if key in (i.bid, str(i.id)):
                text, _ = self._weibo_html(i)
                body = (f'<div class="weibo-og"><h3>{_e(i.author)}</h3><p class="time">{_fmt(i.published_at)}</p>'
                        f'<div class="weibo-text">{text}</div></div>')
                return Response(_page(f"微博正文 - {WEIBO_NAME}", body), media_type="text/html; charset=utf-8")
        return Response(_page("微博不存在", "<p>微博不存在或暂无查看权限!</p>"), status_code=404,
                        media_type="text/html; charset=utf-8")

    # ----------------------------------------------------------- operator API

    async def publish(self, request: Request) -> Response:
        try:
            req = PublishRequest.model_validate(json.loads(await request.body() or b"null"))
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as e:
            return JSONResponse({"ok": 0, "error": f"请求不合法: {e}"}, status_code=422)
        if req.fault and req.kind == "weibo":
            return JSONResponse({"ok": 0, "error": "微博不支持 fault"}, status_code=422)
        try:
            item = self.site.publish(
                kind=req.kind, title=req.title, text=req.text, author=req.author, published_at=req.published_at,
                source=req.source, replies=[(r.author, r.text, r.after_min) for r in req.replies],
                fault=req.fault, retweet_of=int(req.retweet_of) if req.retweet_of else None,
            )
        except KeyError as e:
            return JSONResponse({"ok": 0, "error": str(e.args[0])}, status_code=404)
        if req.reposts_count is not None and item.kind == "weibo":
            self.site.edit("weibo", item.id, {"reposts": req.reposts_count})
        return JSONResponse(_describe(item, request), status_code=201)

    async def edit(self, request: Request) -> Response:
        try:
            req = EditRequest.model_validate(json.loads(await request.body() or b"null"))
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as e:
            return JSONResponse({"ok": 0, "error": f"请求不合法: {e}"}, status_code=422)
        names = {"title": "title", "text": "text", "author": "author", "fault": "fault", "views": "views",
                 "reposts_count": "reposts", "comments_count": "comments", "attitudes_count": "likes"}
        changes = {names[f]: getattr(req, f) for f in req.model_fields_set if f in names}
        try:
            item = self.site.edit(req.kind, int(req.id), changes)
        except KeyError as e:
            return JSONResponse({"ok": 0, "error": str(e.args[0])}, status_code=404)
        return JSONResponse(_describe(item, request))

    async def items(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        now = now_sh()
        visible = self.site.visible(kind if kind in ("news", "forum", "weibo") else None, now)  # type: ignore[arg-type]
        nxt = self.site.next_at(now)
        return JSONResponse({
            "ok": 1,
            "now": now.isoformat(),
            "start": self.site.start.isoformat(),
            "next_at": nxt.isoformat() if nxt else None,
            "items": [_describe(i, request, now) for i in visible],
        })


def _describe(item: Item, request: Request, now: datetime | None = None) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    out: dict[str, Any] = {
        "ok": 1,
        "kind": item.kind,
        "id": str(item.id),
        "native_id": item.native_id() if item.kind != "news" else base + item.path(),
        "url": base + item.path(),
        "title": item.title,
        "author": item.author,
        "published_at": item.published_at.isoformat(),
        "group": item.group,
    }
    if item.kind == "forum":
        out["first_pid"] = item.first_pid
        out["reply_pids"] = [r.pid for r in (item.visible_replies(now) if now else item.replies)]
    if item.kind == "weibo":
        out["bid"] = item.bid
        out["retweet_of"] = str(item.retweet_of) if item.retweet_of else None
    return out


def weibo_markup(plain: str) -> str:
    """Plain text with [表情], #话题# and @用户 → m.weibo.cn's HTML."""
    s = html.escape(plain, quote=False)

    def topic(m: re.Match[str]) -> str:
        q = quote(f"#{m.group(1)}#")
        return (f'<a  href="/search?containerid=231522type%3D1%26t%3D10%26q%3D{q}" data-hide="">'
                f'<span class="surl-text">#{m.group(1)}#</span></a>')

    def mention(m: re.Match[str]) -> str:
        return f"<a href='/n/{quote(m.group(1))}'>@{m.group(1)}</a>"

    def emoji(m: re.Match[str]) -> str:
        name = m.group(1)
        slug = _EMOJI.get(name, "default")
        return (f'<span class="url-icon"><img alt=[{name}] src="/static/emoticon/d_{slug}.png" '
                'style="width:1em; height:1em;" /></span>')

    s = re.sub(r"#([^#\s<>]{1,40})#", topic, s)
    s = re.sub(r"@([\w\u4e00-\u9fff\-]{2,30})", mention, s)
    s = re.sub(r"\[([\u4e00-\u9fff\w]{1,6})\]", emoji, s)
    return s.replace("\n", "<br />")


def _int(v: str | None, default: int) -> int:
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplyIn(_Req):
    author: str = Field(min_length=1)
    text: str = Field(min_length=1)
    after_min: float = 1.0


class PublishRequest(_Req):
    kind: Kind
    title: str = ""
    text: str = Field(min_length=1)
    published_at: datetime | None = None  # ISO 8601; naive = Asia/Shanghai; default now
    author: str | None = None
    source: str | None = None  # news: 来源
    replies: list[ReplyIn] = Field(default_factory=list)  # forum only
    fault: Literal["error", "truncate"] | None = None  # news/forum: page answers 500 / is cut off
    retweet_of: str | None = None  # weibo: mid of the reposted post
    reposts_count: int | None = None


class EditRequest(_Req):
    kind: Kind
    id: str
    title: str | None = None
    text: str | None = None
    author: str | None = None
    fault: Literal["error", "truncate"] | None = None
    views: int | None = None
    reposts_count: int | None = None
    comments_count: int | None = None
    attitudes_count: int | None = None


def create_app(*, publish_every_s: float, seed: int, start: datetime | None = None) -> Starlette:
    """The demo site as an ASGI app. ``start`` defaults to now (Asia/Shanghai)."""
    site = DemoSite(publish_every_s=publish_every_s, seed=seed, start=start)
    p = Pages(site)
    app = Starlette(routes=[
        Route("/", p.index),
        Route("/robots.txt", p.robots),
        Route("/news", lambda r: RedirectResponse("/news/", status_code=301)),
        Route("/news/", p.news_list),
        Route("/news/index.htm", p.news_list),
        Route("/news/{ym}/{dd}/content_{nid:int}.htm", p.news_article),
        Route("/forum/", lambda r: RedirectResponse("/forum/forum.php", status_code=302)),
        Route("/forum/forum.php", p.forum),
        Route("/api/container/getIndex", p.weibo_index),
        Route("/statuses/extend", p.weibo_extend),
        Route("/status/{bid}", p.weibo_status),
        Route("/detail/{bid}", p.weibo_status),
        Route("/_demo/publish", p.publish, methods=["POST"]),
        Route("/_demo/edit", p.edit, methods=["POST"]),
        Route("/_demo/items", p.items),
    ])
    app.state.site = site
    return app
