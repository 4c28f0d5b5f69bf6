"""`yuqing up`: every stage in its own process under one supervisor.

The supervisor validates all configuration first (a bad file stops start-up
before anything runs), then starts the stages, restarts one that dies (with
back-off), and on Ctrl-C / SIGTERM stops them all: SIGTERM, a grace period,
then SIGKILL for any that hang.

No stage outlives the supervisor, however it ends:

* Each stage runs in its own process group (its pid is the group id), so the
  stage and whatever it spawns (pool workers, crawl subprocesses) are stopped
  together.
* A keeper process (``python -m yuqing.supervisor keeper``) reads the group ids
  from a pipe; the pipe reaches end-of-file when the supervisor dies (even by
  kill -9), and the keeper then stops every group it was told of.
* On Linux each stage also gets SIGKILL from the kernel when the supervisor
  dies (``PR_SET_PDEATHSIG``), set between fork and exec; a stage whose parent
  is already gone by then exits at once.

One supervisor per data directory: ``yuqing up`` holds an flock on
``<data_dir>/yuqing-up.lock`` (the keeper shares it until the stages are gone),
and a second one refuses, naming the running one. The kernel drops the lock
when its holders die, so a killed supervisor never blocks the next start.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the keeper imports this module and needs none of the settings machinery
    from yuqing.settings import Settings

log = logging.getLogger("yuqing.supervisor")

GRACE_S = 10.0
# How long the keeper lets orphaned stages stop on SIGTERM before SIGKILL.
KEEPER_GRACE_S = 5.0
# How long a second `yuqing up` waits for a dead supervisor's stages to be stopped.
DEAD_HOLDER_WAIT_S = 20.0
# How long a taken port may take to come free (our own stage that was just killed).
PORT_PATIENCE_S = 3.0
LOCK_NAME = "yuqing-up.lock"
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Exit codes of `yuqing up` when it refuses or gives up.
EXIT_ALREADY_RUNNING = 3
EXIT_PORT_BUSY = 4

PR_SET_PDEATHSIG = 1


class StartRefused(Exception):
    """`yuqing up` cannot (or can no longer) run; the message is for the operator."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    history: list[int] = field(default_factory=list)
    # (host, port) the stage listens on: checked free before each start.
    port: tuple[str, int] | None = None


def stage_names(settings: Settings) -> list[str]:
    names = ["web", "responder", "indexer", "classifier", "crawler"]
    if settings.demo_site.enabled:
        names.insert(0, "demo-site")
    return names


def _wait_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


