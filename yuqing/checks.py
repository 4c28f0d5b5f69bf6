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
    return checked


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
