"""Place resolution: which province, city and county a post is about.

:class:`Gazetteer` holds the official divisions (``classifiers/data/gazetteer.tsv``,
derived by :mod:`classifiers.build_gazetteer`) plus ``config/regions.yaml``
(former names, deployment aliases, extra regions, phrases that are not
places). :meth:`Gazetteer.resolve` finds mentions in the text and picks:

1. mentions, leftmost-longest, so a full name beats its short name
   (霍山县 over 霍山) and a longer name beats one inside it;
2. for a name shared by several divisions (朝阳区 in 北京 and 长春), the one
   whose ancestor or descendant is also mentioned, else the one in the
   source's region, else the one that is an ancestor of the others (吉林 →
   吉林省), else the unique one at the highest level (海南 → 海南省), else
   the mention stays ambiguous;
3. the most specific consistent chain (province → city → county); several
   unrelated places give their nearest common ancestor, and the list of
   places is kept for the responder rule "涉及多个地方";
4. no usable mention: the source's own region; else ``level="unknown"``
   (the 待定 queue).

``Place.reason`` says which of these applied, in Chinese.
"""

from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from stream.contracts import Place
from yuqing.configfile import ConfigError, read_yaml, validate

if TYPE_CHECKING:
    from yuqing.settings import Settings

Level = Literal["province", "city", "county"]
MentionKind = Literal["full", "former", "alias", "short"]

GAZETTEER_TSV = Path(__file__).resolve().parent / "data" / "gazetteer.tsv"
_LEVEL_RANK = {"province": 0, "city": 1, "county": 2}


# --------------------------------------------------------------------------
# Longest-match scanning (also used by the taxonomy keyword matcher)


class LongestMatcher:
    """Leftmost-longest, non-overlapping matching of a fixed vocabulary."""

    def __init__(self, words: Iterable[str]):
        words = list(words)
        self._lengths: dict[str, list[int]] = {}
        for w in set(words):
            if w:
                self._lengths.setdefault(w[0], []).append(len(w))
        for k in self._lengths:
            self._lengths[k] = sorted(set(self._lengths[k]), reverse=True)
        self._words = {w for w in words if w}
        # positions where some word could start, found in C rather than char by char
        self._first = re.compile("[" + "".join(re.escape(c) for c in sorted(self._lengths)) + "]") if self._lengths else None
        # the first two characters of every word: most first-character positions stop here
        self._heads = {w[:2] for w in self._words}
        self._starts = self._first
        if self._words and min(map(len, self._words)) >= 2:
            seconds = "".join(re.escape(c) for c in sorted({w[1] for w in self._words}))
            self._starts = re.compile(self._first.pattern + f"(?=[{seconds}])")  # type: ignore[union-attr]
        self._regex: re.Pattern[str] | None = None

    def candidates(self, text: str, i: int) -> Iterable[str]:
        """Words starting at ``i``, longest first."""
        for n in self._lengths.get(text[i], ()):
            w = text[i : i + n]
            if len(w) == n and w in self._words:
                yield w

    def starts(self, text: str) -> Iterator[int]:
        """Every position where a word starts, in order (and a few where only a word's first two characters occur)."""
        if self._starts is None:
            return
        heads = self._heads
        for m in self._starts.finditer(text):
            i = m.start()
            if text[i : i + 2] in heads or text[i] in heads:
                yield i

    def regex(self) -> re.Pattern[str] | None:
        """The compiled matcher (None for no words): ``finditer`` on it gives the matches."""
        if self._regex is None and self._words:
            self._regex = re.compile(_trie_pattern(self._words))
        return self._regex

    def finditer(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, word) of the leftmost-longest, non-overlapping matches."""
        rx = self.regex()
        if rx is None:
            return
        for m in rx.finditer(text):
            yield m.start(), m.end(), m.group()


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching, at a position, the longest of ``words`` found there.

    The words are laid out as a trie (一个|一起 → 一(?:个|起)), each word end an
    optional group tried after the longer continuations, so a match is the
    longest word at its start, and ``finditer`` gives the leftmost-longest,
    non-overlapping matches entirely in C.
    """
    root: dict[str, dict] = {}
    for w in words:
        node = root
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        kids = [re.escape(c) + build(sub) for c, sub in sorted(node.items()) if c]
        if not kids:
            return ""
        body = kids[0] if len(kids) == 1 else "(?:" + "|".join(kids) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(root)


# --------------------------------------------------------------------------
# Word boundaries


