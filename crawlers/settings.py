"""Scrapy settings: the project-wide base, and each source's politeness on top."""

from __future__ import annotations

from typing import Any

from crawlers.sources import Source

BOT_NAME = "yuqing"
USER_AGENT = "Mozilla/5.0 (compatible; yuqing-monitor/0.1; public-opinion monitoring)"

BASE: dict[str, Any] = {
    "BOT_NAME": BOT_NAME,
    "USER_AGENT": USER_AGENT,
    "ROBOTSTXT_OBEY": True,
    "COOKIES_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "REMOTE_CONTROL_ENABLED": False,
    "LOG_LEVEL": "INFO",
    "RETRY_ENABLED": True,
    "RETRY_TIMES": 1,
    "DOWNLOAD_TIMEOUT": 20,
    "DOWNLOAD_MAXSIZE": 16 * 1024 * 1024,
    "REDIRECT_MAX_TIMES": 5,
    "HTTPCACHE_ENABLED": False,
    "AUTOTHROTTLE_ENABLED": False,
    # A response whose body is shorter than its Content-Length is a failure,
    # not a silently truncated page.
    "DOWNLOAD_FAIL_ON_DATALOSS": True,
    "ITEM_PIPELINES": {"crawlers.pipelines.RawPostPipeline": 300},
    "DOWNLOADER_MIDDLEWARES": {
        "crawlers.middlewares.ProxyMiddleware": 100,
        # Before Scrapy's retry (550) sees the response: a 418 is not retried.
        "crawlers.middlewares.BlockDetectMiddleware": 560,
        "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
        "crawlers.middlewares.BackoffRetryMiddleware": 550,
    },
    # The frontier of a crawl (requests scheduled and not finished, and the fingerprints
    # of the requests already scheduled) is journalled in crawl_state.db, one commit per
    # request scheduled and per request finished (crawlers.frontier): a crawl killed
    # with SIGKILL resumes where it was, the pages in flight at the kill included. Posts
    # are flushed and marked seen one by one then, before their request is finished.
    "SCHEDULER": "crawlers.frontier.DurableScheduler",
    "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
    "AUTOTHROTTLE_START_DELAY": 0.5,
    "AUTOTHROTTLE_MAX_DELAY": 30.0,
    "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
    "DEFAULT_REQUEST_HEADERS": {
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "zh-CN,zh;q=0.9",
    },
    "CLOSESPIDER_TIMEOUT": 600,
}


def scrapy_settings(source: Source, *, reactor: str | None = None, state_path: str | None = None) -> dict[str, Any]:
    """Settings for one crawl of ``source``; ``reactor`` is the installed reactor's class path,
    ``state_path`` the crawl state DB where the frontier is journalled (a killed crawl resumes
    from there; without it the frontier lives in memory only)."""
    pol = source.politeness
    s = dict(BASE)
    s.update({
        "ROBOTSTXT_OBEY": pol.robots_txt,
        "DOWNLOAD_DELAY": pol.download_delay_s,
        "CONCURRENT_REQUESTS": pol.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": pol.concurrency,
        "DOWNLOAD_TIMEOUT": pol.timeout_s,
        "CLOSESPIDER_TIMEOUT": max(60.0, source.schedule.every_s * 10),
        "AUTOTHROTTLE_ENABLED": pol.autothrottle,
        "AUTOTHROTTLE_START_DELAY": max(pol.download_delay_s, 0.1),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(pol.concurrency),
        "RETRY_TIMES": pol.retries,
        "YUQING_RETRY_BACKOFF_S": pol.retry_backoff_s,
        "YUQING_PROXY": pol.proxy,
    })
    s["YUQING_SOURCE_ID"] = source.id
    if state_path is not None:
        s["YUQING_STATE_PATH"] = state_path
        s["YUQING_FLUSH_EVERY"] = 1
    if pol.user_agent:
        s["USER_AGENT"] = pol.user_agent
    if reactor is not None:
        s["TWISTED_REACTOR"] = reactor
    return s
