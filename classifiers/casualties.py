"""Casualty and loss figures stated in Chinese text.

:func:`extract_casualties` finds deaths, injured, missing, trapped and the
direct economic loss, and returns a :class:`CasualtyResult` with the
``Casualties`` contract value and the evidence span of every figure.

How figures are read (documented so a reviewer can check a level):

* digits (``12人死亡``, full-width digits too), Chinese numerals
  (``三十二人``, ``一百零五人``, ``两人``), and the short forms ``3死2伤``,
  ``造成3死``;
* lower bounds: ``至少10人``, ``不少于10人``, ``超过10人``, ``逾10人``,
  ``10余人``, ``10多人``, ``十几人`` all count as **10** (the stated number;
  the statutory thresholds are reached only by what the text asserts);
  ``上百人`` → 100, ``上千人`` → 1000; ``数十人`` / ``几十人`` → **20**
  (several tens: at least two tens), ``数百`` → 200; ``多人`` / ``数人`` /
  ``几人`` → 2 (more than one);
* upper bounds: ``近10人`` / ``将近`` / ``接近`` → N − 1 (fewer than N, so
  "近30人死亡" stays below the 30-death threshold);
* ranges ``3至5人`` → the lower end; ``20余万人`` → 200000;
* a verb that has its figure before it does not take the one after it:
  ``4名学生死亡100多人受伤`` is 4 deaths (and 100 injured), not 100 deaths;
* background: a figure in a sentence about other years (``1990年以来``,
  ``去年``, ``前年``, ``多年前``, ``上世纪``, ``历史上``) is not this event's;
* running totals: a category can be stated several times as it grows
  ("死亡人数升至15人", "已达"); the **largest** figure wins, which is also
  the latest for a running total;
* injured: ``injured`` in the contract is the seriously injured (重伤, the
  statutory measure). When the text states a 重伤 figure (重伤, 受重伤,
  伤势严重/危重) that is used; otherwise the total injured (受伤, 轻伤 …) is
  used, and :attr:`CasualtyResult.injured_basis` and the reason say which;
* ``无人员伤亡`` / ``未造成人员伤亡`` → 0 deaths and 0 injured when no figure
  is stated;
* loss: only amounts tied to 损失 ("直接经济损失约1.2亿元", "损失5000万元",
  "1.2亿元的直接经济损失"), converted to yuan; the largest wins.

Dates ("12月"), rates ("死亡率3%") and ages do not match: every pattern
needs a person unit (人/名/位/个) or a count word (人数) next to the verb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from stream.contracts import Casualties

Field_ = Literal["deaths", "serious", "injured_total", "missing", "trapped", "loss_yuan"]

# Full-width digits and the full-width dot map 1:1, so spans stay valid.
_FW = str.maketrans("０１２３４５６７８９．", "0123456789.")
_FW_ANY = re.compile("[０１２３４５６７８９．]")

_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNIT = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_CHARS = "零〇一二两三四五六七八九十百千万亿"


def cn_to_number(s: str) -> int | None:
    """一百零五 → 105, 三十二 → 32, 十 → 10, 五千万 → 50000000; None if not a numeral."""
    if not s or any(c not in _CN_CHARS for c in s):
        return None
    total = section = number = 0
    seen = False
    for c in s:
        if c in _CN_DIGIT:
            number = _CN_DIGIT[c]
            seen = True
        elif c in _CN_UNIT:
            if number == 0 and not seen:
                number = 1  # 十五: the leading 一 is implicit
            section += number * _CN_UNIT[c]
            number = 0
            seen = True
        else:
            section += number
            if section == 0:
                section = 1
            total = (total + section) * _CN_BIG[c] if c == "亿" else total + section * _CN_BIG[c]
            section = number = 0
    return total + section + number


# ---------------------------------------------------------------------------
# Number expressions

_PRE = r"至少|最少|不少于|不低于|超过|超|逾|将近|接近|近|约|大约|共计|共|合计|累计|多达|高达|已达|达到|达"
_CORE = r"\d+(?:\.\d+)?(?:余|多)?[万千百]|\d+(?:\.\d+)?|数十|数百|数千|上百|上千|几十|几百|[零〇一二两三四五六七八九十百千万]+|多|数|几"
_RANGE = r"(?:至|到|-|~|－|—)(?:\d+|[一二两三四五六七八九十百]+)"


def _num(name: str) -> str:
    return (
        rf"(?<![\d.余多])(?:(?P<{name}_pre>{_PRE}))?(?P<{name}>{_CORE})(?P<{name}_rng>{_RANGE})?"
        rf"(?P<{name}_suf>余|多|几|来)?"
    )


# Between the count and the verb: a few Chinese characters, none that start a
# casualty verb or a numeral (so "三人受伤两人死亡" and "137人食物中毒两人死亡"
# are not read as 3 / 137 deaths).
_FILL = r"(?:(?![死亡伤失被困埋遇难重危轻不零〇一二两三四五六七八九十百千万])[\u4e00-\u9fff]){0,8}?"
# After a verb-first count: not an age, a date, a distance or a sum ("死亡者是40多岁")
_NOT_COUNT = r"(?![\d.零〇一二两三四五六七八九十百千万]|(?:余|多|几|来)?(?:岁|周岁|年|月|日|号|辆|部|米|公里|分|小时|时|天|次|起|%|％|级|元|万元|亿|例))"
_DEATH = r"(?:不幸)?(?:死亡|遇难|身亡|罹难|丧生|殒命|丧命|不治身亡|遇害|溺亡|死了)"
_SERIOUS = r"(?:受重伤|重伤|严重受伤|伤势严重|伤势较重|伤势危重|危重|伤重)"
_TOTAL = r"(?:不同程度受伤|受伤|轻伤|负伤|轻重伤|受轻伤)"
_MISSING = r"(?:失踪|失联)"
_TRAPPED = r"(?:被困|受困|被埋|被掩埋)"
# A bare 个 counts people only when a word for people, a casualty verb or a
# punctuation mark follows ("3个村民被困", "5个受伤", "死了12个，"), not in
# "多个水渠都被掩埋" (things buried, nobody trapped).
_PEOPLE = (r"(?:人|村民|居民|市民|孩子|小孩|儿童|学生|工人|民工|矿工|乘客|游客|员工|船员|队员|男子|女子|老人"
           r"|群众|家属|妇女|婴儿|司机|农民|孕妇|病人|患者|家庭)")
_UNIT = (r"(?:人|名|位|个人|个(?=[\u4e00-\u9fff]{0,3}?" + _PEOPLE + r"|[^\u4e00-\u9fff]|$|"
         + "|".join((_DEATH, _SERIOUS, _TOTAL, _MISSING, _TRAPPED, "死")) + r"))")
_COUNT_VERB = (
    r"(?:人数|人员|者|的)?(?:已经|已|目前|现|共|后|又|再|随后)?"
    r"(?:上升至|上升到|增加至|增加到|增至|升至|攀升至|达到|已达|为|达|是|有)?"
)


# Every number expression starts with one of these (a qualifier or the count);
# a pattern that starts with a number is led by this lookahead, so the regex
# engine rejects the other positions at once instead of trying each qualifier.
_NUM_START = r"(?=[\d至最不超逾将接近约大共合累多高已达数上几零〇一二两三四五六七八九十百千万])"


def _pair(kind: str, verb: str) -> list[re.Pattern[str]]:
    return [
        # 12人死亡, 12名矿工遇难, 一名男子身亡
        re.compile(_NUM_START + _num("n") + _UNIT + _FILL + verb),
        # 死亡12人, 遇难人数升至15人, 死亡人数已达32 -- but not the "死亡23" of
        # "7人死亡23人受伤": a verb right after a count+unit already has its figure
        re.compile(r"(?<![人名位])" + verb + r"(?P<cnt>" + _COUNT_VERB + r")" + _num("n") + _NOT_COUNT
                   + rf"(?P<unit>{_UNIT})?"),
    ]


_VERBS = {"deaths": _DEATH, "serious": _SERIOUS, "injured_total": _TOTAL, "missing": _MISSING, "trapped": _TRAPPED}
_PATTERNS: dict[str, list[re.Pattern[str]]] = {name: _pair(name, verb) for name, verb in _VERBS.items()}
# Both patterns of a kind contain its verb: a text without the verb skips them.
_CUES: dict[str, re.Pattern[str]] = {name: re.compile(verb) for name, verb in _VERBS.items()}
# 3死2伤, 造成3死, 1死3伤1失踪
_COMPOUND = re.compile(_NUM_START + _num("d") + r"人?死(?![亡者刑])(?:" + _num("i") + r"人?伤(?![害心感痕口残])" + r")?")
_COMPOUND_CUE = "死"  # every _COMPOUND match has it
_COMPOUND_LEAD = re.compile(r"(?:致|造成|已致|酿成|导致)$")
_NONE = re.compile(r"(?:未|无|没有|暂无|暂未|并无|均无)(?:造成)?(?:人员)?(?:伤亡|死亡|受伤)")

_AMOUNT = r"(?P<amt>\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万亿]+)(?P<s1>余|多)?(?P<unit>千万|百万|十万|万|亿|千)?(?P<s2>余|多)?元"
_LOSS = [
    re.compile(r"(?=[直经财损])(?:直接)?(?:经济|财产)?损失(?:[^，。；;,、\n\d零〇一二两三四五六七八九十]{0,8}?)(?P<pre>" + _PRE + r")?" + _AMOUNT),
    re.compile(r"(?=[\d零〇一二两三四五六七八九十百千万亿])(?<![\d.])" + _AMOUNT + r"(?:的|之)?(?:直接)?(?:经济|财产)?损失"),
]
_LOSS_CUE = "损失"  # every _LOSS match has it
_UNIT_VALUE = {"千万": 10_000_000, "百万": 1_000_000, "十万": 100_000, "万": 10_000, "亿": 100_000_000, "千": 1000}


@dataclass(frozen=True)
class Evidence:
    field: Field_
    value: float
    start: int
    end: int
    text: str  # the matched words, as written
    note: str = ""  # how a qualifier was read, in Chinese ("“至少”按下限计")


@dataclass
class CasualtyResult:
    casualties: Casualties
    evidence: list[Evidence] = field(default_factory=list)
    serious_injured: int | None = None
    total_injured: int | None = None
    injured_basis: Literal["serious", "total"] | None = None
    none_stated: bool = False  # 无人员伤亡

    def best(self, name: Field_) -> Evidence | None:
        """The evidence behind the figure used for ``name`` (the largest)."""
        hits = [e for e in self.evidence if e.field == name]
        return max(hits, key=lambda e: (e.value, e.start)) if hits else None

    def injured_evidence(self) -> Evidence | None:
        if self.injured_basis == "serious":
            return self.best("serious")
        if self.injured_basis == "total":
            return self.best("injured_total")
        return None

    @property
    def any(self) -> bool:
        c = self.casualties
        return any(v for v in (c.deaths, c.injured, c.missing, c.trapped, c.loss_yuan))

    def describe(self) -> str:
        """死亡12人（“造成12人死亡”）；重伤3人（…）: for reasons shown to users."""
        c = self.casualties
        parts: list[str] = []
        if self.none_stated and not self.any:
            return "正文称无人员伤亡"
        basis = "" if self.injured_basis != "total" else "，未提重伤人数，按受伤总数计"
        for label, value, ev, extra in (
            ("死亡", c.deaths, self.best("deaths"), ""),
            ("重伤" if self.injured_basis == "serious" else "受伤", c.injured, self.injured_evidence(), basis),
            ("失踪", c.missing, self.best("missing"), ""),
            ("被困", c.trapped, self.best("trapped"), ""),
        ):
            if value:
                parts.append(f"{label}{value}人" + (f"（正文称“{ev.text}”{ev.note}{extra}）" if ev else ""))
        if c.loss_yuan:
            ev = self.best("loss_yuan")
            parts.append(f"直接经济损失{format_yuan(c.loss_yuan)}" + (f"（正文称“{ev.text}”{ev.note}）" if ev else ""))
        return "；".join(parts)


def format_yuan(v: float) -> str:
    if v >= 100_000_000:
        return f"{v / 100_000_000:g}亿元"
    if v >= 10_000:
        return f"{v / 10_000:g}万元"
    return f"{v:g}元"


def _value(m: re.Match[str], name: str) -> tuple[int, str] | None:
    core = m.group(name)
    pre = m.group(f"{name}_pre") or ""
    suf = m.group(f"{name}_suf") or ""
    special = {"数十": 20, "几十": 20, "数百": 200, "几百": 200, "数千": 2000, "上百": 100, "上千": 1000,
               "多": 2, "数": 2, "几": 2}
    note = ""
    if core in special:
        n = special[core]
        note = f"，“{core}”按{n}计"
    elif core[0].isdigit():
        mult = {"万": 10_000, "千": 1000, "百": 100}.get(core[-1], 1)
        digits = core[:-1] if mult > 1 else core
        if digits[-1] in "余多":  # "20余万人": at least 20 ten-thousands
            note = f"，“{core}”按{int(float(digits[:-1]) * mult)}计"
            digits = digits[:-1]
        n = int(float(digits) * mult)
    else:
        parsed = cn_to_number(core)
        if parsed is None:
            return None
        n = parsed
    if pre in ("近", "将近", "接近") and n > 0:
        n -= 1
        note = f"，“{pre}{core}”按不足{n + 1}计{n}"
    elif pre in ("至少", "最少", "不少于", "不低于", "超过", "超", "逾"):
        note = f"，“{pre}”按下限计{n}"
    if suf in ("余", "多", "几", "来") and core not in special:
        note = f"，“{core}{suf}”按{n}计"
    if m.group(f"{name}_rng"):
        note = f"，范围“{core}{m.group(f'{name}_rng')}”取下限{n}"
    return n, note


# A sentence about other years is background, not this event: "自1947年…以来，该地区已先后有
# 5万多人在冲突中丧生", "去年同一路段曾发生车祸致3人死亡".
_BACKGROUND = re.compile(r"(?:19|20)\d\d年[^。！？!?；;\n]{0,30}?以来|去年|前年|多年前|上世纪|历史上")
_SENTENCE = re.compile(r"[^。！？!?；;\n]+")


def _background_spans(t: str) -> list[tuple[int, int]]:
    return [m.span() for m in _SENTENCE.finditer(t) if _BACKGROUND.search(m.group())] if _BACKGROUND.search(t) else []


def extract_casualties(text: str) -> CasualtyResult:
    t = text.translate(_FW) if _FW_ANY.search(text) else text
    evidence: list[Evidence] = []
    taken: list[tuple[int, int]] = []
    background = _background_spans(t)

    def add(name: Field_, m: re.Match[str], group: str, start: int | None = None) -> None:
        if any(a <= m.start() < b for a, b in background):
            return
        got = _value(m, group)
        if got is None:
            return
        n, note = got
        s = m.start() if start is None else start
        evidence.append(Evidence(name, float(n), s, m.end(), t[s : m.end()], note))
        taken.append((s, m.end()))

    for name, pats in _PATTERNS.items():
        if not _CUES[name].search(t):
            continue
        counted: list[tuple[int, int]] = []  # count-first figures of this kind ("4名学生死亡")
        for i, pat in enumerate(pats):
            for m in pat.finditer(t):
                if i == 1 and not m.group("unit"):
                    cnt = m.group("cnt") or ""
                    if "人数" not in cnt and not re.search(r"[至到达为是有]", cnt):
                        continue  # "死亡3" with neither a unit nor a count verb: not a figure
                if i == 1 and any(a <= m.start() < b for a, b in counted):
                    continue  # the verb has its figure before it: "4名学生死亡100多人受伤"
                if i == 0:
                    counted.append(m.span())
                add(name, m, "n")  # type: ignore[arg-type]
    for m in _COMPOUND.finditer(t) if _COMPOUND_CUE in t else ():
        if any(a <= m.start() < b for a, b in taken):
            continue
        lead = _COMPOUND_LEAD.search(t[max(0, m.start() - 3) : m.start()])
        has_injured = m.group("i") is not None
        if not (lead or has_injured):
            continue  # a bare "3死" is too weak; "造成3死" or "3死2伤" is a figure
        add("deaths", m, "d")
        if has_injured:
            add("injured_total", m, "i")
    for pat in _LOSS if _LOSS_CUE in t else ():
        for m in pat.finditer(t):
            amt = m.group("amt")
            base = float(amt) if amt[0].isdigit() else cn_to_number(amt)
            if base is None:
                continue
            unit = m.group("unit") or ""
            yuan = base * _UNIT_VALUE.get(unit, 1)
            note = ""
            pre = m.groupdict().get("pre") or ""
            if pre in ("近", "将近", "接近"):
                note = f"，“{pre}”按不足该数计"
                yuan = yuan * 0.99
            if m.group("s1") or m.group("s2"):
                note = "，“余/多”按下限计"
            evidence.append(Evidence("loss_yuan", yuan, m.start(), m.end(), t[m.start() : m.end()], note))

    def top(name: str) -> int | None:
        vals = [e.value for e in evidence if e.field == name]
        return int(max(vals)) if vals else None

    deaths, serious, total = top("deaths"), top("serious"), top("injured_total")
    missing, trapped = top("missing"), top("trapped")
    loss_vals = [e.value for e in evidence if e.field == "loss_yuan"]
    loss = max(loss_vals) if loss_vals else None
    basis: Literal["serious", "total"] | None = None
    injured = None
    if serious is not None:
        injured, basis = serious, "serious"
    elif total is not None:
        injured, basis = total, "total"
    none_stated = bool(_NONE.search(t))
    if none_stated:
        deaths = 0 if deaths is None else deaths
        if injured is None:
            injured = 0
    return CasualtyResult(
        casualties=Casualties(deaths=deaths, injured=injured, missing=missing, trapped=trapped, loss_yuan=loss),
        evidence=sorted(evidence, key=lambda e: e.start),
        serious_injured=serious,
        total_injured=total,
        injured_basis=basis,
        none_stated=none_stated,
    )
