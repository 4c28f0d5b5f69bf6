"""The item every spider yields: the fields of :class:`stream.contracts.RawPost`.

Spiders fill it through :meth:`crawlers.spiders.base.SourceSpider.make_item`;
the pipeline validates it into a ``RawPost`` (a bad item is logged and
counted, never sent).
"""

from __future__ import annotations

import scrapy


class PostItem(scrapy.Item):
    post_id = scrapy.Field()
    source_id = scrapy.Field()
    source_kind = scrapy.Field()
    source_name = scrapy.Field()
    url = scrapy.Field()
    title = scrapy.Field()
    text = scrapy.Field()
    author = scrapy.Field()
    published_at = scrapy.Field()
    published_precision = scrapy.Field()
    fetched_at = scrapy.Field()
    source_region = scrapy.Field()
    parent_id = scrapy.Field()
    engagement = scrapy.Field()
    content_hash = scrapy.Field()
    # Not part of RawPost: what make_post_id was given, for logs.
    native_id = scrapy.Field()


RAW_POST_FIELDS = tuple(f for f in PostItem.fields if f != "native_id")
