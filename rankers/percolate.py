"""Standing queries indexed by their terms: which open follows can a written document change?

Elasticsearch's percolator is the model: the queries are the index and a document is the
query. A `Percolator` keeps, for each open follow, the analyzed terms of its query (what it
could ever match) and the external ids it shows now, with two reverse maps: term -> follows
and id -> follows. A write then asks `candidates(terms of the new documents, ids written)`
and gets the follows sharing a term with a new document, the follows showing a rewritten or
deleted id, and the follows that match every document (a filter or a sort with no words):
every other follow is left alone without being scored.

`can_enter` is the second gate, applied to each candidate by its owner: a new document that
cannot beat the follow's current k-th score changes nothing, so the follow is not re-run.

Keys are whatever the caller uses to name a follow (hashable). Methods take a lock: follows
open and close on the event loop while writes are matched on a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np

from index.core.bm25 import impacts
from index.core.types import F32, I64
from rankers.delta_segment import DeltaSegment
from rankers.segment import SegmentView

__all__ = ["Percolator", "QueryVectors", "QueryWeights", "can_enter", "query_score", "term_scores"]

K = TypeVar("K", bound=Hashable)


def can_enter(best: float, kth: float | None, tie_breaker: bool = False) -> bool:
    """Whether a document scoring `best` for a query can enter its top k, whose k-th score is
    `kth` (None: fewer than k hits are shown, so any matching document enters). Equal scores
    order by document number, and a new document is numbered after every shown one, so it
    needs a strictly higher score unless `tie_breaker` says it may win ties."""
    if best <= 0.0:
        return False
    if kth is None:
        return True
    return best > kth or (tie_breaker and best == kth)


def term_scores(view: SegmentView, terms: Iterable[str], docs: I64) -> dict[str, F32]:
    """Each index term's BM25 contribution to each of `docs` (written documents, in the
    delta segment), as the keyword phase scores them now: a query's score for a document is
    the weighted sum of its terms' contributions, so a write is scored for every follow from
    one pass over its terms. The terms' postings for those documents are gathered from the
    delta's blocks at once, and their impacts computed in one call (`impacts`, the formula
    the delta segment scores with)."""
    delta = next((s for s in view.segments if isinstance(s, DeltaSegment)), None)
    if delta is None or docs.size == 0:
        return {}
    known = [(t, delta.term_ids[t]) for t in terms if t in delta.term_ids]
    if not known:
        return {}
    words = [w for w, _ in known]
    ids = np.asarray([i for _, i in known], dtype=np.int64)
    slots = np.asarray(docs, dtype=np.int64) - delta.base
    dv = delta.delta
    found_term, found_slot, found_tf = [], [], []
    for block in dv.blocks:
        if block.terms.size == 0:
            continue
        pos = np.minimum(np.searchsorted(block.terms, ids), block.terms.size - 1)
        hit = np.flatnonzero(block.terms[pos] == ids)
        lo, hi = block.ptr[pos[hit]], block.ptr[pos[hit] + 1]
        n = hi - lo
        if not n.sum():
            continue
        rows = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        found_term.append(np.repeat(hit, n))
        found_slot.append(block.slots[rows])
        found_tf.append(block.tf[rows])
    if not found_term:
        return {}
    term = np.concatenate(found_term)
    slot = np.concatenate(found_slot)
    tf = np.concatenate(found_tf)
    keep = np.isin(slot, slots) & dv.alive[slot]
    term, slot, tf = term[keep], slot[keep], tf[keep]
    stats = view.stats
    imp = impacts(tf, dv.doc_len[slot], stats.avg_len, view.idf(words)[term], stats.k1, stats.b)
    order = np.argsort(slots, kind="stable")
    column = order[np.searchsorted(slots[order], slot)]
    out = np.zeros((len(words), slots.size), dtype=np.float32)
    np.add.at(out, (term, column), imp)
    return {w: out[i] for i, w in enumerate(words)}


def query_score(words: Sequence[tuple[str, float]], scores: Mapping[str, F32], n: int) -> F32:
    """The BM25 score of a query (its weighted stems, `QueryPlan.words`) for each of the `n`
    documents `term_scores` scored."""
    total = np.zeros(n, dtype=np.float32)
    for word, weight in words:
        found = scores.get(word)
        if found is not None:
            total += np.float32(weight) * found
    return total


class Percolator(Generic[K]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._terms: dict[K, frozenset[str]] = {}
        self._by_term: dict[str, set[K]] = {}
        self._shows: dict[K, frozenset[str]] = {}
        self._by_id: dict[str, set[K]] = {}
        self._every: set[K] = set()

    def __len__(self) -> int:
        return len(self._terms)

    def add(self, key: K, terms: Iterable[str], *, every: bool = False) -> None:
        """Register a follow under its query's terms; `every`: any document may change it (a
        filter or sort with no words lists every document that passes)."""
        terms = frozenset(terms)
        with self._lock:
            self._drop(key)
            self._terms[key] = terms
            for term in terms:
                self._by_term.setdefault(term, set()).add(key)
            if every:
                self._every.add(key)

    def remove(self, key: K) -> None:
        with self._lock:
            self._drop(key)

    def show(self, key: K, ids: Iterable[str]) -> None:
        """What the follow shows now (its hits' external ids)."""
        ids = frozenset(ids)
        with self._lock:
            if key not in self._terms:
                return
            self._unshow(key)
            self._shows[key] = ids
            for doc_id in ids:
                self._by_id.setdefault(doc_id, set()).add(key)

    def indexed(self, terms: Iterable[str]) -> set[str]:
        """The terms some open follow's query has."""
        with self._lock:
            return {t for t in terms if t in self._by_term}

    def shown(self, key: K) -> frozenset[str]:
        return self._shows.get(key, frozenset())

    def candidates(self, terms: Iterable[str], ids: Iterable[str]) -> tuple[set[K], set[K]]:
        """The follows a write may change: (sharing a term with a new document, or matching
        every document; showing one of the written or deleted ids). The two sets may meet."""
        by_term: set[K] = set()
        by_id: set[K] = set()
        with self._lock:
            for term in terms:
                found = self._by_term.get(term)
                if found:
                    by_term |= found
            by_term |= self._every
            for doc_id in ids:
                found = self._by_id.get(doc_id)
                if found:
                    by_id |= found
        return by_term, by_id

    # -- inside the lock -----------------------------------------------------------------
    def _drop(self, key: K) -> None:
        for term in self._terms.pop(key, frozenset()):
            keys = self._by_term.get(term)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_term[term]
        self._every.discard(key)
        self._unshow(key)

    def _unshow(self, key: K) -> None:
        for doc_id in self._shows.pop(key, frozenset()):
            keys = self._by_id.get(doc_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_id[doc_id]


class QueryWeights(Generic[K]):
    """The weighted stems of the open follows' queries, inverted: per stem, the follows' rows
    and their weights as arrays, with each follow's k-th score. `entering` scores written
    documents for every follow at once, a term at a time (one numpy update per document term
    that some query has), and returns the follows whose top k a document can enter. Work per
    write grows with the postings of the document's terms in this index of queries, not with
    the number of follows times their words in Python."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._row: dict[K, int] = {}
        self._keys: list[K | None] = []
        self._free: list[int] = []
        self._words: dict[K, tuple[tuple[str, float], ...]] = {}
        self._by_term: dict[str, dict[int, float]] = {}
        self._arrays: dict[str, tuple[I64, F32]] = {}
        self._kth = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._row)

    def weigh(self, key: K, words: Sequence[tuple[str, float]], kth: float | None) -> None:
        """A follow's query as it was last ranked, and its k-th score (None: fewer than k)."""
        with self._lock:
            self._drop(key)
            row = self._free.pop() if self._free else len(self._keys)
            if row == len(self._keys):
                self._keys.append(key)
            else:
                self._keys[row] = key
            if row >= self._kth.size:
                grown = np.zeros(max(64, 2 * self._kth.size), dtype=np.float32)
                grown[: self._kth.size] = self._kth
                self._kth = grown
            self._row[key] = row
            self._kth[row] = 0.0 if kth is None else kth
            self._words[key] = tuple(words)
            for word, weight in words:
                self._by_term.setdefault(word, {})[row] = weight
                self._arrays.pop(word, None)

    def remove(self, key: K) -> None:
        with self._lock:
            self._drop(key)

    def entering(self, scores: Mapping[str, F32], n: int) -> set[K]:
        """The follows for which one of the `n` documents scored by `term_scores` beats the
        k-th score (a new document is numbered last, so a tie does not enter), with a hair of
        tolerance for float32 sums."""
        with self._lock:
            if not self._row or n == 0:
                return set()
            best = self._sums(scores, n).max(axis=1) * np.float32(1 + 1e-4)
            hit = np.flatnonzero((best > 0) & (best > self._kth[: len(self._keys)]))
            return {key for key in (self._keys[i] for i in hit.tolist()) if key is not None}

    def totals(self, keys: Iterable[K], scores: Mapping[str, F32], n: int) -> dict[K, F32]:
        """For each of `keys` weighed here, the BM25 of each of the `n` documents scored by
        `term_scores` for its query: the sums `entering` compares with the k-th score."""
        with self._lock:
            rows = {key: self._row[key] for key in keys if key in self._row}
            if not rows or n == 0:
                return {key: np.zeros(n, dtype=np.float32) for key in rows}
            acc = self._sums(scores, n)
            return {key: acc[row] for key, row in rows.items()}

    # -- inside the lock -----------------------------------------------------------------
    def _sums(self, scores: Mapping[str, F32], n: int) -> F32:
        """Every row's BM25 of the `n` documents: each term's contributions added into the
        rows of the follows holding it, times their weights."""
        acc = np.zeros((len(self._keys), n), dtype=np.float32)
        for word, contribution in scores.items():
            if word not in self._by_term:
                continue
            rows, weights = self._arrays_of(word)
            acc[rows] += weights[:, None] * contribution[None, :]
        return acc

    def _arrays_of(self, word: str) -> tuple[I64, F32]:
        found = self._arrays.get(word)
        if found is None:
            weights = self._by_term[word]
            found = (np.fromiter(weights.keys(), dtype=np.int64, count=len(weights)),
                     np.fromiter(weights.values(), dtype=np.float32, count=len(weights)))
            self._arrays[word] = found
        return found

    def _drop(self, key: K) -> None:
        row = self._row.pop(key, None)
        if row is None:
            return
        for word, _ in self._words.pop(key, ()):
            rows = self._by_term.get(word)
            if rows is not None:
                rows.pop(row, None)
                self._arrays.pop(word, None)
                if not rows:
                    del self._by_term[word]
        self._keys[row] = None
        self._kth[row] = np.inf
        self._free.append(row)


class QueryVectors(Generic[K]):
    """The query vectors of the open follows ranked by a semantic phase, as one matrix, with
    each follow's bar: the lowest cosine among the documents it shows. A newly embedded
    document is compared with every open query in one product, and only the follows whose bar
    it passes (it is nearer their query than a document they show) are re-run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[K] = []
        self._rows: dict[K, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._bars = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1])

    def add(self, key: K, vector: F32, bar: float = -1.0) -> None:
        vector = np.asarray(vector, dtype=np.float32).ravel()
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = len(self._keys)
                if self._matrix.shape[1] != vector.size:
                    if self._keys:
                        raise ValueError(f"query vectors have {self._matrix.shape[1]} "
                                         f"dimensions, not {vector.size}")
                    self._matrix = np.zeros((0, vector.size), dtype=np.float32)
                if row >= self._matrix.shape[0]:  # grow by doubling, like a list
                    grown = np.zeros((max(16, 2 * row), vector.size), dtype=np.float32)
                    grown[:row] = self._matrix[:row]
                    self._matrix = grown
                    bars = np.full(grown.shape[0], -1.0, dtype=np.float32)
                    bars[:row] = self._bars[:row]
                    self._bars = bars
                self._keys.append(key)
                self._rows[key] = row
            self._matrix[row] = vector
            self._bars[row] = bar

    def set_bar(self, key: K, bar: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._bars[row] = bar

    def remove(self, key: K) -> None:
        with self._lock:
            row = self._rows.pop(key, None)
            if row is None:
                return
            last = len(self._keys) - 1
            if row != last:  # the last row takes the removed one's place
                moved = self._keys[last]
                self._keys[row] = moved
                self._rows[moved] = row
                self._matrix[row] = self._matrix[last]
                self._bars[row] = self._bars[last]
            self._keys.pop()

    def near(self, docs: F32) -> set[K]:
        """The follows that one of `docs` (unit document vectors, one a row) can enter."""
        with self._lock:
            n = len(self._keys)
            if n == 0 or docs.size == 0:
                return set()
            sims = self._matrix[:n] @ np.asarray(docs, dtype=np.float32).reshape(
                -1, self._matrix.shape[1]).T
            best = sims.max(axis=1)
            return {self._keys[i] for i in np.flatnonzero(best > self._bars[:n]).tolist()}
