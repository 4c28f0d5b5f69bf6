"""The admin pages (issue 14 parts 7 and 8; web/routes/admin.py over
responder.accounts): users within the admin's own jurisdiction — listed,
created, changed, disabled, enabled, their passwords reset — and the audit
within it, filtered and paged. A user outside the admin's jurisdiction is
404; a grant above its own is refused with the domain's Chinese message;
every change and every refusal is audited under the admin; forms need the
session's CSRF token; what users typed is escaped."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from responder import accounts
from responder.permissions import CLI_ACTOR, Actor, Role
from responder.store import Audit, Store, UserRow
from tests.fixtures.auth import CSRF_HEADER, PASSWORD, add_user, client_as
from tests.fixtures.common import Clock
from tests.fixtures.databases import sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
ADMIN = "admin-hf"  # 系统管理员 at 合肥市 3401
HOSTILE = "<script>alert(1)</script>"
MARKER_3402 = "芜湖专属标记"



@pytest.fixture
def site(tmp_path, settings, monkeypatch):
    """Users at 3401 (and below) and at 3402; the app on a clock the test moves."""
    # Still Argon2id, at a cost that keeps the many sign-ins and resets quick.
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    settings.auth.root_jurisdiction = "34"
    store = Store(f"sqlite:///{tmp_path / 'admin.db'}")
    clock = Clock(T0)
    for name, role, j in ((ADMIN, Role.ADMIN, "3401"), ("admin-wh", Role.ADMIN, "3402"),
                          ("duty-hf", Role.DUTY, "340104"), ("analyst-hf", Role.ANALYST, "3401"),
                          ("duty-wh", Role.DUTY, "3402"), ("admin-ah", Role.ADMIN, "34")):
        add_user(store, name, role, j, settings=settings, display_name=f"名-{name}", department=f"部门-{name}")
    app = create_app(settings, store=store, now=clock)
    yield app, store, clock
    store.close()


def _admin(app: Any, via: str = "token", name: str = ADMIN) -> TestClient:
    return client_as(app, name, Role.ADMIN, "3401", via=via)


def _user(store: Store, name: str) -> UserRow | None:
    with store.reader() as s:
        row = s.scalar(select(UserRow).where(UserRow.username == name))
        if row is not None:
            s.expunge(row)
        return row


def _rows(store: Store, *actions: str) -> list[Audit]:
    with store.reader() as s:
        rows = list(s.scalars(select(Audit).where(Audit.action.in_(actions)).order_by(Audit.id)))
        for r in rows:
            s.expunge(r)
        return rows


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def _session_page(app: Any, path: str) -> tuple[TestClient, str]:
    """The admin signed in on a session, the page at ``path`` and its form's CSRF token."""
    c = _admin(app, via="session")
    del c.headers[CSRF_HEADER]  # forms carry the token as a field, like a browser's
    page = c.get(path)
    assert page.status_code == 200, page.text[:300]
    return c, _csrf(page.text)


# --------------------------------------------------------------------------- the list


def test_admin_lists_only_users_within_its_jurisdiction(site) -> None:
    app, store, clock = site
    c = _admin(app)
    j = c.get("/api/admin/users").json()
    assert {u["username"] for u in j["users"]} == {ADMIN, "duty-hf", "analyst-hf"} and j["count"] == 3
    duty = next(u for u in j["users"] if u["username"] == "duty-hf")
    assert (duty["role"], duty["role_label"], duty["jurisdiction"], duty["jurisdiction_label"]) == (
        "duty", "值班员", "340104", "安徽省合肥市蜀山区（340104）")
    assert duty["created_at"].endswith("+08:00") and duty["changed_at"].endswith("+08:00")
    assert (duty["active"], duty["must_change"], duty["department"]) == (True, False, "部门-duty-hf")

    page = c.get("/admin/users")
    assert page.status_code == 200
    for name in (ADMIN, "duty-hf", "analyst-hf", "名-duty-hf", "值班员", "分析员", "安徽省合肥市蜀山区（340104）",
                 "部门-duty-hf"):
        assert name in page.text, name
    for other in ("duty-wh", "admin-wh", "admin-ah", "部门-duty-wh"):
        assert other not in page.text, other
    # Times in Asia/Shanghai.
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", page.text)

    # The root admin sees everyone in the deployment.
    root = client_as(app, "admin-ah", Role.ADMIN, "34")
    assert {u["username"] for u in root.get("/api/admin/users").json()["users"]} >= {"duty-wh", "duty-hf"}


