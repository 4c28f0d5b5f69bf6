"""Who must respond (回应主体): SPEC §4, from 安徽/青海/云南 三(一).

Input: the resolved place (with every place the text names), the responsible
departments (lead first) and the severity. Output: ``Responder`` rows —
primary, co-responders, coordinator and, for 特别重大, the leader — each with
the rule that chose it, in Chinese.

Rules, in the order they apply:

* unknown place → primary "待定（属地未明）" (the 待定 queue);
* several places → the competent department of the government one level up
  (their nearest common ancestor) is primary; each place's department is a
  co-responder for its own part (属地);
* province-level item (a provincial policy or decision, or a place known only
  to the province) → the provincial department; 省政府办公厅 with the
  provincial propaganda department coordinates;
* one city or county → that government's responsible department; 本级政府办公室
  with the propaganda department coordinates;
* several departments → the first leads, the others are co-responders;
* a vertically managed department (税务局, 海关, …) → the upper-level
  department's office with the propaganda department coordinates;
* 特别重大 → the principal leader of that government (主要负责同志) leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from classifiers.places import Division, Gazetteer, PlaceResolution
from stream.contracts import Responder, Severity
from yuqing.configfile import ConfigError, load_model, read_yaml

if TYPE_CHECKING:
    from yuqing.settings import Settings

UNKNOWN_PRIMARY = "待定（属地未明）"
_MUNICIPALITIES = ("11", "12", "31", "50")
_ZONE_MARKERS = ("开发区", "管理区", "管委会", "委员会", "新城")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepartmentCfg(_Cfg):
    names: dict[str, str] = Field(default_factory=dict)  # level -> name at that level
    vertical: bool = False
    national: str | None = None

    @field_validator("names")
    @classmethod
    def _levels(cls, names: dict[str, str]) -> dict[str, str]:
        bad = set(names) - {"province", "city", "county"}
        if bad:
            raise ValueError(f"unknown level {sorted(bad)} (use province, city, county)")
        return names


class OfficeCfg(_Cfg):
    province: str = "办公厅"
    city: str = "办公室"
    county: str = "办公室"


class RespondersConfig(_Cfg):
    citation: str = "安徽 三(一)"
    office: OfficeCfg = Field(default_factory=OfficeCfg)
    departments: dict[str, DepartmentCfg] = Field(default_factory=dict)
    unassigned_department: str = "人民政府办公室"


def _is_municipality(d: Division) -> bool:
    return d.level == "province" and d.code[:2] in _MUNICIPALITIES


class ResponderRules:
    def __init__(self, cfg: RespondersConfig, gazetteer: Gazetteer):
        self.cfg = cfg
        self.gaz = gazetteer

    @classmethod
    def load(cls, path: Path | str, gazetteer: Gazetteer) -> ResponderRules:
        return cls(load_model(path, RespondersConfig), gazetteer)

    # -- names -------------------------------------------------------------------

    def place_name(self, d: Division) -> str:
        """霍山县; a name shared by several divisions gets its parent: 北京市朝阳区."""
        same = [x for x in self.gaz.lookup(d.name) if x.name == d.name]
        if len(same) > 1:
            parent = self.gaz.parent(d)
            if parent is not None and parent.name != d.name:
                return parent.name + d.name
        return d.name

    def government(self, d: Division) -> str:
        n = self.place_name(d)
        if any(m in d.name for m in _ZONE_MARKERS):
            return n if n.endswith(("管委会", "委员会")) else n + "管理委员会"
        if d.name.endswith(("地区", "盟")):
            return n + "行政公署"
        return n + "人民政府"

    def propaganda(self, d: Division) -> str:
        n = self.place_name(d)
        if d.name.endswith("自治区"):
            return n + "党委宣传部"
        if d.name.endswith("地区"):
            return n[:-2] + "地委宣传部"
        if any(m in d.name for m in _ZONE_MARKERS):
            return n + "党工委宣传部"
        return n + "委宣传部"

    def office(self, d: Division) -> str:
        return self.government(d) + getattr(self.cfg.office, d.level)

    def coordinator_name(self, d: Division) -> str:
        return f"{self.office(d)} 会同 {self.propaganda(d)}"

    def department(self, d: Division, generic: str) -> str:
        """霍山县应急管理局, 安徽省应急管理厅, 北京市应急管理局."""
        if generic == self.cfg.unassigned_department:
            return self.office(d)
        dept = self.cfg.departments.get(generic)
        level = "city" if _is_municipality(d) else d.level
        name = dept.names.get(level, generic) if dept else generic
        return self.place_name(d) + name

    def is_vertical(self, generic: str) -> bool:
        dept = self.cfg.departments.get(generic)
        return bool(dept and dept.vertical)

    def _upper_office(self, d: Division, generic: str) -> str:
        parent = self.gaz.parent(d)
        if parent is not None:
            return self.department(parent, generic) + "办公室"
        dept = self.cfg.departments.get(generic)
        return f"{dept.national if dept and dept.national else '上级' + generic}办公厅"

    # -- the rules ---------------------------------------------------------------------

    def assign(
        self,
        resolution: PlaceResolution,
        departments: Sequence[str],
        severity: Severity,
        *,
        province_policy: bool = False,
    ) -> list[Responder]:
        cite = f"（{self.cfg.citation}）"
        gov = resolution.division
        if gov is None or resolution.place.level == "unknown":
            return [
                Responder(
                    role="primary",
                    name=UNKNOWN_PRIMARY,
                    rule=f"属地未明：{resolution.place.reason or '无法确定事发地'}；由值班员确定属地后指派回应主体{cite}",
                )
            ]
        depts = list(dict.fromkeys(d for d in departments if d)) or [self.cfg.unassigned_department]
        lead, others = depts[0], depts[1:]
        out: list[Responder] = []
        places = [p for p in resolution.places if p.code != gov.code]
        where = self.place_name(gov)

        multi = len(resolution.places) > 1
        cross_province = multi and len({p.province for p in resolution.places}) > 1
        if multi and not cross_province:
            listed = "、".join(self.place_name(p) for p in places)
            out.append(Responder(
                role="primary",
                name=self.department(gov, lead),
                rule=f"涉及多个地方：{listed}，由上一级{where}政府主管部门负责{cite}",
            ))
            for p in places:
                out.append(Responder(
                    role="co",
                    name=self.department(p, lead),
                    rule=f"属地管理：{self.place_name(p)}就本地部分按属地回应{cite}",
                ))
        elif cross_province:
            listed = "、".join(self.gaz.describe(p) for p in resolution.places)
            out.append(Responder(
                role="primary",
                name=self.department(gov, lead),
                rule=f"涉及多个省份：{listed}，应由上级政府主管部门统筹；本系统按属地由{where}主管部门负责本地部分{cite}",
            ))
            for p in resolution.places:
                if p.code != gov.code:
                    out.append(Responder(
                        role="co",
                        name=self.department(p, lead),
                        rule=f"属地管理：{self.place_name(p)}就本地部分按属地回应{cite}",
                    ))
        elif gov.level == "province":
            if province_policy:
                rule = f"省级重大政策、重要决策部署：由{where}政府相关部门负责{cite}"
            else:
                rule = f"属地管理：正文所涉地点仅能确定到{where}，由{where}政府主管部门负责{cite}"
            out.append(Responder(role="primary", name=self.department(gov, lead), rule=rule))
        else:
            out.append(Responder(
                role="primary",
                name=self.department(gov, lead),
                rule=f"属地管理：事发地{where}，由{where}政府主管部门负责{cite}",
            ))

        if lead == self.cfg.unassigned_department:
            out[0] = Responder(role="primary", name=out[0].name, rule=out[0].rule[: -len(cite)] +
                               f"；未识别主管部门，由{self.office(gov)}指定承办部门{cite}")
        if others:
            lead_name = self.department(gov, lead)
            out[0] = Responder(role="primary", name=out[0].name, rule=out[0].rule[: -len(cite)] +
                               f"；涉及多个部门，由{lead_name}牵头{cite}")
            for o in others:
                out.append(Responder(
                    role="co",
                    name=self.department(gov, o),
                    rule=f"涉及多个部门：{self.department(gov, o)}按职责分工回应，与牵头部门{lead_name}口径一致{cite}",
                ))

        if self.is_vertical(lead):
            upper = self._upper_office(gov, lead)
            out.append(Responder(
                role="coordinator",
                name=f"{upper} 会同 {self.propaganda(gov)}",
                rule=f"垂直管理：{self.department(gov, lead)}实行垂直管理，由上级部门办公室{upper}会同宣传部门组织协调{cite}",
            ))
        else:
            level_word = "省政府办公厅" if gov.level == "province" else "本级政府办公厅（室）"
            out.append(Responder(
                role="coordinator",
                name=self.coordinator_name(gov),
                rule=f"{level_word}会同宣传部门组织协调、督促指导：{self.office(gov)}会同{self.propaganda(gov)}{cite}",
            ))

        if severity == "特别重大":
            out.append(Responder(
                role="leader",
                name=f"{self.government(gov)}主要负责同志",
                rule=f"特别重大：{self.government(gov)}主要负责同志负起领导责任，指导、协调、督促相关部门回应{cite}",
            ))
        return out


def check_departments(taxonomy_path: Path | str, rules: ResponderRules) -> None:
    """Every department the taxonomy routes to must be named in responders.yaml."""
    data, lines = read_yaml(taxonomy_path)
    known = set(rules.cfg.departments) | {rules.cfg.unassigned_department}
    problems: list[tuple[int | None, str, str]] = []

    def check(path: tuple[object, ...], name: object) -> None:
        if isinstance(name, str) and name not in known:
            field = ".".join(str(p) for p in path)
            problems.append((lines.get(path), field, f"{name} is not listed under departments in responders.yaml"))

    if isinstance(data, dict):
        for i, t in enumerate(data.get("topics") or []):
            if not isinstance(t, dict):
                continue
            check(("topics", i, "department"), t.get("department"))
            for j, r in enumerate(t.get("routes") or []):
                if isinstance(r, dict):
                    check(("topics", i, "routes", j, "department"), r.get("department"))
        for i, et in enumerate((data.get("events") or {}).get("types") or []):
            if not isinstance(et, dict):
                continue
            for k, d in enumerate(et.get("departments") or []):
                check(("events", "types", i, "departments", k), d)
            for j, st in enumerate(et.get("subtypes") or []):
                if isinstance(st, dict):
                    for k, d in enumerate(st.get("departments") or []):
                        check(("events", "types", i, "subtypes", j, "departments", k), d)
    if problems:
        raise ConfigError(taxonomy_path, problems)


def load_responder_rules(settings: Settings) -> ResponderRules:
    """responders.yaml, checked against the gazetteer and the taxonomy's departments."""
    from classifiers.places import load_regions

    rules = ResponderRules.load(settings.config_path("responders.yaml"), load_regions(settings))
    check_departments(settings.config_path("taxonomy.yaml"), rules)
    return rules
