"""Which escalation steps would reach nobody: ``yuqing check-config`` warnings.

For every escalation step of ``config/notify.yaml`` and every jurisdiction
the deployment watches, is there a recipient the router
(:mod:`responder.notify.router`) would pick? For role ``department`` the
question is asked for every department kind (``responders.yaml`` departments
plus the unassigned office), named as the classifier would name it there.

The jurisdictions: each enabled source's region and the divisions directly
under it (a province's cities, a city's counties: a ticket's place comes from
the text first, so it is often one level below its source); the top level
(属地待定) when a source has no region; the places of ``regions.yaml`` aliases
and extra regions; and every recipient's own jurisdiction. Deeper divisions
are covered whenever their parent is: a recipient covering a prefix covers
everything under it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from responder.notify.config import ROLE_LABEL, Escalation, NotifyConfig
from responder.notify.departments import DepartmentNames
from responder.notify.router import place_prefix, step_recipients, up_levels
from responder.sources import SOURCE_KINDS


@dataclass(frozen=True)
class Gap:
    field: str  # escalation.deadline_warning.0
    line: int | None  # of that step in notify.yaml
    text: str  # Chinese


def watched_jurisdictions(
    names: DepartmentNames,
    *,
    source_regions: Iterable[str | None],
    region_codes: Iterable[str] = (),
    cfg: NotifyConfig | None = None,
) -> list[str]:
    """Division-code prefixes to check, shallow first ("" = the top level, 属地待定)."""
    gaz = names.gazetteer
    out: set[str] = set()
    for code in source_regions:
        if not code:
            out.add("")
            continue
        out.add(place_prefix(code))
        d = gaz.get(code)
        if d is not None:
            out.update(place_prefix(c.code) for c in gaz.by_code.values() if gaz.parent(c) == d)
    out.update(place_prefix(c) for c in region_codes if c)
    if cfg is not None:
        out.update(r.jurisdiction for r in cfg.recipients if r.jurisdiction)
    return sorted(out, key=lambda p: (len(p), p))


def coverage_gaps(
    cfg: NotifyConfig,
    names: DepartmentNames,
    jurisdictions: list[str],
    *,
    lines: dict[tuple[object, ...], int] | None = None,
) -> list[Gap]:
    """One gap per escalation step (and group of jurisdictions missing the same departments)."""
    gaps: list[Gap] = []
    for kind in Escalation.model_fields:
        steps = getattr(cfg.escalation, kind)
        # Crawl-health notices are not about a place: routed at the top level only.
        where = [""] if kind in SOURCE_KINDS else jurisdictions
        for i, step in enumerate(steps):
            fld = f"escalation.{kind}.{i}"
            line = (lines or {}).get(("escalation", kind, i))
            label = ROLE_LABEL.get(step.role, step.role)
            if step.up:
                label += f"，上{step.up}级"
            if step.severity_in:
                label += f"，仅{'、'.join(step.severity_in)}"
            if step.role != "department":
                bare = [j for j in where if not step_recipients(cfg, step, up_levels(j, step.up), None,
                                                                frozenset(), names)]
                if bare:
                    gaps.append(Gap(fld, line, f"{fld}（{label}）：{_places(names, bare)}没有接收人"))
                continue
            missing: dict[tuple[str, ...], list[str]] = {}
            for j in where:
                target = up_levels(j, step.up)
                lack = tuple(
                    g for g in names.generic
                    if not step_recipients(cfg, step, target, names.name_at(target, g), frozenset({g}), names)
                )
                if lack:
                    missing.setdefault(lack, []).append(j)
            for lack, js in missing.items():
                what = "所有部门" if len(lack) == len(names.generic) else f"{'、'.join(lack)}（{len(lack)}个部门）"
                gaps.append(Gap(fld, line, f"{fld}（{label}）：{_places(names, js)}没有接收人：{what}"))
    return gaps


def _places(names: DepartmentNames, prefixes: list[str]) -> str:
    return "、".join(names.place_label(p) for p in prefixes)
