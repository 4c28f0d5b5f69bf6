"""Sign-in in the web console (web/auth.py, web/routes/auth.py, web/security.py):
sessions and their expiry on an injected clock, lockout, CSRF, tokens, open
redirects, security headers, what each role is shown, and default deny over
every route the app registers."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from responder import accounts
from responder.permissions import CLI_ACTOR, Actor, Permission, Role
from responder.service import handle_batch
from responder.store import Audit, SessionRow, Store, Ticket
from tests.fixtures.auth import CSRF_HEADER, PASSWORD, add_user, client_as, token_for
from tests.fixtures.common import Clock
from tests.fixtures.databases import assessed, sh
from web.app import create_app
from web.auth import (
    AUTHENTICATED,
    PUBLIC_ACCESS,
    SESSION_COOKIE,
    is_local_path,
    iter_routes,
    require,
    route_access,
)
from web.security import csp

T0 = sh(2026, 11, 2, 9, 0)
ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def site(tmp_path, settings):
    """One open 重大 ticket in 包河区; the app on a clock the test moves."""
    store = Store(f"sqlite:///{tmp_path / 'auth.db'}")
    handle_batch(store, settings, [
        assessed("fire", title="居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡。",
                 published_at=T0, severity="重大", is_emergency=True, event_type="事故灾难",
                 event_subtype="火灾", place="包河区", department="应急管理局"),
    ], now=T0 + timedelta(minutes=5))
    with store.reader() as s:
        tid = s.scalar(select(Ticket.id))
    clock = Clock(T0 + timedelta(hours=1))
    app = create_app(settings, store=store, now=clock)
    yield app, store, clock, tid
    store.close()


def _csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def _sign_in(c: TestClient, username: str, password: str = PASSWORD, next_path: str = "/"):
    """The sign-in page as a browser uses it: GET the form (its CSRF cookie), POST it."""
    form = c.get(f"/login?next={quote(next_path, safe='')}")
    assert form.status_code == 200
    return c.post("/login", data={"username": username, "password": password, "next": next_path,
                                  "csrf_token": _csrf_of(form.text)}, follow_redirects=False)


def _actions(store: Store, *names: str) -> list[tuple[str, str, str]]:
    with store.reader() as s:
        return [(a.action, a.outcome, a.actor) for a in s.scalars(select(Audit).order_by(Audit.id))
                if a.action in names]


# --------------------------------------------------------------------------- sign-in and out


def test_sign_in_on_the_page_then_out(site) -> None:
    app, store, clock, tid = site
    add_user(store, "wangmin", Role.DUTY, "3401", display_name="王敏")
    c = TestClient(app)
    first = c.get(f"/tickets/{tid}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == f"/login?next=%2Ftickets%2F{tid}"
    page = c.get(first.headers["location"])
    assert page.status_code == 200 and "用户名" in page.text and "密码" in page.text
    assert '<html lang="zh-CN">' in page.text

    r = _sign_in(c, "wangmin", next_path=f"/tickets/{tid}")
    assert r.status_code == 303 and r.headers["location"] == f"/tickets/{tid}"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path"} <= attrs and "samesite=lax" in cookie.lower() and "secure" not in attrs
    token = cookie.split(";")[0].split("=", 1)[1]
    with store.reader() as s:  # the store keeps the token's hash, never the token
        assert s.scalars(select(SessionRow.id)).all() == [hashlib.sha256(token.encode()).hexdigest()]

    ticket = c.get(f"/tickets/{tid}")
    assert ticket.status_code == 200 and "居民楼火灾致12人死亡" in ticket.text
    # The nav: who, which role, which jurisdiction, and a way out.
    assert "王敏" in ticket.text and "值班员" in ticket.text and "属地 安徽省合肥市（3401）" in ticket.text
    assert 'action="/logout"' in ticket.text

    # Signing out takes the session's CSRF token (a form field); the session is gone for good.
    csrf = _csrf_of(ticket.text)
    assert c.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    c.cookies.set(SESSION_COOKIE, token)  # even replayed, the revoked session is no one
    assert c.get("/api/tickets").status_code == 401
    assert c.get("/", follow_redirects=False).headers["location"] == "/login"
    assert _actions(store, "login", "logout") == [("login", "ok", "wangmin"), ("logout", "ok", "wangmin")]


def test_api_login_for_scripts_and_the_cookie_is_secure_behind_https(site, settings) -> None:
    app, store, clock, tid = site
    add_user(store, "zhangsan", Role.DUTY, "")
    c = TestClient(app)
    r = c.post("/api/login", json={"username": "zhangsan", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["username"] == "zhangsan" and body["role"] == "duty" and body["role_label"] == "值班员"
    assert body["csrf_header"] == CSRF_HEADER and body["csrf_token"]
    assert c.get("/api/me").json()["csrf_token"] == body["csrf_token"]
    ack = c.post(f"/api/tickets/{tid}/ack", headers={CSRF_HEADER: body["csrf_token"]})
    assert ack.status_code == 200 and ack.json()["ticket"]["acknowledged_by"] == "zhangsan"
    out = c.post("/api/logout", headers={CSRF_HEADER: body["csrf_token"]})
    assert out.json() == {"signed_out": True} and c.get("/api/me").status_code == 401

    settings.web.base_url = "https://yuqing.example.gov.cn"
    secure = TestClient(create_app(settings, store=store, now=clock))
    r = secure.post("/api/login", json={"username": "zhangsan", "password": PASSWORD})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE) and "; secure" in cookie.lower()
    assert "max-age=31536000" in r.headers["strict-transport-security"]


def test_wrong_password_unknown_user_and_a_disabled_account(site) -> None:
    app, store, _clock, _tid = site
    add_user(store, "lisi", Role.OFFICE, "34")
    c = TestClient(app)
    for name, pw in (("lisi", "Wrong-password-1"), ("nobody", PASSWORD)):
        r = _sign_in(c, name, pw)
        assert r.status_code == 401 and "用户名或密码错误" in r.text and SESSION_COOKIE not in r.headers.get(
            "set-cookie", "")
        assert f'value="{name}"' in r.text  # the name stays in the form; the password does not
        assert pw not in r.text
    api = c.post("/api/login", json={"username": "lisi", "password": "Wrong-password-1"})
    assert api.status_code == 401 and api.json()["detail"] == "用户名或密码错误"
    accounts.set_active(store, CLI_ACTOR, "lisi", False)
    r = c.post("/api/login", json={"username": "lisi", "password": PASSWORD})
    assert r.status_code == 403 and "停用" in r.json()["detail"]
    # A sign-in form without its own CSRF cookie (posted from elsewhere) signs no one in.
    add_user(store, "wangwu", Role.DUTY, "")
    forged = TestClient(app).post("/login", data={"username": "wangwu", "password": PASSWORD,
                                                  "csrf_token": "x"}, follow_redirects=False)
    assert forged.status_code == 403 and "过期" in forged.text and SESSION_COOKIE not in forged.headers.get(
        "set-cookie", "")


def test_lockout_through_the_web_and_its_expiry(site, settings) -> None:
    app, store, clock, _tid = site
    a = settings.auth
    add_user(store, "zhaoliu", Role.DUTY, "")
    c = TestClient(app)
    for i in range(a.lockout_failures):
        r = _sign_in(c, "zhaoliu", f"Wrong-password-{i}")
        assert r.status_code == 401 and "用户名或密码错误" in r.text
    # Locked: even the right password is refused, with the time it ends, in Chinese.
    clock.at += timedelta(minutes=1)
    r = _sign_in(c, "zhaoliu")
    until = (clock.at - timedelta(minutes=1) + timedelta(minutes=a.lockout_minutes)).astimezone(T0.tzinfo)
    assert r.status_code == 429 and "账户已锁定" in r.text and until.strftime("%Y-%m-%d %H:%M") in r.text
    assert int(r.headers["retry-after"]) == (a.lockout_minutes - 1) * 60
    api = c.post("/api/login", json={"username": "zhaoliu", "password": PASSWORD})
    assert api.status_code == 429 and "账户已锁定" in api.json()["detail"]
    assert _actions(store, "lockout") == [("lockout", "ok", "zhaoliu")]
    # After the lockout the right password works again.
    clock.at += timedelta(minutes=a.lockout_minutes)
    r = _sign_in(c, "zhaoliu")
    assert r.status_code == 303 and c.get("/api/me").json()["username"] == "zhaoliu"


# --------------------------------------------------------------------------- session expiry


def test_idle_session_expires_and_activity_keeps_it(site, settings) -> None:
    app, store, clock, _tid = site
    idle = timedelta(minutes=settings.auth.idle_minutes)
    add_user(store, "idle", Role.DUTY, "")
    c = TestClient(app)
    assert _sign_in(c, "idle").status_code == 303
    for _ in range(3):  # a request now and then keeps the session alive well past one idle period
        clock.at += idle - timedelta(minutes=1)
        assert c.get("/api/tickets").status_code == 200
    clock.at += idle
    assert c.get("/api/tickets").status_code == 401
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # The board's 5 s refresh gets 401 (its script reloads into the sign-in page), not the login HTML.
    assert c.get("/fragment/tickets", follow_redirects=False).status_code == 401


def test_absolute_limit_ends_even_a_busy_session(site, settings) -> None:
    app, store, clock, _tid = site
    add_user(store, "busy", Role.DUTY, "")
    c = TestClient(app)
    start = clock.at
    assert _sign_in(c, "busy").status_code == 303
    limit = start + timedelta(hours=settings.auth.absolute_hours)
    while clock.at + timedelta(minutes=20) < limit:
        clock.at += timedelta(minutes=20)
        assert c.get("/api/tickets").status_code == 200
    clock.at = limit
    assert c.get("/api/tickets").status_code == 401


# --------------------------------------------------------------------------- CSRF, tokens, redirects


def test_csrf_is_required_on_session_requests_that_change_state(site) -> None:
    app, store, _clock, tid = site
    c = client_as(app, "csrf-duty", Role.DUTY, via="session")
    token = c.headers.pop(CSRF_HEADER)
    assert c.get("/api/tickets").status_code == 200  # reads need none
    for headers in ({}, {CSRF_HEADER: "forged"}, {CSRF_HEADER: ""}):
        r = c.post(f"/api/tickets/{tid}/ack", headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert c.post(f"/api/tickets/{tid}/ack", data={"csrf_token": "forged"}).status_code == 403
    with store.reader() as s:
        assert s.get(Ticket, tid).acknowledged_by is None  # nothing changed
    assert c.post(f"/api/tickets/{tid}/ack", headers={CSRF_HEADER: token}).status_code == 200
    # The page gives scripts the token (a meta tag) and forms a hidden field.
    page = c.get(f"/tickets/{tid}").text
    assert f'<meta name="csrf-token" content="{token}">' in page and f'name="csrf_token" value="{token}"' in page
    js = c.get("/static/board.js").text
    assert "X-CSRF-Token" in js and 'meta[name="csrf-token"]' in js
    assert "X-CSRF-Token" in c.get("/static/search.js").text
    # An API token is no cookie a browser sends by itself: it needs no CSRF token.
    assert client_as(app, "token-duty").post(f"/api/tickets/{tid}/close", json={"outcome": "responded"}).status_code == 200


def test_revoked_token_and_bad_tokens_are_refused(site) -> None:
    app, store, _clock, _tid = site
    token = token_for(store, "script", Role.ANALYST, "34")
    c = TestClient(app)
    assert c.get("/api/tickets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    accounts.revoke_token(store, CLI_ACTOR, token[:11])  # by its visible prefix, yq_ and 8 hex digits
    for auth in (f"Bearer {token}", f"Bearer {token[:-1]}x", "Bearer yq_00000000_nothing", f"Basic {token}",
                 "Bearer "):
        r = c.get("/api/tickets", headers={"Authorization": auth})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", auth
    # A bad token is not rescued by a good session cookie.
    s = client_as(app, "both", Role.DUTY, via="session")
    assert s.get("/api/tickets").status_code == 200
    assert s.get("/api/tickets", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("target", [
    "//evil.test/x", "https://evil.test/", "http:/evil.test", "/\\evil.test", "\\\\evil.test", "javascript:alert(1)",
    "evil.test", "/%0d%0aSet-Cookie:x=1", "/\r\nLocation: https://evil.test", "",
])
def test_sign_in_never_redirects_off_the_site(site, target: str) -> None:
    app, store, _clock, _tid = site
    add_user(store, "redir", Role.DUTY, "")
    c = TestClient(app)
    r = _sign_in(c, "redir", next_path=target)
    assert r.status_code == 303
    assert r.headers["location"] == (target if is_local_path(target) else "/")
    assert not r.headers["location"].startswith("//") and "evil" not in r.headers["location"].split("?")[0][:20]
    # Already signed in, the sign-in page sends you on, just as carefully.
    again = c.get(f"/login?next={quote(target, safe='')}", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == r.headers["location"]


def test_a_local_next_is_kept() -> None:
    assert is_local_path("/search?q=%E7%89%A9%E4%B8%9A&place=34") and is_local_path("/tickets/3")
    for bad in ("//x", "/\\x", "http://x/", "x", "", None, "/a\nb", "/a\x7fb"):
        assert not is_local_path(bad)


def test_forced_password_change_comes_first(site, settings) -> None:
    app, store, _clock, tid = site
    _user, generated = accounts.create_user(store, CLI_ACTOR, "newbie", Role.DUTY, "", settings=settings)
    c = TestClient(app)
    r = _sign_in(c, "newbie", generated, next_path=f"/tickets/{tid}")
    assert r.status_code == 303 and r.headers["location"] == f"/password?next=%2Ftickets%2F{tid}"
    # Everything else waits: pages go to the password page, the API says why.
    assert c.get("/", follow_redirects=False).headers["location"] == "/password?next=%2F"
    api = c.get("/api/tickets")
    assert api.status_code == 403 and "修改" in api.json()["detail"]
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and "请先设置您自己的新密码" in page.text
    csrf = _csrf_of(page.text)
    weak = c.post("/password", data={"old": generated, "new": "short", "confirm": "short", "csrf_token": csrf,
                                      "next": f"/tickets/{tid}"})
    assert weak.status_code == 400 and "密码不符合要求" in weak.text
    differ = c.post("/password", data={"old": generated, "new": "Another-pass-42", "confirm": "Another-pass-43",
                                        "csrf_token": csrf})
    assert differ.status_code == 400 and "不一致" in differ.text
    assert c.post("/password", data={"old": generated, "new": "Another-pass-42", "confirm": "Another-pass-42",
                                     "next": f"/tickets/{tid}"}, follow_redirects=False).status_code == 403
    done = c.post("/password", data={"old": generated, "new": "Another-pass-42", "confirm": "Another-pass-42",
                                     "csrf_token": csrf, "next": f"/tickets/{tid}"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/tickets/{tid}"
    assert c.get("/api/tickets").status_code == 200  # the same session goes on
    assert accounts.get_user(store, CLI_ACTOR, "newbie").must_change is False


# --------------------------------------------------------------------------- roles in the pages


def test_the_acting_user_is_the_account_not_a_name_in_the_body(site) -> None:
    app, store, _clock, tid = site
    c = client_as(app, "zhangsan", Role.DUTY, display_name="张三")
    r = c.post(f"/api/tickets/{tid}/ack", json={"officer": "冒名顶替"})
    assert r.status_code == 200 and r.json()["ticket"]["acknowledged_by"] == "zhangsan"
    with store.reader() as s:
        (row,) = s.scalars(select(Audit).where(Audit.action == "acknowledged")).all()
    assert row.actor == "zhangsan" and row.remote_addr == "testclient" and row.at == _clock.at


def test_an_analyst_sees_no_acknowledge_button_and_may_not_acknowledge(site) -> None:
    app, store, _clock, tid = site
    duty = client_as(app, "duty1", Role.DUTY)
    analyst = client_as(app, "analyst1", Role.ANALYST)
    for path in ("/", f"/tickets/{tid}", "/fragment/tickets"):
        d, a = duty.get(path).text, analyst.get(path).text
        # The board's buttons (board.js), or the ticket page's forms.
        ack, meet = ((f'action="/tickets/{tid}/ack"', f'action="/tickets/{tid}/milestone"') if path.startswith("/tickets/")
                     else (f'data-ack="{tid}"', 'class="meet"'))
        assert ack in d and meet in d, path
        assert "居民楼火灾致12人死亡" in a and ack not in a and meet not in a and "data-ack=" not in a, path
    r = analyst.post(f"/api/tickets/{tid}/ack")
    assert r.status_code == 403 and "分析员" in r.json()["detail"]
    # Saving a search and exporting: the analyst's, not the office's.
    office = client_as(app, "office1", Role.OFFICE)
    assert "save-scheme" in analyst.get("/search").text
    assert "save-scheme" not in office.get("/search").text
    assert office.post("/api/searches", json={"name": "x", "params": {}}).status_code == 403
    assert office.get("/api/search/export").status_code == 403


def test_metrics_take_only_a_token_of_a_user_allowed_to_read_them(site) -> None:
    app, store, _clock, _tid = site
    assert TestClient(app).get("/metrics").status_code == 401
    admin_session = client_as(app, "admin1", Role.ADMIN, via="session")
    r = admin_session.get("/metrics")
    assert r.status_code == 403 and "API 令牌" in r.text
    assert client_as(app, "duty2", Role.DUTY).get("/metrics").status_code == 403
    ok = client_as(app, "admin1", Role.ADMIN).get("/metrics")
    assert ok.status_code == 200 and 'yuqing_tickets{status="new"} 1' in ok.text


def test_health_check_is_public_and_the_schema_is_not(site) -> None:
    app, _store, _clock, _tid = site
    c = TestClient(app)
    h = c.get("/api/healthz")
    assert h.status_code == 200 and h.json() == {"status": "ok", "db": "sqlite"}
    assert c.get("/api/openapi.json").status_code == 401
    assert c.get("/api/docs").status_code == 404 and c.get("/redoc").status_code == 404
    schema = client_as(app, "reader", Role.OFFICE).get("/api/openapi.json").json()
    assert "/api/login" in schema["paths"] and "/api/tickets/{tid}/ack" in schema["paths"]


# --------------------------------------------------------------------------- headers


def test_security_headers_on_pages_api_and_refusals(site) -> None:
    app, _store, _clock, tid = site
    anon = TestClient(app)
    duty = client_as(app, "hdr", Role.DUTY)
    answers = {
        "login page": anon.get("/login"),
        "redirect": anon.get("/", follow_redirects=False),
        "401": anon.get("/api/tickets"),
        "board": duty.get("/"),
        "ticket": duty.get(f"/tickets/{tid}"),
        "api": duty.get("/api/tickets"),
        "404": duty.get("/api/tickets/999"),
    }
    nonces = set()
    for what, r in answers.items():
        h = r.headers
        policy = h["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, what
        m = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{16,})'", policy)
        assert m and "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
        nonces.add(m.group(1))
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin", what
        assert h["x-frame-options"] == "DENY" and h["cache-control"] == "no-store", what
    assert len(nonces) == len(answers)  # a fresh nonce each time
    assert "no-store" not in anon.get("/static/app.css").headers.get("cache-control", "")
    assert csp("abc").startswith("default-src 'self'; script-src 'self' 'nonce-abc'")


def test_templates_have_no_inline_script_or_style() -> None:
    """The CSP allows neither: scripts are files under web/static, colours are classes."""
    for t in sorted((ROOT / "web" / "templates").glob("*.html")):
        text = t.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), t.name
        assert not re.search(r"\sstyle=", text) and "<style" not in text, t.name
        assert not re.search(r"\son[a-z]+=", text), t.name
    for form in re.finditer(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", "".join(
            p.read_text(encoding="utf-8") for p in (ROOT / "web" / "templates").glob("*.html")), re.S):
        assert 'name="csrf_token"' in form.group(1)  # every form that changes state carries the token


# --------------------------------------------------------------------------- default deny


def undeclared(app: FastAPI) -> list[str]:
    """Routes of ``app`` that declare neither a permission nor that they are public."""
    return [f"{sorted(getattr(r, 'methods', None) or ['*'])} {getattr(r, 'path', r)}"
            for r in iter_routes(app.routes) if route_access(r) is None]


def test_default_deny_every_route_declares_who_may_use_it(site) -> None:
    app, _store, _clock, _tid = site
    routes = list(iter_routes(app.routes))
    assert len(routes) > 30
    assert undeclared(app) == []
    public = sorted(f"{sorted(getattr(r, 'methods', None) or ['*'])} {r.path}" for r in routes
                    if route_access(r) == PUBLIC_ACCESS)
    assert public == ["['*'] /static", "['GET'] /api/healthz", "['GET'] /login", "['POST'] /api/login",
                      "['POST'] /api/logout", "['POST'] /login", "['POST'] /logout"]
    # And they do refuse: every route that is not public answers an anonymous request
    # with 401 (or, for a page, a redirect to the sign-in page), whatever its path ids.
    anon = TestClient(app)
    for r in routes:
        if route_access(r) == PUBLIC_ACCESS:
            continue
        for method in sorted(r.methods - {"HEAD"}):
            url = re.sub(r"\{[^}]+\}", "1", r.path)
            got = anon.request(method, url, follow_redirects=False)
            assert got.status_code in (401, 303), f"{method} {url}: {got.status_code}"
            if got.status_code == 303:
                assert method == "GET" and got.headers["location"].startswith("/login"), url


def test_default_deny_check_catches_an_undeclared_route(site) -> None:
    app, _store, _clock, _tid = site

    @app.get("/api/forgotten")
    def forgotten() -> dict[str, int]:
        return {"secret": 42}

    @app.post("/api/other", dependencies=[Depends(lambda: None)])  # a dependency, but no declaration
    def other() -> dict[str, int]:
        return {"x": 1}

    @app.get("/api/declared")
    def declared(actor: Actor = Depends(require(Permission.SEARCH))) -> dict[str, str]:
        return {"who": actor.username}

    assert undeclared(app) == ["['GET'] /api/forgotten", "['POST'] /api/other"]
    assert TestClient(app).get("/api/declared").status_code == 401
    assert route_access(next(r for r in iter_routes(app.routes) if r.path == "/password")) == AUTHENTICATED