# jieba's own split (its re_han_default): it segments each run of these
# characters on its own, so the boundaries inside a run do not depend on the
# rest of the text.
_RUN = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+")


class _Segmenter:
    """jieba word boundaries, with every division name in the dictionary.

    A short name (和政, 迁安, 铁西) or a weak two-character name (高县) also
    occurs across word boundaries in ordinary text (和政府, 搬迁安置, 高铁西站,
    提高县级); such a match counts only when it starts and ends on a word
    boundary. One tokenizer per process (loading it takes about a second).
    """

    _lock = threading.Lock()
    _tokenizer: object | None = None
    _added: set[str] = set()
    # run text -> boundary offsets within it; emptied when the dictionary grows
    _runs: dict[str, frozenset[int]] = {}
    _RUNS_MAX = 4096

    @classmethod
    def boundaries(cls, text: str, words: Iterable[str] = ()) -> set[int] | None:
        tk = cls._get(words)
        if tk is None:
            return None
        out = {0}
        pos = 0
        for tok in tk.cut(text, HMM=False):  # type: ignore[attr-defined]
            pos += len(tok)
            out.add(pos)
        return out

    @classmethod
    def run_boundaries(cls, tk: object, run: str) -> frozenset[int]:
        """Boundary offsets in one run of :data:`_RUN` characters, cached."""
        got = cls._runs.get(run)
        if got is None:
            out = {0}
            pos = 0
            for tok in tk.cut(run, HMM=False):  # type: ignore[attr-defined]
                pos += len(tok)
                out.add(pos)
            got = frozenset(out)
            if len(cls._runs) >= cls._RUNS_MAX:
                cls._runs.clear()
            cls._runs[run] = got
        return got

    @classmethod
    def _get(cls, words: Iterable[str]) -> object | None:
        with cls._lock:
            if cls._tokenizer is None:
                try:
                    import jieba
                except ImportError:  # pragma: no cover - jieba is a dependency
                    return None
                jieba.setLogLevel(logging.WARNING)
                tk = jieba.Tokenizer()
                tk.initialize()
                cls._tokenizer = tk
            tk = cls._tokenizer
            new = [w for w in words if w not in cls._added]
            for w in new:
                tk.add_word(w)  # type: ignore[attr-defined]
            cls._added.update(new)
            if new:
                cls._runs = {}
            return tk


class _TextBounds:
    """The word boundaries of one text, segmenting only the runs asked about.

    Equal to :meth:`_Segmenter.boundaries` of the whole text for any span
    inside one run (jieba cuts runs independently); a span that is not inside
    one run falls back to the whole text.
    """

    def __init__(self, text: str, tk: object | None):
        self.text = text
        self.tk = tk
        self._starts: list[int] | None = None
        self._ends: list[int] = []
        self._whole: set[int] | None = None

    def ok(self, start: int, end: int) -> bool:
        """Whether ``start`` and ``end`` are both word boundaries."""
        if self.tk is None:
            return True
        if self._starts is None:
            self._starts, self._ends = [], []
            for m in _RUN.finditer(self.text):
                self._starts.append(m.start())
                self._ends.append(m.end())
        k = bisect_right(self._starts, start) - 1
        if k >= 0 and end <= self._ends[k]:
            rs = self._starts[k]
            b = _Segmenter.run_boundaries(self.tk, self.text[rs : self._ends[k]])
            return start - rs in b and end - rs in b
        if self._whole is None:
            self._whole = _Segmenter.boundaries(self.text) or set()
        return start in self._whole and end in self._whole


# --------------------------------------------------------------------------
# regions.yaml


def _as_code(v: object) -> object:
    # `code: 341525` without quotes is an int in YAML; accept it as the code.
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Code = Annotated[str, BeforeValidator(_as_code), Field(pattern=r"^\d{6}$")]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormerName(_Cfg):
    name: str = Field(min_length=2)
    code: Code


class RegionAlias(_Cfg):
    name: str = Field(min_length=2)
    code: Code
    note: str = ""


class ExtraRegion(_Cfg):
    code: Code
    name: str = Field(min_length=2)
    level: Level
    parent: Code | None = None
    short: list[str] = Field(default_factory=list)


class RegionsConfig(_Cfg):
    former_names: list[FormerName] = Field(default_factory=list)
    aliases: list[RegionAlias] = Field(default_factory=list)
    extra_regions: list[ExtraRegion] = Field(default_factory=list)
    not_places: list[str] = Field(default_factory=list)
    street_suffixes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------
