"""The query language of the search box and of monitoring schemes (监测方案).

    合肥 (地铁 | 公交) -广告

* words separated by spaces must all match (AND), as before;
* ``a | b`` (or ``a OR b``) matches either; ``|`` binds looser than the
  spaces, so ``合肥 地铁 | 六安 公交`` is (合肥 AND 地铁) OR (六安 AND 公交);
* parentheses group; ``-word`` or ``-(a | b)`` excludes (NOT) — the minus
  only at the start of a word, so ``COVID-19`` stays one word;
* ``"两个 词"`` keeps spaces inside one word;
* full-width forms（（ ） ｜ －）work like their ASCII ones.

Every word is segmented like the indexed text (:func:`segment.query_terms`):
``厂房坍塌`` needs both 厂房 and 坍塌, anywhere in the title or the text.
A word made only of stop words or punctuation adds no condition.

:func:`parse` returns a small tree (:class:`Term`, :class:`And`,
:class:`Or`, :class:`Not`) that every backend translates into its own query
(FTS5/tantivy, Elasticsearch/OpenSearch ``bool``); :func:`matches` evaluates
it over a document's index tokens, the brute-force reference the contract
tests compare backends with and what scheme alerts run on new posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from responder.search import segment as seg

MAX_QUERY_CHARS = 1000
MAX_NODES = 200

_FULL_WIDTH = str.maketrans({"（": "(", "）": ")", "｜": "|", "－": "-", "＂": '"', "“": '"', "”": '"'})


class QuerySyntaxError(ValueError):
    """A query the language cannot read; the message is for the user (Chinese)."""


@dataclass(frozen=True)
class Term:
    """One user word: all its segmented ``words`` must occur."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Term | And | Or | Not


# -- parsing ------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, position): kinds ( ) | - and word."""
    out: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()|":
            out.append((c, c, i))
            i += 1
        elif c == "-" and (not out or out[-1][0] in "(|-)" or text[i - 1].isspace()) and i + 1 < n \
                and not text[i + 1].isspace():
            out.append(("-", c, i))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end == -1:
                raise QuerySyntaxError(f"第 {i + 1} 个字符处的引号没有闭合")
            out.append(("word", text[i + 1 : end], i))
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()|"':
                j += 1
            word = text[i:j]
            if word == "OR":
                out.append(("|", word, i))
            else:
                out.append(("word", word, i))
            i = j
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.t = tokens
        self.i = 0
        self.nodes = 0

    def peek(self) -> str | None:
        return self.t[self.i][0] if self.i < len(self.t) else None

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise QuerySyntaxError(f"检索式过于复杂（超过 {MAX_NODES} 个词或分组）")

    def alternatives(self) -> Node | None:
        start = self.i
        parts = [self.sequence()]
        while self.peek() == "|":
            pos = self.t[self.i][2]
            if self.i == start:
                raise QuerySyntaxError(f"第 {pos + 1} 个字符处的“|”两边都要有检索词")
            self.i += 1
            start = self.i
            parts.append(self.sequence())
            if self.i == start:
                raise QuerySyntaxError(f"第 {pos + 1} 个字符处的“|”两边都要有检索词")
        # An alternative of stop words only sets no condition of its own: dropped.
        kept = tuple(p for p in parts if p is not None)
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else Or(kept)

    def sequence(self) -> Node | None:
        parts: list[Node] = []
        while self.peek() not in (None, ")", "|"):
            node = self.unary()
            if node is not None:
                parts.append(node)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node | None:
        kind, value, pos = self.t[self.i]
        if kind == "-":
            self.i += 1
            if self.peek() in (None, ")", "|"):
                raise QuerySyntaxError(f"第 {pos + 1} 个字符处的“-”后面要跟排除的词")
            inner = self.unary()
            return None if inner is None else Not(inner)
        if kind == "(":
            self.i += 1
            inner = self.alternatives()
            if self.peek() != ")":
                raise QuerySyntaxError(f"第 {pos + 1} 个字符处的括号没有闭合")
            self.i += 1
            if inner is None:
                raise QuerySyntaxError(f"第 {pos + 1} 个字符处的括号里没有检索词")
            return inner
        self.i += 1
        self._count()
        words = tuple(seg.query_terms(value))
        return Term(words) if words else None


