"""Who gets a notice: escalation steps (config) → recipients (jurisdiction, department).

A step is ``{role, up, severity_in}``. Its jurisdiction is the ticket's
division-code prefix (``340104`` → ``340104``, ``341500`` → ``3415``)
shortened by ``up`` levels (one level = two digits; above a province is the
top level ``""``). The recipients of a step are those with that role whose
jurisdiction contains the target, the most specific ones only (a county
without its own 办公室 in the config falls back to its city's). For role
``department`` the recipient must also answer for the ticket's department
(or list no departments). An item whose place is 待定 goes to the top level.
A recipient named by several steps gets the notice once.
"""

from __future__ import annotations

from dataclasses import dataclass

from responder.notify.config import NotifyConfig, RecipientSpec, Step


def place_prefix(code: str | None) -> str:
    if not code:
        return ""
    c = code.strip()
    while len(c) > 2 and c.endswith("00"):
        c = c[:-2]
    return c


def _up(prefix: str, levels: int) -> str:
    for _ in range(levels):
        prefix = prefix[:-2] if len(prefix) > 2 else ""
    return prefix


@dataclass(frozen=True)
class Target:
    recipient: RecipientSpec
    step: Step


def steps_for(cfg: NotifyConfig, kind: str) -> list[Step]:
    return list(getattr(cfg.escalation, kind, None) or [])


def route(
    cfg: NotifyConfig,
    kind: str,
    *,
    place_code: str | None,
    department: str | None,
    severity: str,
) -> list[Target]:
    """The recipients of a notice of ``kind`` about a ticket."""
    base = place_prefix(place_code)
    out: list[Target] = []
    seen: set[str] = set()
    for step in steps_for(cfg, kind):
        if step.severity_in is not None and severity not in step.severity_in:
            continue
        target = _up(base, step.up)
        cands = [
            r
            for r in cfg.recipients
            if r.role == step.role
            and target.startswith(r.jurisdiction)
            and (step.role != "department" or not r.departments or (department or "") in r.departments)
        ]
        if not cands:
            continue
        best = max(len(r.jurisdiction) for r in cands)
        for r in cands:
            if len(r.jurisdiction) == best and r.name not in seen:
                seen.add(r.name)
                out.append(Target(r, step))
    return out
