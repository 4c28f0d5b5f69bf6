"""Config errors name the file, the line and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yuqing.configfile import ConfigError
from yuqing.settings import load_settings


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_shipped_settings_load(config_dir: Path) -> None:
    s = load_settings(config_dir)
    assert s.transport.kind == "embedded"
    assert s.web.port == 8000


def test_bad_value_names_file_line_and_field(config_dir: Path) -> None:
    f = config_dir / "settings.yaml"
    _edit(f, "  port: 8000", "  port: eighty")
    with pytest.raises(ConfigError) as ei:
        load_settings(config_dir)
    msg = str(ei.value)
    assert f"{f}:{_line_of(f, 'port: eighty')}: web.port:" in msg


def test_unknown_field_is_reported_not_ignored(config_dir: Path) -> None:
    f = config_dir / "settings.yaml"
    _edit(f, "  scheduler_tick_s: 1.0", "  scheduler_tick_s: 1.0\n  schedular_tick: 2")
    with pytest.raises(ConfigError) as ei:
        load_settings(config_dir)
    assert f"{f}:{_line_of(f, 'schedular_tick')}: responder.schedular_tick: unknown field" in str(ei.value)


def test_yaml_syntax_error_has_line(config_dir: Path) -> None:
    f = config_dir / "settings.yaml"
    _edit(f, "transport:\n", "transport:\n  kind: [embedded\n")
    with pytest.raises(ConfigError) as ei:
        load_settings(config_dir)
    assert str(ei.value).startswith(f"{f}:")
    assert "YAML syntax error" in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="找不到配置目录") as ei:
        load_settings(tmp_path)
    assert str(ei.value).startswith(f"{tmp_path / 'settings.yaml'}:") and "YUQING_CONFIG_DIR" in str(ei.value)


def test_every_config_file_validates(settings) -> None:
    from yuqing.checks import validate_config

    lines = validate_config(settings)
    assert len(lines) >= 7


@pytest.mark.parametrize(
    ("filename", "field_needle"),
    [("sources.yaml", "kind:"), ("clocks.yaml", "hours:"), ("taxonomy.yaml", "department:")],
)
def test_cli_refuses_to_start_on_a_bad_file(config_dir: Path, data_dir: Path, filename: str, field_needle: str) -> None:
    """`yuqing up` stops before starting anything and names file, line and field."""
    f = config_dir / filename
    lines = f.read_text(encoding="utf-8").splitlines()
    idx = next(i for i, ln in enumerate(lines) if ln.strip().startswith(field_needle))
    indent = lines[idx][: len(lines[idx]) - len(lines[idx].lstrip())]
    key = field_needle.rstrip(":")
    bad_value = {"kind": "telegraph", "hours": "-5", "department": "[]"}[key]
    lines[idx] = f"{indent}{key}: {bad_value}"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"YUQING_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2, r.stderr
    assert f"{f}:{idx + 1}:" in r.stderr
    assert key in r.stderr.split(f"{f}:{idx + 1}:", 1)[1].splitlines()[0]
    # Nothing was started: no stream database was created.
    assert not (data_dir / "stream.db").exists()


def test_impossible_date_names_its_line(config_dir: Path) -> None:
    f = config_dir / "settings.yaml"
    _edit(f, "data_dir: var", "data_dir: var\nsince: 2027-02-30")
    with pytest.raises(ConfigError) as ei:
        load_settings(config_dir)
    assert str(ei.value).startswith(f"{f}:{_line_of(f, '2027-02-30')}: ")


@pytest.mark.parametrize(
    ("filename", "old", "new", "field"),
    [
        ("notify.yaml", 'role: duty, jurisdiction: "3401"', 'role: duty, jurisdiction: "3499"', "recipients.{i}.jurisdiction"),
        ("notify.yaml", 'role: duty, jurisdiction: "3401"', 'role: duty, jurisdiction: "349901"', "recipients.{i}.jurisdiction"),
        ("sources.yaml", 'region: "340100"', 'region: "340199"', "sources.{i}.region"),
        ("settings.yaml", 'demo_jurisdiction: "34"', 'demo_jurisdiction: "39"', "auth.demo_jurisdiction"),
        ("regions.yaml", '{name: 合肥高新区, code: "340176"}', '{name: 合肥高新区, code: "340198"}', "aliases.0.code"),
    ],
)
def test_a_region_code_that_does_not_exist_fails_check_config(
    config_dir: Path, data_dir: Path, filename: str, old: str, new: str, field: str
) -> None:
    """Any division code the config names must be in the gazetteer: `check-config`
    fails naming file, line and field (like every other config error)."""
    f = config_dir / filename
    line = _line_of(f, old)
    _edit(f, old, new)
    if "{i}" in field:
        import yaml

        section, _, key = field.split(".")
        items = yaml.safe_load(f.read_text(encoding="utf-8"))[section]
        value = new.rsplit(": ", 1)[1].strip('"')
        field = field.format(i=next(i for i, x in enumerate(items) if str(x.get(key)) == value))
    r = subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "check-config"],
        capture_output=True, text=True, timeout=120,
        env={"YUQING_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{f}:{line}: {field}:" in r.stderr, r.stderr
    assert "配置检查通过" not in r.stdout


def test_shipped_region_codes_all_exist(settings) -> None:
    from yuqing.checks import check_region_codes

    check_region_codes(settings)  # raises ConfigError on the first unknown code
