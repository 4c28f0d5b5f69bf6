"""Accounts, sign-in, sessions, API tokens and the audit of who did what.

The domain layer of sign-in (issue 14): the web and the CLI call these
functions, which check the acting :class:`~responder.permissions.Actor`'s
permission and jurisdiction, change the store and write the audit.

* Passwords: Argon2id (``argon2-cffi``); only the hash is stored. A generated
  or reset password must be changed at the next sign-in (``must_change``).
* Sessions: server-side rows keyed by the SHA-256 of a random token (the
  cookie holds the token, the store only its hash); idle and absolute expiry,
  revocable; each carries a CSRF token.
* API tokens: ``yq_<8 hex>_<secret>``; the visible prefix names the token, the
  store keeps the SHA-256 of the whole token.
* Lockout: ``auth.lockout_failures`` failed sign-ins within
  ``auth.lockout_window_minutes`` lock the account for ``auth.lockout_minutes``.
* Scope: an admin manages users only within its own jurisdiction and never
  grants one above it; a user outside the admin's scope is "not found".
* Every function takes ``now`` (aware datetime) so tests move the clock
  instead of sleeping.

Errors are :class:`AuthError` subclasses whose message is Chinese text for
the person signing in or the operator.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from responder.permissions import (
    CLI_ACTOR,
    ROLE_LABEL,
    Actor,
    Permission,
    Role,
    normalise_jurisdiction,
    place_prefix,
    within,
)
from responder.store import ApiTokenRow, Audit, Event, SessionRow, Store, Ticket, UserRow, utcnow
from yuqing.settings import AuthSettings, Settings

log = logging.getLogger(__name__)

SHANGHAI_FMT = "%Y-%m-%d %H:%M"
INITIAL_ADMIN = "admin"
INITIAL_ADMIN_FILE = "initial-admin-password"
DEMO_ACCOUNTS_FILE = "demo-accounts.txt"
TOKEN_PREFIX = "yq_"
MAX_PASSWORD_CHARS = 1024  # far above any policy; keeps hashing bounded
# last_seen_at / last_used_at are written at most this often (not on every request).
TOUCH_EVERY = timedelta(seconds=15)

_hasher = PasswordHasher()  # Argon2id with argon2-cffi's current RFC 9106 low-memory profile


@functools.cache
def _dummy_hash() -> str:
    # Verified when the username is unknown (or the password is too long), so
    # the answer takes as long as for a known one; made once, on first use.
    return _hasher.hash(secrets.token_urlsafe(16))


# Errors ------------------------------------------------------------------------------------

class AuthError(Exception):
    """A refusal with a message for people (Chinese)."""

    # Its audit row is written already (so the refusal is not audited twice).
    audited = False


class InvalidCredentials(AuthError):
    def __init__(self) -> None:
        super().__init__("用户名或密码错误")


class AccountLocked(AuthError):
    def __init__(self, until: datetime) -> None:
        self.until = until
        super().__init__(f"登录失败次数过多，账户已锁定，请于 {_sh(until)} 后再试")


class AccountDisabled(AuthError):
    def __init__(self) -> None:
        super().__init__("账户已停用，请联系系统管理员")


class PermissionDenied(AuthError):
    pass


class NotFound(AuthError):
    pass


class PasswordPolicyError(AuthError):
    pass


class InvalidInput(AuthError):
    pass


# Views -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    jurisdiction: str
    department: str | None
    active: bool
    must_change: bool
    locked_until: datetime | None
    created_at: datetime
    changed_at: datetime

    @property
    def role_label(self) -> str:
        return ROLE_LABEL[self.role]

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(row.id, row.username, row.display_name, Role(row.role), row.jurisdiction, row.department,
                   row.active, row.must_change, row.locked_until, row.created_at, row.changed_at)


@dataclass(frozen=True)
class SessionInfo:
    id: str  # SHA-256 of the token
    user_id: int
    created_at: datetime
    expires_at: datetime  # absolute limit
    csrf_token: str


@dataclass(frozen=True)
class TokenInfo:
    prefix: str
    username: str
    name: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    actor_role: str | None
    action: str
    outcome: str
    detail: dict[str, Any]
    remote_addr: str | None
    ticket_id: int | None
    event_id: int | None
    place_code: str | None
    actor_jurisdiction: str | None = None  # the jurisdiction the actor acted in (None: CLI or nobody)


# Helpers -----------------------------------------------------------------------------------

def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _sh(at: datetime) -> str:
    from responder.clocks import SHANGHAI

    return at.astimezone(SHANGHAI).strftime(SHANGHAI_FMT)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _auth(settings: AuthSettings | Settings | None) -> AuthSettings:
    if settings is None:
        return AuthSettings()
    return settings.auth if isinstance(settings, Settings) else settings


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str, settings: AuthSettings | Settings | None = None) -> None:
    """Raise :class:`PasswordPolicyError` naming what the password lacks."""
    a = _auth(settings)
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordPolicyError(f"密码过长（最多 {MAX_PASSWORD_CHARS} 个字符）")
    problems = []
    if len(password) < a.password_min_length:
        problems.append(f"至少 {a.password_min_length} 个字符（现为 {len(password)} 个）")
    classes = _classes(password)
    if classes < a.password_classes:
        problems.append(f"须包含小写字母、大写字母、数字、其他符号中的至少 {a.password_classes} 类（现为 {classes} 类）")
    if problems:
        raise PasswordPolicyError("密码不符合要求：" + "；".join(problems))


def _classes(password: str) -> int:
    lower = any(c.islower() and c.isascii() for c in password)
    upper = any(c.isupper() and c.isascii() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not (c.isascii() and c.isalnum()) and not c.isdigit() for c in password)
    return lower + upper + digit + other


def generate_password(length: int = 16) -> str:
    """A random password with every character class (meets any policy up to ``length``)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    symbols = "-_.!@#%+="
    while True:
        chars = [secrets.choice(alphabet) for _ in range(length - 2)]
        chars += [secrets.choice(symbols), secrets.choice(string.digits[2:])]
        # Shuffle so the classes are not always at the end.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        pw = "".join(chars)
        if _classes(pw) == 4:
            return pw


