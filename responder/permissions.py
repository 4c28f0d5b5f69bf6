"""Roles, permissions and jurisdiction scope: the one permission table.

Every check of "may this user do that" and "may this user see that place"
goes through this module, so the web, the CLI and the responder agree.

* A :class:`Role` grants the set of :class:`Permission` in
  :data:`ROLE_PERMISSIONS` (default deny: what is not listed is refused).
* A jurisdiction is a division-code prefix: ``34`` 安徽省, ``3401`` 合肥市,
  ``340104`` 蜀山区; ``""`` is everything. A user sees its own jurisdiction
  and the ones below it, never a neighbour's. Items with no place (待定) are
  seen only by users at the deployment's root jurisdiction.
* :data:`CLI_ACTOR` is the operator at the command line: full access.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    ADMIN = "admin"
    OFFICE = "office"
    DUTY = "duty"
    ANALYST = "analyst"


ROLE_LABEL: dict[Role, str] = {
    Role.ADMIN: "系统管理员",
    Role.OFFICE: "宣传/政务公开办",
    Role.DUTY: "值班员",
    Role.ANALYST: "分析员",
}


class Permission(StrEnum):
    BOARD_VIEW = "board.view"
    TICKET_READ = "ticket.read"
    TICKET_ACK = "ticket.ack"
    TICKET_ASSIGN = "ticket.assign"
    TICKET_MILESTONE = "ticket.milestone"
    TICKET_CLOSE = "ticket.close"
    TICKET_REOPEN = "ticket.reopen"
    TICKET_ESCALATE = "ticket.escalate"
    EVENT_MERGE = "event.merge"
    EVENT_SPLIT = "event.split"
    SEARCH = "search"
    SEARCH_EXPORT = "search.export"
    SAVED_SEARCH_WRITE = "saved_search.write"
    BRIEF_READ = "brief.read"
    REPORT_READ = "report.read"
    SOURCES_READ = "sources.read"
    METRICS_READ = "metrics.read"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"


PERMISSION_LABEL: dict[Permission, str] = {
    Permission.BOARD_VIEW: "告警看板",
    Permission.TICKET_READ: "查看工单",
    Permission.TICKET_ACK: "签收工单",
    Permission.TICKET_ASSIGN: "指派责任部门",
    Permission.TICKET_MILESTONE: "登记回应节点",
    Permission.TICKET_CLOSE: "办结工单",
    Permission.TICKET_REOPEN: "重新打开工单",
    Permission.TICKET_ESCALATE: "升级上报",
    Permission.EVENT_MERGE: "合并事件",
    Permission.EVENT_SPLIT: "拆分事件",
    Permission.SEARCH: "全文检索",
    Permission.SEARCH_EXPORT: "导出检索结果",
    Permission.SAVED_SEARCH_WRITE: "保存监测方案",
    Permission.BRIEF_READ: "舆情日报/周报",
    Permission.REPORT_READ: "及时性报表",
    Permission.SOURCES_READ: "信息源状态",
    Permission.METRICS_READ: "运行指标 /metrics",
    Permission.USERS_MANAGE: "管理用户与角色",
    Permission.AUDIT_READ: "查看审计日志",
}

P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # Users and roles within its own jurisdiction, the audit, and read access to the rest.
    Role.ADMIN: frozenset({
        P.USERS_MANAGE, P.AUDIT_READ, P.BOARD_VIEW, P.TICKET_READ, P.SEARCH, P.BRIEF_READ,
        P.REPORT_READ, P.SOURCES_READ, P.METRICS_READ,
    }),
    Role.OFFICE: frozenset({
        P.BOARD_VIEW, P.TICKET_READ, P.BRIEF_READ, P.REPORT_READ, P.SEARCH, P.TICKET_ESCALATE,
        P.SOURCES_READ,
    }),
    Role.DUTY: frozenset({
        P.BOARD_VIEW, P.TICKET_READ, P.TICKET_ACK, P.TICKET_ASSIGN, P.TICKET_MILESTONE, P.TICKET_CLOSE,
        P.TICKET_REOPEN, P.EVENT_MERGE, P.EVENT_SPLIT, P.TICKET_ESCALATE, P.SEARCH, P.BRIEF_READ,
    }),
    # Tickets and the board read-only.
    Role.ANALYST: frozenset({
        P.SEARCH, P.SAVED_SEARCH_WRITE, P.SEARCH_EXPORT, P.BRIEF_READ, P.REPORT_READ, P.BOARD_VIEW,
        P.TICKET_READ,
    }),
}
del P

_CODE_RE = re.compile(r"^\d{0,6}$")


def normalise_jurisdiction(code: str | None) -> str:
    """A division code or prefix as the prefix that scopes it: ``340000`` → ``34``,
    ``340100`` → ``3401``, ``340104`` stays; ``""``/None → ``""`` (everything).

    Raises ValueError (in Chinese, for operators) for anything but 0-6 digits,
    or an odd-length prefix (division codes go in pairs: 省 PP, 市 PPCC, 县 PPCCXX).
    """
    c = (code or "").strip()
    if not _CODE_RE.match(c):
        raise ValueError(f"属地代码 {code!r} 无效：应为行政区划代码或其前缀（如 34、3401、340104）")
    while len(c) > 2 and c.endswith("00"):
        c = c[:-2]
    if len(c) % 2:
        raise ValueError(f"属地代码 {code!r} 无效：前缀应为 2、4 或 6 位（省 34、市 3401、县 340104）")
    return c


def place_prefix(code: str | None) -> str | None:
    """A stored place code as a jurisdiction prefix; None for no place (待定)."""
    if code is None or not str(code).strip():
        return None
    c = str(code).strip()
    while len(c) > 2 and c.endswith("00"):
        c = c[:-2]
    return c


def within(inner: str, outer: str) -> bool:
    """Whether jurisdiction ``inner`` is ``outer`` or below it (both prefixes)."""
    return inner.startswith(outer)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, an API token, or the CLI (full access)."""

    username: str
    display_name: str
    role: Role | None
    jurisdiction: str  # division-code prefix; "" = root
    department: str | None = None
    via: str = "session"  # "session" | "token" | "cli"
    remote_addr: str | None = None
    user_id: int | None = None
    # The deployment's root jurisdiction (auth.root_jurisdiction): a user there
    # also sees the items with no place (待定).
    root_jurisdiction: str = ""
    must_change: bool = False  # a generated or reset password: change it before anything else
    # For a session: the CSRF token its state-changing requests must carry.
    csrf_token: str | None = None
    session_id: str | None = None  # the stored hash of the session token (never the token)

    @property
    def is_cli(self) -> bool:
        return self.via == "cli"

    @property
    def role_label(self) -> str:
        return "命令行" if self.role is None else ROLE_LABEL[self.role]

    def can(self, perm: Permission) -> bool:
        if self.is_cli:
            return True
        return self.role is not None and perm in ROLE_PERMISSIONS[self.role]

    def sees(self, place_code: str | None) -> bool:
        """Whether an item at ``place_code`` (a stored division code; None = 待定) is in scope."""
        if self.is_cli:
            return True
        prefix = place_prefix(place_code)
        if prefix is None:
            return self.at_root
        return within(prefix, self.jurisdiction)

    @property
    def at_root(self) -> bool:
        """At the root jurisdiction (or above it): sees everything, 待定 included."""
        return self.is_cli or self.jurisdiction == "" or within(self.root_jurisdiction, self.jurisdiction)

    def check_csrf(self, submitted: str | None) -> bool:
        """Whether ``submitted`` is this session's CSRF token (tokens and the CLI need none)."""
        if self.via != "session":
            return True
        return bool(submitted) and self.csrf_token is not None and hmac.compare_digest(
            str(submitted).encode(), self.csrf_token.encode()
        )


