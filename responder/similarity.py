"""Text similarity of posts, and an exact index that scores a post against many at once.

**The measure.** A post's text is ``f"{title} {text}"``, lower-cased, with
punctuation, spaces and underscores removed; its vector counts each
character bigram (a one-character text counts that character). Similarity is
the cosine of two such vectors, or, when both titles have at least
:data:`MIN_TITLE_CHARS` characters, the higher of that and the cosine of the
two titles' vectors: headlines of the same story share their key words even
when the bodies are rewritten.

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

import math
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

_NOISE = re.compile(r"[\W_]+", re.UNICODE)
MIN_TITLE_CHARS = 4
# A one-character text: its character in the high bits, and a low part that
# is no code point (code points end at 0x10FFFF), so it never equals a bigram.
_SINGLE = (1 << 21) - 1
# Title bigrams live in the same index as body bigrams, with this bit set.
TITLE_BIT = 1 << 62
RECENT_ENTRIES = 131_072
# A query summing this many index entries or more is summed by scipy (see _Tier.dots).
_SCIPY_FROM = 10_000


# --------------------------------------------------------------------------- the measure


def normalise(s: str) -> str:
    """What the measure sees of a text: lower case, letters and digits only."""
    return _NOISE.sub("", s.lower())


@dataclass(frozen=True, slots=True)
class TextVector:
    """A bigram count vector: sorted unique keys, their counts, and the norm."""

    keys: np.ndarray  # int64, sorted
    counts: np.ndarray  # int64
    norm: float

    def __len__(self) -> int:
        return len(self.keys)


def text_vector(s: str) -> TextVector:
    t = normalise(s)
    if not t:
        return TextVector(np.empty(0, np.int64), np.empty(0, np.int64), 0.0)
    codes = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if len(codes) == 1:
        raw = np.array([codes[0] << 21 | _SINGLE], dtype=np.int64)
    else:
        raw = (codes[:-1] << 21) | codes[1:]
    keys, counts = np.unique(raw, return_counts=True)
    counts = counts.astype(np.int64)
    # The same integer sum of squares as the dict version, then one sqrt.
    return TextVector(keys, counts, math.sqrt(int(np.dot(counts, counts))))


@dataclass(frozen=True, slots=True)
class PostVectors:
    """What a post is compared by: its whole text and, if long enough, its title.

    ``keys`` / ``counts`` hold both in one key space for the index: the body's
    bigrams, then the title's with :data:`TITLE_BIT` set (sorted, since no
    bigram key reaches that bit)."""

    body: TextVector
    title: TextVector | None  # None when the title has fewer than MIN_TITLE_CHARS characters
    keys: np.ndarray
    counts: np.ndarray  # float64


def post_vectors(title: str, text: str) -> PostVectors:
    body = text_vector(f"{title} {text}")
    t = text_vector(title) if len(_NOISE.sub("", title)) >= MIN_TITLE_CHARS else None
    if t is None or not len(t):
        return PostVectors(body, t, body.keys, body.counts.astype(np.float64))
    return PostVectors(
        body,
        t,
        np.concatenate((body.keys, t.keys | TITLE_BIT)),
        np.concatenate((body.counts, t.counts)).astype(np.float64),
    )


def _cos(a: TextVector, b: TextVector) -> float:
    if not len(a) or not len(b):
        return 0.0
    common, ia, ib = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
    dot = int(np.dot(a.counts[ia], b.counts[ib])) if len(common) else 0
    return dot / (a.norm * b.norm)


def vectors_similarity(a: PostVectors, b: PostVectors) -> float:
    body = _cos(a.body, b.body)
    if a.title is not None and b.title is not None:
        return max(body, _cos(a.title, b.title))
    return body


def similarity(title_a: str, text_a: str, title_b: str, text_b: str) -> float:
    """Text similarity in [0, 1] of two posts (see the module docstring)."""
    return vectors_similarity(post_vectors(title_a, text_a), post_vectors(title_b, text_b))


# --------------------------------------------------------------------------- inverted lists


@dataclass(slots=True)
class _Tier:
    """Inverted lists in CSR form: key ``ukeys[i]`` has the entries
    ``indptr[i]:indptr[i + 1]`` of ``rows`` (whose: the slot of a post's body or
    title) and ``counts`` (how often)."""

    ukeys: np.ndarray  # int64, sorted, unique
    indptr: np.ndarray  # int64, len(ukeys) + 1
    rows: np.ndarray  # int64 slots
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
    def of_posts(cls, rows: Sequence[int], vectors: Sequence[PostVectors]) -> _Tier:
        """The entries of several posts, row ``rows[i]`` holding ``vectors[i]``: a
        body bigram in slot ``2 × row``, a title bigram in slot ``2 × row + 1``."""
        if not vectors:
            return cls.empty()
        keys = np.concatenate([v.keys for v in vectors])
        counts = np.concatenate([v.counts for v in vectors])
        slots = np.concatenate(
            [2 * r + (v.keys >= TITLE_BIT) for r, v in zip(rows, vectors, strict=True)]
        ).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        return cls.from_entries(keys[order], slots[order], counts[order])

    def __len__(self) -> int:
        return len(self.rows)

    def entry_keys(self) -> np.ndarray:
        return np.repeat(self.ukeys, np.diff(self.indptr))

    def dots(self, qkeys: np.ndarray, qcounts: np.ndarray) -> np.ndarray | None:
        """Per slot, the sum of count × query count over the query's keys (a dense
        vector as long as this tier's highest slot), or None if no key is here.

        Integer values in float64, so the sums are exact in any order. Few
        entries are summed with numpy (``bincount`` over the gathered lists);
        many by scipy, the tier read as a slots × keys CSC matrix whose query
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
        nr = new_row[self.rows >> 1]
        keep = nr >= 0
        return _Tier.from_entries(self.entry_keys()[keep], (2 * nr + (self.rows & 1))[keep], self.counts[keep])


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

    def dots(self, q: PostVectors, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Dot products of ``q`` with every row: (bodies, titles), 0 where no key is shared."""
        return _dots((self.main, self.recent), q, n_rows)

    def compact(self, new_row: np.ndarray) -> None:
        self.main = self.main.merged(self.recent).remapped(new_row)
        self.recent = _Tier.empty()

    @property
    def entries(self) -> int:
        return len(self.main) + len(self.recent)


def _dots(tiers: Iterable[_Tier], q: PostVectors, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    both = np.zeros(2 * n_rows, dtype=np.float64)
    for tier in tiers:
        got = tier.dots(q.keys, q.counts)
        if got is not None:
            both[: len(got)] += got
    return both[0::2], both[1::2]


def _similarities(
    q: PostVectors, body: np.ndarray, title: np.ndarray, body_norm: np.ndarray, title_norm: np.ndarray
) -> np.ndarray:
    """Per row: ``dot / (|q| × |row|)`` of the bodies, or of the titles when that
    is higher (both titles long enough). The same float operations as the
    pairwise cosine; 0 where nothing is shared."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = body / (q.body.norm * body_norm)
        if q.title is not None and len(q.title):
            # A row without a title has no title dots and norm 0: 0/0, dropped by fmax.
            sim = np.fmax(sim, title / (q.title.norm * title_norm))
    sim[np.isnan(sim)] = 0.0  # an empty text: 0/0
    return sim


class BatchSimilarity:
    """The similarities among the posts of one batch.

    A post of a batch may join an event that another post of the same batch
    joined or opened a moment earlier, before the batch is written and its
    posts indexed: this scores the batch's posts against each other, all
    pairs at once (a sparse product), with the same arithmetic as
    :class:`MemberIndex`.
    """

    def __init__(self, vectors: Sequence[PostVectors]) -> None:
        n = len(vectors)
        self.sim = np.zeros((n, n), dtype=np.float64)
        if n < 2:
            return
        keys = np.concatenate([v.keys for v in vectors])
        cols_of, cols = np.unique(keys, return_inverse=True)
        counts = np.concatenate([v.counts for v in vectors])
        lengths = [len(v.keys) for v in vectors]
        is_title = keys >= TITLE_BIT
        rows = np.repeat(np.arange(n), lengths)
        for part, norms in (
            (~is_title, np.array([v.body.norm for v in vectors])),
            (is_title, np.array([v.title.norm if v.title is not None else 0.0 for v in vectors])),
        ):
            if not part.any():
                continue
            x = sparse.csr_matrix((counts[part], (rows[part], cols[part])), shape=(n, len(cols_of)))
            dots = (x @ x.T).tocoo()
            keep = dots.data > 0
            i, j, d = dots.row[keep], dots.col[keep], dots.data[keep]
            # dot / (|query| × |member|): the same float operations as the pairwise cosine.
            s = d / (norms[i] * norms[j])
            self.sim[i, j] = np.maximum(self.sim[i, j], s)

    def row(self, i: int) -> np.ndarray:
        """Similarity of the batch's ``i``-th post with each of them."""
        return self.sim[i]


class MemberIndex:
    """Posts (members) grouped under owners (events, by id): the best similarity per owner.

    ``add_many([(member, owner, vectors), ...])`` indexes members (a batch at a
    time), ``remove(member)`` forgets one, and ``best_per_owner(vectors,
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
        self._body_norm = np.zeros(self._cap, dtype=np.float64)
        self._title_norm = np.zeros(self._cap, dtype=np.float64)
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

    def add_many(self, items: Sequence[tuple[Hashable, int, PostVectors]]) -> None:
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
            self._body_norm[row] = v.body.norm
            if v.title is not None:
                self._title_norm[row] = v.title.norm
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

    def best_per_owner(self, q: PostVectors, floor: float) -> dict[int, float]:
        n = len(self._owner)
        if not n or not len(q.body):
            return {}
        body, title = self._terms.dots(q, n)
        sim = _similarities(q, body, title, self._body_norm[:n], self._title_norm[:n])
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
        for name in ("_alive", "_owners", "_body_norm", "_title_norm"):
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
        for name in ("_alive", "_owners", "_body_norm", "_title_norm"):
            old = getattr(self, name)
            new = np.zeros(self._cap, dtype=old.dtype)
            new[: len(keep)] = old[keep]
            setattr(self, name, new)
        self._dead = 0
