"""The `yuqing` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from yuqing.configfile import ConfigError

PLUGIN_CLIS = ("crawlers.cli", "classifiers.cli", "responder.cli", "yuqing.users_cli")

STAGES = ("demo-site", "crawler", "classifier", "responder", "indexer", "web")


def setup_logging(name: str, verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s [{name}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # Third-party chatter that drowns the stages' own lines.
    for noisy in ("kafka", "scrapy", "twisted", "apscheduler", "jieba", "httpx", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_event() -> threading.Event:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def settings_from(args: argparse.Namespace):
    from yuqing.settings import load_settings

    return load_settings(args.config)


def run_stage(name: str, settings) -> None:
    """Run one stage in this process until SIGTERM/SIGINT."""
    from yuqing.checks import validate_config

    validate_config(settings)
    if name == "web":
        import uvicorn

        from responder.store import Store
        from web.app import create_app
        from yuqing.users_cli import bootstrap

        store = Store(settings.store_url)
        # The first start with no users (a deployment without `yuqing up`): the initial admin.
        notice = bootstrap(store, settings, demo=False)
        if notice:
            print(notice, flush=True)
        uvicorn.run(create_app(settings, store=store), host=settings.web.host, port=settings.web.port,
                    log_level="warning")
        return
    if name == "demo-site":
        from yuqing.demo_site import serve

        ds = settings.demo_site
        serve(ds.host, ds.port, ds.publish_every_s, ds.seed)
        return
    runners: dict[str, Callable[[], Callable]] = {
        "crawler": lambda: __import__("crawlers.runner", fromlist=["run"]).run,
        "classifier": lambda: __import__("classifiers.worker", fromlist=["run"]).run,
        "responder": lambda: __import__("responder.service", fromlist=["run"]).run,
        "indexer": lambda: __import__("responder.indexer", fromlist=["run"]).run,
    }
    run = runners[name]()
    run(settings, stop_event())


def cmd_up(args: argparse.Namespace) -> int:
    from yuqing.checks import prepare, validate_config
    from yuqing.supervisor import StartRefused, Supervisor

    setup_logging("up", args.verbose)
    settings = settings_from(args)
    if args.transport:
        settings.transport.kind = args.transport
    if args.no_demo:
        settings.demo_site.enabled = False
    validate_config(settings)  # a bad file is reported first, whatever else is wrong
    sup = Supervisor(settings)
    try:
        # One `yuqing up` per data directory, and its ports free, before anything starts.
        # (The lock goes with this process if prepare fails.)
        sup.claim()
    except StartRefused as e:
        print(f"yuqing up 无法启动：\n{e}", file=sys.stderr)
        return e.code
    prepare(settings)
    from yuqing.users_cli import bootstrap_or_warn

    # Once per start, before any stage: the initial admin, and the demo accounts.
    sup.notice = bootstrap_or_warn(settings, demo=settings.demo_site.enabled)
    return sup.run()


def cmd_stage(args: argparse.Namespace) -> int:
    setup_logging(args.name, args.verbose)
    run_stage(args.name, settings_from(args))
    return 0


def cmd_demo_site(args: argparse.Namespace) -> int:
    from yuqing.demo_site import serve

    setup_logging("demo-site", args.verbose)
    s = settings_from(args).demo_site
    serve(args.host or s.host, args.port or s.port, args.publish_every or s.publish_every_s, args.seed or s.seed)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from yuqing.checks import notify_coverage_warnings, validate_config

    settings = settings_from(args)
    for line in validate_config(settings):
        print(line)
    warnings = notify_coverage_warnings(settings)
    for line in warnings:
        print(line)
    print("配置检查通过" + (f"（{sum('警告' in w for w in warnings)} 条通知覆盖警告）" if warnings else ""))
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from stream.tansu import TansuBroker

    setup_logging("broker", args.verbose)
    with TansuBroker(port=args.port) as broker:
        print(f"Kafka 兼容代理 (tansu, 仅内存) 已启动: {broker.bootstrap}  （Ctrl-C 停止）", flush=True)
        stop_event().wait()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    import json

    from stream.factory import open_transport, topic
    from stream.stage import dead_letters
    from stream.topics import DEAD_LETTER, DLQ_REASON, DLQ_STAGE, DLQ_TOPIC

    settings = settings_from(args)
    transport = open_transport(settings)
    try:
        records = dead_letters(transport, topic(settings, DEAD_LETTER))
        if not records:
            print("无")
        for rec in records:
            row = {
                "offset": rec.offset,
                "stage": (rec.header(DLQ_STAGE) or b"").decode(),
                "topic": (rec.header(DLQ_TOPIC) or b"").decode(),
                "reason": (rec.header(DLQ_REASON) or b"").decode(),
                "original": rec.value.decode("utf-8", "replace")[:200],
            }
            print(json.dumps(row, ensure_ascii=False))
    finally:
        transport.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yuqing", description="舆情监测与回应系统")
    p.add_argument("--config", type=Path, default=None, help="配置目录（默认 $YUQING_CONFIG_DIR，否则为项目自带的 config/）")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="启动整个系统（每个阶段一个进程）")
    up.add_argument("--transport", choices=["embedded", "kafka"])
    up.add_argument("--no-demo", action="store_true", help="不启动内置演示站点")
    up.set_defaults(func=cmd_up)

    st = sub.add_parser("stage", help="只运行一个阶段（供 supervisor 与 docker-compose 使用）")
    st.add_argument("name", choices=STAGES)
    st.set_defaults(func=cmd_stage)

    ds = sub.add_parser("demo-site", help="在 127.0.0.1 上运行内置演示信息源")
    ds.add_argument("--host")
    ds.add_argument("--port", type=int)
    ds.add_argument("--publish-every", type=float, help="每隔多少秒发布一条新帖")
    ds.add_argument("--seed", type=int)
    ds.set_defaults(func=cmd_demo_site)

    cc = sub.add_parser("check-config", help="检查全部配置文件")
    cc.set_defaults(func=cmd_check_config)

    br = sub.add_parser("broker", help="启动本地 Kafka 兼容代理（tansu，开发用）")
    br.add_argument("--port", type=int, default=9092)
    br.set_defaults(func=cmd_broker)

    dl = sub.add_parser("dead-letters", help="列出死信主题中的消息及原因")
    dl.set_defaults(func=cmd_dead_letters)

    # Each stage package adds its own commands (crawl, extract, classify,
    # train, clocks, report, ...) through a `register(subparsers)` in its cli.py.
    for module in PLUGIN_CLIS:
        importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"配置错误，无法启动：\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
