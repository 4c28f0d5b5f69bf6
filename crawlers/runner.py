"""Crawl the configured sources on their schedules, or one source once.

* :func:`run` — the crawler stage: one Twisted reactor, Scrapy's
  ``CrawlerRunner``, APScheduler's ``TwistedScheduler`` with one job per
  enabled source every ``schedule.every_s`` (first run at once; a source whose
  previous crawl is still going is skipped, never run twice at a time), until
  ``stop`` is set.
* :func:`crawl_once` — one crawl of one source (``yuqing crawl ID --once``).
  A Twisted reactor cannot be restarted within a process, so the crawl runs in
  a child process (``python -m crawlers.runner once ...``); it can be called
  any number of times from the same process.

Posts go to ``posts.raw`` through ``stream.factory.open_transport(settings)``.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawlers.health import clear_dark_alerted, health_of, mark_dark_alerted, record_crawl
from crawlers.pipelines import STATE_FILE, SeenState
from crawlers.sources import Source, get_source, load_sources
from stream.contracts import SHANGHAI, CrawlHealth, encode
from stream.topics import CRAWL_HEALTH, RAW_POSTS

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from crawlers.spiders.base import CrawlContext
    from yuqing.settings import Settings

log = logging.getLogger("yuqing.crawlers")

ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
REPORT_MARK = "YUQING_CRAWL_REPORT "
# A source failing this many crawls in a row is reported as down.
DOWN_AFTER = 3


@dataclass
class CrawlReport:
    """What one crawl of one source did."""

    source_id: str
    emitted: int = 0  # posts sent (new or changed) and confirmed durable
    unchanged: int = 0  # posts seen before with the same content
    rejected: int = 0  # items that could not become a post (reason in the log)
    errors: int = 0  # pages that failed (HTTP error, timeout, parse exception)
    pages: int = 0  # responses received
    finish_reason: str = ""
    started_at: str = ""
    finished_at: str = ""
    health: str = ""  # crawl health state after this crawl (crawlers.health)

    @property
    def failed(self) -> bool:
        return self.pages == 0 or not self.finish_reason.startswith("finished")


def _now() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


def _install_reactor() -> tuple[Any, str]:
    """Install the asyncio reactor unless one is installed; return it and its class path."""
    from scrapy.utils.reactor import install_reactor, is_reactor_installed

    if not is_reactor_installed():
        install_reactor(ASYNCIO_REACTOR)
    from twisted.internet import reactor

    cls = type(reactor)
    return reactor, f"{cls.__module__}.{cls.__name__}"


def _quiet_scrapy() -> None:
    # Scrapy logs every crawl's settings and stats at INFO; one line per crawl
    # from us is enough unless the operator asked for more.
    for name in ("scrapy", "apscheduler"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def _report(source: Source, crawler: Any, started: datetime, failure: Any = None) -> CrawlReport:
    try:
        stats: dict[str, Any] = crawler.stats.get_stats() if crawler.stats is not None else {}
    except Exception:  # noqa: BLE001 - crawler never got as far as stats
        stats = {}
    spider_exc = sum(v for k, v in stats.items() if k.startswith("spider_exceptions/") and k.count("/") == 1)
    r = CrawlReport(
        source_id=source.id,
        emitted=int(stats.get("yuqing/emitted", 0)),
        unchanged=int(stats.get("yuqing/unchanged", 0)),
        rejected=int(stats.get("yuqing/rejected", 0)),
        errors=int(stats.get("yuqing/errors", 0)) + int(spider_exc) + int(stats.get("yuqing/send_failed", 0)),
        pages=int(stats.get("downloader/response_count", 0)),
        finish_reason=str(stats.get("finish_reason", "")),
        started_at=started.isoformat(),
        finished_at=_now().isoformat(),
    )
    if failure is not None:
        r.errors += 1
        r.finish_reason = f"failed: {failure.getErrorMessage() if hasattr(failure, 'getErrorMessage') else failure}"
    return r


def _crawl(runner: Any, source: Source, ctx: CrawlContext, reactor_path: str) -> Deferred[CrawlReport]:
    """Start one crawl of ``source`` in the running reactor; fires with its report."""
    from crawlers.frontier import FrontierCrawler
    from crawlers.settings import scrapy_settings
    from crawlers.spiders import SPIDERS

    started = _now()
    crawler = FrontierCrawler(SPIDERS[source.kind],
                              scrapy_settings(source, reactor=reactor_path, state_path=str(ctx.state_path)))
    d = runner.crawl(crawler, source=source, ctx=ctx)

    def done(result: Any) -> CrawlReport:
        from twisted.python.failure import Failure

        failure = result if isinstance(result, Failure) else None
        if failure is not None:
            log.error("信息源 %s 抓取异常：%s", source.id, failure.getTraceback())
        # A crawl that did not finish left its frontier in crawl_state.db (the
        # scheduler clears it on "finished"): the next crawl of this source resumes.
        report = _report(source, crawler, started, failure)
        try:
            state = SeenState(ctx.state_path)
            try:
                state.record_run(source.id, started, _now(), report.emitted, report.unchanged, report.rejected,
                                 report.errors, report.finish_reason)
            finally:
                state.close()
        except Exception:  # noqa: BLE001 - bookkeeping only
            log.exception("记录抓取结果失败")
        try:
            stats = crawler.stats.get_stats() if crawler.stats is not None else {}
        except Exception:  # noqa: BLE001 - crawler never got as far as stats
            stats = {}
        try:
            report.health = record_crawl(ctx.state_path, source.id, started=started, finished=_now(),
                                         pages=report.pages, errors=report.errors, failed=report.failed, stats=stats)
            # Every crawl reports, ok included: the responder keeps the latest state
            # per source (/api/sources, /metrics) and tells admins when a problem ends.
            _send_health(ctx, health_of(ctx.state_path, source))
        except Exception:  # noqa: BLE001 - bookkeeping only
            log.exception("记录采集健康状况失败")
        return report

    d.addBoth(done)
    return d


def _send_health(ctx: CrawlContext, h: CrawlHealth) -> None:
    """Put a source's health on ``crawl.health``; one needing attention is also logged loudly."""
    if h.state != "ok":
        log.error("采集告警：信息源 %s 状态 %s（%s）", h.source_id, h.state, h.reason)
    if ctx.health_topic is None:
        return
    try:
        ctx.producer.send(ctx.health_topic, encode(h), key=h.source_id.encode("utf-8"))
        ctx.producer.flush()
    except Exception:  # noqa: BLE001 - the alert is logged above either way
        log.exception("采集健康消息发送失败")