def _valid_username(username: str) -> str:
    u = (username or "").strip()
    if not (1 <= len(u) <= 64) or not all(c.isalnum() or c in "._-@" for c in u):
        raise InvalidInput(f"用户名 {username!r} 无效：1-64 个字母、数字或 . _ - @")
    return u


MAX_NAME_CHARS = 100  # display name and department (their columns)


def _text(value: str | None, label: str) -> str | None:
    """A display name or department, trimmed; None for empty; InvalidInput when too long."""
    v = (value or "").strip()
    if len(v) > MAX_NAME_CHARS:
        raise InvalidInput(f"{label}过长（最多 {MAX_NAME_CHARS} 个字符，现为 {len(v)} 个）")
    return v or None


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        names = "、".join(f"{r.value}（{ROLE_LABEL[r]}）" for r in Role)
        raise InvalidInput(f"角色 {role!r} 无效：应为 {names}") from None


def _jurisdiction(code: str | None) -> str:
    try:
        return normalise_jurisdiction(code)
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def _jurisdiction_label(code: str) -> str:
    return code or "全部"


# Audit -------------------------------------------------------------------------------------

OUTCOMES = ("ok", "denied", "failed")
OUTCOME_LABEL = {"ok": "成功", "denied": "拒绝", "failed": "失败"}
# What each audited action is called on the admin's audit page (an action not
# listed shows its code). ``deadline_warn50`` and the like: see :func:`action_label`.
ACTION_LABEL: dict[str, str] = {
    # accounts
    "login": "登录", "logout": "退出登录", "lockout": "账户锁定", "password_changed": "修改密码",
    "password_reset": "重置密码", "user_created": "创建用户", "user_updated": "修改用户",
    "user_enabled": "启用用户", "user_disabled": "停用用户", "token_created": "发放 API 令牌",
    "token_revoked": "吊销 API 令牌", "permission_denied": "越权请求",
    # duty officers and analysts (responder.cases, responder.archive)
    "acknowledged": "确认接收", "assigned": "指派责任部门", "milestone": "登记回应节点", "closed": "办结",
    "reopened": "重新打开工单", "clock_rule_changed": "更改时限规则", "deadline_extended": "延长时限",
    "escalated": "人工督办",
    "event_merged": "合并事件", "event_split": "拆分事件", "saved_search_created": "保存监测方案",
    "saved_search_deleted": "删除监测方案", "search_exported": "导出检索结果",
    # the responder and the scheduler
    "opened": "新建工单", "post_added": "帖文归入事件", "severity_changed": "级别变化", "stable": "事件平稳",
    "t0_moved": "起算时间调整", "title_changed": "事件标题更新", "milestone_candidate": "疑似回应节点",
    "place_refined": "属地细化", "archived_no_response": "无需回应归档", "deadline_breach": "时限超时",
}


def action_label(action: str) -> str:
    """An audit action as people read it: ``user_created`` → 创建用户,
    ``deadline_warn80`` → 时限预警（已过80%）; an unknown one as its code."""
    if action in ACTION_LABEL:
        return ACTION_LABEL[action]
    if action.startswith("deadline_warn") and action[len("deadline_warn"):].isdigit():
        return f"时限预警（已过{action[len('deadline_warn'):]}%）"
    return action


def actor_columns(actor: Actor | None) -> dict[str, Any]:
    """The audit columns that say in which role and jurisdiction ``actor`` acted
    (``cli`` and no jurisdiction for the command line; None for nobody)."""
    return {
        "actor_role": (actor.role.value if actor is not None and actor.role is not None
                       else ("cli" if actor is not None and actor.is_cli else None)),
        "actor_jurisdiction": actor.jurisdiction if actor is not None and not actor.is_cli else None,
    }


def audit(
    session: Session,
    actor: Actor | None,
    action: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
    ticket_id: int | None = None,
    event_id: int | None = None,
    *,
    place_code: str | None = None,
    at: datetime | None = None,
    actor_name: str | None = None,
    remote_addr: str | None = None,
) -> Audit:
    """Add one audit row in ``session`` (the caller's transaction): who (the
    actor's username, role and jurisdiction, or ``actor_name`` when nobody is
    signed in), from where, when, what and with what outcome (``ok``,
    ``failed``, ``denied``). ``place_code`` is the jurisdiction the row is
    about (a user changed, a ticket's place). Rows are never changed or deleted."""
    row = Audit(
        ticket_id=ticket_id,
        event_id=event_id,
        at=_now(at),
        actor=(actor.username if actor is not None else (actor_name or "anonymous"))[:100],
        **actor_columns(actor),
        action=action[:40],
        outcome=outcome[:20],
        detail=dict(detail or {}),
        remote_addr=(remote_addr if remote_addr is not None else (actor.remote_addr if actor else None)),
        place_code=place_code,
    )
    session.add(row)
    return row


