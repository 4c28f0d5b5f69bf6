"""Keyword rules from ``config/taxonomy.yaml``: relevance, focus, topic →
department, emergency event type, handling type.

Every scorer returns per-label scores that sum to 1 (uniform when nothing
matched) and the words that produced them, so each decision carries a reason
naming the matched words. Matching is leftmost-longest over each section's
vocabulary (交通事故 is one hit, not also 交通); a hit in the title counts
twice and one word counts at most three times.

An emergency keyword counts only where the text reports an event that
happened (see ``events`` in ``config/taxonomy.yaml`` and :meth:`Taxonomy.event`):
not a prevention notice, worry, hypothesis, risk, habit, past reference,
negation or comparison, and only in a sentence that says something happened.
Some words name a subtype only next to another (``context``: 压扁 next to a
vehicle), and some hits count for another subtype when the report says so
(``recasts``: a series of blasts, or one someone set off, is an attack).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from classifiers.places import LongestMatcher
from yuqing.configfile import ConfigError, read_yaml, validate

if TYPE_CHECKING:
    from yuqing.settings import Settings

FOCUS_KINDS = ("重大决策部署", "公众切身利益", "政府形象公信力", "突发事件与自然灾害", "民生道德底线", "不实信息")
EVENT_TYPES = ("自然灾害", "事故灾难", "公共卫生事件", "社会安全事件")
HANDLING_TYPES = ("建设性意见建议", "实际困难", "重大问题", "模糊认识", "错误看法", "虚假不实信息")

TITLE_WEIGHT = 2.0
MAX_PER_WORD = 3
_CLAUSE_STOPS = "，,。；;！!？?\n：:、（）()"
_SENTENCE_STOPS = "。；;！!？?\n"
_CONNECTIVES = " 后并而又随即"
# "8人", "91名", "三十二人", "40余人", "40例": a report counts the people an event struck
_PEOPLE_COUNT = re.compile(r"[0-9０-９一二两三四五六七八九十百千]+(?:余|多)?(?:个|位)?(?:人|名|例)(?!民|员|士|大|家|口|如)")
# a post without a title may open with its headline: "【…】", after #tags#
_HEADLINE = re.compile(r"\n\s*(?:#[^#\n]{1,40}#\s*)*【([^】\n]{2,80})】")


def _str(v: object) -> object:
    # 12345 in YAML is an int; a keyword is always text.
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


Keyword = Annotated[str, BeforeValidator(_str), StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unique(names: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} {n!r} is listed twice")
        seen.add(n)


class IrrelevantKind(_Cfg):
    label: Name
    keywords: list[Keyword] = Field(min_length=1)


class RelevanceCfg(_Cfg):
    government_terms: list[Keyword] = Field(default_factory=list)
    irrelevant: list[IrrelevantKind] = Field(default_factory=list)


class FocusKind(_Cfg):
    name: Literal[FOCUS_KINDS]  # type: ignore[valid-type]
    keywords: list[Keyword] = Field(default_factory=list)


class FocusCfg(_Cfg):
    emergency: Literal[FOCUS_KINDS] = "突发事件与自然灾害"  # type: ignore[valid-type]
    default: Literal[FOCUS_KINDS] = "公众切身利益"  # type: ignore[valid-type]
    kinds: list[FocusKind] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> FocusCfg:
        _unique((k.name for k in self.kinds), "focus kind")
        return self


class Route(_Cfg):
    department: Name
    keywords: list[Keyword] = Field(min_length=1)


class Topic(_Cfg):
    name: Name
    department: Name
    keywords: list[Keyword] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)


class ContextWords(_Cfg):
    """Words that name a subtype only with one of ``near`` within ``window`` characters in
    the same sentence (压扁, 翻覆, 撞 next to a vehicle: 槽罐车压扁小轿车)."""

    keywords: list[Keyword] = Field(min_length=1)
    near: list[Keyword] = Field(min_length=1)
    # words that hold a near word but are not one (车间 is no vehicle)
    near_blocked: list[Keyword] = Field(default_factory=list)
    window: int = Field(8, ge=1, le=40)


class Subtype(_Cfg):
    name: Name
    keywords: list[Keyword] = Field(min_length=1)
    context: list[ContextWords] = Field(default_factory=list)
    departments: list[Name] = Field(default_factory=list)
    topic: Name | None = None  # default: the type's topic
    # subtypes that are part of this one when both are reported (the collapses
    # of an earthquake, the explosion of a bomb attack): their hits count here
    absorbs: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Subtype:
        plain = set(self.keywords)
        for c in self.context:
            for w in c.keywords:
                if w in plain:
                    raise ValueError(f"subtype {self.name}: {w!r} is both a keyword and a context keyword")
        return self


class Recast(_Cfg):
    """Hits of ``subtypes`` that count for ``to`` when the report says so: an explosion that
    someone set off (嫌犯, 引爆, 自杀式) or a series of blasts (系列爆炸) is an attack; a car
    driven into a crowd on purpose (故意) is an attack, not a road accident."""

    subtypes: list[Name] = Field(min_length=1)
    # only hits of these words (empty: every hit of ``subtypes``)
    words: list[Keyword] = Field(default_factory=list)
    to: Name
    # anywhere in the item, said as a fact (no guard word, irrealis or negation: not "排除人为引爆")
    cues: list[Keyword] = Field(default_factory=list)
    # in the hit's sentence
    near_cues: list[Keyword] = Field(default_factory=list)
    # in the hit's sentence, the hit stays (燃气, 化工, 烟花: an accident's cause)
    unless: list[Keyword] = Field(default_factory=list)
    # anywhere in the item, every hit stays (the report calls it a 事故)
    unless_anywhere: list[Keyword] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Recast:
        if not self.cues and not self.near_cues:
            raise ValueError("a recast needs cues or near_cues")
        if self.to in self.subtypes:
            raise ValueError(f"recast to {self.to!r}, which is one of its own subtypes")
        return self


class EventType(_Cfg):
    name: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    departments: list[Name] = Field(min_length=1)
    subtypes: list[Subtype] = Field(min_length=1)
    topic: Name | None = None  # the topic an emergency of this type is filed under


class EventsCfg(_Cfg):
    guard_words: list[Keyword] = Field(default_factory=list)
    guard_window: int = Field(6, ge=0, le=50)
    not_events: list[Keyword] = Field(default_factory=list)
    # A hit whose clause (between commas, full stops ...) holds one of these is
    # not an event that happened: a worry, a hypothesis, a risk, a habit, a
    # past reference or a comparison ("一旦发生火灾", "经常发生交通事故").
    irrealis_words: list[Keyword] = Field(default_factory=list)
    # ... and the same for these when they come before the hit ("不是交通事故").
    negation_words: list[Keyword] = Field(default_factory=list)
    # A condition rules its whole sentence: one of these before the hit in the
    # same sentence voids it ("如果…直接排入下水道，…或导致传染病暴发").
    conditional_words: list[Keyword] = Field(default_factory=list)
    # A hit counts only when its sentence says something happened (发生, 造成,
    # a casualty, a rescue, a time of day, a count of people ...) or it is in
    # the title (a headline that names an event reports it); empty: no such
    # requirement.
    occurred_words: list[Keyword] = Field(default_factory=list)
    # Words matched with the cue lists above only so that a cue inside them is
    # not read (可怕 is not 怕, 录像 is not 像, 夜总会发生 is not 会发生, 一致 is not 致).
    cue_blocked: list[Keyword] = Field(default_factory=list)
    # "A 引发 B" in one sentence: B is a consequence, A's subtype takes its hits.
    causal_words: list[Keyword] = Field(default_factory=list)
    causal_gap: int = Field(6, ge=0, le=30)
    types: list[EventType] = Field(min_length=1)
    recasts: list[Recast] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> EventsCfg:
        _unique((t.name for t in self.types), "event type")
        _unique((s.name for t in self.types for s in t.subtypes), "event subtype")
        names = {s.name for t in self.types for s in t.subtypes}
        for t in self.types:
            for s in t.subtypes:
                for a in s.absorbs:
                    if a not in names or a == s.name:
                        raise ValueError(f"subtype {s.name}: absorbs {a!r}, which is not another subtype")
        for r in self.recasts:
            for n in [*r.subtypes, r.to]:
                if n not in names:
                    raise ValueError(f"recast: {n!r} is not a subtype")
        return self


class HandlingType(_Cfg):
    name: Literal[HANDLING_TYPES]  # type: ignore[valid-type]
    response: Name
    keywords: list[Keyword] = Field(default_factory=list)
    on_hit: bool = False
    emergencies: bool = False


class NoResponseCfg(_Cfg):
    """政务动态: a work report that needs no response (see taxonomy.yaml)."""

    report_words: list[Keyword] = Field(min_length=1)
    # A citizen's voice (a demand, complaint, doubt, question): anywhere in title or text.
    demand_words: list[Keyword] = Field(default_factory=list)
    # A problem named (停水, 欠薪, 事故 …): in the title or the text's first sentence (the lede).
    problem_words: list[Keyword] = Field(default_factory=list)
    # The government's own phrases that hold a problem or demand word (根治欠薪, 投诉举报电话):
    # such a word there is no complaint.
    official_phrases: list[Keyword] = Field(default_factory=list)


class HandlingCfg(_Cfg):
    default: Literal[HANDLING_TYPES] = "实际困难"  # type: ignore[valid-type]
    types: list[HandlingType] = Field(min_length=1)
    no_response: NoResponseCfg | None = None

    @model_validator(mode="after")
    def _check(self) -> HandlingCfg:
        _unique((t.name for t in self.types), "handling type")
        if self.default not in {t.name for t in self.types}:
            raise ValueError(f"default {self.default!r} is not one of the listed types")
        return self


class TaxonomyConfig(_Cfg):
    model_version: Name = "rules-1"
    relevance: RelevanceCfg = Field(default_factory=RelevanceCfg)
    focus: FocusCfg
    topics: list[Topic] = Field(min_length=1)
    events: EventsCfg
    handling: HandlingCfg

    @model_validator(mode="after")
    def _check(self) -> TaxonomyConfig:
        _unique((t.name for t in self.topics), "topic")
        return self

    def departments(self) -> set[str]:
        """Every generic department name the taxonomy can route to."""
        out = {t.department for t in self.topics}
        out |= {r.department for t in self.topics for r in t.routes}
        for et in self.events.types:
            out |= set(et.departments)
            for st in et.subtypes:
                out |= set(st.departments)
        return out


# ---------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    word: str
    in_title: bool


@dataclass
class LabelScores:
    scores: dict[str, float]  # sum to 1
    raw: dict[str, float]
    words: dict[str, list[str]]  # label -> matched words, first occurrence order

    @property
    def total(self) -> float:
        return sum(self.raw.values())

    def top(self) -> str | None:
        if self.total <= 0:
            return None
        return max(self.raw, key=lambda k: self.raw[k])  # dict order breaks ties: config order

    def quoted(self, label: str, n: int = 5) -> str:
        return "".join(f"“{w}”" for w in self.words.get(label, [])[:n])


class KeywordScorer:
    """Scores labels by how many of their keywords occur in a text.

    ``blocked`` phrases are matched like keywords but count for nothing, so a
    keyword inside one (林火 in 森林火险) is not a hit.
    """

    def __init__(self, labels: Mapping[str, Sequence[str]], blocked: Iterable[str] = ()):
        self.labels = list(labels)
        self._word_labels: dict[str, list[str]] = {}
        for label, words in labels.items():
            for w in words:
                ls = self._word_labels.setdefault(w, [])
                if label not in ls:
                    ls.append(label)
        self._blocked = set(blocked) - set(self._word_labels)
        self._matcher = LongestMatcher(list(self._word_labels) + list(self._blocked))
        self._uniform = round(1.0 / len(self.labels), 6) if self.labels else 0.0

    def hits(self, title: str, text: str) -> list[Hit]:
        rx = self._matcher.regex()
        if rx is None:
            return []
        blocked = self._blocked
        out = [Hit(m.start(), m.end(), w, True) for m in rx.finditer(title) if (w := m.group()) not in blocked]
        off = len(title) + 1
        out += [Hit(m.start() + off, m.end() + off, w, False) for m in rx.finditer(text) if (w := m.group()) not in blocked]
        return out

    def score_hits(self, hits: Iterable[Hit]) -> LabelScores:
        if isinstance(hits, list | tuple) and not hits:
            # nothing matched (most scorers on most posts): what normalise gives for all zeros
            return LabelScores(dict.fromkeys(self.labels, self._uniform), dict.fromkeys(self.labels, 0.0),
                               {label: [] for label in self.labels})
        return weigh_hits(((h, self._word_labels.get(h.word, ())) for h in hits), self.labels)

    def score(self, title: str, text: str) -> LabelScores:
        return self.score_hits(self.hits(title, text))


def weigh_hits(hits: Iterable[tuple[Hit, Iterable[str]]], labels: Iterable[str]) -> LabelScores:
    """Scores from (hit, labels it counts for): a title hit weighs ``TITLE_WEIGHT``,
    and one word adds at most ``MAX_PER_WORD`` however often it occurs."""
    raw = dict.fromkeys(labels, 0.0)
    words: dict[str, list[str]] = {label: [] for label in raw}
    per_word: dict[str, float] = {}
    for h, owners in hits:
        w = TITLE_WEIGHT if h.in_title else 1.0
        used = per_word.get(h.word, 0.0)
        add = min(w, MAX_PER_WORD - used)
        if add <= 0:
            continue
        per_word[h.word] = used + add
        for label in owners:
            raw[label] += add
            if h.word not in words[label]:
                words[label].append(h.word)
    return LabelScores(normalise(raw), raw, words)


def normalise(raw: Mapping[str, float]) -> dict[str, float]:
    """Scores that sum to 1; uniform when every raw score is 0."""
    if not raw:
        return {}
    if min(raw.values()) >= 0:  # the usual case: max(v, 0.0) is v (a NaN minimum takes the general path)
        total = sum(raw.values())
        if total <= 0:
            u = round(1.0 / len(raw), 6)
            return {k: u for k in raw}
        return {k: round(v / total, 6) if v else v / total for k, v in raw.items()}
    total = sum(max(v, 0.0) for v in raw.values())
    if total <= 0:
        u = round(1.0 / len(raw), 6)
        return {k: u for k in raw}
    return {k: round(max(v, 0.0) / total, 6) for k, v in raw.items()}


@dataclass
class TopicResult:
    topic: str | None
    department: str | None
    co_departments: list[str]
    reason: str
    scores: LabelScores
    model_confidence: float | None = None  # set when a topic model chose the topic


@dataclass
class EventResult:
    event_type: str | None
    subtype: str | None
    departments: list[str]
    reason: str
    topic: str | None
    type_scores: LabelScores
    subtype_scores: LabelScores
    hits: list[Hit] = field(default_factory=list)
    headline: bool = False  # the title (or a post's 【headline】) names the event: the item is about it


@dataclass
class HandlingResult:
    name: str
    response: str
    reason: str
    scores: LabelScores


class Taxonomy:
    """The loaded rules; build once per process."""

    def __init__(self, cfg: TaxonomyConfig):
        self.cfg = cfg
        rel = cfg.relevance
        self.government = KeywordScorer({"政务": rel.government_terms})
        self.irrelevant = KeywordScorer({k.label: k.keywords for k in rel.irrelevant})
        self.focus = KeywordScorer({k.name: k.keywords for k in cfg.focus.kinds})
        self.topics = KeywordScorer({t.name: t.keywords for t in cfg.topics})
        self._topic = {t.name: t for t in cfg.topics}
        self._routes = {t.name: KeywordScorer({r.department: r.keywords for r in t.routes}) for t in cfg.topics if t.routes}
        self._subtype = {st.name: (et, st) for et in cfg.events.types for st in et.subtypes}
        self.subtypes = KeywordScorer(
            {name: [*st.keywords, *(w for c in st.context for w in c.keywords)] for name, (_et, st) in self._subtype.items()},
            blocked=cfg.events.not_events,
        )
        # context word -> (matcher of its near words and their blocked words, near words, window)
        self._context: dict[str, tuple[LongestMatcher, set[str], int]] = {}
        for _et, st in self._subtype.values():
            for c in st.context:
                for w in c.keywords:
                    self._context.setdefault(w, (LongestMatcher([*c.near, *c.near_blocked]),
                                                 set(c.near) - set(c.near_blocked), c.window))
        self._recasts = [(r, LongestMatcher(r.cues), LongestMatcher(r.near_cues), set(r.unless),
                          LongestMatcher(r.unless), LongestMatcher(r.unless_anywhere)) for r in cfg.events.recasts]
        ev = cfg.events
        # a guard word inside a blocked word is none (检查站 is no 检查)
        self._guards = LongestMatcher([*ev.guard_words, *ev.cue_blocked])
        self._guard_set = set(ev.guard_words) - set(ev.cue_blocked)
        self._irrealis = set(ev.irrealis_words)
        self._negation = set(ev.negation_words) - self._irrealis
        blocked = set(ev.cue_blocked)
        self._mood = LongestMatcher([*ev.irrealis_words, *ev.negation_words, *blocked])
        self._conditional = LongestMatcher([*ev.conditional_words, *blocked])
        self._conditional_set = set(ev.conditional_words) - blocked
        self._occurred_set = set(ev.occurred_words) - blocked
        self._occurred = LongestMatcher([*ev.occurred_words, *blocked])
        self._causal = LongestMatcher(ev.causal_words)
        self._absorbers: dict[str, list[str]] = {}  # subtype -> the subtypes that absorb it, config order
        for et in ev.types:
            for st in et.subtypes:
                for a in st.absorbs:
                    self._absorbers.setdefault(a, []).append(st.name)
        self._subtype_of: dict[str, str] = {}  # keyword -> the first subtype listing it
        for et in ev.types:
            for st in et.subtypes:
                for w in [*st.keywords, *(w for c in st.context for w in c.keywords)]:
                    self._subtype_of.setdefault(w, st.name)
        self.handling_scorer = KeywordScorer({h.name: h.keywords for h in cfg.handling.types})

    @classmethod
    def load(cls, path: Path | str) -> Taxonomy:
        data, lines = read_yaml(path)
        cfg = validate(path, data, lines, TaxonomyConfig)
        topics = {t.name for t in cfg.topics}
        problems: list[tuple[int | None, str, str]] = []
        for i, et in enumerate(cfg.events.types):
            refs = [(("events", "types", i, "topic"), et.topic)]
            refs += [(("events", "types", i, "subtypes", j, "topic"), st.topic) for j, st in enumerate(et.subtypes)]
            for where, name in refs:
                if name is not None and name not in topics:
                    problems.append((lines.get(where), ".".join(map(str, where)), f"{name} is not one of the topics"))
        if problems:
            raise ConfigError(path, problems)
        return cls(cfg)

    @property
    def model_version(self) -> str:
        return self.cfg.model_version

    @property
    def topic_names(self) -> list[str]:
        return [t.name for t in self.cfg.topics]

    # -- topic --------------------------------------------------------------------

    def department_for(self, topic: str, title: str = "", text: str = "") -> tuple[str, str]:
        """(department, why) for ``topic``; a route wins when its words occur."""
        t = self._topic[topic]
        scorer = self._routes.get(topic)
        if scorer is not None:
            s = scorer.score(title, text)
            best = s.top()
            if best is not None:
                return best, f"；命中{s.quoted(best)}，由{best}主管"
        return t.department, ""

    def topic(self, title: str, text: str) -> TopicResult:
        s = self.topics.score(title, text)
        best = s.top()
        if best is None:
            return TopicResult(None, None, [], "未命中任何主题词，主题待定", s)
        dept, why = self.department_for(best, title, text)
        reason = f"命中{s.quoted(best)}，归入{best}，主管部门{self._topic[best].department}{why}"
        co: list[str] = []
        # A second topic nearly as strong as the first: its department responds too.
        ranked = sorted((v, k) for k, v in s.raw.items() if k != best and v > 0)
        if ranked:
            v2, second = ranked[-1]
            if v2 >= 2 and v2 >= 0.6 * s.raw[best]:
                d2, _ = self.department_for(second, title, text)
                if d2 != dept:
                    co.append(d2)
                    reason += f"；同时命中{s.quoted(second)}（{second}），{d2}按职责回应"
        return TopicResult(best, dept, co, reason, s)

    # -- events ---------------------------------------------------------------------

    def _guarded(self, full: str, h: Hit) -> bool:
        w = self.cfg.events.guard_window
        window = full[max(0, h.start - w) : h.end + w]
        return any(w in self._guard_set for _s, _e, w in self._guards.finditer(window))

    @staticmethod
    def _span(full: str, h: Hit, stops: str) -> tuple[int, int]:
        """The clause or sentence around ``h``: from the stop before it to the stop after it."""
        start = max(full.rfind(c, 0, h.start) for c in stops) + 1
        ends = [i for c in stops if (i := full.find(c, h.end)) >= 0]
        return start, min(ends) if ends else len(full)

    def _mood_of(self, full: str, h: Hit) -> str | None:
        """The irrealis or negation word that voids ``h`` in its clause, if any."""
        a, b = self._span(full, h, _CLAUSE_STOPS)
        for s, _e, w in self._mood.finditer(full[a:b]):
            if w in self._irrealis or (w in self._negation and a + s < h.start):  # blocked words are neither
                return w
        a, _b = self._span(full, h, _SENTENCE_STOPS)
        for _s, _e, w in self._conditional.finditer(full[a : h.start]):
            if w in self._conditional_set:
                return w
        return None

    def _occurred_in(self, full: str, h: Hit, headline: tuple[int, int] = (0, 0)) -> bool:
        if not self.cfg.events.occurred_words or h.in_title or headline[0] <= h.start < headline[1]:
            return True
        a, b = self._span(full, h, _SENTENCE_STOPS)
        sentence = full[a:b]
        if _PEOPLE_COUNT.search(sentence):
            return True
        return any(w in self._occurred_set for _s, _e, w in self._occurred.finditer(sentence))

    def _causes(self, full: str, hits: Sequence[Hit], subtype_of: Mapping[str, str]) -> dict[int, str]:
        """Hit index → the subtype of the event that caused it ("追尾引发大火": 大火 → 交通事故)."""
        out: dict[int, str] = {}
        gap = self.cfg.events.causal_gap
        for j, b in enumerate(hits):
            for a in hits[:j]:
                sa, sb = subtype_of[a.word], subtype_of[b.word]
                if sa == sb or b.start - a.end > gap + 4:
                    continue
                between = full[a.end : b.start]
                if any(c in between for c in _SENTENCE_STOPS):
                    continue
                # "追尾引发大火", or "相撞失火" / "追尾后起火" with nothing but a connective between
                if not between.strip(_CONNECTIVES) or any(s <= gap for s, _e, _w in self._causal.finditer(between)):
                    out[j] = sa
        return out

    def event(self, title: str, text: str) -> EventResult:
        """The emergency an item reports, from subtype keywords that describe an
        event that happened: not a prevention notice (guard words next to the
        hit), a worry, hypothesis, risk, habit, past reference or negation in
        the hit's clause, and only where its sentence says something happened."""
        full = f"{title}\n{text}"
        subtype_of = self._subtype_of
        m = None if title.strip() else _HEADLINE.match(full)
        headline = m.span(1) if m else (0, 0)
        hits: list[Hit] = []
        voided: list[tuple[str, str]] = []
        described: set[str] = set()  # subtypes the text calls something, happened or not
        for h in self.subtypes.hits(title, text):
            if h.word in self._context and not self._context_near(full, h):
                continue  # 撞, 压扁 with no vehicle near: not a road accident
            if self._guarded(full, h):
                voided.append((h.word, "防范"))
            elif (w := self._mood_of(full, h)) is not None:
                voided.append((h.word, w))
            else:
                described.add(subtype_of[h.word])
                if self._occurred_in(full, h, headline):
                    hits.append(h)
                else:
                    voided.append((h.word, ""))
        # consequences count for their cause; an absorbed subtype for its absorber,
        # which may be named in a sentence of its own ("这次爆炸事件是…恐怖袭击事件")
        caused = self._causes(full, hits, subtype_of)
        present = described
        owner: list[str] = []
        for j, h in enumerate(hits):
            name = caused.get(j, subtype_of[h.word])
            seen = {name}
            while (up := next((a for a in self._absorbers.get(name, ()) if a in present), None)) and up not in seen:
                seen.add(up)
                name = up
            owner.append(name)
        recast = self._recast(full, hits, owner)
        sub = self._score_owned(hits, owner)
        type_raw = {et.name: 0.0 for et in self.cfg.events.types}
        type_words: dict[str, list[str]] = {et.name: [] for et in self.cfg.events.types}
        for name, v in sub.raw.items():
            et = self._subtype[name][0]
            type_raw[et.name] += v
            type_words[et.name] += [w for w in sub.words[name] if w not in type_words[et.name]]
        types = LabelScores(normalise(type_raw), type_raw, type_words)
        best_sub = sub.top()
        if best_sub is None:
            reason = "未命中突发事件类型词"
            if voided:
                words = "".join(f"“{w}”" for w in dict.fromkeys(w for w, _ in voided))
                reason = f"命中{words}，但属防范、假设、担忧、隐患、往事或否定表述，或未述及事件发生，不计为突发事件"
            return EventResult(None, None, [], reason, None, types, sub, hits)
        et, st = self._subtype[best_sub]
        depts = list(dict.fromkeys(st.departments or et.departments))
        reason = f"命中{sub.quoted(best_sub)}，属{et.name}（{st.name}）"
        why = [f"“{w}”因“{cue}”计为{to}" for w, (to, cue) in recast.items() if to == best_sub]
        if why:
            reason += f"（{'；'.join(why)}）"
        in_headline = any(h.in_title or headline[0] <= h.start < headline[1] for h in hits)
        return EventResult(et.name, st.name, depts, reason, st.topic or et.topic, types, sub, hits, in_headline)

    def _context_near(self, full: str, h: Hit) -> bool:
        """A context word (see ``ContextWords``) with one of its near words close by, in its sentence."""
        matcher, near, window = self._context[h.word]
        a, b = self._span(full, h, _SENTENCE_STOPS)
        lo, hi = max(a, h.start - window), min(b, h.end + window)
        return any(w in near for _s, _e, w in matcher.finditer(full[lo:hi]))

    def _factual(self, full: str, start: int, end: int, word: str) -> bool:
        """``word`` at ``start`` is said as a fact: no guard word next to it, no irrealis or negation."""
        h = Hit(start, end, word, False)
        return not self._guarded(full, h) and self._mood_of(full, h) is None

    def _recast(self, full: str, hits: Sequence[Hit], owner: list[str]) -> dict[str, tuple[str, str]]:
        """Apply ``events.recasts`` to ``owner`` in place; returns hit word -> (new subtype, cue)."""
        done: dict[str, tuple[str, str]] = {}
        for r, cues, near_cues, unless, unless_m, unless_anywhere in self._recasts:
            if any(True for _ in unless_anywhere.finditer(full)):
                continue
            anywhere = next((w for s, e, w in cues.finditer(full) if self._factual(full, s, e, w)), None)
            stays: list[int] = []  # hits that may be recast, and the cue each has in its sentence
            for j, h in enumerate(hits):
                if owner[j] not in r.subtypes or (r.words and h.word not in r.words):
                    continue
                a, b = self._span(full, h, _SENTENCE_STOPS)
                sentence = full[a:b]
                if any(w in unless for _s, _e, w in unless_m.finditer(sentence)):
                    continue
                near = next((w for s, e, w in near_cues.finditer(sentence) if self._factual(full, a + s, a + e, w)), None)
                anywhere = anywhere or near  # the headline names the event the body tells (故意 in the body)
                stays.append(j)
            if anywhere is not None:
                for j in stays:
                    owner[j] = r.to
                    done.setdefault(hits[j].word, (r.to, anywhere))
        return done

    def _score_owned(self, hits: Sequence[Hit], owner: Sequence[str]) -> LabelScores:
        """Score hits like :class:`KeywordScorer`, each for the subtype that owns it."""
        return weigh_hits(((h, (name,)) for h, name in zip(hits, owner, strict=True)), self.subtypes.labels)

    def default_event_departments(self) -> list[str]:
        return list(self.cfg.events.types[0].departments)

    # -- handling --------------------------------------------------------------------

    def handling(self, title: str, text: str, *, is_emergency: bool) -> HandlingResult:
        s = self.handling_scorer.score(title, text)
        by_name = {h.name: h for h in self.cfg.handling.types}
        chosen: str | None = None
        why = ""
        for h in self.cfg.handling.types:
            if h.on_hit and s.raw.get(h.name, 0) > 0:
                chosen, why = h.name, f"命中{s.quoted(h.name)}"
                break
        if chosen is None and is_emergency:
            for h in self.cfg.handling.types:
                if h.emergencies:
                    chosen, why = h.name, "属突发事件"
                    break
        if chosen is None:
            best = s.top()
            if best is not None:
                chosen, why = best, f"命中{s.quoted(best)}"
        if chosen is None:
            chosen, why = self.cfg.handling.default, "未命中处置类型词，按默认"
        h = by_name[chosen]
        return HandlingResult(h.name, h.response, f"{why}，属{h.name}：{h.response}（云南 三(三)）", s)

    def no_response_reason(self, title: str, text: str, *, is_emergency: bool) -> str | None:
        """Why an item needs no response (政务动态), or None when it needs one.

        A work report names what a government did in its title (召开, 发布, 完工 …)
        and nothing in the title or text asks, complains or doubts (no demand
        word, no question mark). An emergency always needs a response."""
        cfg = self.cfg.handling.no_response
        if cfg is None or is_emergency:
            return None
        report = [w for w in cfg.report_words if w in title]
        if not report:
            return None
        both = f"{title}\n{text}"
        if "?" in both or "？" in both:
            return None
        plain = both
        for phrase in sorted(cfg.official_phrases, key=len, reverse=True):
            plain = plain.replace(phrase, "\x00")
        if any(w in plain for w in cfg.demand_words):
            return None
        lede = _lede(plain.split("\n", 1)[1] if "\n" in plain else "")
        head = f"{plain.split(chr(10), 1)[0]}\n{lede}"
        if any(w in head for w in cfg.problem_words):
            return None
        return (f"政务动态：标题称“{'、'.join(report[:3])}”，正文未见投诉、诉求或疑问，"
                "无需回应，归档备查（不计回应时限）")


_SENTENCE_END = re.compile(r"[。！!；;\n]")


def _lede(text: str) -> str:
    """The first sentence of ``text`` that says something."""
    for part in _SENTENCE_END.split(text):
        if part.strip():
            return part
    return ""


def load_taxonomy(settings: Settings) -> Taxonomy:
    return Taxonomy.load(settings.config_path("taxonomy.yaml"))
