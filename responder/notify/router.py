"""Who gets a notice: escalation steps (config) → recipients (jurisdiction, department).

A step is ``{role, up, severity_in}``. Its jurisdiction is the ticket's
division-code prefix (``340104`` → ``340104``, ``341500`` → ``3415``)
shortened by ``up`` levels (one level = two digits; above a province is the
top level ``""``). The recipients of a step are those with that role whose
jurisdiction contains the target, the most specific ones only (a county
without its own 办公室 in the config falls back to its city's). An item whose
place is 待定 goes to the top level. A recipient named by several steps gets
the notice once.

Role ``department`` also matches the ticket's department (the full name the
classifier gives, 蜀山区住房和城乡建设局; see :mod:`responder.notify.departments`).
A recipient's ``departments`` entry matches when it is that exact name, or when
it is a generic name (住房和城乡建设局, as in taxonomy.yaml) of the department's
kind; a recipient listing no departments answers for all. Of the matching
recipients the most specific win, in this order: an exact name; then the
deepest jurisdiction; then a listed kind over answering for all. So a
``departments: [住房和城乡建设局]`` recipient at 3401 receives 蜀山区住房和城乡建设局's
notices unless 蜀山区 (340104) has its own, and a catch-all recipient only gets
what no listed one at its depth or deeper takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from responder.notify.config import ROLE_LABEL, NotifyConfig, RecipientSpec, Step
from responder.notify.departments import DepartmentNames
from yuqing.configfile import ConfigError

log = logging.getLogger(__name__)


def place_prefix(code: str | None) -> str:
    if not code:
        return ""
    c = code.strip()
    while len(c) > 2 and c.endswith("00"):
        c = c[:-2]
    return c


def up_levels(prefix: str, levels: int) -> str:
    for _ in range(levels):
        prefix = prefix[:-2] if len(prefix) > 2 else ""
    return prefix


_up = up_levels  # the older private name


@dataclass(frozen=True)
class Target:
    recipient: RecipientSpec
    step: Step


@dataclass
class Routing:
    """The recipients of a notice, and each applicable step that found nobody (in Chinese)."""

    targets: list[Target] = field(default_factory=list)
    steps: int = 0  # steps that apply (severity_in allowing)
    missing: list[str] = field(default_factory=list)

    @property
    def unrouted(self) -> bool:
        """Steps apply, yet nobody receives it (an empty chain is a choice, not a gap)."""
        return self.steps > 0 and not self.targets


def names_for(cfg: NotifyConfig) -> DepartmentNames | None:
    """The department-name reader of the config's own dir (default: the deployment's)."""
    d = cfg.config_dir
    if d is None:
        from yuqing.settings import config_dir

        d = config_dir()
    try:
        return DepartmentNames.load(d)
    except (ConfigError, OSError) as e:
        log.warning("无法读取部门名称规则（%s），通知只按部门全名匹配：%s", d, e)
        return None


def steps_for(cfg: NotifyConfig, kind: str) -> list[Step]:
    steps = list(getattr(cfg.escalation, kind, None) or [])
    if not steps and kind == "escalated":  # 督办 by hand goes where a breach would
        steps = list(cfg.escalation.deadline_breached)
    return steps


def department_match(
    r: RecipientSpec, department: str | None, kinds: frozenset[str], names: DepartmentNames | None
) -> int:
    """How a department recipient matches: 2 names the department exactly, 1 lists
    its kind, 0 answers for every department, -1 does not match."""
    if not r.departments:
        return 0
    dept = (department or "").strip()
    if dept and dept in r.departments:
        return 2
    for entry in r.departments:
        entry_kinds = names.level_kinds(entry) if names is not None else frozenset({entry})
        if entry_kinds & kinds:
            return 1
    return -1


def step_recipients(
    cfg: NotifyConfig,
    step: Step,
    target: str,
    department: str | None,
    kinds: frozenset[str],
    names: DepartmentNames | None,
) -> list[RecipientSpec]:
    """The most specific recipients of one step at the target jurisdiction."""
    ranked: list[tuple[tuple[bool, int, int], RecipientSpec]] = []
    for r in cfg.recipients:
        if r.role != step.role or not target.startswith(r.jurisdiction):
            continue
        if step.role == "department":
            q = department_match(r, department, kinds, names)
            if q < 0:
                continue
            ranked.append(((q == 2, len(r.jurisdiction), q), r))
        else:
            ranked.append(((False, len(r.jurisdiction), 0), r))
    if not ranked:
        return []
    best = max(k for k, _ in ranked)
    return [r for k, r in ranked if k == best]


def department_kinds(department: str | None, names: DepartmentNames | None) -> frozenset[str]:
    if not department:
        return frozenset()
    if names is None:
        return frozenset({department.strip()})
    return names.kinds(department)


def plan_route(
    cfg: NotifyConfig,
    kind: str,
    *,
    place_code: str | None,
    department: str | None,
    severity: str,
    names: DepartmentNames | None = None,
) -> Routing:
    """The recipients of a notice of ``kind`` about a ticket, and the steps that found nobody.
    ``names`` reads department names (default: from the config's own dir)."""
    if names is None:
        names = names_for(cfg)
    base = place_prefix(place_code)
    kinds = department_kinds(department, names)
    out = Routing()
    seen: set[str] = set()
    for i, step in enumerate(steps_for(cfg, kind)):
        if step.severity_in is not None and severity not in step.severity_in:
            continue
        out.steps += 1
        target = up_levels(base, step.up)
        found = step_recipients(cfg, step, target, department, kinds, names)
        if not found:
            where = names.place_label(target) if names is not None else (target or "最高层级")
            what = ROLE_LABEL.get(step.role, step.role)
            if step.role == "department":
                what += f"「{department or '未指定'}」"
                if department and not kinds:
                    what += "（无法识别的部门名称）"
            out.missing.append(f"escalation.{kind}.{i}：{where}没有{what}的接收人")
            continue
        for r in found:
            if r.name not in seen:
                seen.add(r.name)
                out.targets.append(Target(r, step))
    return out


def route(
    cfg: NotifyConfig,
    kind: str,
    *,
    place_code: str | None,
    department: str | None,
    severity: str,
    names: DepartmentNames | None = None,
) -> list[Target]:
    """The recipients of a notice of ``kind`` about a ticket."""
    return plan_route(
        cfg, kind, place_code=place_code, department=department, severity=severity, names=names
    ).targets
