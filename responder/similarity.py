"""Text similarity of posts, and an exact index that scores a post against many at once.

**The measure.** A post's text is ``f"{title} {text}"`` without the names of
its own place (the province, city and county it was resolved to: full, short,
former names and aliases; see :func:`place_names`), lower-cased, with
punctuation, spaces and underscores removed; its vector counts each character
bigram (a one-character text counts that character). Similarity is the
cosine of two such vectors.

Why the place names go: the place is compared by its division code
(:func:`responder.events.places_compatible`); left in the text, a shared
place name is shared words, and two short posts from one district
("芜湖市镜湖区锦绣路积水严重", "芜湖市镜湖区一商场发生火灾") scored 0.42 on
their place alone. The words that only say what kind of incident it is
(:func:`incident_words`) go for the same reason: the kind is compared by the
event type and subtype. Titles are not compared on their own any more (the
measure was the higher of this cosine and the titles' cosine): a short title
is a handful of bigrams, and two problems of one estate share enough of them.

Pairs a responder would compare (compatible places, within the window),
"similarity ≥ 0.2" against labels of one incident or not
(``bench/grouping_eval.py pairs``), precision / recall of the measure before
→ now: CEC emergency reports 0.67 / 0.91 → 0.94 / 0.83, the same moved into
one district 0.50 / 0.91 → 0.88 / 0.85; citizen messages about the problems
of a few estates 0.57 / 0.87 → 0.71 / 0.79; the demo stories in one district
0.81 / 0.43 → 1.00 / 0.43 (their colloquial retellings join by the rules of
:mod:`responder.events`, not by their words).

**The index.** :class:`MemberIndex` holds the vectors of many posts (the
members an event is compared by) in inverted lists, bigram → (row, count),
and computes the cosine of a new post with every one of them in a few
vectorised steps: look the post's bigrams up (``numpy.searchsorted``), cut
their lists out of the index read as a sparse matrix and multiply them by
the post's counts (scipy), divide by the norms. Only
rows that share a bigram with the post are touched. The result is the same
number :func:`similarity` gives, to the last bit: the dot products are sums
of small integers (exact in float64), the norms are computed the same way
and the division is the same IEEE operation. No hashing, no sampling: this
is not an approximate (LSH) index.

A bigram is a 64-bit key ``code(a) << 21 | code(b)`` (code points fit in 21
bits), so a text becomes keys and counts without a Python loop over its
characters. Lists live in two tiers, each a sorted array of keys pointing into (row,
count) arrays (CSR), searched with ``numpy.searchsorted``: a batch of new
posts is merged into ``recent``, ``recent`` into ``main`` when it passes an
eighth of it. Every merge is linear. The posts of the batch being grouped
are scored against each other by :class:`BatchSimilarity` until the batch
is written and they are indexed.

Removing a post only marks its row dead; dead rows are dropped (and rows
renumbered) when they are a quarter of all rows.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

_NOISE = re.compile(r"[\W_]+", re.UNICODE)
# A one-character text: its character in the high bits, and a low part that
# is no code point (code points end at 0x10FFFF), so it never equals a bigram.
_SINGLE = (1 << 21) - 1
RECENT_ENTRIES = 131_072
# A query summing this many index entries or more is summed by scipy (see _Tier.dots).
_SCIPY_FROM = 10_000


# --------------------------------------------------------------------------- the measure


@functools.lru_cache(maxsize=8192)
def place_names(code: str | None) -> tuple[str, ...]:
    """The names of a place and of the places above it, longest first:
    ``340202`` → 安徽省, 芜湖市, 镜湖区, 安徽, 芜湖, 镜湖 (with former names
    and the aliases in ``config/regions.yaml``). Empty for no or an unknown code."""
    if not code:
        return ()
    from classifiers.places import default_gazetteer

    g = default_gazetteer()
    d = g.get(code)
    if d is None:
        return ()
    chain = set(d.chain)
    names = {n for c in chain if (x := g.by_code.get(c)) is not None for n in (x.name, *x.short)}
    names.update(e.name for e in (*g.regions.former_names, *g.regions.aliases) if e.code in chain)
    return tuple(sorted((n for n in names if len(n) >= 2), key=lambda n: (-len(n), n)))


def normalise(s: str, place: str | None = None) -> str:
    """What the measure sees of a text: without the names of ``place`` (a
    division code), lower case, letters and digits only."""
    for name in place_names(place):
        if name in s:
            s = s.replace(name, " ")
    return _NOISE.sub("", s.lower())


@dataclass(frozen=True, slots=True)
class TextVector:
    """A bigram count vector: sorted unique keys, their counts (float64: what
    the index sums; integers, so sums are exact), and the norm."""

    keys: np.ndarray  # int64, sorted
    counts: np.ndarray  # float64
    norm: float

    def __len__(self) -> int:
        return len(self.keys)


def _bigrams(s: str) -> np.ndarray:
    """The bigram keys of a normalised text, in order (a one-character text: its character)."""
    codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if len(codes) == 1:
        return np.array([codes[0] << 21 | _SINGLE], dtype=np.int64)
    return (codes[:-1] << 21) | codes[1:]


@functools.lru_cache(maxsize=1)
def incident_words() -> np.ndarray:
    """The bigrams that say what kind of incident a text reports, not which one
    (sorted keys): those of the emergency keywords of every subtype and of the
    words that say something happened (``config/taxonomy.yaml``: ``events``'
    subtype ``keywords``, ``occurred_words``, ``causal_words``). The kind is
    compared by the event type and subtype; left in the text, every fire
    report is a little like every other (of the pairs of CEC reports of one
    subtype about different incidents, 7 % reached 0.2 with them, 1.4 % without)."""
    from classifiers.taxonomy import Taxonomy
    from yuqing.settings import config_dir

    ev = Taxonomy.load(config_dir() / "taxonomy.yaml").cfg.events
    words = [w for t in ev.types for st in t.subtypes for w in st.keywords]
    words += [*ev.occurred_words, *ev.causal_words]
    keys = [_bigrams(n) for w in words if len(n := normalise(w)) >= 2]
    return np.unique(np.concatenate(keys)) if keys else np.empty(0, np.int64)


def text_vector(s: str) -> TextVector:
    """The vector of an already normalised text (see :func:`normalise`),
    without the bigrams of :func:`incident_words`."""
    if not s:
        return TextVector(np.empty(0, np.int64), np.empty(0, np.float64), 0.0)
    raw = _bigrams(s)
    stop = incident_words()
    if len(stop) and len(raw) > 1:
        raw = raw[stop[np.searchsorted(stop, raw).clip(max=len(stop) - 1)] != raw]
    keys, counts = np.unique(raw, return_counts=True)
    counts = counts.astype(np.int64)
    # The integer sum of squares, then one sqrt: the same norm wherever it is computed.
    return TextVector(keys, counts.astype(np.float64), math.sqrt(int(np.dot(counts, counts))))


def post_vector(title: str, text: str, place: str | None = None) -> TextVector:
    """What a post is compared by (see the module docstring)."""
    return text_vector(normalise(f"{title} {text}", place))


def vectors_similarity(a: TextVector, b: TextVector) -> float:
    if not len(a) or not len(b):
        return 0.0
    common, ia, ib = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
    dot = float(np.dot(a.counts[ia], b.counts[ib])) if len(common) else 0.0
    return dot / (a.norm * b.norm)


def similarity(
    title_a: str, text_a: str, title_b: str, text_b: str, place_a: str | None = None, place_b: str | None = None
) -> float:
    """Text similarity in [0, 1] of two posts, each without its own place's names."""
    return vectors_similarity(post_vector(title_a, text_a, place_a), post_vector(title_b, text_b, place_b))