def audit_alone(store: Store, actor: Actor | None, action: str, outcome: str, detail: dict[str, Any],
                now: datetime, **kw: Any) -> None:
    """:func:`audit` in a transaction of its own: for a refusal, whose row must
    stay when the refused change rolls back."""
    # A refusal's audit row commits on its own: the refused change rolls back.
    with store.transaction() as s:
        audit(s, actor, action, outcome, detail, at=now, **kw)


def list_audit(
    store: Store,
    actor: Actor,
    user: str | None = None,
    action: str | None = None,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
    *,
    outcome: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[AuditEntry]:
    """Audit rows newest first, within ``actor``'s jurisdiction: rows whose
    ticket's or event's place, whose subject (``place_code``) or whose acting
    user's jurisdiction is in scope. Dates are days in Asia/Shanghai,
    inclusive; datetimes are instants (``date_to`` exclusive). ``outcome``:
    ``ok``, ``denied`` or ``failed``; ``offset``/``limit`` page through them."""
    q = _audit_query(actor, user, action, date_from, date_to, outcome)
    q = q.order_by(Audit.at.desc(), Audit.id.desc()).limit(limit).offset(max(0, offset))
    with store.reader() as s:
        return [
            AuditEntry(a.id, a.at, a.actor, a.actor_role, a.action, a.outcome, dict(a.detail or {}),
                       a.remote_addr, a.ticket_id, a.event_id, a.place_code, a.actor_jurisdiction)
            for a in s.scalars(q).all()
        ]


def count_audit(
    store: Store,
    actor: Actor,
    user: str | None = None,
    action: str | None = None,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
    *,
    outcome: str | None = None,
) -> int:
    """How many rows :func:`list_audit` pages through with these filters."""
    q = _audit_query(actor, user, action, date_from, date_to, outcome)
    with store.reader() as s:
        return int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)


def audit_actions(store: Store, actor: Actor) -> list[str]:
    """The actions the audit holds within ``actor``'s jurisdiction (for a filter's choices)."""
    q = _audit_query(actor, None, None, None, None, None).with_only_columns(Audit.action).distinct()
    with store.reader() as s:
        return sorted(s.scalars(q).all())


def _audit_query(actor: Actor, user: str | None, action: str | None, date_from: date | datetime | None,
                 date_to: date | datetime | None, outcome: str | None) -> Any:
    if not actor.can(Permission.AUDIT_READ):
        raise PermissionDenied("无权查看审计日志")
    if outcome and outcome not in OUTCOMES:
        raise InvalidInput(f"结果 {outcome!r} 无效：应为 {'、'.join(OUTCOMES)}")
    q = (
        select(Audit)
        .outerjoin(Ticket, Ticket.id == Audit.ticket_id)
        .outerjoin(Event, Event.id == Audit.event_id)
    )
    if not (actor.is_cli or (actor.jurisdiction == "" and actor.sees(None))):
        like = actor.jurisdiction + "%"
        cols = (Audit.place_code, Audit.actor_jurisdiction, Ticket.place_code, Event.place_code)
        conds: list[Any] = [c.like(like) for c in cols]
        if actor.sees(None):
            # Rows about nothing placed (待定 tickets, system rows, unknown users) go to the root.
            conds.append(and_(*(c.is_(None) for c in cols)))
        q = q.where(or_(*conds))
    if user:
        q = q.where(Audit.actor == user)
    if action:
        q = q.where(Audit.action == action)
    if date_from is not None:
        q = q.where(Audit.at >= _instant(date_from))
    if date_to is not None:
        q = q.where(Audit.at < _instant(date_to, end=True))
    if outcome:
        q = q.where(Audit.outcome == outcome)
    return q


def _instant(d: date | datetime, end: bool = False) -> datetime:
    from responder.clocks import SHANGHAI

    if isinstance(d, datetime):
        return _now(d)
    day = d + timedelta(days=1) if end else d
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


# Users -------------------------------------------------------------------------------------

def _require_manage(actor: Actor) -> None:
    if not actor.can(Permission.USERS_MANAGE):
        raise PermissionDenied("无权管理用户")


def _find_in_scope(s: Session, actor: Actor, username: str) -> UserRow:
    row = s.scalar(select(UserRow).where(UserRow.username == (username or "").strip()))
    # Outside the admin's jurisdiction is "not found", like every object out of scope.
    if row is None or not (actor.is_cli or within(row.jurisdiction, actor.jurisdiction)):
        raise NotFound(f"用户 {username} 不存在")
    return row


def _check_grant(store: Store, actor: Actor, jurisdiction: str, root: str, action: str, username: str,
                 now: datetime) -> None:
    if not within(jurisdiction, root):
        raise InvalidInput(f"属地 {_jurisdiction_label(jurisdiction)} 不在本系统的属地 {_jurisdiction_label(root)} 之内")
    if not actor.is_cli and not within(jurisdiction, actor.jurisdiction):
        audit_alone(store, actor, action, "denied",
                    {"username": username, "jurisdiction": jurisdiction, "reason": "jurisdiction above own"},
                     now, place_code=actor.jurisdiction or None)
        err = PermissionDenied(
            f"无权授予属地 {_jurisdiction_label(jurisdiction)}：只能在本人属地 "
            f"{_jurisdiction_label(actor.jurisdiction)} 及其下级范围内管理用户"
        )
        err.audited = True
        raise err


