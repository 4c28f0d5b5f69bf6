"""Start-up checks: every config file is validated before any stage runs."""

from __future__ import annotations

import importlib
import logging

from yuqing.settings import Settings

log = logging.getLogger("yuqing.checks")

# (config file, module, loader) — each loader takes Settings, reads its YAML
# through yuqing.configfile and raises ConfigError naming file, line and field.
LOADERS: list[tuple[str, str, str]] = [
    ("sources.yaml", "crawlers.sources", "load_sources"),
    ("taxonomy.yaml", "classifiers.taxonomy", "load_taxonomy"),
    ("regions.yaml", "classifiers.places", "load_regions"),
    ("severity.yaml", "classifiers.severity", "load_severity_rules"),
    ("responders.yaml", "classifiers.responders", "load_responder_rules"),
    ("clocks.yaml", "responder.clocks", "load_clock_rules"),
    ("notify.yaml", "responder.notify.config", "load_notify_config"),
]


def validate_config(settings: Settings) -> list[str]:
    """Load every config file; raise ConfigError on the first bad one."""
    checked = [f"{settings.config_path('settings.yaml')}: 通过"]
    for filename, module, func in LOADERS:
        loader = getattr(importlib.import_module(module), func)
        loader(settings)
        checked.append(f"{settings.config_path(filename)}: 通过")
    check_region_codes(settings)
    return checked


def _unknown_code(value: str) -> str:
    return (f"行政区划代码 {value} 不存在：区划库（classifiers/data/gazetteer.tsv）和 regions.yaml 的 "
            "extra_regions 里都没有（省 34 或 340000、市 3401 或 340100、县 340104）")


def check_region_codes(settings: Settings) -> None:
    """Every division code the config names must exist in the gazetteer (with
    regions.yaml's extra_regions): sources.yaml ``region``, notify.yaml
    recipients' ``jurisdiction`` and settings.yaml ``auth.*_jurisdiction``
    (regions.yaml checks its own codes; responders.yaml names none). Raise
    ConfigError naming file, line and field, for the first file with one."""
    from classifiers.places import load_regions
    from yuqing.configfile import ConfigError, read_yaml

    codes = set(load_regions(settings).by_code)
    prefixes = {c[:n] for c in codes for n in (2, 4, 6)}

    def known_prefix(value: object) -> bool:
        v = str(value).strip()
        while len(v) > 2 and v.endswith("00"):
            v = v[:-2]
        return v == "" or v in prefixes

    def each(filename: str, section: str, key: str, exact: bool) -> None:
        path = settings.config_path(filename)
        if not path.exists():
            return
        data, lines = read_yaml(path)
        items = data.get(section) if isinstance(data, dict) else None
        problems: list[tuple[int | None, str, str]] = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict) or item.get(key) in (None, ""):
                continue
            raw = str(item[key]).strip()
            if (raw not in codes) if exact else not known_prefix(raw):
                problems.append((lines.get((section, i, key), lines.get((section, i))), f"{section}.{i}.{key}",
                                 _unknown_code(raw)))
        if problems:
            raise ConfigError(path, problems)

    each("sources.yaml", "sources", "region", exact=True)
    each("notify.yaml", "recipients", "jurisdiction", exact=False)
    path = settings.config_path("settings.yaml")
    data, lines = read_yaml(path)
    auth = data.get("auth") if isinstance(data, dict) else None
    problems = [
        (lines.get(("auth", key)), f"auth.{key}", _unknown_code(str(auth[key]).strip()))
        for key in ("root_jurisdiction", "demo_jurisdiction")
        if isinstance(auth, dict) and auth.get(key) not in (None, "") and not known_prefix(auth[key])
    ]
    if problems:
        raise ConfigError(path, problems)


def notify_coverage_warnings(settings: Settings) -> list[str]:
    """Every escalation step of notify.yaml that would reach nobody, per jurisdiction
    and department (:mod:`responder.notify.coverage`); empty without notify.yaml.
    Warnings, not errors: such notices still show on the board and in /metrics."""
    from classifiers.places import load_regions
    from crawlers.sources import load_sources
    from responder.notify.config import load_notify
    from responder.notify.coverage import coverage_gaps, watched_jurisdictions
    from responder.notify.departments import DepartmentNames
    from yuqing.configfile import read_yaml

    cfg = load_notify(settings.config_dir)
    if cfg is None:
        return []
    names = DepartmentNames.load(settings.config_dir)
    regions = load_regions(settings).regions
    jurisdictions = watched_jurisdictions(
        names,
        source_regions=[s.region for s in load_sources(settings, enabled_only=True)],
        region_codes=[a.code for a in regions.aliases] + [e.code for e in regions.extra_regions],
        cfg=cfg,
    )
    path = settings.config_path("notify.yaml")
    _, lines = read_yaml(path)
    out = [
        f"{path}:{g.line or 1}: 警告：{g.text}" for g in coverage_gaps(cfg, names, jurisdictions, lines=lines)
    ]
    if out and not cfg.enabled:
        out.insert(0, f"{path}: 提示：通知未启用（enabled: false），以下为启用后的覆盖缺口")
    return out


def prepare(settings: Settings) -> None:
    """Validate config and create the topics, so stages start on a known base."""
    from stream.factory import open_transport, topic
    from stream.topics import ALL

    validate_config(settings)
    transport = open_transport(settings)
    try:
        transport.ensure_topics([topic(settings, t) for t in ALL])
    finally:
        transport.close()