# Seconds a graceful stop waits for running crawls (in-flight downloads; DOWNLOAD_TIMEOUT is 20 s).
STOP_GRACE_S = 30


def _stop_crawls(runner: Any) -> Deferred[Any]:
    """Ask every crawl to stop gracefully.

    ``CrawlerRunner.stop`` iterates a set that finishing crawls change: copy it
    first. And a stop that reaches a crawl while its engine is still opening
    only clears ``crawling`` (Scrapy 2.19 ``Crawler.stop_async``); the engine
    then starts and, its own close callback being that same no-op, never
    stops. So a crawl no longer ``crawling`` whose engine runs is stopped
    through its engine (the caller repeats this until all are gone)."""
    from scrapy.utils.defer import deferred_from_coro
    from twisted.internet.defer import DeferredList

    ds = []
    for c in list(runner.crawlers):
        if c.crawling:
            ds.append(deferred_from_coro(c.stop_async()))
        elif getattr(c, "_engine", None) is not None and c.engine.running:
            ds.append(deferred_from_coro(c.engine.stop_async()))
    return DeferredList(ds, consumeErrors=True)


def _log_report(r: CrawlReport) -> None:
    log.info("信息源 %s 抓取完成：新增或更新 %d 条，未变化 %d 条，丢弃 %d 条，错误 %d 个，页面 %d 个（%s）",
             r.source_id, r.emitted, r.unchanged, r.rejected, r.errors, r.pages, r.finish_reason)


def _runnable(sources: list[Source]) -> list[Source]:
    from crawlers.spiders import SPIDERS

    out = []
    for s in sources:
        if not s.enabled:
            continue
        if s.kind not in SPIDERS:
            log.warning("信息源 %s 的类型 %s 暂无对应的爬虫，跳过", s.id, s.kind)
            continue
        out.append(s)
    return out