# --------------------------------------------------------------------------- inverted lists


@dataclass(slots=True)
class _Tier:
    """Inverted lists in CSR form: key ``ukeys[i]`` has the entries
    ``indptr[i]:indptr[i + 1]`` of ``rows`` (whose) and ``counts`` (how often)."""

    ukeys: np.ndarray  # int64, sorted, unique
    indptr: np.ndarray  # int64, len(ukeys) + 1
    rows: np.ndarray  # int64
    counts: np.ndarray  # float64: what the products sum
    matrix: Any = None  # the same arrays as a scipy CSC matrix, made on first query

    @classmethod
    def empty(cls) -> _Tier:
        return cls(np.empty(0, np.int64), np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def from_entries(cls, keys: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> _Tier:
        """From entries already sorted by key."""
        if not len(keys):
            return cls.empty()
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        return cls(keys[starts], np.append(starts, len(keys)), rows, counts)

    @classmethod
    def of_posts(cls, rows: Sequence[int], vectors: Sequence[TextVector]) -> _Tier:
        """The entries of several posts, row ``rows[i]`` holding ``vectors[i]``."""
        if not vectors:
            return cls.empty()
        keys = np.concatenate([v.keys for v in vectors])
        counts = np.concatenate([v.counts for v in vectors])
        owner = np.repeat(np.asarray(rows, dtype=np.int64), [len(v) for v in vectors])
        order = np.argsort(keys, kind="stable")
        return cls.from_entries(keys[order], owner[order], counts[order])

    def __len__(self) -> int:
        return len(self.rows)

    def entry_keys(self) -> np.ndarray:
        return np.repeat(self.ukeys, np.diff(self.indptr))

    def dots(self, qkeys: np.ndarray, qcounts: np.ndarray) -> np.ndarray | None:
        """Per row, the sum of count × query count over the query's keys (a dense
        vector as long as this tier's highest row), or None if no key is here.

        Integer values in float64, so the sums are exact in any order. Few
        entries are summed with numpy (``bincount`` over the gathered lists);
        many by scipy, the tier read as a rows × keys CSC matrix whose query
        columns are cut out and multiplied by the counts in compiled code,
        which costs more to call but less per entry."""
        if not len(self.ukeys):
            return None
        pos = np.searchsorted(self.ukeys, qkeys)
        pos[pos == len(self.ukeys)] = 0
        hit = self.ukeys[pos] == qkeys
        if not hit.any():
            return None
        pos, qc = pos[hit], qcounts[hit]
        lo = self.indptr[pos]
        ln = self.indptr[pos + 1] - lo
        total = int(ln.sum())
        if total < _SCIPY_FROM:
            # The entry ranges [lo, lo + ln) of the query's keys, concatenated.
            idx = np.repeat(lo - np.cumsum(ln) + ln, ln) + np.arange(total)
            return np.bincount(self.rows[idx], weights=self.counts[idx] * np.repeat(qc, ln))
        if self.matrix is None:
            self.matrix = sparse.csc_array(
                (self.counts, self.rows, self.indptr), shape=(int(self.rows.max()) + 1, len(self.ukeys))
            )
        return self.matrix[:, pos] @ qc

    def merged(self, other: _Tier) -> _Tier:
        """Both tiers' entries in one (linear in their size)."""
        if not len(other):
            return self
        if not len(self):
            return other
        ka, kb = self.entry_keys(), other.entry_keys()
        at = np.searchsorted(ka, kb, "right")
        return _Tier.from_entries(
            np.insert(ka, at, kb), np.insert(self.rows, at, other.rows), np.insert(self.counts, at, other.counts)
        )

    def remapped(self, new_row: np.ndarray) -> _Tier:
        """Entries of live rows only (``new_row`` < 0: dead), renumbered."""
        nr = new_row[self.rows]
        keep = nr >= 0
        return _Tier.from_entries(self.entry_keys()[keep], nr[keep], self.counts[keep])


class _TermIndex:
    """Inverted lists in two tiers: a batch of new rows is merged into
    ``recent``; ``recent`` into ``main`` when it passes an eighth of it (and
    :data:`RECENT_ENTRIES`). Each merge is linear in the tiers merged, so
    adding costs a few array copies per batch and a query two lookups."""

    def __init__(self) -> None:
        self.main = _Tier.empty()
        self.recent = _Tier.empty()

    def add(self, tier: _Tier) -> None:
        self.recent = self.recent.merged(tier)
        if len(self.recent) > max(RECENT_ENTRIES, len(self.main) // 8):
            self.main = self.main.merged(self.recent)
            self.recent = _Tier.empty()

    def dots(self, q: TextVector, n_rows: int) -> np.ndarray:
        """Dot products of ``q`` with every row, 0 where no key is shared."""
        out = np.zeros(n_rows, dtype=np.float64)
        for tier in (self.main, self.recent):
            got = tier.dots(q.keys, q.counts)
            if got is not None:
                out[: len(got)] += got
        return out

    def compact(self, new_row: np.ndarray) -> None:
        self.main = self.main.merged(self.recent).remapped(new_row)
        self.recent = _Tier.empty()

    @property
    def entries(self) -> int:
        return len(self.main) + len(self.recent)


class BatchSimilarity:
    """The similarities among the posts of one batch.

    A post of a batch may join an event that another post of the same batch
    joined or opened a moment earlier, before the batch is written and its
    posts indexed: this scores the batch's posts against each other, all
    pairs at once (a sparse product), with the same arithmetic as
    :class:`MemberIndex`.
    """

    def __init__(self, vectors: Sequence[TextVector]) -> None:
        n = len(vectors)
        self.sim = np.zeros((n, n), dtype=np.float64)
        if n < 2:
            return
        keys = np.concatenate([v.keys for v in vectors])
        if not len(keys):
            return
        cols_of, cols = np.unique(keys, return_inverse=True)
        counts = np.concatenate([v.counts for v in vectors])
        rows = np.repeat(np.arange(n), [len(v) for v in vectors])
        norms = np.array([v.norm for v in vectors])
        x = sparse.csr_matrix((counts, (rows, cols)), shape=(n, len(cols_of)))
        dots = (x @ x.T).tocoo()
        keep = dots.data > 0
        i, j, d = dots.row[keep], dots.col[keep], dots.data[keep]
        # dot / (|query| × |member|): the same float operations as the pairwise cosine.
        self.sim[i, j] = d / (norms[i] * norms[j])

    def row(self, i: int) -> np.ndarray:
        """Similarity of the batch's ``i``-th post with each of them."""
        return self.sim[i]


class MemberIndex:
    """Posts (members) grouped under owners (events, by id): the best similarity per owner.

    ``add_many([(member, owner, vector), ...])`` indexes members (a batch at a
    time), ``remove(member)`` forgets one, and ``best_per_owner(vector,
    floor)`` returns, for every owner with a live member at least ``floor``
    similar to the query, the highest similarity among its members.
    """

    def __init__(self) -> None:
        self._terms = _TermIndex()
        self._row_of: dict[Hashable, int] = {}
        self._owner: list[int] = []
        self._member: list[Hashable] = []
        self._cap = 1024
        self._alive = np.zeros(self._cap, dtype=bool)
        self._owners = np.zeros(self._cap, dtype=np.int64)
        self._norm = np.zeros(self._cap, dtype=np.float64)
        self._dead = 0

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, member: Hashable) -> bool:
        return member in self._row_of

    @property
    def rows(self) -> int:
        return len(self._owner)

    def owner_of(self, member: Hashable) -> int | None:
        row = self._row_of.get(member)
        return None if row is None else self._owner[row]

    def add_many(self, items: Sequence[tuple[Hashable, int, TextVector]]) -> None:
        if not items:
            return
        for member, _, _ in items:
            if member in self._row_of:
                self.remove(member)
        first = len(self._owner)
        while first + len(items) > self._cap:
            self._grow()
        for i, (member, owner, v) in enumerate(items):
            row = first + i
            self._owner.append(owner)
            self._member.append(member)
            self._row_of[member] = row
            self._alive[row] = True
            self._owners[row] = owner
            self._norm[row] = v.norm
        self._terms.add(_Tier.of_posts(range(first, first + len(items)), [v for _, _, v in items]))

    def remove(self, member: Hashable) -> None:
        row = self._row_of.pop(member, None)
        if row is None:
            return
        self._alive[row] = False
        self._dead += 1
        if self._dead > 256 and self._dead * 4 > len(self._owner):
            self._compact()

    def remove_all(self, members: Iterable[Hashable]) -> None:
        for m in list(members):
            self.remove(m)

    def best_per_owner(self, q: TextVector, floor: float) -> dict[int, float]:
        n = len(self._owner)
        if not n or not len(q):
            return {}
        dots = self._terms.dots(q, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            sim = dots / (q.norm * self._norm[:n])
        sim[np.isnan(sim)] = 0.0  # an empty text: 0/0
        cand = np.flatnonzero((sim >= floor) & self._alive[:n])
        if not len(cand):
            return {}
        # The highest similarity per owner: sort the candidates by owner, max per run.
        owners = self._owners[cand]
        order = np.argsort(owners, kind="stable")
        owners, sims = owners[order], sim[cand][order]
        starts = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
        return dict(zip(owners[starts].tolist(), np.maximum.reduceat(sims, starts).tolist(), strict=True))

    def _grow(self) -> None:
        self._cap *= 2
        for name in ("_alive", "_owners", "_norm"):
            old = getattr(self, name)
            new = np.zeros(self._cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _compact(self) -> None:
        n = len(self._owner)
        keep = np.flatnonzero(self._alive[:n])
        new_row = np.full(n, -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep))
        self._terms.compact(new_row)
        self._owner = [self._owner[i] for i in keep.tolist()]
        self._member = [self._member[i] for i in keep.tolist()]
        self._row_of = {m: i for i, m in enumerate(self._member)}
        for name in ("_alive", "_owners", "_norm"):
            old = getattr(self, name)
            new = np.zeros(self._cap, dtype=old.dtype)
            new[: len(keep)] = old[keep]
            setattr(self, name, new)
        self._dead = 0
