"""`yuqing clocks`: the deadlines of a rule from a T0, in a subprocess, same code as the responder."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from responder.clocks import load_clocks

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "yuqing.cli"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(
        cmd + ["clocks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("rule", "t0", "want"),
    [
        (
            "major_emergency",
            "2026-10-01T09:00:00+08:00",
            [("权威信息发布", "2026-10-01T14:00:00+08:00"), ("新闻发布会", "2026-10-02T09:00:00+08:00")],
        ),
        ("response_48h", "2026-12-31T01:30:00Z", [("回应", "2027-01-02T09:30:00+08:00")]),
        ("suggestion", "2026-09-30T10:00", [("反馈处理意见", "2026-10-15T23:59:59+08:00")]),
        ("complaint", "2026-09-30T10:00:00+08:00", [("答复", "2026-10-27T23:59:59+08:00")]),
    ],
)
def test_clocks_cli_prints_milestone_tab_deadline(rule: str, t0: str, want: list[tuple[str, str]]) -> None:
    p = _run("--rule", rule, "--t0", t0)
    assert p.returncode == 0, p.stderr
    got = [tuple(line.split("\t")) for line in p.stdout.splitlines()]
    assert got == want
    # The same answer as the responder's own code.
    dt = datetime.fromisoformat(t0.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        from responder.clocks import SHANGHAI

        dt = dt.replace(tzinfo=SHANGHAI)
    same = [(m, d.isoformat()) for m, d in load_clocks(ROOT / "config").deadlines_for(rule, dt)]
    assert got == same


def test_clocks_cli_unknown_rule_and_bad_time() -> None:
    p = _run("--rule", "nope", "--t0", "2026-10-01T09:00+08:00")
    assert p.returncode == 2 and "nope" in p.stderr and "major_emergency" in p.stderr
    p = _run("--rule", "suggestion", "--t0", "昨天")
    assert p.returncode == 2 and "ISO 8601" in p.stderr


def test_clocks_cli_uses_config_dir_workdays(config_dir: Path) -> None:
    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: [2027-01-01]\n", encoding="utf-8"
    )
    p = _run("--rule", "complaint", "--t0", "2026-12-25T09:00+08:00", config=config_dir)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "答复\t2027-01-18T23:59:59+08:00"
    p = _run("--rule", "suggestion", "--t0", "2026-09-30T10:00+08:00", "--extended", config=config_dir)
    assert p.stdout.splitlines()[1] == "反馈处理意见（延长）\t2026-10-27T23:59:59+08:00"
