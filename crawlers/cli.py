"""Crawler commands for the `yuqing` CLI."""

from __future__ import annotations

import argparse


def cmd_crawl(args: argparse.Namespace) -> int:
    from yuqing.checks import prepare
    from yuqing.cli import settings_from, setup_logging, stop_event

    setup_logging("crawl", args.verbose)
    settings = settings_from(args)
    prepare(settings)
    if args.once:
        from crawlers.runner import crawl_once

        n = crawl_once(settings, args.source_id)
        print(f"{args.source_id}: 发送 {n} 条")
        return 0
    from crawlers.runner import run

    run(settings, stop_event(), only=[args.source_id])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    cr = sub.add_parser("crawl", help="运行一个信息源的采集")
    cr.add_argument("source_id")
    cr.add_argument("--once", action="store_true")
    cr.set_defaults(func=cmd_crawl)
