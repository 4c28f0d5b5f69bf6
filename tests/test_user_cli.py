"""`yuqing user …` in a subprocess (SQLite and PostgreSQL), and the bootstrap
of a first start: the initial admin and the demo accounts, printed once.

A password typed at a terminal is generated instead; the tests give the
command a real pseudo-terminal (``pty``) for that case and a pipe otherwise.
"""

from __future__ import annotations

import getpass
import os
import pty
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from responder import accounts
from responder.permissions import CLI_ACTOR, Role
from responder.store import Store
from tests.fixtures.system import ROOT, free_port, wait_for
from yuqing.settings import Settings, load_settings
from yuqing.users_cli import bootstrap

CHOSEN = "Chosen-password-1"


class Cli:
    def __init__(self, config_dir: Path, data_dir: Path, store_url: str) -> None:
        self.config_dir = config_dir
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_DATA_DIR": str(data_dir),
                    "YUQING_STORE_URL": store_url}
        self.store_url = store_url

    def __call__(self, *args: str, stdin: str | None = None, tty: bool = False) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "yuqing.cli", "--config", str(self.config_dir), "user", *args]
        if tty:
            master, slave = pty.openpty()
            try:
                return subprocess.run(cmd, cwd=ROOT, env=self.env, stdin=slave, capture_output=True, text=True,
                                      timeout=60)
            finally:
                os.close(slave)
                os.close(master)
        return subprocess.run(cmd, cwd=ROOT, env=self.env, input=stdin if stdin is not None else "",
                              capture_output=True, text=True, timeout=60)

    def store(self) -> Store:
        return Store(self.store_url)


@pytest.fixture
def cli(config_dir: Path, data_dir: Path, store_url: str) -> Iterator[Cli]:
    yield Cli(config_dir, data_dir, store_url)


def _secret(out: str, label: str) -> str:
    m = re.search(re.escape(label) + r"[^：]*：(\S+)", out)
    assert m, out
    return m.group(1)


def test_add_with_a_generated_or_a_piped_password(cli: Cli) -> None:
    r = cli("add", "zhang", "--role", "duty", "--jurisdiction", "340100", "--department", "住房和城乡建设局",
            "--display-name", "张三", tty=True)
    assert r.returncode == 0, r.stderr
    assert "已创建用户 zhang（张三；值班员 duty；属地 3401，部门 住房和城乡建设局）" in r.stdout
    generated = _secret(r.stdout, "初始密码")
    assert "首次登录须修改" in r.stdout

    r = cli("add", "li", "--role", "analyst", "--jurisdiction", "34", stdin=CHOSEN + "\n")
    assert r.returncode == 0, r.stderr
    assert "密码取自标准输入，首次登录无须修改" in r.stdout and CHOSEN not in r.stdout

    with cli.store() as store:
        zhang = accounts.authenticate(store, "zhang", generated)
        assert (zhang.role, zhang.jurisdiction, zhang.department, zhang.display_name, zhang.must_change) == (
            Role.DUTY, "3401", "住房和城乡建设局", "张三", True)
        li = accounts.authenticate(store, "li", CHOSEN)
        assert (li.role, li.jurisdiction, li.must_change) == (Role.ANALYST, "34", False)
        rows = accounts.list_audit(store, CLI_ACTOR, action="user_created")
        assert {e.actor for e in rows} == {f"cli:{getpass.getuser()}"}
        assert {e.detail["password"] for e in rows} == {"generated", "set"}


def test_add_refusals_exit_non_zero_in_chinese(cli: Cli) -> None:
    r = cli("add", "weak", "--role", "duty", "--jurisdiction", "34", stdin="short\n")
    assert r.returncode == 1 and "密码不符合要求" in r.stderr and "至少 10 个字符" in r.stderr
    r = cli("add", "x", "--jurisdiction", "34")
    assert r.returncode == 2 and "请用 --role 指定角色" in r.stderr and "duty（值班员）" in r.stderr
    r = cli("add", "x", "--role", "duty")
    assert r.returncode == 2 and "--jurisdiction" in r.stderr
    r = cli("add", "x", "--role", "boss", "--jurisdiction", "34")
    assert r.returncode == 1 and "角色 'boss' 无效" in r.stderr
    r = cli("add", "x", "--role", "duty", "--jurisdiction", "341")
    assert r.returncode == 1 and "属地代码" in r.stderr
    r = cli("add", "bad name", "--role", "duty", "--jurisdiction", "34")
    assert r.returncode == 1 and "用户名" in r.stderr
    assert cli("add", "dup", "--role", "duty", "--jurisdiction", "34", stdin=CHOSEN).returncode == 0
    r = cli("add", "dup", "--role", "office", "--jurisdiction", "34", stdin=CHOSEN)
    assert r.returncode == 1 and "用户名 dup 已存在" in r.stderr
    with cli.store() as store:
        assert [u.username for u in accounts.list_users(store, CLI_ACTOR)] == ["dup"]
        assert accounts.get_user(store, CLI_ACTOR, "dup").role is Role.DUTY


