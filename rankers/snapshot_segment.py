"""The snapshot as a segment: memory-mapped postings with precomputed impacts, vectors, an ANN
index and passages, with the rows hidden since (deleted or replaced) as a mask.

Its BM25 impacts were computed with the snapshot's statistics at build time and are kept until
the next compaction (recomputing them would rewrite every posting): see ARCHITECTURE.md,
"Ranking decisions".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.columns import Column
from index.core.bm25 import top_k
from index.core.types import F32, F64, I64, B
from index.passages import PASSAGES_DIR, passage_text
from index.snapshot import Snapshot
from rankers.features import gather_segments
from rankers.maxscore import score_docs, score_terms
from rankers.segment import CorpusStats, PassageRuns, SegmentView

if TYPE_CHECKING:
    from index.vectors import VectorIndex
    from rankers.keyword import KeywordRanker, QueryPlan

__all__ = ["PassageVectors", "SnapshotPassages", "SnapshotSegment", "nearest_within"]


EXACT_FILTERED = 10_000
"""Up to this many rows passing a filter, the nearest neighbours are found by exact search
over them (Typesense's `flat_search_cutoff`, Vespa's `approximate-threshold`); above, the
graph is searched with the filter as a selector (`VectorIndex.search_within`). The bound is
where exact search costs what an unfiltered graph search does (`bench.filtered_semantic`'s
vectors: 10,000 rows of 384 floats, 3.3 ms; the graph at 1M, 3.0 ms); a graph walk that keeps
recall@10 at 0.98 with 1 % of a million rows allowed costs four times as much."""


def nearest_within(
    ann: VectorIndex | None, vectors: npt.NDArray[Any], allowed: B, query_vector: F32, k: int
) -> I64:
    """Rows of the `k` vectors nearest `query_vector` among the `allowed` ones, best first:
    exact search up to EXACT_FILTERED allowed rows (or with no graph), else the graph with the
    filter as a selector."""
    n = int(np.count_nonzero(allowed))
    if ann is None or n <= EXACT_FILTERED:
        # Few rows pass the filter: exact search over them beats any graph walk.
        rows = np.flatnonzero(allowed)
        found: I64 = rows[top_k(np.asarray(vectors[rows], dtype=np.float32) @ query_vector, k)]
        return found
    return ann.search_within(query_vector, k, allowed, n / allowed.size)


class PassageVectors:
    """The stored (quantized) passage vectors: indexing gives float32 rows, as if they were
    stored so; :meth:`sims` multiplies before it rescales, which is cheaper."""

    def __init__(self, stored: npt.NDArray[Any], scale: F32) -> None:
        self.stored = stored
        self.scale = scale

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.stored.shape)

    def __len__(self) -> int:
        return int(self.stored.shape[0])

    def __getitem__(self, rows: Any) -> F32:
        out: F32 = self.stored[rows].astype(np.float32) * self.scale[rows][..., None]
        return out

    def sims(self, rows: I64, q: F32) -> F32:
        """Cosines of passages ``rows`` with the unit query vector ``q``."""
        raw = self.stored[rows].astype(np.float32) @ q
        out: F32 = (raw * self.scale[rows]).astype(np.float32)
        return out


class SnapshotPassages:
    """A snapshot's passages: CSR per document (``ptr``), vectors, kinds, pair norms and the
    text spans into one UTF-8 blob."""

    def __init__(self, snapshot: Snapshot) -> None:
        a = snapshot.arrays
        self.ptr: I64 = a[f"{PASSAGES_DIR}/ptr.npy"]
        self.vectors = PassageVectors(
            a[f"{PASSAGES_DIR}/vectors.npy"], a[f"{PASSAGES_DIR}/scale.npy"]
        )
        self.kinds: npt.NDArray[np.uint8] = a[f"{PASSAGES_DIR}/kind.npy"]
        self.spans: I64 = a[f"{PASSAGES_DIR}/span.npy"]
        self.text: npt.NDArray[np.uint8] = a[f"{PASSAGES_DIR}/text.npy"]
        self.pair_norm: F32 = a[f"{PASSAGES_DIR}/pair_norm.npy"]

    def span_text(self, row: int, size: int) -> str:
        """Text of passages row .. row + size - 1 (consecutive sentences), from the blob."""
        span = np.array([self.spans[row][0], self.spans[row + size - 1][1]], dtype=np.int64)
        return passage_text(self.text, span)

    def runs(self, docs: I64, q: F32) -> PassageRuns:
        rows, offsets = gather_segments(self.ptr, docs)

        def text(i: int, first: int, size: int) -> tuple[str, int]:
            row = int(rows[int(offsets[i]) + first])
            return self.span_text(row, size), row

        return PassageRuns(
            self.vectors.sims(rows, q),
            self.pair_norm[rows],
            self.kinds[rows],
            np.diff(offsets),
            text,
        )


@dataclass(frozen=True)
class SnapshotSegment:
    keyword: KeywordRanker
    vectors_: npt.NDArray[Any] | None = None
    """The memory-mapped unit document vectors (None: a keyword-only snapshot)."""
    ann: VectorIndex | None = None
    passages_: SnapshotPassages | None = None
    tomb: B | None = None
    """Rows hidden by a later write of their id (None: none are)."""
    n_deleted: int = 0
    tomb_df: Mapping[str, int] = field(default_factory=dict)
    """Per index term, how many hidden rows contain it."""
    base: int = 0
    allow: B | None = None
    """Rows a query's filter keeps (None: no filter)."""

    @property
    def columns(self) -> Mapping[str, Column]:
        return self.keyword.snapshot.columns

    def filtered(self, allow: B) -> SnapshotSegment:
        return replace(self, allow=allow)

    def _allowed(self) -> B | None:
        """Rows a search may return: the filter's, less the hidden ones (None: all)."""
        if self.allow is None:
            return None
        return self.allow if self.tomb is None else self.allow & ~self.tomb

    @property
    def size(self) -> int:
        return self.keyword.snapshot.n_docs

    def alone(self) -> SegmentView:
        """A view of this segment alone (no written documents)."""
        snapshot = self.keyword.snapshot
        p = snapshot.bm25
        # Only written documents are scored with live statistics: a snapshot alone has none,
        # so its average length is never read.
        return SegmentView((self,), CorpusStats(snapshot.n_docs, 0.0, p.k1, p.b))

    def live(self, rows: I64) -> B:
        out: B = np.ones(rows.size, dtype=bool) if self.tomb is None else ~self.tomb[rows]
        if self.allow is not None:
            out &= self.allow[rows]
        return out

    def live_mask(self) -> B:
        allowed = self._allowed()
        if allowed is not None:
            return allowed
        return np.ones(self.size, dtype=bool) if self.tomb is None else ~self.tomb

    def embedded(self, rows: I64) -> B:
        return self.live(rows) if self.vectors_ is not None else np.zeros(rows.size, dtype=bool)

    def knows(self, word: str) -> bool:
        return self.keyword.vocab.term_id(word) is not None

    def df(self, words: Sequence[str]) -> I64:
        term_df = self.keyword.term_df
        out = np.zeros(len(words), dtype=np.int64)
        for i, word in enumerate(words):
            t = self.keyword.vocab.term_id(word)
            if t is not None:
                out[i] = int(term_df[t]) - self.tomb_df.get(word, 0)
        return out

    def top(self, plan: QueryPlan, view: SegmentView, k: int) -> tuple[I64, F32, F64 | None]:
        allowed = self._allowed()
        if allowed is not None:
            return score_terms(self.keyword.postings, plan.terms, plan.weights, k,
                               self.keyword.scratch(), allowed)
        # Hidden rows may take places in the top k: ask for as many more.
        docs, scores, full = score_terms(
            self.keyword.postings, plan.terms, plan.weights, k + self.n_deleted,
            self.keyword.scratch(),
        )  # fmt: skip
        if self.tomb is not None:
            keep = ~self.tomb[docs]
            docs, scores = docs[keep][:k], scores[keep][:k]
            if full is not None:
                full = np.where(self.tomb, 0.0, full)
        return docs, scores, full

    def bm25(self, plan: QueryPlan, view: SegmentView, rows: I64) -> F32:
        return score_docs(self.keyword.postings, plan.terms, plan.weights, rows)

    def contains(self, word: str, rows: I64) -> B:
        d = self.rows_with(word)
        if d.size == 0:
            return np.zeros(rows.size, dtype=bool)
        pos = np.minimum(np.searchsorted(d, rows), d.size - 1)
        has: B = d[pos] == rows
        return has

    def lengths(self, rows: I64) -> F32:
        doc_len: F32 = self.keyword.snapshot.arrays["keyword/doc_len.npy"]
        return np.asarray(doc_len[rows], dtype=np.float32)

    def rows_with(self, word: str) -> npt.NDArray[np.integer[Any]]:
        t = self.keyword.vocab.term_id(word)
        if t is None:
            return np.empty(0, dtype=np.int32)
        ptr = self.keyword.postings.ptr
        out: npt.NDArray[np.int32] = self.keyword.postings.doc[ptr[t] : ptr[t + 1]]
        return out

    def vectors(self, rows: I64) -> F32:
        assert self.vectors_ is not None
        return np.asarray(self.vectors_[rows], dtype=np.float32)

    def nearest(self, query_vector: F32, k: int) -> I64:
        allowed = self._allowed()
        if allowed is not None and self.vectors_ is not None:
            return nearest_within(self.ann, self.vectors_, allowed, query_vector, k)
        if self.ann is None:
            return np.empty(0, dtype=np.int64)
        ids, _ = self.ann.search(query_vector, k + self.n_deleted)
        if self.tomb is not None:
            ids = ids[~self.tomb[ids]][:k]
        return ids

    def passages(self, rows: I64, query_vector: F32) -> PassageRuns:
        assert self.passages_ is not None
        return self.passages_.runs(rows, query_vector)