def parse(text: str | None) -> Node | None:
    """The tree of ``text``; ``None`` when it sets no condition (empty, only stop words)."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"检索式过长（最多 {MAX_QUERY_CHARS} 个字符）")
    tokens = _tokens(text.translate(_FULL_WIDTH))
    p = _Parser(tokens)
    node = p.alternatives()
    if p.i < len(tokens):
        kind, _value, pos = tokens[p.i]
        raise QuerySyntaxError(f"第 {pos + 1} 个字符处多了一个“{kind}”")
    return simplify(node) if node is not None else None


def simplify(node: Node) -> Node:
    """Flatten nested And/Or of the same kind; a one-part group is its part."""
    if isinstance(node, Term):
        return node
    if isinstance(node, Not):
        inner = simplify(node.part)
        return inner.part if isinstance(inner, Not) else Not(inner)
    kind = type(node)
    flat: list[Node] = []
    for part in node.parts:
        s = simplify(part)
        flat.extend(s.parts if isinstance(s, kind) else (s,))  # type: ignore[attr-defined]
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


# -- schemes --------------------------------------------------------------------


def scheme_query(regions: Sequence[str] = (), subjects: Sequence[str] = (), events: Sequence[str] = (),
                 excludes: Sequence[str] = ()) -> str:
    """A 监测方案 as one query: (地域词 | …) (主体词 | …) (事件词 | …) -(排除词 | …).

    OR inside a group, AND across groups; an empty group is no condition."""

    def group(words: Sequence[str]) -> str:
        cleaned = [w.strip().replace('"', "") for w in words if w and w.strip()]
        quoted = [f'"{w}"' if any(c.isspace() or c in "()|-" for c in w) else w for w in cleaned]
        return "(" + " | ".join(quoted) + ")" if quoted else ""

    parts = [group(regions), group(subjects), group(events)]
    ex = group(excludes)
    if ex:
        parts.append("-" + ex)
    return " ".join(p for p in parts if p)


# -- evaluation -----------------------------------------------------------------


def matches(node: Node | None, tokens: set[str] | frozenset[str]) -> bool:
    """Whether a document with these index tokens (title and text) matches."""
    if node is None:
        return True
    if isinstance(node, Term):
        return all(w in tokens for w in node.words)
    if isinstance(node, And):
        return all(matches(p, tokens) for p in node.parts)
    if isinstance(node, Or):
        return any(matches(p, tokens) for p in node.parts)
    return not matches(node.part, tokens)


def positive_words(node: Node | None) -> list[str]:
    """The words to highlight: every word not under a NOT, in query order."""
    out: dict[str, None] = {}

    def walk(n: Node, negated: bool) -> None:
        if isinstance(n, Term):
            if not negated:
                for w in n.words:
                    out.setdefault(w, None)
        elif isinstance(n, Not):
            walk(n.part, not negated)
        else:
            for p in n.parts:
                walk(p, negated)

    if node is not None:
        walk(node, False)
    return list(out)


def all_words(node: Node | None) -> list[str]:
    """Every word the tree names (positive or not)."""
    out: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Term):
            for w in n.words:
                out.setdefault(w, None)
        elif isinstance(n, Not):
            walk(n.part)
        else:
            for p in n.parts:
                walk(p)

    if node is not None:
        walk(node)
    return list(out)


def doc_tokens(title: str, text: str) -> frozenset[str]:
    """A document's index tokens, as the backends index them."""
    return frozenset(seg.segment(title).split()) | frozenset(seg.segment(text).split())


def has_positive(node: Node | None) -> bool:
    """Whether the tree requires some word (a purely negative query does not)."""
    if node is None:
        return False
    if isinstance(node, Term):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(has_positive(p) for p in node.parts)
    return all(has_positive(p) for p in node.parts)


def unparse(node: Node | None) -> str:
    """The tree as query text (for logs and tests)."""
    if node is None:
        return ""
    if isinstance(node, Term):
        return " ".join(node.words) if len(node.words) == 1 else "(" + " ".join(node.words) + ")"
    if isinstance(node, Not):
        return "-" + unparse(node.part)
    if isinstance(node, And):
        return " ".join(unparse(p) for p in node.parts)
    return "(" + " | ".join(unparse(p) for p in node.parts) + ")"


def iter_terms(node: Node | None) -> Iterable[Term]:
    if node is None:
        return
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Not):
        yield from iter_terms(node.part)
    else:
        for p in node.parts:
            yield from iter_terms(p)