def test_list_disable_enable_and_reset(cli: Cli) -> None:
    assert "尚无用户" in cli("list").stdout
    for name, role in (("a1", "admin"), ("o1", "office")):
        assert cli("add", name, "--role", role, "--jurisdiction", "3401", stdin=CHOSEN).returncode == 0
    r = cli("disable", "o1")
    assert r.returncode == 0 and "已停用用户 o1" in r.stdout
    assert "已是停用状态" in cli("disable", "o1").stdout
    r = cli("list")
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["用户名", "显示名", "角色", "属地", "部门", "状态", "创建时间"]
    rows = {ln.split("\t")[0]: ln.split("\t") for ln in lines[1:-1]}
    assert rows["a1"][2:6] == ["系统管理员 admin", "3401", "—", "启用"]
    assert rows["o1"][2] == "宣传/政务公开办 office" and rows["o1"][5] == "已停用"
    assert lines[-1] == "共 2 个用户"
    with cli.store() as store, pytest.raises(accounts.AccountDisabled):
        accounts.authenticate(store, "o1", CHOSEN)

    assert "已启用用户 o1" in cli("enable", "o1").stdout
    r = cli("reset-password", "o1")
    assert r.returncode == 0 and "已重置用户 o1 的密码" in r.stdout
    new = _secret(r.stdout, "新密码")
    with cli.store() as store:
        with pytest.raises(accounts.InvalidCredentials):
            accounts.authenticate(store, "o1", CHOSEN)
        assert accounts.authenticate(store, "o1", new).must_change
    assert "待修改密码" in cli("list").stdout

    for cmd in ("disable", "enable", "reset-password", "token"):
        r = cli(cmd, "nobody")
        assert r.returncode == 1 and "用户 nobody 不存在" in r.stderr, cmd


def test_tokens_create_list_and_revoke(cli: Cli) -> None:
    assert cli("add", "bot", "--role", "analyst", "--jurisdiction", "34", stdin=CHOSEN).returncode == 0
    r = cli("token", "bot", "--name", "报表脚本")
    assert r.returncode == 0, r.stderr
    token = _secret(r.stdout, "令牌（仅显示这一次")
    prefix = accounts.token_prefix(token)
    assert prefix and f"已为用户 bot 创建 API 令牌 {prefix}（报表脚本）" in r.stdout
    with cli.store() as store:
        who = accounts.resolve_token(store, token)
        assert who is not None and who.username == "bot"
    r = cli("tokens")
    (row,) = [ln.split("\t") for ln in r.stdout.splitlines()[1:]]
    assert row[:3] == [prefix, "bot", "报表脚本"] and row[-1] == "有效" and token not in r.stdout

    r = cli("revoke-token", prefix)
    assert r.returncode == 0 and f"已吊销用户 bot 的 API 令牌 {prefix}（报表脚本）" in r.stdout
    with cli.store() as store:
        assert accounts.resolve_token(store, token) is None
        actions = [e.action for e in accounts.list_audit(store, CLI_ACTOR)]
        assert actions[:2] == ["token_revoked", "token_created"]
    assert "已吊销" in cli("tokens", "bot").stdout
    r = cli("revoke-token", "yq_00000000")
    assert r.returncode == 1 and "令牌 yq_00000000 不存在" in r.stderr


# Bootstrap ---------------------------------------------------------------------------------

def _settings(data_dir: Path, store_url: str, **auth: str) -> Settings:
    s = Settings(data_dir=str(data_dir))
    s.store.url = store_url
    for k, v in auth.items():
        setattr(s.auth, k, v)
    return s