# --------------------------------------------------------------------------- creating


def test_create_within_the_own_jurisdiction_never_above(site) -> None:
    app, store, clock = site
    c = _admin(app)
    r = c.post("/api/admin/users", json={"username": "new-sh", "role": "duty", "jurisdiction": "340104",
                                         "display_name": "新值班员", "department": "蜀山区应急管理局"})
    assert r.status_code == 201, r.text
    j = r.json()
    assert j["user"]["jurisdiction"] == "340104" and j["user"]["must_change"] is True
    pw = j["password"]
    assert pw and len(pw) >= 16
    row = _user(store, "new-sh")
    assert row is not None and pw not in row.password_hash and row.password_hash.startswith("$argon2id$")

    for above, name in (("34", "new-ah"), ("3402", "new-wh"), ("340200", "new-wh2")):
        r = c.post("/api/admin/users", json={"username": name, "role": "duty", "jurisdiction": above})
        assert r.status_code == 422, (above, r.text)
        assert r.json()["detail"] == (f"无权授予属地 {above[:4]}：只能在本人属地 3401 及其下级范围内管理用户")
        assert _user(store, name) is None
    # Outside the deployment (root 34) altogether: everything, or another province.
    for outside, name in (("", "new-root"), ("32", "new-js")):
        r = c.post("/api/admin/users", json={"username": name, "role": "duty", "jurisdiction": outside})
        assert r.status_code == 422 and "不在本系统的属地 34 之内" in r.json()["detail"]
        assert _user(store, name) is None

    created = _rows(store, "user_created")
    assert [(a.outcome, a.actor) for a in created if a.actor == ADMIN] == [
        ("ok", ADMIN), ("denied", ADMIN), ("denied", ADMIN), ("denied", ADMIN), ("failed", ADMIN), ("failed", ADMIN)]
    ok = next(a for a in created if a.actor == ADMIN and a.outcome == "ok")
    assert (ok.actor_role, ok.actor_jurisdiction, ok.place_code) == ("admin", "3401", "340104")
    assert pw not in str(ok.detail) and ok.detail["password"] == "generated"


def test_create_on_the_page_shows_the_password_once(site) -> None:
    app, store, clock = site
    c, token = _session_page(app, "/admin/users")
    r = c.post("/admin/users", data={"csrf_token": token, "username": "form-sh", "display_name": "表单用户",
                                     "role": "analyst", "jurisdiction": "340104", "department": ""})
    assert r.status_code == 200, r.text[:500]
    m = re.search(r'<code class="password">([^<]+)</code>', r.text)
    assert m and "已创建用户" in r.text
    pw = m.group(1)
    row = _user(store, "form-sh")
    assert row is not None and (row.role, row.jurisdiction, row.must_change) == ("analyst", "340104", True)
    again = c.get("/admin/users/form-sh")
    assert again.status_code == 200 and pw not in again.text and "表单用户" in again.text

    # Above the own jurisdiction: the page again, with the domain's message; nothing created.
    r = c.post("/admin/users", data={"csrf_token": token, "username": "form-ah", "role": "duty",
                                     "jurisdiction": "34"})
    assert r.status_code == 422 and "无权授予属地" in r.text and 'value="form-ah"' in r.text
    assert _user(store, "form-ah") is None


@pytest.mark.parametrize("body, message", [
    ({"role": "boss"}, "角色 'boss' 无效"),
    ({"jurisdiction": "34a1"}, "属地代码"),
    ({"jurisdiction": "340"}, "属地代码"),
    ({"username": "a b"}, "用户名"),
    ({"password": "weakpass"}, "密码不符合要求"),
    ({"display_name": "名" * 101}, "姓名过长"),
])
def test_bad_input_is_refused_in_chinese_and_changes_nothing(site, body: dict[str, str], message: str) -> None:
    app, store, clock = site
    c = _admin(app)
    want = {"username": "bad-input", "role": "duty", "jurisdiction": "3401", **body}
    r = c.post("/api/admin/users", json=want)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert _user(store, want["username"]) is None
    (row,) = [a for a in _rows(store, "user_created") if a.actor == ADMIN]
    assert row.outcome == "failed" and "weakpass" not in str(row.detail)
    # An update with the same bad field changes nothing either.
    if set(body) <= {"role", "jurisdiction", "display_name"}:
        before = _user(store, "duty-hf")
        r = c.post("/api/admin/users/duty-hf", json=body)
        assert r.status_code == 422 and message in r.json()["detail"]
        after = _user(store, "duty-hf")
        assert before is not None and after is not None
        assert (after.role, after.jurisdiction, after.display_name) == (before.role, before.jurisdiction,
                                                                       before.display_name)