# -- ports ---------------------------------------------------------------------


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as uvicorn binds: SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # a bad host is the stage's error to report, not a taken port
    family, stype, proto, _, addr = infos[0]
    with socket.socket(family, stype, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """Best effort (Linux, own processes only): 'PID n：command' of who listens on ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    argv = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"PID {pid_dir.name}：{' '.join(argv.split())[:160]}"
        except OSError:
            continue
    return None


def _port_busy_message(what: str, host: str, port: int, setting: str, env: str) -> str:
    holder = port_holder(port)
    who = f"占用者：{holder}。" if holder else "（可用 `ss -ltnp` 查看占用者。）"
    return (
        f"{what}的端口 {host}:{port} 已被其他程序占用，{what}无法启动。{who}\n"
        f"请停止占用它的程序，或在 settings.yaml 的 {setting} 或环境变量 {env} 中换一个端口。"
    )


# -- one supervisor per data directory ------------------------------------------


@dataclass
class LockInfo:
    pid: int
    started_at: str
    web: str
    data_dir: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """An flock on ``<data_dir>/yuqing-up.lock`` holding who runs there."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.fd: int | None = None

    def _read(self, fd: int) -> LockInfo | None:
        # The holder may be between truncating and writing: try a few times.
        for _ in range(10):
            try:
                raw = os.pread(fd, 4096, 0)
                if raw:
                    return LockInfo(**json.loads(raw))
            except (OSError, ValueError, TypeError):
                pass
            time.sleep(0.05)
        return None

    def acquire(self, web: str, wait_dead_s: float = DEAD_HOLDER_WAIT_S) -> None:
        import fcntl

        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the stages
        deadline = time.monotonic() + wait_dead_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                info = self._read(fd)
                # A dead holder's keeper is still stopping its stages: they will be gone shortly.
                if (info is not None and _pid_alive(info.pid)) or time.monotonic() >= deadline:
                    os.close(fd)
                    raise StartRefused(self._refusal(info), EXIT_ALREADY_RUNNING) from None
                time.sleep(0.2)
        info = LockInfo(
            pid=os.getpid(),
            started_at=datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            web=web,
            data_dir=str(self.data_dir.resolve()),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info.__dict__, ensure_ascii=False).encode(), 0)
        self.fd = fd

    def _refusal(self, info: LockInfo | None) -> str:
        d = self.data_dir.resolve()
        if info is None:
            return f"数据目录 {d} 已有另一个 yuqing up 在运行（锁文件 {self.path}），本次不再启动。"
        if not _pid_alive(info.pid):
            return (
                f"数据目录 {d} 上一个 yuqing up（PID {info.pid}，启动于 {info.started_at}）已退出，"
                f"但它的阶段进程仍未结束；请稍后再试。"
            )
        return (
            f"数据目录 {d} 已有一个 yuqing up 在运行：PID {info.pid}，启动于 {info.started_at}，"
            f"网页 {info.web}\n同一数据目录只能运行一个。请直接使用它，或先停止它（在它的终端按 Ctrl-C，"
            f"或 kill {info.pid}），或用 YUQING_DATA_DIR 指定另一个数据目录。"
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- children die with the supervisor ---------------------------------------------


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with(parent_pid: int, libc: Any) -> Callable[[], None]:
    """preexec_fn for a stage: SIGKILL when the supervisor dies (Linux), checked for the fork race."""

    def preexec() -> None:  # pragma: no cover - runs in the forked child
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The supervisor may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_groups(pgids: set[int], grace_s: float) -> None:
    """SIGTERM every group, wait up to ``grace_s`` for them to go, then SIGKILL what is left."""
    alive = {g for g in pgids if _killpg(g, signal.SIGTERM)}
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {g for g in alive if _group_has_living(g)}
    for g in alive:
        _killpg(g, signal.SIGKILL)


def _group_has_living(pgid: int) -> bool:
    """Whether a group has a process that is not a zombie (zombies still answer kill 0)."""
    if not _killpg(pgid, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def keeper_main(grace_s: float = KEEPER_GRACE_S) -> int:
    """The keeper: stop the stages' process groups once the supervisor's pipe closes.

    Reads ``+PGID`` / ``-PGID`` lines from stdin. End-of-file without a prior
    ``bye`` means the supervisor died: every group still listed is stopped.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    groups: set[int] = set()
    clean = False
    for raw in sys.stdin.buffer:
        line = raw.strip().decode(errors="replace")
        if line.startswith("+"):
            groups.add(int(line[1:]))
        elif line.startswith("-"):
            groups.discard(int(line[1:]))
        elif line == "bye":
            clean = True
    if groups and not clean:
        owner = os.environ.get("YUQING_SUPERVISOR_PID", "?")
        print(
            f"yuqing up（PID {owner}）已意外退出，正在停止它留下的 {len(groups)} 个阶段进程组",
            file=sys.stderr,
            flush=True,
        )
    if groups:
        stop_groups(groups, grace_s)
    return 0


class Keeper:
    """The supervisor's end of the keeper: start it, tell it each group, restart it if it dies."""

    def __init__(self, lock_fd: int | None):
        self.lock_fd = lock_fd
        self.proc: subprocess.Popen[bytes] | None = None
        self.groups: set[int] = set()

    def _spawn(self) -> None:
        env = {**os.environ, "YUQING_SUPERVISOR_PID": str(os.getpid())}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yuqing.supervisor", "keeper"],
            stdin=subprocess.PIPE,
            env=env,
            # Its own session: neither Ctrl-C nor a signal to our group reaches it.
            start_new_session=True,
            # It shares our lock, so a second `yuqing up` waits until the stages are gone.
            pass_fds=(self.lock_fd,) if self.lock_fd is not None else (),
        )
        for g in self.groups:
            self._send(f"+{g}")

    def _send(self, line: str) -> bool:
        """Write one line; False when the keeper is gone (its pipe is broken or closed)."""
        if self.proc is None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        return True

    def start(self) -> None:
        self._spawn()

    def tell(self, line: str) -> None:
        if line.startswith("+"):
            self.groups.add(int(line[1:]))
        elif line.startswith("-"):
            self.groups.discard(int(line[1:]))
        if not self._send(line):
            self.check()

    def check(self) -> None:
        """Restart the keeper if something killed it (it is told every live group again)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            log.warning("守护进程 (keeper) 已退出 (代码 %s)，正在重启", self.proc.returncode)
            _close(self.proc.stdin)
        self._spawn()

    def close(self) -> None:
        if self.proc is None:
            return
        self._send("bye")
        _close(self.proc.stdin)
        try:
            self.proc.wait(timeout=KEEPER_GRACE_S + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _close(f: IO[bytes] | None) -> None:
    if f is not None:
        try:
            f.close()
        except OSError:
            pass


# -- the supervisor -----------------------------------------------------------------


class Supervisor:
    def __init__(self, settings: Settings, names: list[str] | None = None, children: list[Child] | None = None):
        self.settings = settings
        self.children = children if children is not None else [
            self._stage_child(n) for n in (names or stage_names(settings))
        ]
        self._stopping = False
        # Printed once, after the start line (or when the start fails): the
        # accounts this start created (yuqing.users_cli.bootstrap).
        self.notice = ""
        self._lock: RunLock | None = None
        self._keeper: Keeper | None = None
        self._libc = _libc()

    def _stage_child(self, name: str) -> Child:
        port = None
        if name == "web":
            port = (self.settings.web.host, self.settings.web.port)
        elif name == "demo-site":
            port = (self.settings.demo_site.host, self.settings.demo_site.port)
        return Child(name, [sys.executable, "-m", "yuqing.cli", "stage", name], port=port)

    @property
    def web_url(self) -> str:
        web = self.settings.web
        return f"http://{web.host}:{web.port}/"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["YUQING_CONFIG_DIR"] = str(self.settings.config_dir)
        env["YUQING_DATA_DIR"] = str(self.settings.data_dir)
        env["YUQING_TRANSPORT"] = self.settings.transport.kind
        env["YUQING_KAFKA_BOOTSTRAP"] = self.settings.transport.kafka.bootstrap_servers
        env["YUQING_STORE_URL"] = self.settings.store.url
        env["YUQING_WEB_PORT"] = str(self.settings.web.port)
        env["YUQING_DEMO_PORT"] = str(self.settings.demo_site.port)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- start-up checks ----------------------------------------------------------
    def claim(self) -> None:
        """Take the data directory's lock and check the listening ports; raise StartRefused."""
        if self._lock is None:
            lock = RunLock(Path(self.settings.data_dir))
            lock.acquire(self.web_url)
            self._lock = lock
        try:
            for child in self.children:
                self._check_port(child)
        except StartRefused:
            self._lock.release()
            self._lock = None
            raise

    def _check_port(self, child: Child) -> None:
        if child.port is None:
            return
        host, port = child.port
        deadline = time.monotonic() + PORT_PATIENCE_S
        while not port_free(host, port):
            if time.monotonic() >= deadline:
                if child.name == "web":
                    msg = _port_busy_message("网页服务", host, port, "web.port", "YUQING_WEB_PORT")
                else:
                    msg = _port_busy_message(f"阶段 {child.name} ", host, port, "demo_site.port", "YUQING_DEMO_PORT")
                raise StartRefused(msg, EXIT_PORT_BUSY)
            time.sleep(0.2)

    # -- children -------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        # Own session and process group: the terminal's Ctrl-C reaches only the
        # supervisor, which then stops the children in order; the group also
        # holds whatever the stage spawns, so it can be stopped as one.
        child.proc = subprocess.Popen(
            child.argv,
            env=self._env(),
            start_new_session=True,
            preexec_fn=_die_with(os.getpid(), self._libc),
        )
        child.started_at = time.monotonic()
        if self._keeper is not None:
            self._keeper.tell(f"+{child.proc.pid}")
        log.info("已启动 %s (pid %d)", child.name, child.proc.pid)

    def _reaped(self, child: Child) -> None:
        """The stage's leader has exited: kill what it left in its group, forget the group."""
        assert child.proc is not None
        pgid = child.proc.pid
        _killpg(pgid, signal.SIGKILL)
        if self._keeper is not None:
            self._keeper.tell(f"-{pgid}")

    def start_all(self) -> None:
        if self._lock is None:
            self.claim()
        if self._keeper is None:
            self._keeper = Keeper(self._lock.fd if self._lock else None)
            self._keeper.start()
        for child in self.children:
            self._start(child)
            if child.name == "demo-site":
                ds = self.settings.demo_site
                if not _wait_port(ds.host, ds.port, 20):
                    log.warning("演示站点 %s:%d 未在 20 秒内就绪", ds.host, ds.port)

    def poll_once(self) -> None:
        now = time.monotonic()
        if self._keeper is not None:
            self._keeper.check()
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    # A port someone else took would only make the stage die again and again.
                    self._check_port(child)
                    self._start(child)
                continue
            rc = child.proc.poll()
            if rc is None:
                continue
            child.history.append(rc)
            self._reaped(child)
            child.proc = None
            if self._stopping:
                continue
            # Back off if it keeps dying right after start; reset after a good run.
            ran_s = now - child.started_at
            child.restarts = 0 if ran_s > 60 else child.restarts + 1
            delay = min(30.0, 0.5 * 2 ** child.restarts)
            child.next_start = now + delay
            log.error("%s 退出 (代码 %s)，%.1f 秒后重启", child.name, rc, delay)

    def stop_all(self, grace_s: float = GRACE_S) -> None:
        self._stopping = True
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in running:
            assert c.proc is not None
            try:
                c.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for c in running:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s 未在 %.0f 秒内退出，强制结束", c.name, grace_s)
                c.proc.kill()
                c.proc.wait()
        for c in self.children:
            if c.proc is not None:
                c.proc.poll()
                self._reaped(c)  # grandchildren its leader left behind
                c.proc = None
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        log.info("全部阶段已停止")

    def run(self) -> int:
        stop = False

        def _on_signal(signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        try:
            self.start_all()
            print(f"\nyuqing 已启动：请在浏览器打开 {self.web_url}  （Ctrl-C 停止）\n", flush=True)
            self._print_notice()
            while not stop:
                self.poll_once()
                time.sleep(0.5)
        except StartRefused as e:
            print(f"\n{e}\n", file=sys.stderr, flush=True)
            if any(c.proc is not None for c in self.children):
                log.error("无法继续运行，正在停止全部阶段")
            return e.code
        finally:
            self._print_notice()  # not shown yet when the start failed
            self.stop_all()
        return 0

    def _print_notice(self) -> None:
        if self.notice:
            print(self.notice + "\n", flush=True)
            self.notice = ""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["keeper"]:
        return keeper_main()
    print("用法：python -m yuqing.supervisor keeper（由 yuqing up 启动）", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