def test_bootstrap_initial_admin_and_demo_accounts(data_dir: Path, store_url: str) -> None:
    settings = _settings(data_dir, store_url, root_jurisdiction="34", demo_jurisdiction="3401")
    with Store(store_url) as store:
        notice = bootstrap(store, settings, demo=True)
        pw = re.search(r"用户名 admin\s+密码 (\S+)", notice).group(1)  # type: ignore[union-attr]
        path = data_dir / accounts.INITIAL_ADMIN_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"密码: {pw}" in path.read_text(encoding="utf-8") and str(path) in notice
        admin = accounts.authenticate(store, "admin", pw, settings=settings)
        assert (admin.role, admin.jurisdiction, admin.must_change) == (Role.ADMIN, "34", True)

        demo = dict(re.findall(r"用户名 (demo-\S+)\s+密码 (\S+)", notice))
        assert set(demo) == {"demo-admin", "demo-office", "demo-duty", "demo-analyst"}
        roles = set()
        for name, password in demo.items():
            who = accounts.authenticate(store, name, password, settings=settings)
            assert who.jurisdiction == "3401" and not who.must_change
            roles.add(who.role)
        assert roles == set(Role)
        demo_file = data_dir / accounts.DEMO_ACCOUNTS_FILE
        assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600
        assert all(p in demo_file.read_text(encoding="utf-8") for p in demo.values())

        # The next start creates and prints no password again.
        again = bootstrap(store, settings, demo=True)
        assert "首次启动" not in again and not re.search(r"密码 \S", again)
        assert str(demo_file) in again
        assert len(accounts.list_users(store, CLI_ACTOR)) == 5
        # Without the demo source, only the admin (here: already there).
        assert bootstrap(store, settings, demo=False) == ""


def test_no_admin_when_users_exist_and_no_demo_without_the_demo_source(data_dir: Path, store_url: str) -> None:
    settings = _settings(data_dir, store_url)
    settings.demo_site.enabled = False
    with Store(store_url) as store:
        accounts.create_user(store, CLI_ACTOR, "ops", Role.ADMIN, "", password=CHOSEN)
        assert bootstrap(store, settings, demo=True) == ""
        assert [u.username for u in accounts.list_users(store, CLI_ACTOR)] == ["ops"]
    assert not (data_dir / accounts.INITIAL_ADMIN_FILE).exists()


def test_web_stage_bootstraps_the_admin_on_a_deployment_without_yuqing_up(
    config_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "YUQING_DATA_DIR": str(data_dir), "YUQING_WEB_PORT": str(free_port()),
           "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "stage", "web"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None
        lines = [p.stdout.readline() for _ in range(3)]
    finally:
        p.terminate()
        p.wait(30)
    assert lines[0].startswith("首次启动：已创建系统管理员账户"), lines
    pw = re.search(r"用户名 admin\s+密码 (\S+)", lines[1]).group(1)  # type: ignore[union-attr]
    monkeypatch.setenv("YUQING_DATA_DIR", str(data_dir))
    settings = load_settings(config_dir)  # the stage's own settings: its store
    with Store(settings.store_url) as store:
        assert accounts.authenticate(store, "admin", pw).must_change
    assert "demo-" not in "".join(lines)


@pytest.mark.slow
def test_yuqing_up_prints_the_accounts_once_and_they_sign_in(config_dir: Path, data_dir: Path) -> None:
    web_port = free_port()
    env = {**os.environ, "YUQING_DATA_DIR": str(data_dir), "YUQING_WEB_PORT": str(web_port),
           "YUQING_DEMO_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    log = data_dir / "up.log"
    with open(log, "ab") as f:
        p = subprocess.Popen([sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up"],
                             cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{web_port}"
    try:
        out = wait_for(lambda: (t := log.read_text(encoding="utf-8", errors="replace"))
                       and "demo-analyst" in t and t, 180, "the accounts notice")
        start = out.index("yuqing 已启动")
        assert out.index("首次启动：已创建系统管理员账户") > start  # after the start line
        admin_pw = re.search(r"用户名 admin\s+密码 (\S+)", out).group(1)  # type: ignore[union-attr]
        duty_pw = re.search(r"用户名 demo-duty\s+密码 (\S+)", out).group(1)  # type: ignore[union-attr]
        assert len(re.findall(r"用户名 demo-\S+\s+密码 \S+", out)) == len(Role)

        def login(username: str, password: str) -> httpx.Response | None:
            r = httpx.post(base + "/api/login", json={"username": username, "password": password}, timeout=5)
            return r if r.status_code != 503 else None

        r = wait_for(lambda: login("demo-duty", duty_pw), 120, "the web stage")
        assert r.status_code == 200, r.text
        r = login("admin", admin_pw)
        assert r is not None and r.status_code == 200, r.text
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    # Printed once: exactly one admin password in the whole output.
    assert log.read_text(encoding="utf-8", errors="replace").count("用户名 admin") == 1