@contextmanager
def _refusals_audited(store: Store, actor: Actor, action: str, request: dict[str, Any],
                      now: datetime) -> Iterator[None]:
    """A refused user change writes its own audit row (its own transaction;
    the change rolls back): ``denied`` for a user out of scope or unknown and
    a permission the actor lacks, ``failed`` for bad input, with what was
    asked (``detail.request``, never a password) and the message
    (``detail.reason``), at the actor's own jurisdiction (it names nothing
    the actor cannot see: an unknown user and one out of scope read alike)."""
    try:
        yield
    except AuthError as e:
        if not e.audited:
            outcome = "denied" if isinstance(e, NotFound | PermissionDenied) else "failed"
            audit_alone(store, actor, action, outcome, {"request": request, "reason": str(e)}, now,
                        place_code=actor.jurisdiction or None)
            e.audited = True
        raise


def create_user(
    store: Store,
    actor: Actor,
    username: str,
    role: Role | str,
    jurisdiction: str,
    department: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    *,
    settings: AuthSettings | Settings | None = None,
    now: datetime | None = None,
) -> tuple[User, str | None]:
    """Create an account. With ``password`` (the operator chose it) there is
    no forced change; without, one is generated, returned (show it once) and
    must be changed at the first sign-in. Returns (user, generated password or None)."""
    a = _auth(settings)
    now = _now(now)
    request = {"username": str(username)[:100], "role": str(role)[:40], "jurisdiction": str(jurisdiction)[:40],
               "department": (department or "")[:100] or None}
    with _refusals_audited(store, actor, "user_created", request, now):
        _require_manage(actor)
        username = _valid_username(username)
        r = _role(role)
        j = _jurisdiction(jurisdiction)
        _check_grant(store, actor, j, a.root_jurisdiction, "user_created", username, now)
        dept = _text(department, "部门")
        name = _text(display_name, "姓名") or username
        generated = None
        if password:
            check_password_policy(password, a)
        else:
            password = generated = generate_password(max(16, a.password_min_length))
        row = UserRow(
            username=username, display_name=name, role=r.value,
            jurisdiction=j, department=dept, active=True, password_hash=hash_password(password),
            must_change=generated is not None, created_at=now, changed_at=now,
        )
        try:
            with store.transaction() as s:
                if s.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
                    raise InvalidInput(f"用户名 {username} 已存在")
                s.add(row)
                s.flush()
                audit(s, actor, "user_created", "ok",
                      {"username": username, "role": r.value, "jurisdiction": j, "department": dept,
                       "password": "generated" if generated else "set"},
                      at=now, place_code=j or None)
        except IntegrityError:
            raise InvalidInput(f"用户名 {username} 已存在") from None
    return User.of(row), generated


def update_user(
    store: Store,
    actor: Actor,
    username: str,
    *,
    role: Role | str | None = None,
    jurisdiction: str | None = None,
    department: str | None = None,
    display_name: str | None = None,
    settings: AuthSettings | Settings | None = None,
    now: datetime | None = None,
) -> User:
    """Change a user's role, jurisdiction, department (``""`` clears it) or name;
    only what is given. The new jurisdiction must be within the admin's own."""
    a = _auth(settings)
    now = _now(now)
    asked = {"role": role, "jurisdiction": jurisdiction, "department": department, "display_name": display_name}
    request = {"username": str(username)[:100], **{k: str(v)[:100] for k, v in asked.items() if v is not None}}
    with _refusals_audited(store, actor, "user_updated", request, now):
        return _update_user(store, actor, username, a, now, role, jurisdiction, department, display_name)


def _update_user(store: Store, actor: Actor, username: str, a: AuthSettings, now: datetime,
                 role: Role | str | None, jurisdiction: str | None, department: str | None,
                 display_name: str | None) -> User:
    _require_manage(actor)
    new_role = _role(role) if role is not None else None
    new_j = _jurisdiction(jurisdiction) if jurisdiction is not None else None
    _text(department, "部门")
    _text(display_name, "姓名")
    if new_j is not None:
        _check_grant(store, actor, new_j, a.root_jurisdiction, "user_updated", username, now)
    with store.transaction() as s:
        row = _find_in_scope(s, actor, username)
        if not actor.is_cli and row.id == actor.user_id and (
            (new_role is not None and new_role.value != row.role) or (new_j is not None and new_j != row.jurisdiction)
        ):
            raise InvalidInput("不能修改自己的角色或属地")
        changes: dict[str, Any] = {}
        if new_role is not None and new_role.value != row.role:
            changes["role"] = [row.role, new_role.value]
            row.role = new_role.value
        if new_j is not None and new_j != row.jurisdiction:
            changes["jurisdiction"] = [row.jurisdiction, new_j]
            row.jurisdiction = new_j
        if department is not None and (department.strip() or None) != row.department:
            changes["department"] = [row.department, department.strip() or None]
            row.department = department.strip() or None
        if display_name is not None and display_name.strip() and display_name.strip() != row.display_name:
            changes["display_name"] = [row.display_name, display_name.strip()]
            row.display_name = display_name.strip()
        if changes:
            row.changed_at = now
            audit(s, actor, "user_updated", "ok", {"username": row.username, "changes": changes},
                  at=now, place_code=row.jurisdiction or None)
        return User.of(row)


