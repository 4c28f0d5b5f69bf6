"""`yuqing up` owns its children: none outlives it, and one runs per data directory.

Real processes throughout: the whole system under `yuqing up`, or the
Supervisor driving small stages that spawn grandchildren (a pool of spawned
workers, a subprocess that ignores SIGTERM), killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.system import ROOT, free_port, wait_for
from yuqing.supervisor import EXIT_ALREADY_RUNNING, EXIT_PORT_BUSY, LOCK_NAME, RunLock, StartRefused

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


# -- the process table ------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every living descendant of ``root``: pid -> (start time, command line)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None and st[0] != "Z":
            children.setdefault(st[1], []).append(int(d.name))
    out: dict[int, tuple[int, str]] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if st is None:
            continue
        out[pid] = (st[3], _cmdline(pid))
        todo.extend(children.get(pid, []))
    return out


def still_alive(procs: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Those of ``procs`` still running (same pid and start time, not a zombie)."""
    alive = {}
    for pid, (start, cmd) in procs.items():
        st = _stat(pid)
        if st is not None and st[0] != "Z" and st[3] == start:
            alive[pid] = cmd
    return alive


def assert_all_gone(procs: dict[int, tuple[int, str]], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while still_alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = still_alive(procs)
    assert not left, f"still running {timeout_s}s after the supervisor died: {left}"


def _kill_leftovers(procs: dict[int, tuple[int, str]]) -> None:
    for pid in still_alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# -- yuqing up, the whole system ------------------------------------------------------


def _up_env(data_dir: Path, web_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "YUQING_DATA_DIR": str(data_dir),
        "YUQING_WEB_PORT": str(web_port),
        "YUQING_DEMO_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }


def _start_up(config_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up", "--no-demo"],
            cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
        )


def _stages(procs: dict[int, tuple[int, str]]) -> set[str]:
    return {cmd.split(" stage ", 1)[1].split()[0] for _, cmd in procs.values() if " stage " in cmd}


@pytest.mark.slow
def test_kill9_of_yuqing_up_takes_every_stage_with_it(config_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    web_port = free_port()
    env = _up_env(data_dir, web_port)
    web = f"http://127.0.0.1:{web_port}/"
    first = _start_up(config_dir, env, tmp_path / "first.log")
    seen: dict[int, tuple[int, str]] = {}
    try:
        wait_for(lambda: httpx.get(web + "login", timeout=2).status_code == 200, 120, "the web stage of the first yuqing up")
        wanted = {"web", "responder", "indexer", "classifier", "crawler"}
        seen = wait_for(lambda: (d := descendants(first.pid)) and _stages(d) == wanted and d, 60, "all five stages")
        assert any("yuqing.supervisor keeper" in cmd for _, cmd in seen.values()), seen

        # A second one on the same data directory refuses and names the running one.
        second = subprocess.run(
            [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up", "--no-demo"],
            cwd=ROOT, env=_up_env(data_dir, free_port()), capture_output=True, text=True, timeout=120,
        )
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        assert f"PID {first.pid}" in second.stderr
        assert web in second.stderr
        assert "已有一个 yuqing up 在运行" in second.stderr and "启动于" in second.stderr
        # ... and started nothing: the first one's stages are the only ones.
        assert _stages(descendants(first.pid)) == wanted

        seen = descendants(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert_all_gone(seen)
    finally:
        if first.poll() is None:
            first.kill()
        _kill_leftovers(seen)
    assert "已意外退出" in (tmp_path / "first.log").read_text(errors="replace")

    # The dead one's lock does not block: a new one starts on the same data directory and port.
    third = _start_up(config_dir, env, tmp_path / "third.log")
    try:
        wait_for(lambda: httpx.get(web + "login", timeout=2).status_code == 200, 120, "the web stage of the third yuqing up")
        seen = descendants(third.pid)
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=60) == 0
        assert_all_gone(seen, timeout_s=5)
    finally:
        if third.poll() is None:
            third.kill()
        _kill_leftovers(seen)


def test_yuqing_up_refuses_a_web_port_someone_else_holds(config_dir: Path, data_dir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up", "--no-demo"],
            cwd=ROOT, env=_up_env(data_dir, port), capture_output=True, text=True, timeout=120,
        )
    assert r.returncode == EXIT_PORT_BUSY, r.stderr
    assert f"127.0.0.1:{port} 已被其他程序占用" in r.stderr
    assert f"PID {os.getpid()}" in r.stderr  # the holder, named
    assert "YUQING_WEB_PORT" in r.stderr
    assert not (data_dir / "stream.db").exists()  # nothing was started
    # It gave its lock back: the data directory is free.
    lock = RunLock(data_dir)
    lock.acquire("http://x/", wait_dead_s=0)
    lock.release()


# -- the Supervisor with stages that spawn -----------------------------------------------

# A stage that spawns a pool of workers (spawn context, as `classify --workers` does)
# and a subprocess that ignores SIGTERM, writes its pid, then sleeps. On SIGTERM it
# dies at once (the default action), leaving its grandchildren behind.
SPAWNER = r"""
import multiprocessing, os, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor

if __name__ == "__main__":
    stubborn = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    workers = {pool.submit(os.getpid).result() for _ in range(4)}
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(" ".join(str(p) for p in [os.getpid(), stubborn.pid, *workers]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
"""

DRIVER = r"""
import logging, sys
from yuqing.settings import load_settings
from yuqing.supervisor import Child, Supervisor

logging.basicConfig(level=logging.INFO)
config_dir, script, pid_file, port = sys.argv[1:5]
children = [Child("spawner", [sys.executable, script, pid_file])]
if port != "-":
    children.append(Child("httpd", [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"],
                          port=("127.0.0.1", int(port))))
sys.exit(Supervisor(load_settings(config_dir), children=children).run())
"""


def _driver(config_dir: Path, data_dir: Path, tmp_path: Path, port: int | None = None):
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER)
    pid_file = tmp_path / "spawner.pids"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(config_dir), str(script), str(pid_file), str(port or "-")],
        cwd=ROOT, env={**os.environ, "YUQING_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    pids = wait_for(lambda: pid_file.exists() and pid_file.read_text().split(), 120, "the spawner's pids")
    return proc, [int(p) for p in pids]


def _keeper_of(pid: int) -> int | None:
    return next((p for p, (_, cmd) in descendants(pid).items() if "yuqing.supervisor keeper" in cmd), None)


def test_grandchildren_die_with_a_killed_supervisor_even_after_its_keeper_was_killed(
    config_dir: Path, data_dir: Path, tmp_path: Path,
) -> None:
    sup, (spawner, stubborn, *workers) = _driver(config_dir, data_dir, tmp_path)
    seen = descendants(sup.pid)
    try:
        assert {spawner, stubborn, *workers} <= set(seen)
        assert len(workers) >= 1
        # Grandchildren sit in their stage's process group, not the supervisor's.
        assert {_stat(p)[2] for p in (stubborn, *workers)} == {spawner}  # type: ignore[index]

        # Something kills the keeper: the supervisor starts another and tells it the groups again.
        keeper = _keeper_of(sup.pid)
        assert keeper is not None
        os.kill(keeper, signal.SIGKILL)
        new_keeper = wait_for(lambda: (k := _keeper_of(sup.pid)) and k != keeper and k, 20, "a new keeper")
        seen = descendants(sup.pid)
        assert new_keeper in seen and spawner in seen

        sup.send_signal(signal.SIGKILL)
        sup.wait(timeout=10)
        # Includes the grandchild that ignores SIGTERM and the pool's workers.
        assert_all_gone(seen)
    finally:
        if sup.poll() is None:
            sup.kill()
        _kill_leftovers(seen)


def test_a_stopped_supervisor_leaves_no_grandchild(config_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    sup, (spawner, stubborn, *workers) = _driver(config_dir, data_dir, tmp_path)
    seen = descendants(sup.pid)
    try:
        sup.send_signal(signal.SIGTERM)
        # The spawner dies on SIGTERM without stopping its workers; the supervisor stops its group.
        assert sup.wait(timeout=60) == 0
        assert_all_gone(seen, timeout_s=5)
        # And gave the data directory back.
        lock = RunLock(data_dir)
        lock.acquire("http://x/", wait_dead_s=0)
        lock.release()
    finally:
        if sup.poll() is None:
            sup.kill()
        _kill_leftovers(seen)


def test_supervisor_stops_rather_than_restart_a_server_into_a_taken_port(
    config_dir: Path, data_dir: Path, tmp_path: Path,
) -> None:
    port = free_port()
    sup, _ = _driver(config_dir, data_dir, tmp_path, port=port)
    seen = descendants(sup.pid)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200, 60, "the httpd stage")
        httpd = next(p for p, (_, cmd) in descendants(sup.pid).items() if "http.server" in cmd)
        os.kill(httpd, signal.SIGKILL)
        wait_for(lambda: _stat(httpd) is None or _stat(httpd)[0] == "Z", 10, "the httpd stage to die")  # type: ignore[index]
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            out, _ = sup.communicate(timeout=60)
        text = out.decode(errors="replace")
        assert sup.returncode == EXIT_PORT_BUSY, text
        assert f"127.0.0.1:{port} 已被其他程序占用" in text
        assert f"PID {os.getpid()}" in text
        assert text.count("已启动 httpd") == 1  # no restart into the taken port
        assert_all_gone(seen, timeout_s=5)
    finally:
        if sup.poll() is None:
            sup.kill()
        _kill_leftovers(seen)


# -- the lock ------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    first.acquire("http://127.0.0.1:8123/")
    try:
        with pytest.raises(StartRefused) as ei:
            RunLock(tmp_path).acquire("http://127.0.0.1:9999/", wait_dead_s=0)
        assert ei.value.code == EXIT_ALREADY_RUNNING
        msg = str(ei.value)
        assert f"PID {os.getpid()}" in msg and "http://127.0.0.1:8123/" in msg
        assert str(tmp_path.resolve()) in msg
    finally:
        first.release()
    again = RunLock(tmp_path)
    again.acquire("http://127.0.0.1:9999/", wait_dead_s=0)
    again.release()


def test_a_lock_file_left_by_a_dead_supervisor_does_not_block(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(
        f'{{"pid": {dead.pid}, "started_at": "2026-01-01 08:00:00", "web": "http://x/", "data_dir": "{tmp_path}"}}'
    )
    lock = RunLock(tmp_path)
    lock.acquire("http://127.0.0.1:8123/", wait_dead_s=0)
    try:
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
    finally:
        lock.release()
