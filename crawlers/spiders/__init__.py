"""One spider class per source kind; each instance crawls one configured source."""

from __future__ import annotations

from crawlers.spiders.base import SourceSpider
from crawlers.spiders.board import GovBoardSpider
from crawlers.spiders.comments import CommentsSpider
from crawlers.spiders.forum import ForumSpider
from crawlers.spiders.news import NewsSpider
from crawlers.spiders.weibo import WeiboSpider

# Which spider reads which kind of source. Government sites are article
# lists (or feeds) too.
SPIDERS: dict[str, type[SourceSpider]] = {
    "news": NewsSpider,
    "official": NewsSpider,
    "gov_board": GovBoardSpider,
    "comments": CommentsSpider,
    "forum": ForumSpider,
    "weibo": WeiboSpider,
}

__all__ = ["SPIDERS", "CommentsSpider", "ForumSpider", "GovBoardSpider", "NewsSpider", "SourceSpider", "WeiboSpider"]
