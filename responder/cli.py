"""Commands this package adds to the `yuqing` CLI.

* ``yuqing clocks --rule RULE --t0 ISO_TIME`` — each milestone of a clock
  rule and its deadline (Asia/Shanghai), ``milestone<TAB>deadline`` per line,
  computed by the same code the responder uses (:mod:`responder.clocks`).
* ``yuqing report timeliness --from DATE --to DATE [--by department|region]
  [--as-of TIME] [--csv FILE] [--xlsx FILE] [--jurisdiction CODE]`` — the
  timeliness figures of SPEC §6 (:mod:`responder.report`): rates in %,
  durations in 小时:分, and the cancelled deadlines (撤销时限) apart.
* ``yuqing report brief [--period day|week] [--date DATE] [--as-of TIME]
  [--json | --format docx|pdf|xlsx --output FILE] [--jurisdiction CODE]`` —
  the daily or weekly brief (舆情日报/周报) as plain text, as JSON
  (:mod:`responder.brief`), or as a Word, PDF or Excel file with charts
  (:mod:`responder.brief_files`); default: today in Shanghai, ``day``.

Reports run with full access (the operator at the command line);
``--jurisdiction CODE`` narrows one to a jurisdiction and what is below it, as
a user there sees it (items in 待定 only when CODE is the root jurisdiction).
* ``yuqing db current`` — the schema revision of the store (exit status 0
  when it is the newest this release knows); ``yuqing db upgrade`` — bring
  it there (:mod:`responder.migrate`; every stage also does at start).
* ``yuqing reindex [--from-start]`` — index what the search index lacks now
  (``--from-start``: every stored post again, e.g. into a new, empty index),
  the same work the indexer stage does continuously (:mod:`responder.indexer`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from responder.clocks import SHANGHAI

if TYPE_CHECKING:
    from responder.permissions import Actor
    from yuqing.settings import Settings


def _parse_t0(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"无法解析时间 {value!r}：请用 ISO 8601，例如 2026-10-01T09:00+08:00"
        ) from None
    if dt.tzinfo is None:
        # A bare wall time is read as Asia/Shanghai (the product's zone), never the host's.
        dt = dt.replace(tzinfo=SHANGHAI)
    return dt


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"无法解析日期 {value!r}：请用 YYYY-MM-DD") from None


def _parse_jurisdiction(value: str) -> str:
    from responder.permissions import normalise_jurisdiction

    try:
        return normalise_jurisdiction(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def report_actor(settings: Settings, jurisdiction: str | None) -> Actor:
    """Who a report runs as: the CLI (full access), or narrowed to ``jurisdiction``
    as a user there sees it."""
    from responder.permissions import CLI_ACTOR, Actor

    if jurisdiction is None:
        return CLI_ACTOR
    return Actor(
        username=CLI_ACTOR.username,
        display_name=CLI_ACTOR.display_name,
        role=None,
        jurisdiction=jurisdiction,
        via="cli-scoped",  # not "cli": the scope applies
        root_jurisdiction=settings.auth.root_jurisdiction,
    )


def cmd_clocks(args: argparse.Namespace) -> int:
    from responder.clocks import iso_shanghai, load_clocks
    from yuqing.settings import config_dir

    cfg = args.config if args.config is not None else config_dir()
    clocks = load_clocks(cfg)
    try:
        rows = clocks.deadlines_for(args.rule, args.t0)
    except KeyError as e:
        print(f"错误：{e.args[0]}", file=sys.stderr)
        return 2
    for milestone, due in rows:
        print(f"{milestone}\t{iso_shanghai(due)}")
        if args.extended:
            spec = clocks.milestone(args.rule, milestone)
            if spec.extendable_to_working_days:
                print(f"{milestone}（延长）\t{iso_shanghai(clocks.due(spec, args.t0, extended=True))}")
    return 0


def cmd_report_timeliness(args: argparse.Namespace) -> int:
    from responder.report import timeliness, write_csv, write_xlsx
    from responder.store import Store
    from yuqing.cli import settings_from, setup_logging

    setup_logging("report", args.verbose)
    settings = settings_from(args)
    store = Store(settings.store_url)
    try:
        rep = timeliness(
            store, args.date_from, args.date_to, by=args.by, as_of=args.as_of,
            actor=report_actor(settings, args.jurisdiction),
        )
    finally:
        store.close()
    if args.csv:
        write_csv(rep, args.csv)
        print(f"已写入 {args.csv}", file=sys.stderr)
    if args.xlsx:
        write_xlsx(rep, args.xlsx)
        print(f"已写入 {args.xlsx}", file=sys.stderr)
    if not args.csv and not args.xlsx:
        print(rep.to_text())
    return 0


def cmd_report_brief(args: argparse.Namespace) -> int:
    import json

    from responder.brief import brief, brief_text
    from responder.store import Store, utcnow
    from yuqing.cli import settings_from, setup_logging

    if bool(args.format) != bool(args.output):
        print("错误：--format 与 --output 须一起给出（如 --format docx --output 日报.docx）", file=sys.stderr)
        return 2
    setup_logging("report", args.verbose)
    settings = settings_from(args)
    as_of = args.as_of or utcnow()
    day = args.date or as_of.astimezone(SHANGHAI).date()
    store = Store(settings.store_url)
    try:
        b = brief(store, args.period, day, as_of=as_of, actor=report_actor(settings, args.jurisdiction))
    finally:
        store.close()
    if args.format:
        from responder.brief_files import unit_name, write

        write(b, args.format, args.output, unit=unit_name(b.jurisdiction, settings.auth.root_jurisdiction))
        print(f"已写入 {args.output}", file=sys.stderr)
    elif args.json:
        print(json.dumps(b.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(brief_text(b), end="")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from responder.indexer import SearchIndexer
    from responder.search import open_search
    from responder.store import Store
    from yuqing.cli import settings_from, setup_logging

    setup_logging("reindex", args.verbose)
    settings = settings_from(args)
    store = Store(settings.store_url)
    search = open_search(settings)
    try:
        ix = SearchIndexer(store, search)
        if args.from_start:
            ix.reset()
        n = ix.catch_up()
        if args.from_start:
            search.record_segmenter()  # every document was cut again
    finally:
        search.close()
        store.close()
    print(f"已索引 {n} 条帖子（全文检索：{settings.search.kind}）")
    return 0


def _store_for_schema(settings: Settings):  # -> Store | None
    """The store opened as it is (no upgrade), or None (after saying so) when
    its SQLite file does not exist."""
    from responder.store import Store, normalise_url

    url = normalise_url(settings.store_url)
    db = url.database
    if url.get_backend_name() == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
        if not Path(db).exists():
            print(f"数据库文件不存在：{db}", file=sys.stderr)
            return None
    return Store(url, upgrade=False)


def cmd_db_current(args: argparse.Namespace) -> int:
    from responder import migrate
    from yuqing.cli import settings_from

    store = _store_for_schema(settings_from(args))
    if store is None:
        return 1
    try:
        state, rev = migrate.describe(store.engine)
    finally:
        store.close()
    head = migrate.head()
    print(f"数据库：{store.url.render_as_string(hide_password=True)}")
    print({
        "current": f"结构版本：{rev}（已是最新）",
        "behind": f"结构版本：{rev}；本程序的最新版本为 {head}：运行 yuqing db upgrade 升级（各阶段启动时也会自动升级）",
        "newer": f"结构版本：{rev}，比本程序认识的最新版本 {head} 更新：请使用与数据库相符的新版程序",
        "legacy": f"无版本记录（建于引入结构版本管理之前）；yuqing db upgrade 会补齐并标记为基线 {migrate.BASELINE}，"
                  f"再升级到 {head}",
        "empty": f"空数据库；yuqing db upgrade 会建立最新版本 {head} 的全部表",
    }[state])
    return 0 if state == "current" else 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from responder import migrate
    from responder.store import Store
    from yuqing.cli import settings_from, setup_logging

    setup_logging("db", args.verbose)
    store = Store(settings_from(args).store_url, upgrade=False)
    try:
        done = migrate.upgrade(store.engine)
    except migrate.SchemaError as e:
        print(f"无法升级：{e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if done.adopted:
        print(f"旧版数据库（无版本记录）已补齐并标记为基线版本 {migrate.BASELINE}")
        if done.after != migrate.BASELINE:
            print(f"数据库结构已升级：{migrate.BASELINE} → {done.after}")
    elif done.before != done.after:
        print(f"数据库结构已升级：{done.before or '空库'} → {done.after}")
    else:
        print(f"数据库结构已是最新版本：{done.after}")
    return 0


_JURISDICTION_HELP = "只统计该辖区及其下级（行政区划代码或前缀，如 34、3401、340104）；默认全部"


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``sub``."""
    c = sub.add_parser("clocks", help="按时限规则计算各节点截止时间（与回应模块同一代码）")
    c.add_argument(
        "--rule", required=True, help="时限规则名，如 major_emergency、response_48h、suggestion、complaint"
    )
    c.add_argument("--t0", required=True, type=_parse_t0, help="起算时间 T0（ISO 8601；不带时区按北京时间）")
    c.add_argument("--extended", action="store_true", help="同时给出可延长节点的延长后期限")
    c.set_defaults(func=cmd_clocks)

    r = sub.add_parser("report", help="统计报表")
    rsub = r.add_subparsers(dest="report", required=True)
    t = rsub.add_parser("timeliness", help="回应及时性考核指标（按部门或地区）")
    t.add_argument(
        "--from", dest="date_from", required=True, type=_parse_day, help="起始日期（含），按 T0 北京时间"
    )
    t.add_argument("--to", dest="date_to", required=True, type=_parse_day, help="截止日期（含）")
    t.add_argument("--by", choices=["department", "region"], default="department")
    t.add_argument("--as-of", dest="as_of", type=_parse_t0, help="统计时点（ISO 8601；默认现在）")
    t.add_argument("--csv", help="写出 CSV 文件")
    t.add_argument("--xlsx", help="写出 Excel 文件")
    t.add_argument("--jurisdiction", type=_parse_jurisdiction, help=_JURISDICTION_HELP)
    t.set_defaults(func=cmd_report_timeliness)
    b = rsub.add_parser("brief", help="舆情日报/周报（纯文本，可直接粘贴到微信或邮件）")
    b.add_argument(
        "--period", choices=["day", "week"], default="day", help="day：日报；week：周报（周一至周日）"
    )
    b.add_argument(
        "--date", type=_parse_day, help="日期（YYYY-MM-DD，北京时间；默认今天）；周报取含该日的一周"
    )
    b.add_argument("--as-of", dest="as_of", type=_parse_t0, help="统计时点（ISO 8601；默认现在）")
    out = b.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="输出 JSON")
    out.add_argument("--format", choices=["docx", "pdf", "xlsx"],
                     help="写出文件：docx（Word）、pdf、xlsx（Excel），含图表；须同时给出 --output")
    b.add_argument("--output", help="写出的文件路径（与 --format 一起用）")
    b.add_argument("--jurisdiction", type=_parse_jurisdiction, help=_JURISDICTION_HELP)
    b.set_defaults(func=cmd_report_brief)

    d = sub.add_parser("db", help="数据库结构版本（迁移）")
    dsub = d.add_subparsers(dest="db", required=True)
    dsub.add_parser("current", help="显示数据库的结构版本（退出码 0 表示已是最新）").set_defaults(func=cmd_db_current)
    dsub.add_parser("upgrade", help="把数据库结构升级到最新版本（旧版数据库先补齐并标记为基线）").set_defaults(
        func=cmd_db_upgrade
    )

    x = sub.add_parser("reindex", help="把库中尚未进入全文索引的帖子补入索引（索引阶段持续在做的同一件事）")
    x.add_argument("--from-start", action="store_true", help="从第一条帖子起全部重新索引（如换了新的空索引）")
    x.set_defaults(func=cmd_reindex)