# The gazetteer


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    level: Level
    province: str  # 6-digit code; a province's own code
    city: str | None  # 6-digit code of the city (a municipality for its districts); None if none
    short: tuple[str, ...] = ()
    flags: str = ""

    @property
    def chain(self) -> tuple[str, ...]:
        """Codes from the province down to this division, without repeats."""
        out: list[str] = []
        for c in (self.province, self.city, self.code):
            if c and c not in out:
                out.append(c)
        return tuple(out)

    def is_ancestor_of(self, other: Division) -> bool:
        return self.code != other.code and self.code in other.chain


@dataclass
class Mention:
    start: int
    end: int
    surface: str
    kind: MentionKind
    candidates: tuple[str, ...]
    code: str | None = None
    how: str = ""  # why an ambiguous mention got its code, in Chinese


@dataclass
class PlaceResolution:
    place: Place
    division: Division | None = None
    places: list[Division] = field(default_factory=list)  # the distinct specific places named
    mentions: list[Mention] = field(default_factory=list)
    ambiguous: list[Mention] = field(default_factory=list)
    from_source: bool = False


_KIND_RANK = {"full": 0, "former": 0, "alias": 0, "short": 1}
_NO_FLAGS: frozenset[str] = frozenset()


class Gazetteer:
    """Official divisions plus the deployment's regions.yaml; load once, share."""

    def __init__(self, divisions: Iterable[Division], regions: RegionsConfig | None = None):
        self.regions = regions or RegionsConfig()
        self.by_code: dict[str, Division] = {}
        for d in divisions:
            self.by_code[d.code] = d
        self._names: dict[str, tuple[MentionKind, list[str]]] = {}
        self._alias_note: dict[str, str] = {}
        for d in self.by_code.values():
            self._add(d.name, "full", d.code)
            for s in d.short:
                self._add(s, "short", d.code)
        for f in self.regions.former_names:
            self._add(f.name, "former", f.code)
        for a in self.regions.aliases:
            self._add(a.name, "alias", a.code)
            self._alias_note[a.name] = a.note
        self._blocked = set(self.regions.not_places)
        self._street = tuple(sorted(self.regions.street_suffixes, key=len, reverse=True))
        self._matcher = LongestMatcher(list(self._names) + list(self._blocked))
        # Names jieba should keep whole. Weak two-character names (和县, 高县)
        # are left out: added, they would win over 和/县 in 领导和县社保.
        weak = {d.name for d in self.by_code.values() if d.flags}
        self._segment_words = [w for w in self._names if len(w) >= 2 and w not in weak]
        self._segmenter_ready = False  # our names are in the shared tokenizer
        self._name_flags: dict[str, frozenset[str]] = {}

    def _add(self, surface: str, kind: MentionKind, code: str) -> None:
        have = self._names.get(surface)
        if have is None or _KIND_RANK[kind] < _KIND_RANK[have[0]]:
            self._names[surface] = (kind, [code])
        elif _KIND_RANK[kind] == _KIND_RANK[have[0]] and code not in have[1]:
            have[1].append(code)

    # -- loading ------------------------------------------------------------

    @classmethod
    def load(cls, regions_path: Path | str | None = None, tsv_path: Path | str | None = None) -> Gazetteer:
        """Read the gazetteer TSV and ``regions.yaml`` (default: ``$YUQING_CONFIG_DIR/regions.yaml``).

        Raises :class:`ConfigError` naming the file, line and field of a bad
        entry (an unknown code, a malformed one, an unknown key).
        """
        if regions_path is None:
            from yuqing.settings import config_dir

            regions_path = config_dir() / "regions.yaml"
        divisions = read_tsv(tsv_path or GAZETTEER_TSV)
        data, lines = read_yaml(regions_path)
        regions = validate(regions_path, data, lines, RegionsConfig)
        known = {d.code: d for d in divisions}
        problems: list[tuple[int | None, str, str]] = []
        extra: list[Division] = []
        for i, e in enumerate(regions.extra_regions):
            where = ("extra_regions", i)
            if e.code in known:
                problems.append((lines.get(where + ("code",), lines.get(where)), f"extra_regions.{i}.code",
                                 f"{e.code} is already {known[e.code].name}; use aliases for another name"))
                continue
            if e.level == "province":
                extra.append(Division(e.code, e.name, "province", e.code, None, tuple(e.short)))
                continue
            parent = known.get(e.parent or "")
            if parent is None or _LEVEL_RANK[parent.level] >= _LEVEL_RANK[e.level]:
                problems.append(
                    (lines.get(where + ("parent",), lines.get(where)), f"extra_regions.{i}.parent",
                     f"{e.parent!r} is not a known division above a {e.level}")
                )
                continue
            city = parent.code if e.level == "county" and parent.level == "city" else parent.city
            if e.level == "county" and parent.level == "province" and parent.code[:2] in ("11", "12", "31", "50"):
                city = parent.code
            d = Division(e.code, e.name, e.level, parent.province, city if e.level == "county" else None, tuple(e.short))
            extra.append(d)
            known[d.code] = d
        for section, items in (("former_names", regions.former_names), ("aliases", regions.aliases)):
            for i, item in enumerate(items):
                if item.code not in known:
                    problems.append(
                        (lines.get((section, i, "code"), lines.get((section, i))), f"{section}.{i}.code",
                         f"unknown division code {item.code}")
                    )
        if problems:
            raise ConfigError(regions_path, problems)
        return cls(list(divisions) + extra, regions)

    # -- lookups -------------------------------------------------------------

    def get(self, code: str | None) -> Division | None:
        if not code:
            return None
        code = code.strip()
        if len(code) in (2, 4) and code.isdigit():
            code = code.ljust(6, "0")
        return self.by_code.get(code)

    def lookup(self, name: str) -> list[Division]:
        """Divisions a name (full, short, former or alias) can mean."""
        hit = self._names.get(name)
        return [self.by_code[c] for c in hit[1]] if hit else []

    def place_for(self, d: Division, reason: str = "") -> Place:
        prov = self.by_code[d.province].name
        city: str | None = None
        county: str | None = None
        if d.level == "province":
            if d.code[:2] in ("11", "12", "31", "50"):
                city = d.name  # 北京市 is province and city
        elif d.level == "city":
            city = d.name
        else:
            city = self.by_code[d.city].name if d.city and d.city in self.by_code else None
            county = d.name
        return Place(province=prov, city=city, county=county, code=d.code, level=d.level, reason=reason)

    def parent(self, d: Division) -> Division | None:
        chain = d.chain
        return self.by_code.get(chain[-2]) if len(chain) >= 2 else None

    def common_ancestor(self, ds: Sequence[Division]) -> Division | None:
        if not ds:
            return None
        common = list(ds[0].chain)
        for d in ds[1:]:
            chain = d.chain
            n = 0
            while n < len(common) and n < len(chain) and common[n] == chain[n]:
                n += 1
            common = common[:n]
        return self.by_code[common[-1]] if common else None

    def describe(self, d: Division) -> str:
        """安徽省六安市霍山县: the full chain, without the repeated municipality."""
        return self.place_for(d).label

    # -- resolution -----------------------------------------------------------

    def mentions(self, text: str) -> list[Mention]:
        out: list[Mention] = []
        last_end = -1
        bounds: _TextBounds | None = None
        matcher, blocked, names, street = self._matcher, self._blocked, self._names, self._street
        i = 0  # text before i is consumed
        for j in matcher.starts(text):
            if j < i:
                continue
            found: Mention | None = None
            for w in matcher.candidates(text, j):
                if w in blocked:
                    found = Mention(j, j + len(w), w, "full", ())  # consumed, not a place
                    break
                kind, codes = names[w]
                end = j + len(w)
                if kind == "short" and street and text.startswith(street, end):
                    continue
                flags = self._flags(w) if kind == "full" else _NO_FLAGS
                if "p" in flags:
                    if not self._after_parent(out, last_end, j, codes):
                        continue
                elif kind == "short" or "w" in flags:
                    if not self._after_parent(out, last_end, j, codes):
                        if bounds is None:
                            words: Iterable[str] = () if self._segmenter_ready else self._segment_words
                            bounds = _TextBounds(text, _Segmenter._get(words))
                            self._segmenter_ready = True
                        if not bounds.ok(j, end):
                            continue
                found = Mention(j, end, w, kind, tuple(codes))
                break
            if found is None:
                continue
            if found.candidates:
                out.append(found)
                last_end = found.end
            i = found.end
        return out

    def _flags(self, name: str) -> frozenset[str]:
        """The flags of the divisions a full name can mean ({"p"}, {"w"}, {""} ...)."""
        got = self._name_flags.get(name)
        if got is None:
            got = frozenset(self.by_code[c].flags for c in self._names[name][1])
            self._name_flags[name] = got
        return got

    def _after_parent(self, out: list[Mention], last_end: int, i: int, codes: Sequence[str]) -> bool:
        """六安霍山, 阳泉市城区: right after a mention of an ancestor."""
        prev = out[-1] if out and last_end == i else None
        return prev is not None and any(
            a != c and a in self.by_code[c].chain for c in codes for a in prev.candidates
        )

    def resolve(self, text: str, source_region: str | None = None) -> PlaceResolution:
        mentions = self.mentions(text)
        source = self.get(source_region)
        for m in mentions:
            if len(m.candidates) == 1:
                m.code = m.candidates[0]
        for m in mentions:
            if m.code is None:
                self._disambiguate(m, mentions, source)
        resolved = [m for m in mentions if m.code]
        ambiguous = [m for m in mentions if m.code is None]

        if not resolved:
            if ambiguous:
                names = "、".join(dict.fromkeys(f"“{m.surface}”" for m in ambiguous))
                options = "、".join(self.describe(self.by_code[c]) for c in ambiguous[0].candidates[:4])
                reason = f"正文提及{names}，但有多处同名（{options}），且无其他地名或信息源属地可判定，无法确定地点，进入待定队列"
                return PlaceResolution(Place(level="unknown", reason=reason), mentions=mentions, ambiguous=ambiguous)
            if source is not None:
                reason = f"正文未提及地名，取信息源属地“{source.name}”（{self.describe(source)}）"
                return PlaceResolution(
                    self.place_for(source, reason), division=source, places=[source], mentions=mentions, from_source=True
                )
            why = "正文未提及地名，信息源无属地" if not source_region else f"正文未提及地名，信息源属地代码“{source_region}”不在区划表中"
            return PlaceResolution(Place(level="unknown", reason=f"无法确定地点（{why}），进入待定队列"), mentions=mentions)

        divisions = {m.code: self.by_code[m.code] for m in resolved if m.code}
        leaves = [d for d in divisions.values() if not any(d.is_ancestor_of(o) for o in divisions.values())]
        first: dict[str, Mention] = {}
        counts: dict[str, int] = {}
        for m in resolved:
            assert m.code is not None
            first.setdefault(m.code, m)
            counts[m.code] = counts.get(m.code, 0) + 1
        notes = "".join(dict.fromkeys(m.how for m in resolved if m.how))

        # A place's weight: its own mentions plus those of its ancestors. A
        # place named much less than the main one (the origin of a bus, the
        # hospital in another city) is not a place the item is about.
        def weight(d: Division) -> int:
            return sum(counts.get(c, 0) for c in d.chain)

        top_w = max(weight(d) for d in leaves)
        main_leaves = [d for d in leaves if weight(d) * 2 >= top_w]
        minor = [d for d in leaves if d not in main_leaves]
        main_leaves.sort(key=lambda d: first[d.code].start)
        aside = (
            f"（另提及{'、'.join(self._said(first[d.code], d) for d in minor)}，提及较少，不作为事发地）" if minor else ""
        )

        if len(main_leaves) == 1:
            leaf = main_leaves[0]
            reason = f"正文提及{self._said(first[leaf.code], leaf)}{self._belongs(leaf)}{aside}{notes}"
            return PlaceResolution(self.place_for(leaf, reason), leaf, [leaf], mentions, ambiguous)

        listed = "、".join(self._said(first[d.code], d) for d in main_leaves)
        top = self.common_ancestor(main_leaves)
        if top is not None:
            reason = f"正文提及多地：{listed}，取共同上级{self.describe(top)}{aside}{notes}"
            return PlaceResolution(self.place_for(top, reason), top, main_leaves, mentions, ambiguous)
        main = max(main_leaves, key=lambda d: (weight(d), -first[d.code].start))
        reason = f"正文提及多地且跨省：{listed}，取提及最多的{self.describe(main)}{aside}{notes}"
        return PlaceResolution(self.place_for(main, reason), main, main_leaves, mentions, ambiguous)

    def resolve_place(self, text: str, source_region: str | None = None) -> Place:
        return self.resolve(text, source_region).place

    # -- helpers ---------------------------------------------------------------

    def _said(self, m: Mention, d: Division) -> str:
        if m.kind == "former":
            return f"“{m.surface}”（现{d.name}）"
        if m.kind == "alias":
            note = self._alias_note.get(m.surface)
            return f"“{m.surface}”（{d.name}，本地别名{('：' + note) if note else ''}）"
        if m.surface != d.name:
            return f"“{m.surface}”（{d.name}）"
        return f"“{m.surface}”"

    def _belongs(self, d: Division) -> str:
        if d.level == "province":
            return ""
        parents = [self.by_code[c].name for c in d.chain[:-1] if c in self.by_code]
        return f"，属{''.join(dict.fromkeys(parents))}" if parents else ""

    def _disambiguate(self, m: Mention, mentions: list[Mention], source: Division | None) -> None:
        cands = [self.by_code[c] for c in m.candidates]
        others = [o for o in mentions if o is not m]

        def related(a: Division, b: Division) -> bool:
            return a.is_ancestor_of(b) or b.is_ancestor_of(a)

        # 1. another mention on the same chain (长春市 … 朝阳区)
        for pool in ([o for o in others if o.code], others):
            scores = []
            for c in cands:
                hits = [o for o in pool if any(related(c, self.by_code[x]) for x in ((o.code,) if o.code else o.candidates))]
                scores.append((len(hits), c, hits))
            best = max(s[0] for s in scores)
            winners = [s for s in scores if s[0] == best]
            if best > 0 and len(winners) == 1:
                _, c, hits = winners[0]
                m.code = c.code
                m.how = f"（“{m.surface}”有多处同名，据正文同时提及“{hits[0].surface}”判定为{self.describe(c)}）"
                return
        # 2. the source's own region
        if source is not None:
            def shared(c: Division) -> int:
                return sum(1 for a, b in zip(c.chain, source.chain, strict=False) if a == b)

            scores2 = sorted(((shared(c), c) for c in cands), key=lambda t: -t[0])
            if scores2[0][0] > 0 and (len(scores2) == 1 or scores2[1][0] < scores2[0][0]):
                c = scores2[0][1]
                m.code = c.code
                m.how = f"（“{m.surface}”有多处同名，据信息源属地{self.describe(source)}判定为{self.describe(c)}）"
                return
        # 3. one candidate is an ancestor of all the others (吉林 → 吉林省)
        for c in cands:
            if all(c is o or c.is_ancestor_of(o) for o in cands):
                m.code = c.code
                m.how = f"（“{m.surface}”同时是{self.describe(c)}及其下辖地名，取上级）"
                return
        # 4. the unique candidate at the highest level (海南 → 海南省)
        top = min(_LEVEL_RANK[c.level] for c in cands)
        at_top = [c for c in cands if _LEVEL_RANK[c.level] == top]
        if len(at_top) == 1 and m.kind == "short":
            c = at_top[0]
            m.code = c.code
            m.how = f"（“{m.surface}”有多处同名，无其他线索，取级别最高的{self.describe(c)}）"
            return
        # 5. still ambiguous: left for the 待定 queue unless other mentions decide


