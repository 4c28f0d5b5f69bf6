"""One spider class per source kind; each instance crawls one configured source."""

from __future__ import annotations

from crawlers.spiders.base import SourceSpider
from crawlers.spiders.forum import ForumSpider
from crawlers.spiders.news import NewsSpider
from crawlers.spiders.weibo import WeiboSpider

# Which spider reads which kind of source. Government sites and message
# boards are article lists too; news comments have no spider yet.
SPIDERS: dict[str, type[SourceSpider]] = {
    "news": NewsSpider,
    "official": NewsSpider,
    "gov_board": NewsSpider,
    "forum": ForumSpider,
    "weibo": WeiboSpider,
}

__all__ = ["SPIDERS", "ForumSpider", "NewsSpider", "SourceSpider", "WeiboSpider"]
