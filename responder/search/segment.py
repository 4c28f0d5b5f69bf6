"""Chinese word segmentation and highlighting shared by every search backend.

Both backends index the same pre-segmented text (:func:`segment`) and turn a
query into the same words (:func:`query_terms`), so the embedded tantivy
index and Elasticsearch (whitespace analyzer, no IK plugin) match the same
documents.

The segmenter is jieba's algorithm and dictionary as compiled in jieba-rs
(``rjieba``): the same prefix-dictionary DAG, the same HMM for unknown words,
about fifteen times faster than pure-Python jieba, which was half of the
indexer's time. On Chinese text the two agree word for word; they differ only
at the edges of Latin/digit runs (jieba-rs keeps ``abc_def`` or ``a.b``
whole in search mode and adds their parts), and since the index and every
query use this one segmenter, a query still matches what it names.

* Index side: *search mode* (``cut_for_search``), which emits a long word and
  its dictionary sub-words (霍山县 → 霍山, 山县, 霍山县), so a query for a part
  of a word still matches.
* Query side: *precise mode* (``cut``), one reading of the query, each word of
  which must match (AND). Common function words (的, 了, …) are dropped from a
  query that has other words.
* Normalisation before both: full-width ASCII → half-width, the ideographic
  space → space, lower-case. It is length-preserving, so an offset in the
  normalised text is the same offset in the original, which is how snippets
  are cut from and highlighted in the readable original.
* Tokens are runs of letters and digits only (``3.5亿元`` → ``3``, ``5``, ``亿元``), the
  same rule as SQLite's ``unicode61`` tokenizer, so re-tokenising the
  space-joined text in either engine yields exactly these tokens.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from importlib.metadata import version

import rjieba

# Which segmenter cut an index's text. An index records it; one cut by another
# (an older yuqing used pure-Python jieba) is re-segmented or flagged on open.
SEGMENTER = f"rjieba {version('rjieba')}"

# Letters and digits, no underscore: what unicode61 keeps as a token.
_WORD_RE = re.compile(r"[^\W_]+")
_SPACE_RE = re.compile(r"\s+")
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

# Dropped from queries (never from the index) unless nothing else is left.
QUERY_STOPWORDS = frozenset(
    "的 了 和 与 及 或 在 是 有 被 把 对 从 向 就 也 都 而 之 其 该 此 着 过 吗 呢 吧 啊".split()
)


def _norm_char(c: str) -> str:
    o = ord(c)
    if 0xFF01 <= o <= 0xFF5E:  # full-width ASCII block
        c = chr(o - 0xFEE0)
    elif o == 0x3000:  # ideographic space
        return " "
    low = c.lower()
    return low if len(low) == 1 else c


# Full-width ASCII → half-width, the ideographic space → space.
_HALF_WIDTH = {o: o - 0xFEE0 for o in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalize(text: str) -> str:
    """Full-width → half-width and lower-case, one character for one character."""
    if text.isascii():
        return text.lower()
    half = text.translate(_HALF_WIDTH)
    low = half.lower()
    # Lower-casing the whole string is lower-casing each character unless one
    # becomes two (İ → i̇; the length tells) or a Σ ends a word (σ or ς).
    if len(low) == len(half) and "Σ" not in half:
        return low
    return "".join(_norm_char(c) for c in text)


def _words(pieces: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in pieces:
        out.extend(_WORD_RE.findall(p))
    return out


def index_tokens(text: str) -> list[str]:
    """The tokens a document is indexed under (search mode, normalised)."""
    if not text:
        return []
    return _words(rjieba.cut_for_search(normalize(text)))


def segment(text: str) -> str:
    """Space-joined :func:`index_tokens`: what the FTS table / ``*_seg`` fields hold."""
    return " ".join(index_tokens(text))


def query_terms(text: str) -> list[str]:
    """The words a query must all match; ``[]`` means "no text condition"."""
    if not text or not text.strip():
        return []
    words = _words(rjieba.cut(normalize(text)))
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    terms = list(seen)
    content = [t for t in terms if t not in QUERY_STOPWORDS]
    return content or terms


def match_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of ``terms`` in ``text`` (any case / width).

    An ASCII term matches whole ASCII words only (``ai`` does not light up
    inside ``said``); a Chinese term matches anywhere.
    """
    norm = normalize(text)
    found: list[tuple[int, int]] = []
    for term in {normalize(t) for t in terms if t}:
        is_ascii_word = all(c in _ASCII_ALNUM for c in term)
        start = norm.find(term)
        while start != -1:
            end = start + len(term)
            ok = True
            if is_ascii_word:
                before = norm[start - 1] if start > 0 else ""
                after = norm[end] if end < len(norm) else ""
                ok = before not in _ASCII_ALNUM and after not in _ASCII_ALNUM
            if ok:
                found.append((start, end))
            start = norm.find(term, start + 1)
    # Longest first at the same start, then drop anything overlapping a kept span.
    found.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    spans: list[tuple[int, int]] = []
    for s, e in found:
        if spans and s < spans[-1][1]:
            if e > spans[-1][1]:
                spans[-1] = (spans[-1][0], e)
            continue
        spans.append((s, e))
    return spans


def _render(text: str, spans: Sequence[tuple[int, int]], lo: int, hi: int) -> str:
    out: list[str] = []
    pos = lo
    for s, e in spans:
        s, e = max(s, lo), min(e, hi)
        if s >= e:
            continue
        out.append(html.escape(_SPACE_RE.sub(" ", text[pos:s])))
        out.append("<em>" + html.escape(_SPACE_RE.sub(" ", text[s:e])) + "</em>")
        pos = e
    out.append(html.escape(_SPACE_RE.sub(" ", text[pos:hi])))
    return "".join(out)


def highlight(text: str, terms: Sequence[str]) -> str:
    """All of ``text``, HTML-escaped, with every match in ``<em>``."""
    return _render(text, match_spans(text, terms), 0, len(text))


def snippet(text: str, terms: Sequence[str], width: int = 120) -> str:
    """An HTML-escaped excerpt of about ``width`` characters around the first match.

    Cut from the original text, so Chinese reads as written (no spaces
    between characters). Without a match it is the start of the text.
    """
    text = text.strip()
    spans = match_spans(text, terms) if terms else []
    if len(text) <= width:
        lo, hi = 0, len(text)
    else:
        first = spans[0][0] if spans else 0
        lo = max(0, first - width // 4)
        hi = min(len(text), lo + width)
        lo = max(0, hi - width)
    body = _render(text, spans, lo, hi)
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")
