"""`yuqing` works from any directory: the config is the project's own (or
$YUQING_CONFIG_DIR / --config), never ./config of wherever it was started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yuqing.configfile import ConfigError
from yuqing.settings import PROJECT_CONFIG_DIR, load_settings

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env.update(extra)
    return env


def _yuqing(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yuqing.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_config_from_another_directory_uses_the_projects_config(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _yuqing(["check-config"], elsewhere, _env(YUQING_DATA_DIR=str(tmp_path / "var")))
    assert r.returncode == 0, r.stderr
    assert f"{ROOT / 'config' / 'settings.yaml'}: 通过" in r.stdout
    assert "配置检查通过" in r.stdout
    assert PROJECT_CONFIG_DIR == ROOT / "config"


def test_missing_config_says_how_to_name_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-config"
    r = _yuqing(["check-config"], tmp_path, _env(YUQING_CONFIG_DIR=str(missing), YUQING_DATA_DIR=str(tmp_path / "v")))
    assert r.returncode == 2
    assert str(missing) in r.stderr and "YUQING_CONFIG_DIR" in r.stderr and "--config" in r.stderr
    assert "Traceback" not in r.stderr
    r = _yuqing(["--config", str(missing), "check-config"], tmp_path, _env(YUQING_DATA_DIR=str(tmp_path / "v")))
    assert r.returncode == 2 and "由 --config 指定" in r.stderr


def test_relative_data_dir_counts_from_the_config_dirs_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "deploy"
    shutil.copytree(ROOT / "config", project / "config")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("YUQING_DATA_DIR", raising=False)
    monkeypatch.setenv("YUQING_CONFIG_DIR", str(project / "config"))
    s = load_settings()
    assert s.data_dir == str(project / "var")  # settings.yaml: data_dir: var
    assert (project / "var").is_dir() and not (elsewhere / "var").exists()
    assert s.store_url == f"sqlite:///{project / 'var' / 'yuqing.db'}"
    # YUQING_DATA_DIR, as a shell user means it: relative to the current directory.
    monkeypatch.setenv("YUQING_DATA_DIR", "mydata")
    assert load_settings().data_dir == str(elsewhere / "mydata")
    # An empty YUQING_CONFIG_DIR is unset: the project's own config.
    monkeypatch.setenv("YUQING_CONFIG_DIR", "")
    assert load_settings().config_dir == PROJECT_CONFIG_DIR
    monkeypatch.setenv("YUQING_CONFIG_DIR", str(elsewhere))
    with pytest.raises(ConfigError, match="YUQING_CONFIG_DIR"):
        load_settings()
