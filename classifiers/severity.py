"""Severity (特别重大 / 重大 / 较大 / 一般) from stated figures, with the reason.

The thresholds live in ``config/severity.yaml`` (statutory defaults from
《生产安全事故报告和调查处理条例》第三条). Any one criterion reaching a level
is enough; the highest level reached wins. An optional, configurable spread
rule raises the level by one on heavy engagement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from classifiers.casualties import CasualtyResult, format_yuan
from stream.contracts import Engagement, Severity
from yuqing.configfile import load_model

if TYPE_CHECKING:
    from yuqing.settings import Settings

ORDER: tuple[Severity, ...] = ("一般", "较大", "重大", "特别重大")
RANK = {s: i for i, s in enumerate(ORDER)}


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LevelRule(_Cfg):
    level: Severity
    deaths_min: int = Field(ge=1)
    injured_min: int = Field(ge=1)
    loss_yuan_min: float = Field(gt=0)


class SpreadRule(_Cfg):
    enabled: bool = False
    reposts_min: int | None = Field(default=10000, ge=1)
    comments_min: int | None = Field(default=5000, ge=1)
    max_level: Severity = "重大"
    emergencies_only: bool = True


class SeverityConfig(_Cfg):
    basis: str = "《生产安全事故报告和调查处理条例》第三条"
    statutory_event_types: list[str] = Field(default_factory=lambda: ["事故灾难"])
    levels: list[LevelRule]
    spread: SpreadRule = Field(default_factory=SpreadRule)

    @field_validator("levels")
    @classmethod
    def _ordered(cls, levels: list[LevelRule]) -> list[LevelRule]:
        names = [r.level for r in levels]
        if "一般" in names:
            raise ValueError("一般 is the level below every rule; do not list it")
        if len(set(names)) != len(names):
            raise ValueError("each level may appear once")
        if names != sorted(names, key=lambda n: -RANK[n]):
            raise ValueError("list the levels highest first (特别重大, 重大, 较大)")
        for hi, lo in zip(levels, levels[1:], strict=False):
            for f in ("deaths_min", "injured_min", "loss_yuan_min"):
                if getattr(lo, f) >= getattr(hi, f):
                    raise ValueError(f"{f} of {lo.level} must be below that of {hi.level}")
        return levels


@dataclass(frozen=True)
class SeverityResult:
    level: Severity
    reason: str
    by_figures: Severity  # before any spread raise
    raised_by_spread: bool = False



class SeverityRules:
    def __init__(self, cfg: SeverityConfig):
        self.cfg = cfg
        self.levels = cfg.levels  # highest first

    @classmethod
    def load(cls, path: Path | str) -> SeverityRules:
        return cls(load_model(path, SeverityConfig))

    # -- figures ---------------------------------------------------------------

    def _level_for(self, attr: str, value: float | None) -> tuple[Severity, int | None]:
        """The level a single figure reaches and the index of its rule."""
        if value is None:
            return "一般", None
        for i, r in enumerate(self.levels):
            if value >= getattr(r, attr):
                return r.level, i
        return "一般", None

    def _range(self, attr: str, idx: int | None, label: str, unit: str) -> str:
        def fmt(v: float) -> str:
            return format_yuan(v) if attr == "loss_yuan_min" else f"{int(v)}{unit}"

        if idx is None:
            return f"{label}不足{fmt(getattr(self.levels[-1], attr))}" if self.levels else label
        lo = getattr(self.levels[idx], attr)
        if idx == 0:
            return f"{label}{fmt(lo)}以上"
        hi = getattr(self.levels[idx - 1], attr)
        if attr == "loss_yuan_min":
            return f"{label}{fmt(lo)}以上{fmt(hi)}以下"
        return f"{label}{int(lo)}–{int(hi) - 1}{unit}"

    def assess(
        self,
        cas: CasualtyResult,
        *,
        event_type: str | None = None,
        is_emergency: bool = True,
        engagement: Engagement | None = None,
    ) -> SeverityResult:
        c = cas.casualties
        statutory = event_type in self.cfg.statutory_event_types or (event_type is None and is_emergency)
        basis = f"{'依' if statutory else '参照'}{self.cfg.basis}"
        injured_label = "受伤" if cas.injured_basis == "total" else "重伤"
        criteria = [
            ("deaths_min", c.deaths, "死亡", "人", cas.best("deaths"), ""),
            ("injured_min", c.injured, injured_label, "人", cas.injured_evidence(),
             "（未提重伤人数，按受伤总数计）" if cas.injured_basis == "total" else ""),
            ("loss_yuan_min", c.loss_yuan, "直接经济损失", "", cas.best("loss_yuan"), ""),
        ]
        reached = []
        for attr, value, label, unit, ev, extra in criteria:
            level, idx = self._level_for(attr, value)
            reached.append((level, idx, attr, value, label, unit, ev, extra))
        level: Severity = max((r[0] for r in reached), key=lambda s: RANK[s])
        stated = [r for r in reached if r[3]]

        if level != "一般":
            parts = []
            for lv, idx, attr, _value, label, unit, ev, extra in reached:
                if lv != level:
                    continue
                said = f"正文称“{ev.text}”" if ev else "正文所述"
                parts.append(f"{said}，{self._range(attr, idx, label, unit)}{extra}{ev.note if ev else ''}")
            reason = "；".join(parts) + f"，{basis}为{level}"
        elif stated:
            said = "、".join(
                (f"“{ev.text}”" if ev else f"{label}{value}") for _lv, _i, _a, value, label, _u, ev, _x in stated
            )
            lowest = self.levels[-1] if self.levels else None
            bar = (
                f"未达{lowest.level}标准（死亡{lowest.deaths_min}人、重伤{lowest.injured_min}人或直接经济损失"
                f"{format_yuan(lowest.loss_yuan_min)}）" if lowest else ""
            )
            reason = f"正文称{said}，{bar}，{basis}为一般"
        elif cas.none_stated:
            reason = f"正文称无人员伤亡，且未提及直接经济损失，{basis}为一般"
        elif is_emergency:
            reason = "正文未提及伤亡人数和直接经济损失，无法定分级依据，暂按一般（人员伤亡情况明确后重新研判）"
        else:
            reason = "非突发事件，无伤亡和经济损失数字，按一般"

        by_figures = level
        raised = False
        spread = self.cfg.spread
        if spread.enabled and engagement is not None and (is_emergency or not spread.emergencies_only):
            why = []
            if spread.reposts_min is not None and (engagement.reposts or 0) >= spread.reposts_min:
                why.append(f"转发{engagement.reposts}次，达{spread.reposts_min}次阈值")
            comments = max(engagement.comments or 0, engagement.replies or 0)
            if spread.comments_min is not None and comments >= spread.comments_min:
                why.append(f"评论{comments}条，达{spread.comments_min}条阈值")
            if why and RANK[level] < RANK[spread.max_level]:
                level = ORDER[RANK[level] + 1]
                raised = True
                reason += f"；传播量大（{'、'.join(why)}），按传播上调规则提高一级为{level}"
            elif why:
                reason += f"；传播量大（{'、'.join(why)}），但传播上调以{spread.max_level}为限，维持{level}"
        return SeverityResult(level=level, reason=reason, by_figures=by_figures, raised_by_spread=raised)


def load_severity_rules(settings: Settings) -> SeverityRules:
    return SeverityRules.load(settings.config_path("severity.yaml"))