@contextlib.contextmanager
def _crawl_session(settings: Settings) -> Iterator[tuple[Any, str, Any, Any]]:
    """Reactor, Scrapy runner and the crawl context with its raw-posts producer.

    Installs the reactor, so it runs once per process (reactors cannot restart)."""
    from scrapy.crawler import CrawlerRunner

    from crawlers.spiders.base import CrawlContext
    from stream.factory import open_transport, topic

    _quiet_scrapy()
    reactor, reactor_path = _install_reactor()
    transport = open_transport(settings)
    try:
        raw_topic = topic(settings, RAW_POSTS)
        health_topic = topic(settings, CRAWL_HEALTH)
        transport.ensure_topics([raw_topic, health_topic])
        producer = transport.producer()
        ctx = CrawlContext(producer=producer, topic=raw_topic, state_path=settings.data_path(STATE_FILE),
                           health_topic=health_topic, limits=settings.limits)
        yield reactor, reactor_path, CrawlerRunner({"TWISTED_REACTOR": reactor_path}), ctx
        producer.close()
    finally:
        transport.close()


def run(settings: Settings, stop: threading.Event, *, only: Sequence[str] | None = None) -> None:
    """Crawl every enabled source (or just the ids in ``only``) on its schedule until ``stop`` is set."""
    # First: importing APScheduler's Twisted scheduler imports twisted.internet.reactor, which
    # would install Twisted's default reactor, not the asyncio one Scrapy's coroutines (the
    # retry back-off's asyncio.sleep) need.
    _install_reactor()
    from apscheduler.schedulers.twisted import TwistedScheduler
    from twisted.internet.task import LoopingCall

    if only:
        chosen = [get_source(settings, sid) for sid in only]
        sources = _runnable([s.model_copy(update={"enabled": True}) for s in chosen])
    else:
        sources = _runnable(load_sources(settings))
    with _crawl_session(settings) as (reactor, reactor_path, runner, ctx):
        running: set[str] = set()
        failures: dict[str, int] = {}
        stopping = threading.Event()

        def launch(source: Source) -> None:  # in the reactor thread
            if stopping.is_set():
                return
            if source.id in running:
                log.info("信息源 %s 上一轮抓取仍在进行，本轮跳过", source.id)
                return
            running.add(source.id)
            d = _crawl(runner, source, ctx, reactor_path)

            def finished(report: CrawlReport) -> None:
                running.discard(source.id)
                _log_report(report)
                if report.failed:
                    failures[source.id] = failures.get(source.id, 0) + 1
                    if failures[source.id] >= DOWN_AFTER:
                        log.error("信息源 %s 已连续 %d 次抓取失败，请检查网站是否可访问或是否屏蔽了抓取",
                                  source.id, failures[source.id])
                else:
                    failures[source.id] = 0

            d.addCallback(finished)
            d.addErrback(lambda f: (running.discard(source.id), log.error("抓取调度异常：%s", f.getTraceback())))

        def job(source: Source) -> None:  # APScheduler's thread pool
            reactor.callFromThread(launch, source)

        scheduler = TwistedScheduler(reactor=reactor, timezone=SHANGHAI)
        now = datetime.now(SHANGHAI)
        for s in sources:
            scheduler.add_job(job, "interval", seconds=s.schedule.every_s, args=[s], id=s.id, name=s.name,
                              next_run_time=now, max_instances=1, coalesce=True, misfire_grace_time=None)

        def shutdown() -> None:
            stopping.set()
            if checker.running:
                checker.stop()
            if dark_checker.running:
                dark_checker.stop()
            try:
                scheduler.shutdown(wait=False)
            except Exception:  # noqa: BLE001 - not started yet
                pass
            stopped = [False]

            def stop_reactor(_: Any = None) -> None:
                if not stopped[0]:
                    stopped[0] = True
                    reactor.stop()

            def restop(left: float) -> None:
                # A crawl that was starting when the first stop came can miss it and run
                # on: ask again each second; after STOP_GRACE_S stop anyway. Nothing is
                # lost: unfinished requests stay in the durable frontier for the next start.
                if stopped[0]:
                    return
                if not runner.crawlers:
                    return
                if left <= 0:
                    log.warning("仍有 %d 个抓取未在 %d 秒内结束，强制退出（未完成的请求已记入抓取状态库，下次启动时继续）",
                                len(runner.crawlers), STOP_GRACE_S)
                    stop_reactor()
                    return
                _stop_crawls(runner)
                reactor.callLater(1.0, restop, left - 1.0)

            d = _stop_crawls(runner)
            d.addBoth(lambda _: runner.join())
            d.addBoth(stop_reactor)
            reactor.callLater(1.0, restop, float(STOP_GRACE_S) - 1.0)

        def check_stop() -> None:
            if stop.is_set() and not stopping.is_set():
                log.info("收到停止信号，正在结束抓取")
                shutdown()

        def check_dark() -> None:
            now = _now()
            for s in sources:
                try:
                    h = health_of(ctx.state_path, s, now)
                    if h.state == "dark":
                        if mark_dark_alerted(ctx.state_path, s.id, now):
                            _send_health(ctx, h)
                    elif h.state != "never":
                        clear_dark_alerted(ctx.state_path, s.id)
                except Exception:  # noqa: BLE001 - bookkeeping only
                    log.exception("检查信息源 %s 的健康状况失败", s.id)

        dark_checker = LoopingCall(check_dark)
        reactor.callWhenRunning(dark_checker.start, 60.0, False)

        checker = LoopingCall(check_stop)
        reactor.callWhenRunning(scheduler.start)
        reactor.callWhenRunning(checker.start, 0.2, True)
        log.info("爬虫已启动：%s", "、".join(f"{s.id}（每 {s.schedule.every_s:g} 秒）" for s in sources) or "没有可抓取的信息源")
        reactor.run(installSignalHandlers=False)


