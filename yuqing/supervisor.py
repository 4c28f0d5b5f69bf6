"""`yuqing up`: every stage in its own process under one supervisor.

The supervisor validates all configuration first (a bad file stops start-up
before anything runs), then starts the stages, restarts one that dies (with
back-off), and on Ctrl-C / SIGTERM stops them all: SIGTERM, a grace period,
then SIGKILL for any that hang.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from yuqing.settings import Settings

log = logging.getLogger("yuqing.supervisor")

GRACE_S = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    history: list[int] = field(default_factory=list)


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


class Supervisor:
    def __init__(self, settings: Settings, names: list[str] | None = None):
        self.settings = settings
        self.children = [
            Child(n, [sys.executable, "-m", "yuqing.cli", "stage", n])
            for n in (names or stage_names(settings))
        ]
        self._stopping = False

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

    def _start(self, child: Child) -> None:
        # Own process group: the terminal's Ctrl-C reaches only the supervisor,
        # which then stops the children in order.
        child.proc = subprocess.Popen(child.argv, env=self._env(), start_new_session=True)
        child.started_at = time.monotonic()
        log.info("已启动 %s (pid %d)", child.name, child.proc.pid)

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)
            if child.name == "demo-site":
                ds = self.settings.demo_site
                if not _wait_port(ds.host, ds.port, 20):
                    log.warning("演示站点 %s:%d 未在 20 秒内就绪", ds.host, ds.port)

    def poll_once(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    self._start(child)
                continue
            rc = child.proc.poll()
            if rc is None:
                continue
            child.history.append(rc)
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
        log.info("全部阶段已停止")

    def run(self) -> int:
        stop = False

        def _on_signal(signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        self.start_all()
        web = self.settings.web
        print(f"\nyuqing 已启动：请在浏览器打开 http://{web.host}:{web.port}/  （Ctrl-C 停止）\n", flush=True)
        try:
            while not stop:
                self.poll_once()
                time.sleep(0.5)
        finally:
            self.stop_all()
        return 0
