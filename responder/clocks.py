"""Statutory response clocks (SPEC §5) as data: ``config/clocks.yaml``.

* :meth:`Clocks.choose` picks the clock rule of an assessed item, with the
  reason: the first rule in the file whose ``when`` matches. Conditions name
  relevance, emergency, severity, the handling type (SPEC §3, 研判处置) and
  the source kind of the stream contract (news, forum, weibo, comments,
  gov_board, official). As shipped: 特别重大/重大 emergencies →
  ``major_emergency``; a 建设性意见建议 sent to a government message board or
  问政 platform (gov_board) → ``suggestion`` (7 working days, extendable to
  15); any other gov_board message (咨询, 投诉, 求助, 举报) → ``complaint``
  (15 working days); every other relevant item → ``response_48h``.
  :func:`rule_for` is the rule alone. The file is checked at start: unknown
  values, an empty ``when``, ``relevant: false``, or a rule that an earlier
  rule's ``when`` always catches first are errors naming file, line and field.
* :func:`deadlines_for` turns a rule and the event's T0 into
  ``[(milestone, due_at)]``, Asia/Shanghai aware.

Hour clocks are wall-clock hours from T0 (nights and weekends count: a
statutory clock is never muted). Working-day clocks follow China's official
calendar including 调休 make-up days (``chinese_calendar``), overridden and
extended by ``config/workdays.yaml``; a year neither knows is counted Monday
to Friday with a warning in the log. The day of T0 is not counted; the
deadline is the end (23:59:59) of the N-th working day after it.
"""

from __future__ import annotations

import functools
import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from classifiers.taxonomy import HANDLING_TYPES
from stream.contracts import Assessment, Severity, SourceKind
from yuqing.configfile import ConfigError, load_model, read_yaml, validate

if TYPE_CHECKING:
    from yuqing.settings import Settings

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SHANGHAI = ZoneInfo("Asia/Shanghai")
END_OF_DAY = time(23, 59, 59)

MAJOR_EMERGENCY = "major_emergency"
RESPONSE_48H = "response_48h"
SUGGESTION = "suggestion"
COMPLAINT = "complaint"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MilestoneSpec(_Model):
    name: str = Field(min_length=1)
    hours: float | None = Field(None, gt=0)
    working_days: int | None = Field(None, gt=0)
    extendable_to_working_days: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_duration(self) -> MilestoneSpec:
        if (self.hours is None) == (self.working_days is None):
            raise ValueError("give exactly one of hours or working_days")
        if self.extendable_to_working_days is not None:
            if self.working_days is None:
                raise ValueError("extendable_to_working_days needs working_days")
            if self.extendable_to_working_days < self.working_days:
                raise ValueError("extendable_to_working_days is shorter than working_days")
        return self


HandlingTypeName = Literal[HANDLING_TYPES]  # type: ignore[valid-type]

# How a reason names a source kind (the stream contract's values).
SOURCE_KIND_LABEL: dict[str, str] = {
    "news": "新闻网站",
    "forum": "论坛",
    "weibo": "微博",
    "comments": "新闻跟帖",
    "gov_board": "政府留言板/问政平台",
    "official": "政府网站/政务新媒体",
}


class When(_Model):
    """Which assessed items a rule applies to: every condition given must hold."""

    relevant: bool | None = None
    emergency: bool | None = None
    severity_in: list[Severity] | None = Field(None, min_length=1)
    handling_type_in: list[HandlingTypeName] | None = Field(None, min_length=1)  # type: ignore[valid-type]
    source_kind_in: list[SourceKind] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _meaningful(self) -> When:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("when has no condition: it would catch every item; "
                             "leave out when for a rule applied only by hand")
        if self.relevant is False:
            raise ValueError("relevant: false never applies: an item that is not 政务舆情 gets no clock")
        return self

    def conditions(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in type(self).model_fields if getattr(self, f) is not None}

    def covers(self, other: When) -> bool:
        """Whether every item ``other`` matches is matched by this one too."""
        mine, theirs = self.conditions(), other.conditions()
        for f, v in mine.items():
            if f not in theirs:
                return False
            if isinstance(v, list):
                if not set(theirs[f]) <= set(v):
                    return False
            elif theirs[f] != v:
                return False
        return True


class RuleSpec(_Model):
    label: str = ""
    source: str = ""
    when: When | None = None
    milestones: list[MilestoneSpec] = Field(min_length=1)
    followup_interval_hours: float | None = Field(None, gt=0)

    @field_validator("milestones")
    @classmethod
    def _unique_names(cls, v: list[MilestoneSpec]) -> list[MilestoneSpec]:
        names = [m.name for m in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"milestone named twice: {', '.join(sorted(dup))}")
        return v