def set_active(store: Store, actor: Actor, username: str, active: bool, *,
               now: datetime | None = None) -> User:
    """Enable or disable an account; disabling ends its sessions at once."""
    now = _now(now)
    action = "user_enabled" if active else "user_disabled"
    with _refusals_audited(store, actor, action, {"username": str(username)[:100]}, now):
        _require_manage(actor)
        with store.transaction() as s:
            row = _find_in_scope(s, actor, username)
            if not actor.is_cli and row.id == actor.user_id and not active:
                raise InvalidInput("不能停用自己的账户")
            if row.active != active:
                row.active = active
                row.changed_at = now
                if not active:
                    _revoke_sessions(s, row.id, now)
                audit(s, actor, action, "ok", {"username": row.username},
                      at=now, place_code=row.jurisdiction or None)
            return User.of(row)


def reset_password(store: Store, actor: Actor, username: str, *, now: datetime | None = None,
                   settings: AuthSettings | Settings | None = None) -> str:
    """A new generated password (show it once), to be changed at the next
    sign-in; ends the user's sessions and lifts a lockout."""
    now = _now(now)
    with _refusals_audited(store, actor, "password_reset", {"username": str(username)[:100]}, now):
        _require_manage(actor)
        pw = generate_password(max(16, _auth(settings).password_min_length))
        with store.transaction() as s:
            row = _find_in_scope(s, actor, username)
            row.password_hash = hash_password(pw)
            row.must_change = True
            row.failed_count = 0
            row.failed_since = None
            row.locked_until = None
            row.changed_at = now
            _revoke_sessions(s, row.id, now)
            audit(s, actor, "password_reset", "ok", {"username": row.username}, at=now,
                  place_code=row.jurisdiction or None)
    return pw


def change_password(
    store: Store,
    actor: Actor,
    old: str,
    new: str,
    *,
    settings: AuthSettings | Settings | None = None,
    now: datetime | None = None,
) -> None:
    """The signed-in user changes its own password: the old one must match,
    the new one meet the policy and differ. Clears ``must_change`` and ends
    the user's other sessions (the current one, ``actor.session_id``, stays).

    A wrong old password counts towards the lockout like a failed sign-in
    (someone at an unattended session guessing it); the lockout ends every
    session of the user. With the full :class:`Settings`, the initial admin's
    first change deletes ``<data_dir>/initial-admin-password``: the password
    in it is no longer valid."""
    a = _auth(settings)
    now = _now(now)
    if actor.user_id is None:
        raise InvalidInput("只有登录用户可以修改自己的密码")
    with store.reader() as s:
        row = s.get(UserRow, actor.user_id)
        stored = row.password_hash if row is not None else None
        locked_until = row.locked_until if row is not None else None
    if locked_until is not None and locked_until > now:
        audit_alone(store, actor, "password_changed", "denied", {"reason": "locked"}, now,
                    place_code=actor.jurisdiction or None)
        raise AccountLocked(locked_until)
    if stored is None or not _verify(stored, (old or "")[:MAX_PASSWORD_CHARS]):
        locked = False
        with store.transaction() as s:
            row = s.get(UserRow, actor.user_id, with_for_update=True)
            if row is not None:
                locked = _count_failure(s, row, a, now, actor, "password_changed",
                                        {"reason": "wrong old password"}, actor.remote_addr)
                if locked:
                    _revoke_sessions(s, row.id, now)
        if locked:
            raise AccountLocked(now + timedelta(minutes=a.lockout_minutes))
        raise AuthError("原密码错误")
    if new == old:
        raise PasswordPolicyError("新密码不能与原密码相同")
    check_password_policy(new, a)
    new_hash = hash_password(new)
    with store.transaction() as s:
        row = s.get(UserRow, actor.user_id)
        assert row is not None
        row.password_hash = new_hash
        row.must_change = False
        row.changed_at = now
        q = update(SessionRow).where(SessionRow.user_id == row.id, SessionRow.revoked_at.is_(None))
        if actor.session_id:
            q = q.where(SessionRow.id != actor.session_id)
        s.execute(q.values(revoked_at=now))
        audit(s, actor, "password_changed", "ok", {}, at=now, place_code=row.jurisdiction or None)
    if isinstance(settings, Settings) and actor.username == INITIAL_ADMIN:
        settings.data_path(INITIAL_ADMIN_FILE).unlink(missing_ok=True)


def get_user(store: Store, actor: Actor, username: str) -> User:
    """One user within the actor's scope (an admin, or the user itself)."""
    with store.reader() as s:
        if actor.user_id is not None and not actor.can(Permission.USERS_MANAGE):
            row = s.get(UserRow, actor.user_id)
            if row is None or row.username != username:
                raise NotFound(f"用户 {username} 不存在")
            return User.of(row)
        _require_manage(actor)
        return User.of(_find_in_scope(s, actor, username))


def list_users(store: Store, actor: Actor) -> list[User]:
    """The users within the actor's jurisdiction, by username."""
    _require_manage(actor)
    q = select(UserRow).order_by(UserRow.username)
    if not actor.is_cli and actor.jurisdiction:
        q = q.where(UserRow.jurisdiction.like(actor.jurisdiction + "%"))
    with store.reader() as s:
        return [User.of(r) for r in s.scalars(q).all()]


