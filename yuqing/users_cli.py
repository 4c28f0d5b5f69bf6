"""`yuqing user …`: accounts for operators at the command line, and the
bootstrap of the first start (the initial admin, the demo accounts).

The command line acts with full access (:data:`responder.permissions.CLI_ACTOR`),
recorded in the audit as ``cli:<OS user>``. Passwords and tokens are printed
once and never stored in plain text.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import replace
from typing import TextIO

from responder import accounts
from responder.permissions import CLI_ACTOR, ROLE_LABEL, Actor, Role
from responder.store import Store, utcnow
from yuqing.settings import Settings

ROLES_HELP = "、".join(f"{r.value}（{ROLE_LABEL[r]}）" for r in Role)


def _actor() -> Actor:
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no OS user name: the audit still says "cli"
        return CLI_ACTOR
    return replace(CLI_ACTOR, username=f"cli:{who}"[:100])


def _fmt(at: object) -> str:
    from datetime import datetime

    from responder.clocks import SHANGHAI

    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if isinstance(at, datetime) else "—"


def _jur(code: str) -> str:
    return code or "全部"


def _piped_password(stdin: TextIO) -> str | None:
    """The first line of standard input when it is not a terminal ("" counts as none)."""
    if stdin.isatty():
        return None
    line = stdin.readline().rstrip("\r\n")
    return line or None


def _describe(u: accounts.User) -> str:
    dept = f"，部门 {u.department}" if u.department else ""
    return f"{u.username}（{u.display_name}；{u.role_label} {u.role.value}；属地 {_jur(u.jurisdiction)}{dept}）"


def cmd_user(args: argparse.Namespace) -> int:
    from yuqing.cli import settings_from

    settings = settings_from(args)
    out = sys.stdout
    try:
        with Store(settings.store_url) as store:
            return _ACTIONS[args.user_cmd](args, store, settings, out)
    except accounts.AuthError as e:
        print(f"错误：{e}", file=sys.stderr)
        return 1


def _add(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    if not args.role:
        print(f"错误：请用 --role 指定角色：{ROLES_HELP}", file=sys.stderr)
        return 2
    if args.jurisdiction is None:
        print("错误：请用 --jurisdiction 指定属地（行政区划代码或其前缀，如 34、3401、340104；\"\" 为全部）",
              file=sys.stderr)
        return 2
    password = _piped_password(sys.stdin)
    user, generated = accounts.create_user(
        store, _actor(), args.name, args.role, args.jurisdiction, department=args.department,
        display_name=args.display_name, password=password, settings=settings,
    )
    print(f"已创建用户 {_describe(user)}", file=out)
    if generated:
        print(f"初始密码（仅显示这一次，首次登录须修改）：{generated}", file=out)
    else:
        print("密码取自标准输入，首次登录无须修改", file=out)
    return 0


def _list(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    users = accounts.list_users(store, _actor())
    if not users:
        print("（尚无用户）", file=out)
        return 0
    now = utcnow()
    print("用户名\t显示名\t角色\t属地\t部门\t状态\t创建时间", file=out)
    for u in users:
        if not u.active:
            state = "已停用"
        elif u.locked_until is not None and u.locked_until > now:
            state = f"锁定至 {_fmt(u.locked_until)}"
        elif u.must_change:
            state = "启用（待修改密码）"
        else:
            state = "启用"
        print("\t".join([u.username, u.display_name, f"{u.role_label} {u.role.value}", _jur(u.jurisdiction),
                         u.department or "—", state, _fmt(u.created_at)]), file=out)
    print(f"共 {len(users)} 个用户", file=out)
    return 0


def _set_active(active: bool):  # noqa: ANN202 - an action of _ACTIONS
    def run(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
        before = accounts.get_user(store, CLI_ACTOR, args.name).active
        u = accounts.set_active(store, _actor(), args.name, active)
        word = "启用" if active else "停用"
        if before == active:
            print(f"用户 {u.username} 已是{word}状态，未作更改", file=out)
        else:
            print(f"已{word}用户 {u.username}" + ("" if active else "，其登录会话已全部结束"), file=out)
        return 0

    return run


def _reset(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    pw = accounts.reset_password(store, _actor(), args.name, settings=settings)
    print(f"已重置用户 {args.name} 的密码，其登录会话已全部结束", file=out)
    print(f"新密码（仅显示这一次，下次登录须修改）：{pw}", file=out)
    return 0


def _token(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    token = accounts.create_token(store, _actor(), args.name, args.label or "")
    prefix = accounts.token_prefix(token)
    print(f"已为用户 {args.name} 创建 API 令牌 {prefix}" + (f"（{args.label}）" if args.label else ""), file=out)
    print(f"令牌（仅显示这一次，请妥善保存）：{token}", file=out)
    print("用法：请求头 Authorization: Bearer <令牌>", file=out)
    return 0


def _revoke(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    info = accounts.revoke_token(store, _actor(), args.prefix)
    print(f"已吊销用户 {info.username} 的 API 令牌 {info.prefix}" + (f"（{info.name}）" if info.name else ""),
          file=out)
    return 0


def _tokens(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> int:
    rows = accounts.list_tokens(store, _actor(), args.name)
    if not rows:
        print("（没有 API 令牌）", file=out)
        return 0
    print("前缀\t用户名\t名称\t创建人\t创建时间\t最近使用\t状态", file=out)
    for t in rows:
        state = f"已吊销（{_fmt(t.revoked_at)}）" if t.revoked_at else "有效"
        print("\t".join([t.prefix, t.username, t.name or "—", t.created_by, _fmt(t.created_at),
                         _fmt(t.last_used_at), state]), file=out)
    return 0


_ACTIONS = {
    "add": _add,
    "list": _list,
    "disable": _set_active(False),
    "enable": _set_active(True),
    "reset-password": _reset,
    "token": _token,
    "tokens": _tokens,
    "revoke-token": _revoke,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="管理用户账户与 API 令牌（命令行拥有全部权限）")
    us = p.add_subparsers(dest="user_cmd", required=True, metavar="{add,list,disable,enable,reset-password,"
                                                                 "token,tokens,revoke-token}")
    add = us.add_parser("add", help="创建用户：密码从标准输入读取（管道），否则生成一个（首次登录须修改）")
    add.add_argument("name", help="用户名")
    add.add_argument("--role", help=f"角色：{ROLES_HELP}")
    add.add_argument("--jurisdiction", help="属地：行政区划代码或其前缀（如 34、3401、340104）")
    add.add_argument("--department", help="所属部门（可选）")
    add.add_argument("--display-name", help="显示名（默认同用户名）")
    us.add_parser("list", help="列出全部用户")
    for name, text in (("disable", "停用用户（立即结束其登录会话）"), ("enable", "重新启用用户")):
        x = us.add_parser(name, help=text)
        x.add_argument("name", help="用户名")
    rp = us.add_parser("reset-password", help="重置密码（生成新密码，下次登录须修改）")
    rp.add_argument("name", help="用户名")
    tk = us.add_parser("token", help="为用户创建 API 令牌（仅显示一次）")
    tk.add_argument("name", help="用户名")
    tk.add_argument("--name", dest="label", help="令牌名称，便于识别用途")
    ts = us.add_parser("tokens", help="列出 API 令牌（前缀、用途、状态）")
    ts.add_argument("name", nargs="?", help="只列出此用户的令牌")
    rv = us.add_parser("revoke-token", help="按前缀（如 yq_ab12cd34）吊销 API 令牌")
    rv.add_argument("prefix", help="令牌前缀，或整个令牌")
    p.set_defaults(func=cmd_user)


# Bootstrap ---------------------------------------------------------------------------------

def bootstrap(store: Store, settings: Settings, *, demo: bool) -> str:
    """Accounts for a start: the initial admin when there are no users, and
    with ``demo`` (``yuqing up`` with the demo source) one account per role.
    Returns what to print once (Chinese), or "" when there is nothing to say."""
    lines: list[str] = []
    pw = accounts.ensure_initial_admin(store, settings)
    if pw is not None:
        path = settings.data_path(accounts.INITIAL_ADMIN_FILE)
        lines += [
            "首次启动：已创建系统管理员账户",
            f"  用户名 {accounts.INITIAL_ADMIN}  密码 {pw}  属地 {_jur(settings.auth.root_jurisdiction)}",
            f"  （密码仅显示这一次，另存于 {path}，仅本人可读；首次登录须修改密码）",
        ]
    if demo and settings.demo_site.enabled:
        made = accounts.ensure_demo_accounts(store, settings)
        path = settings.data_path(accounts.DEMO_ACCOUNTS_FILE)
        if made:
            lines.append(f"已创建演示账户（每个角色一个，属地 {_jur(made[0][0].jurisdiction)}；仅供演示）：")
            lines += [f"  用户名 {u.username:<13} 密码 {p}  （{u.role_label}）" for u, p in made]
            lines.append(f"  （另存于 {path}）")
        elif path.exists():
            lines.append(f"演示账户的用户名与密码见 {path}")
    return "\n".join(lines)


def bootstrap_or_warn(settings: Settings, *, demo: bool) -> str:
    """:func:`bootstrap` on the configured store; when the store cannot be
    opened now, a warning (the web stage bootstraps when it starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with Store(settings.store_url) as store:
            return bootstrap(store, settings, demo=demo)
    except SQLAlchemyError as e:
        return f"警告：暂时无法打开存储，账户初始化将在网页服务启动时进行（{type(e).__name__}）"


__all__ = ["bootstrap", "bootstrap_or_warn", "cmd_user", "register"]