class ClocksConfig(_Model):
    warnings: list[float] = Field(default_factory=lambda: [0.5, 0.8])
    workdays_file: str = "workdays.yaml"
    rules: dict[str, RuleSpec] = Field(min_length=1)

    @field_validator("warnings")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0 < f < 1:
                raise ValueError(f"warning point {f} must be a fraction between 0 and 1 (e.g. 0.5)")
        if len(set(v)) != len(v):
            raise ValueError("warning points must be different")
        return sorted(v)


class YearCalendar(_Model):
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)


class WorkdaysFile(_Model):
    # Keys are years as written ("2027"); YAML gives ints, the loader makes them text
    # so that error locations match the file's lines.
    years: dict[str, YearCalendar] = Field(default_factory=dict)

    @field_validator("years")
    @classmethod
    def _dates_in_year(cls, v: dict[str, YearCalendar]) -> dict[str, YearCalendar]:
        for year, cal in v.items():
            if not (year.isdigit() and len(year) == 4):
                raise ValueError(f"year {year!r} must be four digits, e.g. 2027")
            for d in [*cal.holidays, *cal.workdays]:
                if d.year != int(year):
                    raise ValueError(f"{d.isoformat()} is listed under year {year}")
            both = set(cal.holidays) & set(cal.workdays)
            if both:
                raise ValueError(f"listed as holiday and workday: {', '.join(sorted(map(str, both)))}")
        return v

    def year_numbers(self) -> set[int]:
        return {int(y) for y in self.years}


class WorkCalendar:
    """Is a date a working day in mainland China (with 调休)?"""

    def __init__(self, extra: WorkdaysFile | None = None):
        self.extra = extra or WorkdaysFile()
        self._holidays = {d for y in self.extra.years.values() for d in y.holidays}
        self._workdays = {d for y in self.extra.years.values() for d in y.workdays}
        self._warned: set[int] = set()
        self._years = self.extra.year_numbers()

    def is_workday(self, d: date) -> bool:
        if d in self._workdays:
            return True
        if d in self._holidays:
            return False
        official = _official_is_workday(d)
        if official is not None:
            return official
        if d.year not in self._years and d.year not in self._warned:
            self._warned.add(d.year)
            log.warning(
                "工作日历缺少 %d 年的法定节假日和调休安排：该年按周一至周五计算工作日，"
                "期限可能不准确。请在 config/workdays.yaml 中补充 %d 年的放假安排。",
                d.year,
                d.year,
            )
        return d.weekday() < 5

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after ``start`` (``start`` itself not counted)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        d = start
        left = n
        while left > 0:
            d += timedelta(days=1)
            if self.is_workday(d):
                left -= 1
        return d


def _official_is_workday(d: date) -> bool | None:
    """chinese_calendar's answer, or None for a year it does not know."""
    try:
        import chinese_calendar
    except ImportError:  # pragma: no cover - a dependency, but never crash on a clock
        return None
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:
        return None