def read_tsv(path: Path | str) -> list[Division]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(p, [(None, "", "gazetteer not found; run `python -m classifiers.build_gazetteer`")]) from None
    out: list[Division] = []
    header = lines[0].split("\t") if lines else []
    if header[:7] != ["code", "name", "level", "province", "city", "short", "flags"]:
        raise ConfigError(p, [(1, "", "not a gazetteer TSV (bad header)")])
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if len(cols) < 7 or cols[2] not in _LEVEL_RANK:
            raise ConfigError(p, [(n, "", f"bad row: {line!r}")])
        code, name, level, prov, city, short, flags = cols[:7]
        out.append(
            Division(
                code=code,
                name=name,
                level=level,  # type: ignore[arg-type]
                province=prov or code,
                city=city or None,
                short=tuple(s for s in short.split("|") if s),
                flags=flags,
            )
        )
    return out


_default: Gazetteer | None = None
_default_lock = threading.Lock()


def default_gazetteer() -> Gazetteer:
    """The process-wide gazetteer from the default config dir, loaded once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Gazetteer.load()
        return _default


def resolve_place(text: str, source_region: str | None = None, gazetteer: Gazetteer | None = None) -> Place:
    """Resolve the place of ``text``; see :meth:`Gazetteer.resolve`."""
    return (gazetteer or default_gazetteer()).resolve_place(text, source_region)


def load_regions(settings: Settings) -> Gazetteer:
    """The gazetteer with the deployment's ``regions.yaml`` (start-up check and Assessor)."""
    return Gazetteer.load(settings.config_path("regions.yaml"))