def count_users(store: Store) -> int:
    with store.reader() as s:
        return int(s.scalar(select(func.count()).select_from(UserRow)) or 0)


# Sign-in -----------------------------------------------------------------------------------

def _actor_of(row: UserRow, a: AuthSettings, via: str, remote_addr: str | None,
              csrf: str | None = None, session_id: str | None = None) -> Actor:
    return Actor(
        username=row.username, display_name=row.display_name, role=Role(row.role),
        jurisdiction=row.jurisdiction, department=row.department, via=via, remote_addr=remote_addr,
        user_id=row.id, root_jurisdiction=a.root_jurisdiction, must_change=row.must_change,
        csrf_token=csrf, session_id=session_id,
    )


def authenticate(
    store: Store,
    username: str,
    password: str,
    remote_addr: str | None = None,
    now: datetime | None = None,
    *,
    settings: AuthSettings | Settings | None = None,
) -> Actor:
    """Check a username and password; the signed-in :class:`Actor`, or an
    :class:`AuthError`. Every attempt is audited; failures count towards the
    lockout (a locked account is refused even with the right password)."""
    a = _auth(settings)
    now = _now(now)
    name = (username or "").strip()[:64]
    password = password or ""
    # Never cut an over-long password (its first characters could be a stored
    # one): it cannot match, since every stored password is within the limit.
    too_long = len(password) > MAX_PASSWORD_CHARS
    with store.reader() as s:
        row = s.scalar(select(UserRow).where(UserRow.username == name)) if name else None
    if row is None:
        _verify(_dummy_hash(), password[:MAX_PASSWORD_CHARS])  # same time as a known name
        audit_alone(store, None, "login", "failed", {"username": name, "reason": "unknown user"}, now,
                    actor_name=name or "anonymous", remote_addr=remote_addr)
        raise InvalidCredentials()
    if row.locked_until is not None and row.locked_until > now:
        audit_alone(store, None, "login", "denied", {"username": name, "reason": "locked"}, now,
                    actor_name=name, remote_addr=remote_addr, place_code=row.jurisdiction or None)
        raise AccountLocked(row.locked_until)
    ok = _verify(row.password_hash, password[:MAX_PASSWORD_CHARS]) and not too_long
    with store.transaction() as s:
        # Locked for the update: concurrent failures must all count (PostgreSQL;
        # SQLite's write transactions are one at a time already).
        row = s.get(UserRow, row.id, with_for_update=True)
        assert row is not None
        who = _actor_of(row, a, "session", remote_addr)
        if not ok:
            _count_failure(s, row, a, now, None, "login", {"username": name, "reason": "wrong password"},
                           remote_addr)
        elif not row.active:
            audit(s, who, "login", "denied", {"reason": "disabled"}, at=now)
        else:
            row.failed_count = 0
            row.failed_since = None
            row.locked_until = None
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = hash_password(password)
            audit(s, who, "login", "ok", {}, at=now, place_code=row.jurisdiction or None)
            return who
    if not ok:
        raise InvalidCredentials()
    raise AccountDisabled()


def _count_failure(s: Session, row: UserRow, a: AuthSettings, now: datetime, actor: Actor | None,
                   action: str, detail: dict[str, Any], remote_addr: str | None) -> bool:
    """A wrong password for ``row`` (at sign-in, or as the old one when changing
    it): audited as ``failed`` and counted towards the lockout, in ``s`` (the
    row locked for update). True when it locked the account."""
    if row.failed_since is None or now - row.failed_since > timedelta(minutes=a.lockout_window_minutes):
        row.failed_since = now
        row.failed_count = 0
    row.failed_count += 1
    place = row.jurisdiction or None
    audit(s, actor, action, "failed", {**detail, "failures": row.failed_count},
          at=now, actor_name=row.username, remote_addr=remote_addr, place_code=place)
    if row.failed_count < a.lockout_failures:
        return False
    row.locked_until = now + timedelta(minutes=a.lockout_minutes)
    row.failed_count = 0
    row.failed_since = None
    audit(s, actor, "lockout", "ok",
          {"username": row.username, "until": row.locked_until.isoformat(),
           "failures": a.lockout_failures, "window_minutes": a.lockout_window_minutes},
          at=now, actor_name=row.username, remote_addr=remote_addr, place_code=place)
    log.warning("账户 %s 因 %d 次密码错误被锁定至 %s", row.username, a.lockout_failures, _sh(row.locked_until))
    return True


def start_session(
    store: Store,
    actor: Actor,
    now: datetime | None = None,
    *,
    settings: AuthSettings | Settings | None = None,
) -> tuple[str, SessionInfo]:
    """A new server-side session for a signed-in user: (token for the cookie, session)."""
    a = _auth(settings)
    now = _now(now)
    if actor.user_id is None:
        raise InvalidInput("只有账户可以登录")
    token = secrets.token_urlsafe(32)
    sid = _sha256(token)
    row = SessionRow(
        id=sid, user_id=actor.user_id, created_at=now, last_seen_at=now,
        expires_at=now + timedelta(hours=a.absolute_hours), remote_addr=actor.remote_addr,
        csrf_token=secrets.token_urlsafe(32),
    )
    with store.transaction() as s:
        s.add(row)
    return token, SessionInfo(sid, actor.user_id, now, row.expires_at, row.csrf_token)