# --------------------------------------------------------------------------- out of scope


def test_a_user_outside_the_admins_jurisdiction_is_not_found(site) -> None:
    app, store, clock = site
    c = _admin(app)
    before = _user(store, "duty-wh")
    unknown = c.get("/api/admin/users/nobody-here")
    assert unknown.status_code == 404
    for name in ("duty-wh", "admin-ah", "nobody-here"):
        q = quote(name)
        page = c.get(f"/admin/users/{q}")
        assert page.status_code == 404 and "text/html" in page.headers["content-type"], name
        assert f"用户 {name} 不存在" in page.text
        api = c.get(f"/api/admin/users/{q}")
        # The same answer as an unknown user's, the name apart.
        assert api.status_code == 404 and api.json() == {"detail": f"用户 {name} 不存在"}
        for path, body in ((f"/api/admin/users/{q}", {"display_name": "改了", "jurisdiction": "3401"}),
                           (f"/api/admin/users/{q}/disable", None), (f"/api/admin/users/{q}/enable", None),
                           (f"/api/admin/users/{q}/reset-password", None)):
            r = c.post(path, json=body)
            assert r.status_code == 404 and r.json() == {"detail": f"用户 {name} 不存在"}, (path, r.text)
        for path in (f"/admin/users/{q}", f"/admin/users/{q}/disable", f"/admin/users/{q}/enable",
                     f"/admin/users/{q}/reset-password"):
            r = c.post(path, data={"display_name": "改了"}, follow_redirects=False)
            assert r.status_code == 404 and f"用户 {name} 不存在" in r.text, (path, r.status_code)
    after = _user(store, "duty-wh")
    assert before is not None and after is not None
    assert (after.active, after.display_name, after.password_hash, after.must_change) == (
        before.active, before.display_name, before.password_hash, before.must_change)
    # Every refusal is audited under the admin, at its own jurisdiction, naming only what it asked.
    denied = [a for a in _rows(store, "user_updated", "user_disabled", "user_enabled", "password_reset")
              if a.actor == ADMIN]
    assert len(denied) == 3 * 8 and {a.outcome for a in denied} == {"denied"}
    assert {a.place_code for a in denied} == {"3401"}
    assert {a.detail["request"]["username"] for a in denied} == {"duty-wh", "admin-ah", "nobody-here"}


# --------------------------------------------------------------------------- who may


