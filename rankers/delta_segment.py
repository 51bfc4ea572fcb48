"""The documents written since the snapshot as a segment, over one `DeltaView`.

Its rows are the delta's slots. Their postings hold term frequencies, not impacts: a written
document is scored with the statistics of the corpus as it is now (N, average length and
document frequencies summed over the segments), which is the BM25 score a fresh build of the
same documents would give it. The statistics change with every write, so the impacts of the
query's terms are computed when a query reads them (the delta is small), by the same formula
the index builder uses (:func:`index.core.bm25.impacts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.columns import Column, FieldSpec
from index.core.bm25 import top_k
from index.core.types import F32, F64, I64, B
from rankers.delta_postings import bm25_delta, term_postings, top_slots
from rankers.segment import CorpusStats, PassageRuns, SegmentView
from rankers.snapshot_segment import SnapshotSegment

if TYPE_CHECKING:
    from rankers.enhance import EnhancedRanker
    from rankers.keyword import KeywordRanker, QueryPlan
    from rankers.live import DeltaView, LiveIndex
    from rankers.semantic import SemanticRanker

__all__ = ["DeltaSegment", "live_view"]


_EMPTY = (np.empty(0, np.int64), np.empty(0, np.float32))


@dataclass(frozen=True)
class DeltaSegment:
    delta: DeltaView
    term_ids: dict[str, int]
    """The delta's term dictionary: every index term it has analyzed."""
    specs: tuple[FieldSpec, ...] = ()
    """The snapshot's structured fields, which written documents share."""
    allow: B | None = None
    """Slots a query's filter keeps (None: no filter)."""

    @property
    def columns(self) -> Mapping[str, Column]:
        return self.delta.columns(self.specs)

    def filtered(self, allow: B) -> DeltaSegment:
        return replace(self, allow=allow)

    @property
    def base(self) -> int:
        return self.delta.n_snapshot

    @property
    def size(self) -> int:
        return self.delta.n_slots

    @property
    def n_deleted(self) -> int:
        return int(np.count_nonzero(~self.delta.alive))

    def live(self, rows: I64) -> B:
        out: B = self.delta.alive[rows]
        return out if self.allow is None else out & self.allow[rows]

    def live_mask(self) -> B:
        alive: B = self.delta.alive[: self.size]
        return alive if self.allow is None else alive & self.allow

    def embedded(self, rows: I64) -> B:
        out: B = self.delta.embedded[rows]
        return out if self.allow is None else out & self.allow[rows]

    def knows(self, word: str) -> bool:
        return word in self.term_ids

    def _postings(self, word: str) -> tuple[I64, F32]:
        tid = self.term_ids.get(word)
        return term_postings(self.delta.blocks, tid) if tid is not None else _EMPTY

    def df(self, words: Sequence[str]) -> I64:
        counts, ids = self.delta.df, self.term_ids
        tids = [ids.get(w, -1) for w in words]
        return np.array([counts[t] if 0 <= t < counts.size else 0 for t in tids], np.int64)

    def scores(self, plan: QueryPlan, view: SegmentView) -> F64:
        """The BM25 score of every row (0 for dead rows and rows without a query term)."""
        words = plan.words
        stats = view.stats
        return bm25_delta(
            [self._postings(w) for w, _ in words], [w for _, w in words],
            view.idf([w for w, _ in words]), self.delta.alive, self.delta.doc_len,
            stats.avg_len, stats.k1, stats.b,
        )  # fmt: skip

    def top(self, plan: QueryPlan, view: SegmentView, k: int) -> tuple[I64, F32, F64 | None]:
        full = self.scores(plan, view)
        if self.allow is not None:
            full = np.where(self.allow, full, 0.0)
        slots, scores = top_slots(full, k)
        return slots, scores, full

    def bm25(self, plan: QueryPlan, view: SegmentView, rows: I64) -> F32:
        return self.scores(plan, view)[rows].astype(np.float32)

    def contains(self, word: str, rows: I64) -> B:
        slots, _ = self._postings(word)
        return np.isin(rows, slots)

    def rows_with(self, word: str) -> npt.NDArray[np.integer[Any]]:
        return self._postings(word)[0]

    def lengths(self, rows: I64) -> F32:
        return np.asarray(self.delta.doc_len[rows], dtype=np.float32)

    def vectors(self, rows: I64) -> F32:
        assert self.delta.vectors is not None
        return self.delta.vectors[rows]

    def nearest(self, query_vector: F32, k: int) -> I64:
        wanted = self.delta.embedded if self.allow is None else self.delta.embedded & self.allow
        slots = np.flatnonzero(wanted)
        if slots.size == 0 or self.delta.vectors is None:
            return np.empty(0, dtype=np.int64)
        return slots[top_k(self.delta.vectors[slots] @ query_vector, k)]

    def passages(self, rows: I64, query_vector: F32) -> PassageRuns:
        found = [self.delta.passages[int(r)] for r in rows]
        slots = [p for p in found if p is not None]
        lengths = np.array([0 if p is None else p.kinds.size for p in found], dtype=np.int64)
        q = np.asarray(query_vector, dtype=np.float32)

        def text(i: int, first: int, size: int) -> tuple[str, int]:
            p = found[i]
            assert p is not None
            start, end = int(p.spans[first][0]), int(p.spans[first + size - 1][1])
            return p.blob[start:end].decode("utf-8"), -1

        if not slots:
            empty = np.empty(0, dtype=np.float32)
            return PassageRuns(empty, empty, np.empty(0, np.uint8), lengths, text)
        return PassageRuns(
            np.concatenate([np.asarray(p.vectors, dtype=np.float32) @ q for p in slots]),
            np.concatenate([p.pair_norm for p in slots]).astype(np.float32),
            np.concatenate([p.kinds for p in slots]).astype(np.uint8),
            lengths,
            text,
        )


def live_view(
    live: LiveIndex | None,
    keyword: KeywordRanker,
    semantic: SemanticRanker | None = None,
    enhanced: EnhancedRanker | None = None,
    *,
    always: bool = False,
) -> SegmentView | None:
    """The segments a query searches now: the snapshot (with what the loaded rankers hold of
    it) and the documents written since. None when nothing was written and not `always`:
    each ranker then searches the snapshot alone, at no extra cost. A query with a filter
    asks `always`, to limit one view that every phase reads."""
    delta = live.view() if live is not None else None
    if (delta is None or delta.empty) and not always:
        return None
    vectors = semantic.vectors if semantic is not None else None
    if vectors is None and enhanced is not None:
        vectors = enhanced.doc_vectors
    ann = semantic.index if semantic is not None else None
    passages = enhanced.passages if enhanced is not None else None
    if live is None or delta is None or delta.empty:
        return SnapshotSegment(keyword, vectors, ann, passages).alone()
    snapshot = SnapshotSegment(
        keyword, vectors, ann, passages, delta.tomb, delta.n_tomb, delta.tomb_df,
    )  # fmt: skip
    p = keyword.snapshot.bm25
    stats = CorpusStats(delta.n_docs, delta.avg_len, p.k1, p.b)
    schema = keyword.snapshot.manifest.schema
    specs = schema.fields if schema is not None else ()
    return SegmentView((snapshot, DeltaSegment(delta, live.term_ids, specs)), stats)