class Clocks:
    """The loaded clock rules and working-day calendar."""

    def __init__(self, config: ClocksConfig, calendar: WorkCalendar | None = None):
        self.config = config
        self.calendar = calendar or WorkCalendar()

    @property
    def warnings(self) -> list[float]:
        return list(self.config.warnings)

    def rule(self, name: str) -> RuleSpec:
        try:
            return self.config.rules[name]
        except KeyError:
            raise KeyError(f"unknown clock rule {name!r} (known: {', '.join(self.config.rules)})") from None

    def milestone(self, rule_name: str, milestone: str) -> MilestoneSpec:
        for m in self.rule(rule_name).milestones:
            if m.name == milestone:
                return m
        raise KeyError(f"rule {rule_name!r} has no milestone {milestone!r}")

    def due(self, spec: MilestoneSpec, t0: datetime, *, extended: bool = False) -> datetime:
        t0 = _aware(t0).astimezone(SHANGHAI)
        if spec.hours is not None:
            return (t0 + timedelta(hours=spec.hours)).astimezone(SHANGHAI)
        n = spec.working_days or 0
        if extended and spec.extendable_to_working_days:
            n = spec.extendable_to_working_days
        day = self.calendar.add_working_days(t0.date(), n)
        return datetime.combine(day, END_OF_DAY, tzinfo=SHANGHAI)

    def deadlines_for(self, rule_name: str, t0: datetime) -> list[tuple[str, datetime]]:
        return [(m.name, self.due(m, t0)) for m in self.rule(rule_name).milestones]

    def extended_deadline(self, rule_name: str, milestone: str, t0: datetime) -> datetime:
        """The due time after an approved extension (e.g. 7 → 15 working days)."""
        spec = self.milestone(rule_name, milestone)
        if not spec.extendable_to_working_days:
            raise ValueError(f"{milestone} of {rule_name} cannot be extended")
        return self.due(spec, t0, extended=True)

    def match(
        self,
        *,
        relevant: bool,
        emergency: bool,
        severity: str,
        handling_type: str | None = None,
        source_kind: str | None = None,
    ) -> str | None:
        for name, rule in self.config.rules.items():
            w = rule.when
            if w is None:
                continue
            if w.relevant is not None and w.relevant != relevant:
                continue
            if w.emergency is not None and w.emergency != emergency:
                continue
            if w.severity_in is not None and severity not in w.severity_in:
                continue
            if w.handling_type_in is not None and handling_type not in w.handling_type_in:
                continue
            if w.source_kind_in is not None and source_kind not in w.source_kind_in:
                continue
            return name
        return None

    def decide(self, assessment: Assessment, source_kind: str | None = None) -> tuple[str | None, str]:
        """The clock rule of an item as its ticket would get it, and why (Chinese): None for
        an item that is not 政务舆情, and for a 政务动态 archived with no clock
        (:func:`archived_as_report`)."""
        if not assessment.relevant:
            return None, "非政务舆情，归档不立单，不计时限"
        if archived_as_report(assessment, source_kind):
            return None, assessment.handling_reason or "政务动态，无需回应，归档备查（不计回应时限）"
        choice = self.choose(assessment, source_kind)
        return (choice.rule, choice.reason) if choice else (None, "未匹配任何时限规则，不计时限")

    def rule_for(self, assessment: Assessment, source_kind: str | None = None) -> str | None:
        """The clock rule of an assessed item; None for an irrelevant one."""
        choice = self.choose(assessment, source_kind)
        return choice.rule if choice else None

    def choose(self, assessment: Assessment, source_kind: str | None = None) -> Choice | None:
        """The clock rule of an assessed item and why (Chinese); None for an irrelevant one."""
        if not assessment.relevant:
            return None
        facts = {
            "relevant": True,
            "emergency": assessment.is_emergency,
            "severity": assessment.severity,
            "handling_type": assessment.handling_type,
            "source_kind": source_kind,
        }
        rule = self.match(**facts)
        if rule is None:
            return None
        return Choice(rule, self.reason(rule, **facts))

    def reason(self, rule_name: str, *, relevant: bool = True, emergency: bool, severity: str,
               handling_type: str | None, source_kind: str | None) -> str:
        """Why ``rule_name`` applies to an item with these facts (Chinese): the
        conditions it met, why each rule above it did not apply, then what the
        rule demands and its source."""
        facts = {"emergency": emergency, "severity": severity, "handling_type": handling_type,
                 "source_kind": source_kind}
        spec = self.rule(rule_name)
        said = _describe(spec.when, facts, met=True) if spec.when is not None else []
        for name, rule in self.config.rules.items():
            if name == rule_name:
                break
            if rule.when is None:
                continue
            for why in _describe(rule.when, facts, met=False)[:1]:
                if why not in said:
                    said.append(why)
        what = "、".join(_milestone_text(m) for m in spec.milestones)
        head = "；".join(said or ["政务舆情"])
        return f"{head}：适用「{spec.label or rule_name}」，{what}" + (f"；依据：{spec.source}" if spec.source else "")


def archived_as_report(assessment: Assessment, source_kind: str | None) -> bool:
    """政务动态 that asks for nothing (``needs_response`` false) is archived at once with
    no clock. A message-board post always gets a reply, an emergency always a response."""
    return not assessment.needs_response and not assessment.is_emergency and source_kind != "gov_board"


class Choice(NamedTuple):
    """A clock rule chosen for an item, and the reason (Chinese)."""

    rule: str
    reason: str


def kind_label(source_kind: str | None) -> str:
    if not source_kind:
        return "未知来源"
    return SOURCE_KIND_LABEL.get(source_kind, source_kind)


def _describe(w: When, facts: dict[str, Any], *, met: bool) -> list[str]:
    """The conditions of ``w`` that ``facts`` meet (``met``) or fail (not ``met``), in words."""
    out: list[str] = []
    em, sev, ht, sk = facts["emergency"], facts["severity"], facts["handling_type"], facts["source_kind"]
    if w.emergency is not None and (w.emergency == em) == met:
        out.append("突发事件" if em else "非突发事件")
    if w.severity_in is not None and (sev in w.severity_in) == met:
        out.append(f"等级{sev}" if met else f"等级{sev}，非{'/'.join(w.severity_in)}")
    if w.source_kind_in is not None and (sk in w.source_kind_in) == met:
        want = "/".join(dict.fromkeys(kind_label(k) for k in w.source_kind_in))
        got = f"来源为{kind_label(sk)}" if sk else "来源未注明"
        out.append(got if met else f"{got}，非{want}")
    if w.handling_type_in is not None and (ht in w.handling_type_in) == met:
        out.append(f"处置类型为{ht}" if met else f"处置类型为{ht or '未定'}，非{'/'.join(w.handling_type_in)}")
    return out