def login(store: Store, username: str, password: str, remote_addr: str | None = None,
          now: datetime | None = None, *, settings: AuthSettings | Settings | None = None,
          ) -> tuple[str, Actor]:
    """:func:`authenticate` then :func:`start_session`: (session token, actor of the session)."""
    who = authenticate(store, username, password, remote_addr, now, settings=settings)
    token, info = start_session(store, who, now, settings=settings)
    return token, replace(who, csrf_token=info.csrf_token, session_id=info.id)


def resolve_session(
    store: Store,
    token: str | None,
    now: datetime | None = None,
    *,
    settings: AuthSettings | Settings | None = None,
    remote_addr: str | None = None,
) -> Actor | None:
    """The actor of a live session, or None (unknown, revoked, idle or past its
    absolute limit, user disabled). Notes the request as the session's last activity."""
    if not token:
        return None
    a = _auth(settings)
    now = _now(now)
    sid = _sha256(token)
    with store.reader() as s:
        row = s.get(SessionRow, sid)
        if row is None or row.revoked_at is not None:
            return None
        if now >= row.expires_at or now - row.last_seen_at >= timedelta(minutes=a.idle_minutes):
            return None
        user = s.get(UserRow, row.user_id)
        if user is None or not user.active:
            return None
        who = _actor_of(user, a, "session", remote_addr or row.remote_addr, row.csrf_token, sid)
        stale = now - row.last_seen_at >= TOUCH_EVERY
    if stale:
        with store.transaction() as s:
            s.execute(update(SessionRow).where(SessionRow.id == sid, SessionRow.last_seen_at < now)
                      .values(last_seen_at=now))
    return who


def end_session(store: Store, token: str | None, now: datetime | None = None, *,
                remote_addr: str | None = None) -> bool:
    """Sign out: revoke the session (audited). False when there was none live."""
    if not token:
        return False
    now = _now(now)
    sid = _sha256(token)
    with store.transaction() as s:
        row = s.get(SessionRow, sid)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = now
        user = s.get(UserRow, row.user_id)
        if user is not None:
            who = _actor_of(user, AuthSettings(), "session", remote_addr or row.remote_addr)
            audit(s, who, "logout", "ok", {}, at=now, place_code=user.jurisdiction or None)
    return True


def _revoke_sessions(s: Session, user_id: int, now: datetime) -> None:
    s.execute(update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
              .values(revoked_at=now))


# API tokens --------------------------------------------------------------------------------

def create_token(store: Store, actor: Actor, username: str, name: str = "", *,
                 now: datetime | None = None) -> str:
    """A new API token for ``username`` (an admin within its scope, or a user
    for itself). Returns the token: shown once, only its hash is kept."""
    now = _now(now)
    label = (name or "").strip()[:100]
    with store.transaction() as s:
        if actor.user_id is not None and not actor.can(Permission.USERS_MANAGE):
            row = s.get(UserRow, actor.user_id)
            if row is None or row.username != username:
                raise NotFound(f"用户 {username} 不存在")
        else:
            _require_manage(actor)
            row = _find_in_scope(s, actor, username)
        if not row.active:
            raise InvalidInput(f"用户 {username} 已停用，不能发放令牌")
        while True:
            prefix = TOKEN_PREFIX + secrets.token_hex(4)
            if s.scalar(select(ApiTokenRow.id).where(ApiTokenRow.prefix == prefix)) is None:
                break
        token = f"{prefix}_{secrets.token_urlsafe(32)}"
        s.add(ApiTokenRow(prefix=prefix, secret_hash=_sha256(token), user_id=row.id, name=label,
                          created_by=actor.username, created_at=now))
        audit(s, actor, "token_created", "ok", {"username": row.username, "prefix": prefix, "name": label},
              at=now, place_code=row.jurisdiction or None)
    return token


def token_prefix(token: str) -> str | None:
    """The visible prefix of a whole token (``yq_ab12cd34``), or None if it is not one."""
    return _token_prefix(token.strip())


def _token_prefix(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix, sep, _ = token.partition("_")[2].partition("_")
    return TOKEN_PREFIX + prefix if sep and len(prefix) == 8 else None


def resolve_token(
    store: Store,
    token: str | None,
    now: datetime | None = None,
    *,
    settings: AuthSettings | Settings | None = None,
    remote_addr: str | None = None,
) -> Actor | None:
    """The actor of a live API token (``Authorization: Bearer …``), or None."""
    if not token:
        return None
    prefix = _token_prefix(token.strip())
    if prefix is None:
        return None
    a = _auth(settings)
    now = _now(now)
    with store.reader() as s:
        row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.prefix == prefix))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, _sha256(token.strip())):
            return None
        user = s.get(UserRow, row.user_id)
        if user is None or not user.active:
            return None
        who = _actor_of(user, a, "token", remote_addr)
        stale = row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY
        tid = row.id
    if stale:
        with store.transaction() as s:
            s.execute(update(ApiTokenRow).where(ApiTokenRow.id == tid).values(last_used_at=now))
    return who


