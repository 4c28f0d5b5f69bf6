"""Stage health: what each stage loop has done, in a small file the web's ``/metrics`` reads.

Every :func:`stream.stage.run_stage` keeps a :class:`StageHealth` (records
consumed, produced, dead-lettered by cause, transient retries, whether it is
waiting on something now and why). With a state directory (the data dir's
``stages/``, shared by every stage of a deployment, also in docker-compose)
it writes it to ``STAGE@HOST.json`` there: at most every
``WRITE_EVERY_S`` while messages flow, at once when it starts or stops
waiting, and when it stops. A file is a snapshot of one process; counters
start from zero when the process restarts, as Prometheus counters may.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stream.contracts import SHANGHAI

log = logging.getLogger("yuqing.stream")

WRITE_EVERY_S = 5.0
_HOST = socket.gethostname()

# Why a record went to the dead-letter topic.
CAUSES = ("contract", "failed", "crashed", "too_large")


def _now() -> str:
    return datetime.now(SHANGHAI).isoformat()


@dataclass
class StageHealth:
    stage: str
    group: str = ""
    transport: str = ""
    host: str = _HOST
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    state: str = "running"  # running | waiting (a transient failure) | stopped
    consumed: int = 0  # records polled
    handled: int = 0  # records the handler finished (their output durable)
    produced: int = 0  # messages produced downstream
    dead_lettered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    transient_retries: int = 0  # handler said TransientError (store down)
    produce_retries: int = 0  # producing or flushing failed (broker down)
    poll_errors: int = 0
    waiting_for: str = ""  # what it is waiting on while ``state`` is waiting, in Chinese
    waiting_since: str | None = None
    last_error: str = ""
    last_error_at: str | None = None

    def dead(self, cause: str, n: int = 1) -> None:
        self.dead_lettered[cause] = self.dead_lettered.get(cause, 0) + n

    def error(self, text: str) -> None:
        self.last_error = text[:500]
        self.last_error_at = _now()

    def waiting(self, why: str) -> bool:
        """Enter (or stay in) the waiting state; True when this is a change."""
        self.error(why)
        if self.state == "waiting" and self.waiting_for == why:
            return False
        if self.state != "waiting":
            self.waiting_since = _now()
        self.state, self.waiting_for = "waiting", why
        return True

    def flowing(self) -> bool:
        """Leave the waiting state; True when this is a change."""
        if self.state != "waiting":
            return False
        self.state, self.waiting_for, self.waiting_since = "running", "", None
        return True


class HealthFile:
    """Writes one stage's :class:`StageHealth` to ``DIR/STAGE@HOST.json`` (atomically)."""

    def __init__(self, directory: Path | str | None, health: StageHealth) -> None:
        self.health = health
        self.path = None if directory is None else Path(directory) / f"{_safe(health.stage)}@{_safe(_HOST)}.json"
        self._last = float("-inf")

    def write(self, force: bool = False) -> None:
        if self.path is None or (not force and time.monotonic() - self._last < WRITE_EVERY_S):
            return
        self._last = time.monotonic()
        self.health.updated_at = _now()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(asdict(self.health), ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # health is a report: never a reason to stop the stage
            log.warning("阶段 %s 的健康状态写入失败：%s", self.health.stage, e)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def read_stage_health(directory: Path | str) -> list[dict[str, Any]]:
    """Every stage file in ``directory`` (unreadable ones skipped), by stage and host."""
    out = []
    d = Path(directory)
    if not d.is_dir():
        return []
    for p in sorted(d.glob("*@*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("stage"), str):
            out.append(data)
    return sorted(out, key=lambda h: (h["stage"], str(h.get("host", ""))))


def metrics_text(directory: Path | str, now: datetime | None = None) -> str:
    """Prometheus text of every stage file in ``directory`` (empty when there is none)."""
    views = read_stage_health(directory)
    if not views:
        return ""
    now = now or datetime.now(SHANGHAI)

    def esc(v: object) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    def lbl(h: dict[str, Any], **extra: str) -> str:
        pairs = {"stage": h["stage"], "host": h.get("host", ""), **extra}
        return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs.items()) + "}"

    def num(v: object) -> float:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0

    lines: list[str] = []
    for name, key, kind, help_ in (
        ("yuqing_stage_consumed_total", "consumed", "counter", "Records the stage polled."),
        ("yuqing_stage_handled_total", "handled", "counter", "Records handled with their output durable."),
        ("yuqing_stage_produced_total", "produced", "counter", "Messages the stage produced downstream."),
        ("yuqing_stage_transient_retries_total", "transient_retries", "counter",
         "Retries because the handler's store was unavailable."),
        ("yuqing_stage_produce_retries_total", "produce_retries", "counter",
         "Retries because producing to the transport failed."),
        ("yuqing_stage_poll_errors_total", "poll_errors", "counter", "Polls that failed."),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{lbl(h)} {num(h.get(key))}" for h in views]
    name = "yuqing_stage_dead_letters_total"
    lines += [f"# HELP {name} Records sent to the dead-letter topic, by cause.", f"# TYPE {name} counter"]
    for h in views:
        dead = h.get("dead_lettered") if isinstance(h.get("dead_lettered"), dict) else {}
        lines += [f"{name}{lbl(h, cause=c)} {num(dead.get(c))}" for c in sorted({*CAUSES, *dead})]
    name = "yuqing_stage_waiting"
    lines += [f"# HELP {name} 1 while the stage waits on an unavailable store or broker.", f"# TYPE {name} gauge"]
    lines += [f"{name}{lbl(h)} {1 if h.get('state') == 'waiting' else 0}" for h in views]
    name = "yuqing_stage_running"
    lines += [f"# HELP {name} 0 once the stage stopped cleanly.", f"# TYPE {name} gauge"]
    lines += [f"{name}{lbl(h)} {0 if h.get('state') == 'stopped' else 1}" for h in views]
    name = "yuqing_stage_report_age_seconds"
    lines += [f"# HELP {name} Seconds since the stage last wrote its health.", f"# TYPE {name} gauge"]
    for h in views:
        try:
            age = max((now - datetime.fromisoformat(str(h.get("updated_at")))).total_seconds(), 0.0)
        except (TypeError, ValueError):
            continue
        lines.append(f"{name}{lbl(h)} {age}")
    return "\n".join(lines) + "\n"