CLI_ACTOR = Actor(username="cli", display_name="命令行", role=None, jurisdiction="", via="cli")


def scope_prefix(actor: Actor) -> str:
    """The division-code prefix queries must filter by ("" = everything).

    Items with no place (待定) are in scope only where :meth:`Actor.sees` says
    so (``actor.sees(None)``); :func:`scope_clause` builds both into one filter.
    """
    return "" if actor.is_cli else actor.jurisdiction


def scope_clause(actor: Actor, column: Any) -> Any | None:
    """A SQLAlchemy filter on a place-code ``column`` for what ``actor`` sees,
    or None when it sees everything. Put it in the query itself, never apply
    it after fetching, so counts stay right."""
    from sqlalchemy import or_

    prefix = scope_prefix(actor)
    unplaced = actor.sees(None)
    if prefix == "" and unplaced:
        return None
    placed = column.like(prefix + "%") if prefix else column.is_not(None)
    return or_(placed, column.is_(None)) if unplaced else placed


def permissions_markdown() -> str:
    """The permission table as the README shows it (a test keeps them equal)."""
    roles = list(Role)
    head = "| 权限 / permission | " + " | ".join(f"{ROLE_LABEL[r]} `{r.value}`" for r in roles) + " |"
    sep = "|---|" + "|".join(":-:" for _ in roles) + "|"
    rows = [head, sep]
    for p in Permission:
        marks = " | ".join("✓" if p in ROLE_PERMISSIONS[r] else "" for r in roles)
        rows.append(f"| {PERMISSION_LABEL[p]} `{p.value}` | {marks} |")
    return "\n".join(rows) + "\n"
