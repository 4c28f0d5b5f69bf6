"""Crawler commands for the `yuqing` CLI: crawl, extract, crawl-health."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


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


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract one saved page: title, time, author, source, body as JSON."""
    from crawlers.extract import PageEncodingError, decode_html, extract_page, strip_wrapper
    from stream.contracts import SHANGHAI

    path = Path(args.page)
    try:
        raw = path.read_bytes()
    except OSError as e:
        print(f"无法读取 {path}：{e.strerror}", file=sys.stderr)
        return 2
    raw, wrapped_url = strip_wrapper(raw)
    if args.fetched_at:
        try:
            fetched = datetime.fromisoformat(args.fetched_at)
        except ValueError:
            print(f"--fetched-at 不是 ISO 8601 时间：{args.fetched_at!r}", file=sys.stderr)
            return 2
        fetched = fetched.replace(tzinfo=SHANGHAI) if fetched.tzinfo is None else fetched
    else:
        fetched = datetime.fromtimestamp(path.stat().st_mtime, SHANGHAI).replace(microsecond=0)
    try:
        html, encoding = decode_html(raw, args.charset)
    except PageEncodingError as e:
        print(f"{path}：{e}", file=sys.stderr)
        return 2
    out = extract_page(html, args.url or wrapped_url or "", fetched)
    out["encoding"] = encoding
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_crawl_health(args: argparse.Namespace) -> int:
    from crawlers.health import health_table, source_health
    from yuqing.cli import settings_from

    settings = settings_from(args)
    rows = source_health(settings, dark_after_s=args.dark_after_min * 60 if args.dark_after_min else None)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False, indent=2))
    else:
        print(health_table(rows))
    return 1 if any(r.alert for r in rows) else 0


def register(sub: argparse._SubParsersAction) -> None:
    cr = sub.add_parser("crawl", help="运行一个信息源的采集")
    cr.add_argument("source_id")
    cr.add_argument("--once", action="store_true")
    cr.set_defaults(func=cmd_crawl)

    ex = sub.add_parser("extract", help="从保存的网页抽取标题、时间、作者、来源和正文（JSON）")
    ex.add_argument("page", help="HTML 文件")
    ex.add_argument("--url", default=None, help="网页地址（解析相对链接、补全来源）")
    ex.add_argument("--fetched-at", default=None, help="抓取时间（ISO 8601，相对时间以此为准；默认取文件修改时间）")
    ex.add_argument("--charset", default=None, help="已知的编码（如 HTTP 头给出的）；默认看 <meta>，再猜")
    ex.set_defaults(func=cmd_extract)

    ch = sub.add_parser("crawl-health", help="各信息源的采集健康状况")
    ch.add_argument("--json", action="store_true", help="输出 JSON")
    ch.add_argument("--dark-after-min", type=float, default=None,
                    help="多久没有成功抓取算失联（分钟；默认用各信息源的 dark_after_min）")
    ch.set_defaults(func=cmd_crawl_health)
