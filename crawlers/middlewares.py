"""Downloader middlewares: block/captcha/login detection, per-source proxy, retry back-off."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse

log = logging.getLogger("yuqing.crawlers")

BLOCK_STATUS = {403, 418}
_CAPTCHA = re.compile(r"captcha|验证码|安全验证|人机验证|滑动验证|访问过于频繁|请完成验证", re.I)
_LOGIN_URL = re.compile(r"passport\.|/login|/signin|visitor/visitor", re.I)
_JSON_LOGIN = re.compile(rb'"ok"\s*:\s*-100')


def captcha_page(response: Response) -> bool:
    """A short HTML page asking to prove one is human (not an article that mentions 验证码)."""
    if not isinstance(response, TextResponse) or len(response.body) > 40_000:
        return False
    ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
    if "html" not in ctype and not response.body.lstrip()[:1] == b"<":
        return False
    head = response.text[:40_000]
    title = re.search(r"<title[^>]*>(.*?)</title>", head, re.I | re.S)
    if title and _CAPTCHA.search(title.group(1)):
        return True
    return bool(re.search(r"<(?:input|img|div)[^>]+(?:captcha|verify|vcode)", head, re.I)) and bool(_CAPTCHA.search(head))


class BlockDetectMiddleware:
    """HTTP 418/403 or a captcha page: the site is blocking us. Counted (``yuqing/blocked``),
    and every later request to that host in this crawl is dropped — hammering a site that
    blocks only prolongs the block. A login redirect or Weibo's ``ok: -100`` is
    ``yuqing/cookie_expired``."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.blocked_hosts: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BlockDetectMiddleware:
        return cls(crawler)

    def _stat(self, key: str, value: Any = None) -> None:
        if self.crawler.stats is None:
            return
        if value is None:
            self.crawler.stats.inc_value(key)
        else:
            self.crawler.stats.set_value(key, value)

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if urlsplit(request.url).netloc in self.blocked_hosts:
            raise IgnoreRequest(f"{urlsplit(request.url).netloc} 已拦截本次抓取，跳过 {request.url}")

    def process_response(self, request: Request, response: Response, spider: Spider | None = None) -> Response:
        host = urlsplit(request.url).netloc
        reason = ""
        if response.status in BLOCK_STATUS:
            reason = f"HTTP {response.status}"
        elif response.status == 200 and captcha_page(response):
            reason = "验证码页面"
        if reason:
            self.blocked_hosts.add(host)
            self._stat("yuqing/blocked")
            self._stat("yuqing/blocked_reason", f"{reason}：{request.url}")
            log.error("信息源被拦截（%s）：%s，本轮停止访问 %s", reason, request.url, host)
            raise IgnoreRequest(f"被拦截（{reason}）：{request.url}")
        if _LOGIN_URL.search(urlsplit(response.url).netloc + urlsplit(response.url).path) and \
                not _LOGIN_URL.search(urlsplit(request.url).netloc + urlsplit(request.url).path):
            self._stat("yuqing/cookie_expired")
            log.error("信息源要求登录（Cookie 失效？）：%s → %s", request.url, response.url)
            raise IgnoreRequest(f"需要登录：{request.url}")
        if response.status == 200 and _JSON_LOGIN.search(response.body[:200]):
            self._stat("yuqing/cookie_expired")
            log.error("接口要求登录（Cookie 失效？）：%s", request.url)
            raise IgnoreRequest(f"需要登录：{request.url}")
        return response


class ProxyMiddleware:
    """``politeness.proxy`` of the source, on every request that has none."""

    def __init__(self, proxy: str | None) -> None:
        self.proxy = proxy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProxyMiddleware:
        return cls(crawler.settings.get("YUQING_PROXY"))

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if self.proxy and "proxy" not in request.meta:
            request.meta["proxy"] = self.proxy


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retry (5xx, 408, 429, timeouts, refused), each retry after a longer pause:
    ``RETRY_BACKOFF_S`` × 2^(n-1) before the n-th retry."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.backoff_s = settings.getfloat("YUQING_RETRY_BACKOFF_S", 0.5)

    def _retry(self, request: Request, reason: Any) -> Request | None:
        new = super()._retry(request, reason)
        if new is not None and self.backoff_s > 0:
            n = int(new.meta.get("retry_times", 1))
            new.meta["yuqing_retry_delay"] = self.backoff_s * 2 ** (n - 1)
        return new

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        delay = request.meta.pop("yuqing_retry_delay", None)
        if delay:
            await asyncio.sleep(float(delay))