def test_non_admins_get_403_and_no_nav_link(site) -> None:
    app, store, clock = site
    for name, role, j in (("duty-hf", Role.DUTY, "340104"), ("analyst-hf", Role.ANALYST, "3401")):
        c = client_as(app, name, role, j)
        for path in ("/api/admin/users", "/api/admin/users/duty-hf", "/api/admin/audit", "/admin/users",
                     "/admin/audit"):
            assert c.get(path).status_code == 403, (name, path)
        r = c.post("/api/admin/users", json={"username": "sneaky", "role": "admin", "jurisdiction": j})
        assert r.status_code == 403 and _user(store, "sneaky") is None
        assert c.post("/api/admin/users/duty-hf/disable").status_code == 403
        board = c.get("/")
        assert board.status_code == 200
        assert "/admin/users" not in board.text and "/admin/audit" not in board.text
        assert "用户管理" not in board.text and "审计日志" not in board.text
    assert _user(store, "duty-hf").active  # type: ignore[union-attr]
    denied = _rows(store, "permission_denied")
    assert {a.actor for a in denied} == {"duty-hf", "analyst-hf"}
    # Anonymous: the pages send to /login, the API answers 401.
    anon = TestClient(app)
    r = anon.get("/admin/users", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert anon.get("/api/admin/audit").status_code == 401
    # The admin has both links.
    board = _admin(app).get("/")
    assert 'href="/admin/users">用户管理' in board.text and 'href="/admin/audit">审计日志' in board.text


# --------------------------------------------------------------------------- changes


def test_change_role_jurisdiction_department_and_name_on_the_page(site) -> None:
    app, store, clock = site
    c, token = _session_page(app, "/admin/users/duty-hf")
    clock.at = T0 + timedelta(minutes=20)  # within the session's idle limit
    r = c.post("/admin/users/duty-hf", data={"csrf_token": token, "display_name": "王敏", "role": "analyst",
                                             "jurisdiction": "3401", "department": "合肥市网信办"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/users/duty-hf?done=updated"
    page = c.get(r.headers["location"])
    assert "已保存修改" in page.text and "王敏" in page.text and "合肥市网信办" in page.text
    assert "2026-11-02 09:20" in page.text  # changed at, in Asia/Shanghai
    row = _user(store, "duty-hf")
    assert row is not None and (row.display_name, row.role, row.jurisdiction, row.department) == (
        "王敏", "analyst", "3401", "合肥市网信办")
    (upd,) = [a for a in _rows(store, "user_updated") if a.actor == ADMIN]
    assert upd.outcome == "ok" and upd.detail["changes"]["role"] == ["duty", "analyst"]

    # Above the own jurisdiction: the page with the domain's message, nothing changed.
    r = c.post("/admin/users/duty-hf", data={"csrf_token": token, "display_name": "王敏", "role": "analyst",
                                             "jurisdiction": "3402", "department": ""})
    assert r.status_code == 422 and "无权授予属地" in r.text
    assert _user(store, "duty-hf").jurisdiction == "3401"  # type: ignore[union-attr]
    # The admin's own page: name and department only; its role and jurisdiction stay.
    own = c.get(f"/admin/users/{ADMIN}")
    assert own.status_code == 200 and 'name="role"' not in own.text and "不能修改自己的角色或属地" in own.text
    r = c.post(f"/admin/users/{ADMIN}", data={"csrf_token": token, "display_name": "合肥管理员"},
               follow_redirects=False)
    assert r.status_code == 303 and _user(store, ADMIN).display_name == "合肥管理员"  # type: ignore[union-attr]
    r = c.post(f"/admin/users/{ADMIN}/disable", data={"csrf_token": token})
    assert r.status_code == 422 and "不能停用自己的账户" in r.text and _user(store, ADMIN).active  # type: ignore[union-attr]


def test_reset_password_is_shown_once_and_must_be_changed(site) -> None:
    app, store, clock = site
    c, token = _session_page(app, "/admin/users")
    r = c.post("/admin/users/duty-hf/reset-password", data={"csrf_token": token})
    assert r.status_code == 200 and "已重置用户" in r.text
    m = re.search(r'<code class="password">([^<]+)</code>', r.text)
    assert m
    pw = m.group(1)
    assert pw not in c.get("/admin/users/duty-hf").text  # once
    with store.reader() as s:  # never stored in clear
        assert all(pw not in (u.password_hash or "") for u in s.scalars(select(UserRow)))
        assert all(pw not in str(a.detail) for a in s.scalars(select(Audit)))
    (reset,) = _rows(store, "password_reset")
    assert (reset.actor, reset.outcome, reset.detail) == (ADMIN, "ok", {"username": "duty-hf"})

    # The old password no longer works; the new one signs in to the forced change.
    user = TestClient(app)
    assert user.post("/api/login", json={"username": "duty-hf", "password": PASSWORD}).status_code == 401
    form = user.get("/login")
    r = user.post("/login", data={"username": "duty-hf", "password": pw, "next": "/",
                                  "csrf_token": _csrf(form.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/password"
    assert user.get("/", follow_redirects=False).headers["location"].startswith("/password")
    assert user.get("/api/tickets").status_code == 403

    # The API: the password in the answer, this once.
    api = _admin(app).post("/api/admin/users/duty-hf/reset-password")
    assert api.status_code == 200 and api.json()["user"]["must_change"] is True
    assert api.json()["password"] != pw


def test_disable_ends_the_users_sign_in_and_enable_restores_it(site) -> None:
    app, store, clock = site
    duty = client_as(app, "duty-hf", Role.DUTY, "340104", via="session")
    assert duty.get("/api/tickets").status_code == 200
    c, token = _session_page(app, "/admin/users")
    r = c.post("/admin/users/duty-hf/disable", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/users/duty-hf?done=disabled"
    assert "已停用该账户" in c.get(r.headers["location"]).text
    assert duty.get("/api/tickets").status_code == 401  # the session is over
    r = TestClient(app).post("/api/login", json={"username": "duty-hf", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["detail"] == "账户已停用，请联系系统管理员"
    listing = c.get("/admin/users").text
    assert "已停用" in listing

    r = c.post("/admin/users/duty-hf/enable", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("done=enabled")
    assert TestClient(app).post("/api/login", json={"username": "duty-hf", "password": PASSWORD}).status_code == 200
    # The API does the same.
    api = _admin(app)
    assert api.post("/api/admin/users/duty-hf/disable").json()["user"]["active"] is False
    assert api.post("/api/admin/users/duty-hf/enable").json()["user"]["active"] is True
    rows = [(a.action, a.outcome, a.actor, a.actor_jurisdiction, a.remote_addr)
            for a in _rows(store, "user_disabled", "user_enabled")]
    assert rows == [("user_disabled", "ok", ADMIN, "3401", "testclient"),
                    ("user_enabled", "ok", ADMIN, "3401", "testclient")] * 2


def test_csrf_is_required_on_forms_and_the_api(site) -> None:
    app, store, clock = site
    c, token = _session_page(app, "/admin/users")
    body = {"username": "no-csrf", "role": "duty", "jurisdiction": "3401"}
    assert c.post("/admin/users", data=body).status_code == 403
    assert c.post("/admin/users", data={**body, "csrf_token": "forged"}).status_code == 403
    assert c.post("/api/admin/users", json=body).status_code == 403
    assert c.post("/admin/users/duty-hf/disable", data={}).status_code == 403
    assert c.post("/api/admin/users/duty-hf/reset-password").status_code == 403
    assert _user(store, "no-csrf") is None and _user(store, "duty-hf").active  # type: ignore[union-attr]
    assert c.post("/api/admin/users", json=body, headers={CSRF_HEADER: token}).status_code == 201


def test_what_users_typed_is_escaped(site) -> None:
    app, store, clock = site
    c = _admin(app)
    r = c.post("/api/admin/users", json={"username": "hostile", "role": "duty", "jurisdiction": "3401",
                                         "display_name": HOSTILE, "department": '"><img src=x onerror=alert(2)>'})
    assert r.status_code == 201
    c.post("/api/admin/users/duty-hf", json={"display_name": HOSTILE})
    for path in ("/admin/users", "/admin/users/hostile", "/admin/audit", "/admin/users/duty-hf"):
        page = c.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


# --------------------------------------------------------------------------- the audit


def _audit_rows(store: Store) -> None:
    """Rows on three days (Asia/Shanghai), in 3401, and one in 3402 with a marker."""
    hf = Actor(username="duty-hf", display_name="d", role=Role.DUTY, jurisdiction="340104", remote_addr="10.0.0.1")
    wh = Actor(username="duty-wh", display_name="w", role=Role.DUTY, jurisdiction="3402", remote_addr="10.9.9.9")
    accounts.audit_alone(store, hf, "acknowledged", "ok", {"note": "第一天"}, sh(2026, 11, 1, 10, 0),
                         place_code="340104")
    # 23:30 in Shanghai is 15:30 UTC the same day: it belongs to 11-02.
    accounts.audit_alone(store, hf, "assigned", "failed", {"note": "第二天深夜"}, sh(2026, 11, 2, 23, 30),
                         place_code="340104")
    accounts.audit_alone(store, hf, "closed", "denied", {"note": "第三天"}, sh(2026, 11, 3, 0, 30),
                         place_code="340104")
    accounts.audit_alone(store, wh, "acknowledged", "ok", {"note": MARKER_3402}, sh(2026, 11, 2, 12, 0),
                         place_code="340202")
    # A 3401 user acting on nothing placed in 3401 is still the 3401 admin's to see (its actor's jurisdiction).
    accounts.audit_alone(store, CLI_ACTOR, "user_created", "ok", {"username": "duty-wh", "note": MARKER_3402},
                         sh(2026, 11, 2, 8, 0), place_code="3402")


def test_audit_is_scoped_filtered_and_paged(site) -> None:
    app, store, clock = site
    _audit_rows(store)
    c = _admin(app)
    every = c.get("/api/admin/audit", params={"size": 500}).json()
    notes = [i["detail"].get("note") for i in every["items"]]
    assert {"第一天", "第二天深夜", "第三天"} <= set(notes) and MARKER_3402 not in notes
    assert every["total"] == len(every["items"])
    assert all("duty-wh" != i["actor"] for i in every["items"])

    def notes_of(**params: Any) -> list[str | None]:
        r = c.get("/api/admin/audit", params={"size": 500, **params})
        assert r.status_code == 200, r.text
        return [i["detail"].get("note") for i in r.json()["items"]]

    assert notes_of(user="duty-hf") == ["第三天", "第二天深夜", "第一天"]  # newest first
    assert notes_of(action="acknowledged") == ["第一天"]
    assert notes_of(outcome="denied", user="duty-hf") == ["第三天"]
    assert notes_of(outcome="failed", user="duty-hf") == ["第二天深夜"]
    assert notes_of(**{"from": "2026-11-02", "to": "2026-11-02", "user": "duty-hf"}) == ["第二天深夜"]
    assert notes_of(**{"from": "2026-11-03", "user": "duty-hf"}) == ["第三天"]
    assert notes_of(**{"to": "2026-11-01", "user": "duty-hf"}) == ["第一天"]
    assert notes_of(user="duty-wh") == [] and notes_of(user="duty-wh", action="acknowledged") == []

    # Paged: one row a page, the total counts them all.
    p2 = c.get("/api/admin/audit", params={"user": "duty-hf", "size": 1, "page": 2}).json()
    assert (p2["total"], p2["page"], [i["detail"]["note"] for i in p2["items"]]) == (3, 2, ["第二天深夜"])

    # Each row as the page shows it.
    row = next(i for i in every["items"] if i["detail"].get("note") == "第二天深夜")
    assert row["at"] == "2026-11-02T23:30:00+08:00"
    assert (row["actor_role_label"], row["actor_jurisdiction_label"], row["action_label"], row["outcome_label"],
            row["remote_addr"]) == ("值班员", "安徽省合肥市蜀山区（340104）", "指派责任部门", "失败", "10.0.0.1")

    page = c.get("/admin/audit", params={"user": "duty-hf", "outcome": "failed"})
    assert page.status_code == 200
    assert "第二天深夜" in page.text and "第一天" not in page.text and "2026-11-02 23:30" in page.text
    assert "指派责任部门" in page.text and "值班员" in page.text and "10.0.0.1" in page.text
    assert "共 1 条" in page.text
    for params in ({}, {"action": "acknowledged"}, {"from": "2026-11-02", "to": "2026-11-02"}, {"user": "duty-wh"},
                   {"outcome": "ok"}, {"size": 500}):
        text = c.get("/admin/audit", params=params).text
        assert MARKER_3402 not in text and "10.9.9.9" not in text, params
    # The action filter offers the actions the admin's audit holds, by their Chinese names.
    full = c.get("/admin/audit").text
    assert '<option value="acknowledged">确认接收（acknowledged）</option>' in full
    # The 3402 admin sees its own and not 3401's.
    wh = client_as(app, "admin-wh", Role.ADMIN, "3402").get("/api/admin/audit", params={"size": 500}).json()
    wh_notes = [i["detail"].get("note") for i in wh["items"]]
    assert MARKER_3402 in wh_notes and "第一天" not in wh_notes

    # Bad filters: 400 in Chinese, on the page and the API.
    for params, msg in (({"from": "2026-13-01"}, "起始日期"), ({"to": "昨天"}, "截止日期"),
                        ({"outcome": "maybe"}, "结果"), ({"from": "2026-11-03", "to": "2026-11-01"}, "晚于")):
        r = c.get("/api/admin/audit", params=params)
        assert r.status_code == 400 and msg in r.json()["detail"], params
        p = c.get("/admin/audit", params=params)
        assert p.status_code == 400 and msg in p.text, params


def test_every_admin_action_is_audited_under_the_admin(site) -> None:
    app, store, clock = site
    c = _admin(app)
    c.post("/api/admin/users", json={"username": "trail", "role": "duty", "jurisdiction": "340104"})
    c.post("/api/admin/users/trail", json={"role": "analyst"})
    c.post("/api/admin/users/trail/disable")
    c.post("/api/admin/users/trail/enable")
    c.post("/api/admin/users/trail/reset-password")
    c.post("/api/admin/users/trail", json={"jurisdiction": "34"})  # refused: above its own
    c.post("/api/admin/users/duty-wh/disable")  # refused: out of scope
    got = [(i["action"], i["outcome"]) for i in
           reversed(c.get("/api/admin/audit", params={"user": ADMIN}).json()["items"])]
    assert got == [("user_created", "ok"), ("user_updated", "ok"), ("user_disabled", "ok"),
                   ("user_enabled", "ok"), ("password_reset", "ok"), ("user_updated", "denied"),
                   ("user_disabled", "denied")]
    page = c.get("/admin/audit", params={"user": ADMIN}).text
    for label in ("创建用户", "修改用户", "停用用户", "启用用户", "重置密码", "拒绝", "成功", "用户 trail"):
        assert label in page, label