def _crawl_here(settings: Settings, source_id: str) -> CrawlReport:
    """One crawl in this process (which must not have run a reactor before)."""
    source = get_source(settings, source_id)
    if source.kind not in _spider_kinds():
        raise ValueError(f"信息源 {source_id} 的类型 {source.kind} 暂无对应的爬虫")
    out: dict[str, CrawlReport] = {}
    with _crawl_session(settings) as (reactor, reactor_path, runner, ctx):
        d = _crawl(runner, source, ctx, reactor_path)
        d.addCallback(lambda r: out.__setitem__("report", r))
        d.addErrback(lambda f: log.error("抓取异常：%s", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())
        reactor.run(installSignalHandlers=threading.current_thread() is threading.main_thread())
    if "report" not in out:
        raise RuntimeError(f"信息源 {source_id} 的抓取没有完成")
    return out["report"]


def _spider_kinds() -> set[str]:
    from crawlers.spiders import SPIDERS

    return set(SPIDERS)


def crawl_once_report(settings: Settings, source_id: str, *, timeout_s: float = 300.0) -> CrawlReport:
    """Crawl ``source_id`` once in a child process and return its report."""
    get_source(settings, source_id)  # unknown id: fail here, with the list of known ones
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(settings.model_dump(mode="json"), f, ensure_ascii=False)
        settings_file = f.name
    try:
        cmd = [sys.executable, "-m", "crawlers.runner", "once", source_id,
               "--settings-json", settings_file, "--config-dir", str(settings.config_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        os.unlink(settings_file)
    report = None
    for line in proc.stdout.splitlines():
        if line.startswith(REPORT_MARK):
            report = CrawlReport(**json.loads(line[len(REPORT_MARK):]))
    if proc.returncode != 0 or report is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"信息源 {source_id} 抓取失败（退出码 {proc.returncode}）：\n{tail}")
    if proc.stderr and log.isEnabledFor(logging.DEBUG):
        log.debug("子进程日志：\n%s", proc.stderr)
    return report


def crawl_once(settings: Settings, source_id: str) -> int:
    """Crawl one source once; return how many posts were emitted (new or changed)."""
    return crawl_once_report(settings, source_id).emitted


def _load_settings_json(path: str, config_dir: str) -> Settings:
    from yuqing.settings import Settings

    s = Settings.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    s.config_dir = Path(config_dir)
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crawlers.runner", description="舆情爬虫")
    sub = ap.add_subparsers(dest="cmd", required=True)
    once = sub.add_parser("once", help="抓取一个信息源一次")
    once.add_argument("source_id")
    once.add_argument("--settings-json", help="settings as JSON (used by crawl_once)")
    once.add_argument("--config-dir", default=None)
    forever = sub.add_parser("run", help="按计划持续抓取所有启用的信息源，Ctrl-C 结束")
    forever.add_argument("--config-dir", default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from yuqing.settings import config_dir, load_settings

    if a.cmd == "once":
        settings = (_load_settings_json(a.settings_json, a.config_dir or str(config_dir())) if a.settings_json
                    else load_settings(a.config_dir))
        report = _crawl_here(settings, a.source_id)
        _log_report(report)
        print(REPORT_MARK + json.dumps(asdict(report), ensure_ascii=False), flush=True)
        return 0
    settings = load_settings(a.config_dir)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # kill -USR1 prints every thread's stack: how to see where a stuck crawler waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    run(settings, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