def _milestone_text(m: MilestoneSpec) -> str:
    if m.hours is not None:
        h = int(m.hours) if float(m.hours).is_integer() else m.hours
        due = f"{h}小时内"
    else:
        due = f"{m.working_days}个工作日内"
        if m.extendable_to_working_days:
            due += f"（可延长至{m.extendable_to_working_days}个工作日）"
    return f"{due}{m.name}"


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"T0 {dt.isoformat()} has no time zone: a clock never starts from a guessed zone")
    return dt


def _load(path: Path, model: type[M]) -> M:
    if model is WorkdaysFile:
        # Year keys are written bare (2027:) and parse as ints; the model keys are strings.
        data, lines = read_yaml(path)
        if isinstance(data, dict) and isinstance(data.get("years"), dict):
            data["years"] = {str(k): v for k, v in data["years"].items()}
        return validate(path, data, lines, model)
    if model is ClocksConfig:
        data, lines = read_yaml(path)
        cfg = validate(path, data, lines, ClocksConfig)
        _check_order(path, cfg, lines)
        return cfg  # type: ignore[return-value]
    return load_model(path, model)


def _check_order(path: Path, cfg: ClocksConfig, lines: dict[tuple[Any, ...], int]) -> None:
    """First match wins: a rule whose ``when`` an earlier rule's always catches is never
    chosen, which is a mistake in the order (e.g. ``suggestion`` below ``response_48h``)."""
    problems = []
    seen: list[tuple[str, When]] = []
    for name, rule in cfg.rules.items():
        if rule.when is None:
            continue
        for earlier, w in seen:
            if w.covers(rule.when):
                line = lines.get(("rules", name, "when")) or lines.get(("rules", name))
                problems.append((line, f"rules.{name}.when",
                                 f"never chosen: every item it matches is caught first by rules.{earlier} "
                                 f"(rules are tried in order; move {name} above {earlier} or narrow {earlier}.when)"))
                break
        seen.append((name, rule.when))
    if problems:
        raise ConfigError(path, problems)


def load_clocks(config_dir: Path | str) -> Clocks:
    """Load ``clocks.yaml`` and its workdays file; raise ConfigError with file:line."""
    d = Path(config_dir)
    cfg = _load(d / "clocks.yaml", ClocksConfig)
    wpath = Path(cfg.workdays_file)
    wpath = wpath if wpath.is_absolute() else d / wpath
    if wpath.exists():
        extra = _load(wpath, WorkdaysFile)
    else:
        log.warning("工作日历文件 %s 不存在：仅使用内置的国家法定节假日安排", wpath)
        extra = WorkdaysFile()
    return Clocks(cfg, WorkCalendar(extra))


def load_clock_rules(settings: Settings) -> Clocks:
    """Start-up check hook (``yuqing.checks``): the clocks of ``settings.config_dir``."""
    return load_clocks(settings.config_dir)


@functools.lru_cache(maxsize=8)
def _cached(config_dir: str) -> Clocks:
    return load_clocks(config_dir)


def default_clocks() -> Clocks:
    """Clocks from ``$YUQING_CONFIG_DIR`` (or ./config), loaded once."""
    from yuqing.settings import config_dir

    return _cached(str(config_dir().resolve()))


def deadlines_for(rule_name: str, t0: datetime, clocks: Clocks | None = None) -> list[tuple[str, datetime]]:
    return (clocks or default_clocks()).deadlines_for(rule_name, t0)


def rule_for(assessment: Assessment, clocks: Clocks | None = None) -> str | None:
    return (clocks or default_clocks()).rule_for(assessment)


def as_shanghai(dt: datetime) -> datetime:
    return _aware(dt).astimezone(SHANGHAI)


def iso_shanghai(dt: datetime | None) -> str | None:
    return None if dt is None else as_shanghai(dt).isoformat(timespec="seconds")


__all__ = [
    "Choice",
    "Clocks",
    "archived_as_report",
    "ClocksConfig",
    "WorkCalendar",
    "load_clocks",
    "load_clock_rules",
    "default_clocks",
    "deadlines_for",
    "rule_for",
    "as_shanghai",
    "iso_shanghai",
    "SHANGHAI",
]