def revoke_token(store: Store, actor: Actor, prefix: str, *, now: datetime | None = None) -> TokenInfo:
    """Revoke a token by its visible prefix (an admin within its scope, or the token's owner)."""
    now = _now(now)
    p = (prefix or "").strip()
    p = _token_prefix(p) or p  # a whole token names its prefix too
    with store.transaction() as s:
        row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.prefix == p))
        user = s.get(UserRow, row.user_id) if row is not None else None
        own = user is not None and actor.user_id == user.id
        if row is None or user is None or not (
            own or (actor.can(Permission.USERS_MANAGE) and (actor.is_cli or within(user.jurisdiction,
                                                                                   actor.jurisdiction)))
        ):
            raise NotFound(f"令牌 {prefix} 不存在")
        if row.revoked_at is None:
            row.revoked_at = now
            audit(s, actor, "token_revoked", "ok", {"username": user.username, "prefix": row.prefix,
                                                    "name": row.name},
                  at=now, place_code=user.jurisdiction or None)
        return TokenInfo(row.prefix, user.username, row.name, row.created_by, row.created_at,
                         row.last_used_at, row.revoked_at)


def list_tokens(store: Store, actor: Actor, username: str | None = None) -> list[TokenInfo]:
    """Tokens of the users in the actor's scope (or its own), newest first."""
    q = select(ApiTokenRow, UserRow).join(UserRow, UserRow.id == ApiTokenRow.user_id)
    if actor.can(Permission.USERS_MANAGE):
        if not actor.is_cli and actor.jurisdiction:
            q = q.where(UserRow.jurisdiction.like(actor.jurisdiction + "%"))
    elif actor.user_id is not None:
        q = q.where(UserRow.id == actor.user_id)
    else:
        raise PermissionDenied("无权查看令牌")
    if username:
        q = q.where(UserRow.username == username)
    with store.reader() as s:
        return [TokenInfo(t.prefix, u.username, t.name, t.created_by, t.created_at, t.last_used_at, t.revoked_at)
                for t, u in s.execute(q.order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id.desc())).all()]


# Bootstrap ---------------------------------------------------------------------------------

def _write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read (mode 600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def ensure_initial_admin(store: Store, settings: Settings, *, now: datetime | None = None) -> str | None:
    """On the first start (no users at all) create ``admin`` at the root
    jurisdiction with a generated password, write it to
    ``<data_dir>/initial-admin-password`` (mode 600) and return it to print
    once; None when there are users already."""
    if count_users(store):
        return None
    try:
        _, pw = create_user(store, CLI_ACTOR, INITIAL_ADMIN, Role.ADMIN, settings.auth.root_jurisdiction,
                            display_name="系统管理员", settings=settings, now=now)
    except InvalidInput:
        return None  # another process created it first
    assert pw is not None
    _write_secret(settings.data_path(INITIAL_ADMIN_FILE),
                  f"# yuqing 初始管理员（首次登录须修改密码）\n用户名: {INITIAL_ADMIN}\n密码: {pw}\n")
    return pw


DEMO_ACCOUNTS: tuple[tuple[str, Role, str], ...] = (
    ("demo-admin", Role.ADMIN, "演示管理员"),
    ("demo-office", Role.OFFICE, "演示宣传办"),
    ("demo-duty", Role.DUTY, "演示值班员"),
    ("demo-analyst", Role.ANALYST, "演示分析员"),
)


def ensure_demo_accounts(store: Store, settings: Settings, *,
                         now: datetime | None = None) -> list[tuple[User, str]]:
    """With the demo source enabled, one account per role in the demo
    jurisdiction (``auth.demo_jurisdiction``, inside the root one). Returns the
    accounts created now with their passwords (to print; also written to
    ``<data_dir>/demo-accounts.txt``, mode 600); existing ones are left alone.
    Demo passwords need no change: a newcomer tries each role at once."""
    if not settings.demo_site.enabled:
        return []
    a = settings.auth
    j = a.demo_jurisdiction if within(a.demo_jurisdiction, a.root_jurisdiction) else a.root_jurisdiction
    with store.reader() as s:
        have = set(s.scalars(select(UserRow.username).where(
            UserRow.username.in_([n for n, _, _ in DEMO_ACCOUNTS]))).all())
    made: list[tuple[User, str]] = []
    for name, role, label in DEMO_ACCOUNTS:
        if name in have:
            continue
        pw = generate_password(max(16, a.password_min_length))
        try:
            user, _ = create_user(store, CLI_ACTOR, name, role, j, display_name=label, password=pw,
                                  settings=settings, now=now)
        except InvalidInput:
            continue
        made.append((user, pw))
    if made:
        path = settings.data_path(DEMO_ACCOUNTS_FILE)
        old = path.read_text(encoding="utf-8") if path.exists() else "# yuqing 演示账户（仅供演示）\n"
        _write_secret(path, old + "".join(
            f"{u.username}\t{u.role_label}\t属地 {_jurisdiction_label(u.jurisdiction)}\t密码: {pw}\n"
            for u, pw in made))
    return made


__all__ = [
    "ACTION_LABEL", "OUTCOMES", "OUTCOME_LABEL", "AccountDisabled", "AccountLocked", "AuditEntry", "AuthError", "InvalidCredentials",
    "InvalidInput", "NotFound", "PasswordPolicyError", "PermissionDenied", "SessionInfo", "TokenInfo", "User",
    "action_label", "actor_columns", "audit", "audit_actions", "audit_alone", "authenticate", "count_audit", "change_password", "check_password_policy", "count_users", "create_token",
    "create_user", "end_session", "ensure_demo_accounts", "ensure_initial_admin", "generate_password",
    "get_user", "hash_password", "list_audit", "list_tokens", "list_users", "login", "place_prefix",
    "reset_password", "resolve_session", "resolve_token", "revoke_token", "set_active", "token_prefix",
    "update_user",
]
