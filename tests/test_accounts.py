"""Accounts on SQLite and PostgreSQL (responder.accounts): lockout, sessions,
API tokens, password policy and forced change, an admin's grant limits, and
an append-only audit of every sign-in and account change.

Every test moves an injected clock (``now=``) instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from responder import accounts
from responder.accounts import (
    AccountDisabled,
    AccountLocked,
    AuthError,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    PasswordPolicyError,
    PermissionDenied,
)
from responder.permissions import CLI_ACTOR, Role
from responder.store import AUDIT_APPEND_ONLY, Audit, SessionRow, Store
from tests.fixtures.databases import sh
from yuqing.settings import AuthSettings

PW = "Yuqing-accounts-1"  # meets the default policy: 17 characters, 4 classes
T0 = sh(2026, 10, 1, 9, 0)
AUTH = AuthSettings()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        yield s


def _user(store: Store, name: str, role: Role = Role.DUTY, jurisdiction: str = "",
          password: str | None = PW, settings: AuthSettings = AUTH) -> accounts.User:
    user, generated = accounts.create_user(store, CLI_ACTOR, name, role, jurisdiction, password=password,
                                           settings=settings, now=T0)
    assert (generated is None) == (password is not None)
    return user


def _audit(store: Store, action: str | None = None) -> list[Audit]:
    with store.reader() as s:
        q = select(Audit).order_by(Audit.id)
        if action:
            q = q.where(Audit.action == action)
        return list(s.scalars(q))


def _fail(store: Store, name: str, at: datetime, password: str = "Wrong-password-9") -> AuthError:
    with pytest.raises(AuthError) as e:
        accounts.authenticate(store, name, password, "10.0.0.7", at, settings=AUTH)
    return e.value


# Lockout -----------------------------------------------------------------------------------

def test_lockout_after_failures_in_window_and_its_expiry(store: Store) -> None:
    _user(store, "zhang")
    for i in range(AUTH.lockout_failures - 1):
        assert isinstance(_fail(store, "zhang", T0 + timedelta(minutes=i)), InvalidCredentials)
    # The fifth failure within 10 minutes locks the account for 15 minutes...
    fifth = T0 + timedelta(minutes=AUTH.lockout_window_minutes - 1)
    assert isinstance(_fail(store, "zhang", fifth), InvalidCredentials)
    until = fifth + timedelta(minutes=AUTH.lockout_minutes)
    # ...even for the right password, until the lock runs out.
    locked = _fail(store, "zhang", until - timedelta(seconds=1), password=PW)
    assert isinstance(locked, AccountLocked) and locked.until == until
    assert "锁定" in str(locked)
    who = accounts.authenticate(store, "zhang", PW, "10.0.0.7", until, settings=AUTH)
    assert who.username == "zhang" and who.role is Role.DUTY

    rows = _audit(store, "lockout")
    assert len(rows) == 1 and rows[0].actor == "zhang" and rows[0].remote_addr == "10.0.0.7"
    assert rows[0].at == fifth
    denied = _audit(store, "login")
    outcomes = [(r.outcome, r.detail.get("reason")) for r in denied]
    assert outcomes == [("failed", "wrong password")] * AUTH.lockout_failures + [
        ("denied", "locked"), ("ok", None)]

    # After the lock the count starts again: one failure does not lock.
    _fail(store, "zhang", until + timedelta(minutes=1))
    accounts.authenticate(store, "zhang", PW, None, until + timedelta(minutes=2), settings=AUTH)


def test_failures_spread_beyond_the_window_do_not_lock(store: Store) -> None:
    _user(store, "li")
    n = AUTH.lockout_failures - 1
    for i in range(n):
        _fail(store, "li", T0 + timedelta(seconds=i))
    # The window (10 min from the first failure) has passed: a new window starts.
    later = T0 + timedelta(minutes=AUTH.lockout_window_minutes, seconds=1)
    for i in range(n):
        assert isinstance(_fail(store, "li", later + timedelta(seconds=i)), InvalidCredentials)
    accounts.authenticate(store, "li", PW, None, later + timedelta(seconds=n), settings=AUTH)
    assert _audit(store, "lockout") == []


def test_success_resets_the_failure_count(store: Store) -> None:
    _user(store, "wang")
    for i in range(AUTH.lockout_failures - 1):
        _fail(store, "wang", T0 + timedelta(seconds=i))
    accounts.authenticate(store, "wang", PW, None, T0 + timedelta(seconds=30), settings=AUTH)
    for i in range(AUTH.lockout_failures - 1):
        assert isinstance(_fail(store, "wang", T0 + timedelta(minutes=1, seconds=i)), InvalidCredentials)
    accounts.authenticate(store, "wang", PW, None, T0 + timedelta(minutes=2), settings=AUTH)


def test_unknown_user_disabled_user_and_overlong_password(store: Store) -> None:
    _user(store, "zhao")
    assert isinstance(_fail(store, "nobody", T0, password=PW), InvalidCredentials)
    unknown = _audit(store, "login")[-1]
    assert (unknown.actor, unknown.outcome, unknown.detail["reason"]) == ("nobody", "failed", "unknown user")
    # A password longer than the limit is never cut down to a stored one.
    long_pw = "Aa1-" + "x" * (accounts.MAX_PASSWORD_CHARS - 4)
    _user(store, "long", password=long_pw)
    accounts.authenticate(store, "long", long_pw, None, T0, settings=AUTH)
    assert isinstance(_fail(store, "long", T0, password=long_pw + "y"), InvalidCredentials)
    accounts.set_active(store, CLI_ACTOR, "zhao", False, now=T0)
    assert isinstance(_fail(store, "zhao", T0 + timedelta(seconds=1), password=PW), AccountDisabled)
    assert _audit(store, "login")[-1].outcome == "denied"


# Sessions ----------------------------------------------------------------------------------

def test_session_idle_expiry(store: Store) -> None:
    _user(store, "duty1")
    token, who = accounts.login(store, "duty1", PW, "10.0.0.8", T0, settings=AUTH)
    assert who.csrf_token and who.session_id and who.session_id != token
    idle = timedelta(minutes=AUTH.idle_minutes)
    # Each request moves the idle limit on.
    at = T0
    for _ in range(3):
        at += idle - timedelta(seconds=30)
        me = accounts.resolve_session(store, token, at, settings=AUTH)
        assert me is not None and me.username == "duty1" and me.csrf_token == who.csrf_token
    assert accounts.resolve_session(store, token, at + idle, settings=AUTH) is None
    # An unknown token, or none, is no session.
    assert accounts.resolve_session(store, "not-a-token", at, settings=AUTH) is None
    assert accounts.resolve_session(store, None, at, settings=AUTH) is None


def test_session_absolute_expiry_despite_activity(store: Store) -> None:
    _user(store, "duty2")
    token, _ = accounts.login(store, "duty2", PW, None, T0, settings=AUTH)
    end = T0 + timedelta(hours=AUTH.absolute_hours)
    at = T0
    while at + timedelta(minutes=20) < end:
        at += timedelta(minutes=20)
        assert accounts.resolve_session(store, token, at, settings=AUTH) is not None
    assert accounts.resolve_session(store, token, end - timedelta(seconds=1), settings=AUTH) is not None
    assert accounts.resolve_session(store, token, end, settings=AUTH) is None


def test_short_timeouts_from_settings(store: Store) -> None:
    short = AuthSettings(idle_minutes=1, absolute_hours=0.05)  # 3 minutes
    _user(store, "duty3", settings=short)
    token, _ = accounts.login(store, "duty3", PW, None, T0, settings=short)
    for seconds in (50, 100, 150, 179):
        assert accounts.resolve_session(store, token, T0 + timedelta(seconds=seconds), settings=short)
    assert accounts.resolve_session(store, token, T0 + timedelta(seconds=180), settings=short) is None
    token, _ = accounts.login(store, "duty3", PW, None, T0, settings=short)
    assert accounts.resolve_session(store, token, T0 + timedelta(seconds=60), settings=short) is None


def test_logout_revokes_and_is_audited(store: Store) -> None:
    _user(store, "duty4", jurisdiction="3401")
    token, _ = accounts.login(store, "duty4", PW, "10.0.0.9", T0, settings=AUTH)
    assert accounts.end_session(store, token, T0 + timedelta(minutes=1))
    assert accounts.resolve_session(store, token, T0 + timedelta(minutes=2), settings=AUTH) is None
    assert not accounts.end_session(store, token, T0 + timedelta(minutes=3))  # once only
    (row,) = _audit(store, "logout")
    assert (row.actor, row.outcome, row.actor_role, row.actor_jurisdiction, row.place_code) == (
        "duty4", "ok", "duty", "3401", "3401")


def test_disabling_a_user_ends_its_sessions_and_tokens(store: Store) -> None:
    _user(store, "duty5")
    token, _ = accounts.login(store, "duty5", PW, None, T0, settings=AUTH)
    api = accounts.create_token(store, CLI_ACTOR, "duty5", "脚本", now=T0)
    accounts.set_active(store, CLI_ACTOR, "duty5", False, now=T0 + timedelta(minutes=1))
    at = T0 + timedelta(minutes=2)
    assert accounts.resolve_session(store, token, at, settings=AUTH) is None
    assert accounts.resolve_token(store, api, at, settings=AUTH) is None
    accounts.set_active(store, CLI_ACTOR, "duty5", True, now=at)
    # Enabling again restores the token, not the ended session.
    assert accounts.resolve_token(store, api, at, settings=AUTH) is not None
    assert accounts.resolve_session(store, token, at, settings=AUTH) is None
    assert [r.action for r in _audit(store) if r.action.startswith("user_")] == [
        "user_created", "user_disabled", "user_enabled"]


# API tokens --------------------------------------------------------------------------------

def test_token_use_revoke_and_refusal(store: Store) -> None:
    _user(store, "analyst1", Role.ANALYST, "3401")
    tok = accounts.create_token(store, CLI_ACTOR, "analyst1", "导出脚本", now=T0)
    assert tok.startswith(accounts.TOKEN_PREFIX)
    who = accounts.resolve_token(store, tok, T0, settings=AUTH, remote_addr="10.1.1.1")
    assert who is not None and (who.username, who.role, who.via, who.jurisdiction) == (
        "analyst1", Role.ANALYST, "token", "3401")
    (info,) = accounts.list_tokens(store, CLI_ACTOR, "analyst1")
    assert tok.startswith(info.prefix + "_") and info.name == "导出脚本" and info.revoked_at is None
    prefix = info.prefix
    # The right prefix with another secret, or a token cut short, is refused.
    assert accounts.resolve_token(store, prefix + "_" + "A" * 43, T0, settings=AUTH) is None
    assert accounts.resolve_token(store, tok[:-1], T0, settings=AUTH) is None
    assert accounts.resolve_token(store, "Bearer " + tok, T0, settings=AUTH) is None

    revoked = accounts.revoke_token(store, CLI_ACTOR, prefix, now=T0 + timedelta(minutes=5))
    assert revoked.revoked_at == T0 + timedelta(minutes=5)
    assert accounts.resolve_token(store, tok, T0 + timedelta(minutes=6), settings=AUTH) is None
    with pytest.raises(NotFound):
        accounts.revoke_token(store, CLI_ACTOR, "yq_00000000", now=T0)

    created, gone = _audit(store, "token_created"), _audit(store, "token_revoked")
    assert len(created) == 1 and created[0].detail == {"username": "analyst1", "prefix": prefix,
                                                       "name": "导出脚本"}
    assert len(gone) == 1 and gone[0].detail["prefix"] == prefix and gone[0].actor == "cli"
    # Revoking again changes nothing and writes no second row.
    accounts.revoke_token(store, CLI_ACTOR, prefix, now=T0 + timedelta(minutes=7))
    assert len(_audit(store, "token_revoked")) == 1


def test_tokens_for_oneself_and_within_an_admins_scope(store: Store) -> None:
    _user(store, "a-3401", Role.ADMIN, "3401")
    _user(store, "d-3401", Role.DUTY, "340104")
    _user(store, "d-3402", Role.DUTY, "3402")
    admin = accounts.authenticate(store, "a-3401", PW, None, T0, settings=AUTH)
    duty = accounts.authenticate(store, "d-3401", PW, None, T0, settings=AUTH)
    accounts.create_token(store, admin, "d-3401", now=T0)
    mine = accounts.create_token(store, duty, "d-3401", now=T0)
    with pytest.raises(NotFound):
        accounts.create_token(store, admin, "d-3402", now=T0)
    with pytest.raises(NotFound):
        accounts.create_token(store, duty, "a-3401", now=T0)
    other = accounts.create_token(store, CLI_ACTOR, "d-3402", now=T0)
    with pytest.raises(NotFound):  # a neighbour's token does not exist for this admin
        accounts.revoke_token(store, admin, other, now=T0)
    accounts.revoke_token(store, duty, mine, now=T0)  # its owner revokes it
    assert accounts.resolve_token(store, mine, T0, settings=AUTH) is None
    assert accounts.resolve_token(store, other, T0, settings=AUTH) is not None
    assert {t.username for t in accounts.list_tokens(store, admin)} == {"d-3401"}


# No plaintext secret in the store ----------------------------------------------------------

def test_no_plaintext_password_or_token_anywhere_in_the_store(store: Store) -> None:
    secrets_: list[str] = []
    _user(store, "plain1", password=PW)
    secrets_.append(PW)
    _, generated = accounts.create_user(store, CLI_ACTOR, "plain2", Role.OFFICE, "34", now=T0)
    assert generated
    secrets_.append(generated)
    sess, who = accounts.login(store, "plain2", generated, None, T0, settings=AUTH)
    secrets_.append(sess)
    new = "Changed-password-2"
    accounts.change_password(store, who, generated, new, settings=AUTH, now=T0)
    secrets_.append(new)
    reset = accounts.reset_password(store, CLI_ACTOR, "plain1", now=T0)
    secrets_.append(reset)
    secrets_.append(accounts.create_token(store, CLI_ACTOR, "plain2", "集成", now=T0))
    _fail(store, "plain1", T0, password="Typed-by-mistake-3")
    secrets_.append("Typed-by-mistake-3")

    tables = inspect(store.engine).get_table_names()
    assert {"users", "sessions", "api_tokens", "audit"} <= set(tables)
    cells = 0
    with store.engine.connect() as conn:
        for table in tables:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    cells += 1
                    v = str(value)
                    for secret in secrets_:
                        assert secret not in v, f"{table}: a secret in plain text"
        hashes = list(conn.execute(text("SELECT password_hash FROM users")).scalars())
    assert cells > 50
    assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)


# Password policy and forced change ---------------------------------------------------------

@pytest.mark.parametrize(("password", "why"), [
    ("Short-1", "至少 10 个字符"),
    ("alllowercaseonly", "至少 3 类"),
    ("lowercase123456", "至少 3 类"),
    ("", "至少 10 个字符"),
])
def test_password_policy_refuses(password: str, why: str) -> None:
    with pytest.raises(PasswordPolicyError) as e:
        accounts.check_password_policy(password, AUTH)
    assert why in str(e.value)


@pytest.mark.parametrize("password", ["Lowercase123", "lowercase-123", "UPPER-lower!", "密码很长很长-Abc"])
def test_password_policy_accepts(password: str) -> None:
    accounts.check_password_policy(password, AUTH)


def test_policy_settings_and_generated_passwords() -> None:
    strict = AuthSettings(password_min_length=20, password_classes=4)
    with pytest.raises(PasswordPolicyError):
        accounts.check_password_policy("Abcdefgh-12345678", strict)  # 17 < 20
    accounts.check_password_policy("Abcdefgh-1234567890z", strict)
    for _ in range(50):
        accounts.check_password_policy(accounts.generate_password(20), strict)


def test_weak_password_creates_no_user(store: Store) -> None:
    with pytest.raises(PasswordPolicyError):
        accounts.create_user(store, CLI_ACTOR, "weak", Role.DUTY, "", password="weakpass", now=T0)
    assert accounts.count_users(store) == 0
    # The refusal is audited (failed, with the policy's message), never the password itself.
    (row,) = _audit(store, "user_created")
    assert (row.outcome, row.actor, row.detail["request"]["username"]) == ("failed", "cli", "weak")
    assert "密码不符合要求" in row.detail["reason"] and "weakpass" not in str(row.detail)


def test_generated_password_forces_a_change(store: Store) -> None:
    user, generated = accounts.create_user(store, CLI_ACTOR, "new1", Role.DUTY, "3401", now=T0)
    assert generated and user.must_change
    t1, who = accounts.login(store, "new1", generated, None, T0, settings=AUTH)
    assert who.must_change
    t2, _ = accounts.login(store, "new1", generated, None, T0, settings=AUTH)  # another browser
    with pytest.raises(AuthError, match="原密码错误"):
        accounts.change_password(store, who, "wrong", "Brand-new-pass-1", settings=AUTH, now=T0)
    with pytest.raises(PasswordPolicyError, match="不能与原密码相同"):
        accounts.change_password(store, who, generated, generated, settings=AUTH, now=T0)
    with pytest.raises(PasswordPolicyError):
        accounts.change_password(store, who, generated, "weak", settings=AUTH, now=T0)
    accounts.change_password(store, who, generated, "Brand-new-pass-1", settings=AUTH, now=T0)
    at = T0 + timedelta(minutes=1)
    me = accounts.resolve_session(store, t1, at, settings=AUTH)
    assert me is not None and not me.must_change  # this session stays, the change is done
    assert accounts.resolve_session(store, t2, at, settings=AUTH) is None  # the other one ends
    assert isinstance(_fail(store, "new1", at, password=generated), InvalidCredentials)
    changed = _audit(store, "password_changed")
    assert [r.outcome for r in changed] == ["failed", "ok"] and all(r.actor == "new1" for r in changed)


def test_reset_forces_a_change_ends_sessions_and_lifts_the_lock(store: Store) -> None:
    _user(store, "reset1")
    token, _ = accounts.login(store, "reset1", PW, None, T0, settings=AUTH)
    for i in range(AUTH.lockout_failures):
        _fail(store, "reset1", T0 + timedelta(seconds=i))
    assert isinstance(_fail(store, "reset1", T0 + timedelta(minutes=1), password=PW), AccountLocked)
    pw = accounts.reset_password(store, CLI_ACTOR, "reset1", now=T0 + timedelta(minutes=2))
    at = T0 + timedelta(minutes=3)
    assert accounts.resolve_session(store, token, at, settings=AUTH) is None
    who = accounts.authenticate(store, "reset1", pw, None, at, settings=AUTH)
    assert who.must_change
    (row,) = _audit(store, "password_reset")
    assert row.detail == {"username": "reset1"} and row.actor == "cli"


# Admins: users within their own jurisdiction -----------------------------------------------

def test_admin_never_grants_above_its_own_jurisdiction(store: Store) -> None:
    _user(store, "admin-hf", Role.ADMIN, "3401")
    admin = accounts.authenticate(store, "admin-hf", PW, "10.2.2.2", T0, settings=AUTH)
    user, _ = accounts.create_user(store, admin, "duty-sh", Role.DUTY, "340104", password=PW, now=T0)
    assert user.jurisdiction == "340104"
    # A full six-digit city code is the same prefix as 3401.
    assert accounts.create_user(store, admin, "off-hf", Role.OFFICE, "340100", password=PW, now=T0)[0] \
        .jurisdiction == "3401"
    for above in ("34", "", "3402", "340200"):
        with pytest.raises(PermissionDenied, match="无权授予属地"):
            accounts.create_user(store, admin, f"x{above}", Role.DUTY, above, password=PW, now=T0)
        with pytest.raises(PermissionDenied):
            accounts.update_user(store, admin, "duty-sh", jurisdiction=above, now=T0)
    assert {u.username for u in accounts.list_users(store, CLI_ACTOR)} == {"admin-hf", "duty-sh", "off-hf"}
    assert accounts.get_user(store, CLI_ACTOR, "duty-sh").jurisdiction == "340104"
    denied = [r for r in _audit(store) if r.outcome == "denied"]
    assert len(denied) == 8 and all(r.actor == "admin-hf" and r.remote_addr == "10.2.2.2" for r in denied)
    assert {r.action for r in denied} == {"user_created", "user_updated"}

    # Within its jurisdiction it changes roles (admin included) and places.
    u = accounts.update_user(store, admin, "duty-sh", role=Role.ANALYST, jurisdiction="3401", now=T0)
    assert (u.role, u.jurisdiction) == (Role.ANALYST, "3401")
    (upd,) = [r for r in _audit(store, "user_updated") if r.outcome == "ok"]
    assert upd.detail["changes"] == {"role": ["duty", "analyst"], "jurisdiction": ["340104", "3401"]}
    with pytest.raises(InvalidInput, match="自己"):
        accounts.update_user(store, admin, "admin-hf", jurisdiction="340104", now=T0)


def test_users_outside_an_admins_scope_do_not_exist_for_it(store: Store) -> None:
    _user(store, "admin-hf", Role.ADMIN, "3401")
    _user(store, "admin-ah", Role.ADMIN, "34")
    _user(store, "duty-wh", Role.DUTY, "3402")
    _user(store, "duty-hf", Role.DUTY, "340111")
    admin = accounts.authenticate(store, "admin-hf", PW, None, T0, settings=AUTH)
    assert [u.username for u in accounts.list_users(store, admin)] == ["admin-hf", "duty-hf"]
    for name in ("admin-ah", "duty-wh", "nobody"):
        with pytest.raises(NotFound, match="不存在"):
            accounts.get_user(store, admin, name)
        with pytest.raises(NotFound):
            accounts.set_active(store, admin, name, False, now=T0)
        with pytest.raises(NotFound):
            accounts.reset_password(store, admin, name, now=T0)
        with pytest.raises(NotFound):
            accounts.update_user(store, admin, name, role=Role.DUTY, now=T0)
    assert all(u.active for u in accounts.list_users(store, CLI_ACTOR))
    accounts.set_active(store, admin, "duty-hf", False, now=T0)
    with pytest.raises(InvalidInput):
        accounts.set_active(store, admin, "admin-hf", False, now=T0)


def test_only_admins_manage_users(store: Store) -> None:
    _user(store, "office1", Role.OFFICE, "")
    office = accounts.authenticate(store, "office1", PW, None, T0, settings=AUTH)
    with pytest.raises(PermissionDenied):
        accounts.create_user(store, office, "x1", Role.DUTY, "", password=PW, now=T0)
    with pytest.raises(PermissionDenied):
        accounts.list_users(store, office)
    with pytest.raises(PermissionDenied):
        accounts.reset_password(store, office, "office1", now=T0)
    assert accounts.get_user(store, office, "office1").username == "office1"  # itself


def test_root_jurisdiction_bounds_even_the_cli(store: Store) -> None:
    anhui = AuthSettings(root_jurisdiction="34")
    with pytest.raises(InvalidInput, match="不在本系统的属地"):
        accounts.create_user(store, CLI_ACTOR, "js", Role.DUTY, "32", password=PW, settings=anhui, now=T0)
    with pytest.raises(InvalidInput, match="属地代码"):
        accounts.create_user(store, CLI_ACTOR, "bad", Role.DUTY, "341", password=PW, settings=anhui, now=T0)
    with pytest.raises(InvalidInput, match="角色"):
        accounts.create_user(store, CLI_ACTOR, "bad", "boss", "34", password=PW, settings=anhui, now=T0)
    _user(store, "twice")
    with pytest.raises(InvalidInput, match="已存在"):
        _user(store, "twice")


# The audit ---------------------------------------------------------------------------------

def test_audit_rows_cannot_be_updated_deleted_or_truncated(store: Store, store_url: str) -> None:
    _user(store, "audited")
    _fail(store, "audited", T0)
    before = [(r.id, r.action, r.outcome, r.actor) for r in _audit(store)]
    assert len(before) == 2
    statements = ["UPDATE audit SET actor = 'someone else'", "UPDATE audit SET outcome = 'ok'",
                  "DELETE FROM audit", f"DELETE FROM audit WHERE id = {before[0][0]}"]
    if store.dialect == "postgresql":
        statements.append("TRUNCATE audit")
    for sql in statements:
        with pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY), store.transaction() as s:
            s.execute(text(sql))
    # Through the ORM too.
    with pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY), store.transaction() as s:
        row = s.get(Audit, before[0][0])
        assert row is not None
        row.actor = "forged"
    with pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY), store.transaction() as s:
        row = s.get(Audit, before[0][0])
        s.delete(row)
    # Opening the store again (a restart) keeps the triggers and adds none twice.
    with Store(store_url) as again, pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY), \
            again.transaction() as s:
        s.execute(text("DELETE FROM audit"))
    assert [(r.id, r.action, r.outcome, r.actor) for r in _audit(store)] == before
    # Inserting stays allowed, and the rest of the store is not affected.
    with store.transaction() as s:
        accounts.audit(s, CLI_ACTOR, "checked", "ok", at=T0)
        s.execute(text("DELETE FROM sessions"))
    assert len(_audit(store)) == 3


def test_audit_of_sign_in_and_account_changes(store: Store) -> None:
    _user(store, "boss", Role.ADMIN, "34")
    admin = accounts.authenticate(store, "boss", PW, "10.3.3.3", T0, settings=AUTH)
    accounts.create_user(store, admin, "clerk", Role.DUTY, "3401", password=PW, now=T0)
    accounts.update_user(store, admin, "clerk", role=Role.ANALYST, now=T0)
    accounts.set_active(store, admin, "clerk", False, now=T0)
    accounts.set_active(store, admin, "clerk", True, now=T0)
    accounts.reset_password(store, admin, "clerk", now=T0)
    tok = accounts.create_token(store, admin, "clerk", "报表", now=T0)
    accounts.revoke_token(store, admin, tok, now=T0)
    _fail(store, "clerk", T0, password=PW)  # the reset made PW wrong
    got = [(r.action, r.outcome, r.actor, r.actor_role, r.actor_jurisdiction, r.remote_addr)
           for r in _audit(store)]
    by_admin = ("boss", "admin", "34", "10.3.3.3")
    assert got == [
        ("user_created", "ok", "cli", "cli", None, None),
        ("login", "ok", *by_admin),
        ("user_created", "ok", *by_admin),
        ("user_updated", "ok", *by_admin),
        ("user_disabled", "ok", *by_admin),
        ("user_enabled", "ok", *by_admin),
        ("password_reset", "ok", *by_admin),
        ("token_created", "ok", *by_admin),
        ("token_revoked", "ok", *by_admin),
        ("login", "failed", "clerk", None, None, "10.0.0.7"),
    ]
    # Each row about clerk names the place it is about: an admin of 3401 sees them.
    assert {r.place_code for r in _audit(store)[2:]} == {"3401"}


def test_audit_view_is_scoped_and_filtered(store: Store) -> None:
    _user(store, "root-admin", Role.ADMIN, "")
    _user(store, "hf-admin", Role.ADMIN, "3401")
    _user(store, "hf-duty", Role.DUTY, "340104")
    _user(store, "wh-duty", Role.DUTY, "3402")
    for name in ("hf-duty", "wh-duty"):
        accounts.authenticate(store, name, PW, None, T0 + timedelta(days=1), settings=AUTH)
    _fail(store, "ghost", T0 + timedelta(days=1))
    hf = accounts.authenticate(store, "hf-admin", PW, None, T0 + timedelta(days=2), settings=AUTH)
    root = accounts.authenticate(store, "root-admin", PW, None, T0 + timedelta(days=2), settings=AUTH)

    seen = accounts.list_audit(store, hf)
    assert {e.actor for e in seen} == {"cli", "hf-admin", "hf-duty"}
    assert all(e.place_code and e.place_code.startswith("3401") for e in seen)
    everything = accounts.list_audit(store, root)
    assert {e.actor for e in everything} >= {"wh-duty", "ghost", "hf-duty"}
    assert [e.actor for e in accounts.list_audit(store, root, user="ghost")] == ["ghost"]
    logins = accounts.list_audit(store, root, action="login")
    assert len(logins) == 5 and logins == sorted(logins, key=lambda e: e.at, reverse=True)
    # Dates are days in Asia/Shanghai, both ends included.
    day2 = (T0 + timedelta(days=1)).date()
    assert {e.actor for e in accounts.list_audit(store, root, date_from=day2, date_to=day2)} == {
        "hf-duty", "wh-duty", "ghost"}
    with pytest.raises(PermissionDenied):
        accounts.list_audit(store, accounts.authenticate(store, "hf-duty", PW, None, T0, settings=AUTH))


def test_session_rows_hold_only_hashes(store: Store) -> None:
    _user(store, "hashonly")
    token, who = accounts.login(store, "hashonly", PW, None, T0, settings=AUTH)
    with store.reader() as s:
        (row,) = s.scalars(select(SessionRow))
    assert row.id == who.session_id != token and len(row.id) == 64
    assert row.expires_at == T0 + timedelta(hours=AUTH.absolute_hours)


def test_retention_cannot_be_lowered() -> None:
    with pytest.raises(ValueError, match="180"):
        AuthSettings(audit_retention_days=90)
    assert AuthSettings(audit_retention_days=365).audit_retention_days == 365


def test_readme_shows_the_permission_table() -> None:
    from pathlib import Path

    from responder.permissions import permissions_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- permissions table:")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of permissions table -->", start)
    assert readme[start:end] == permissions_markdown()
