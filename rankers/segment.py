"""Segments and the view a query searches: one searcher over many segments, deletes as masks.

Tantivy is the model. A segment holds the arrays every phase reads: postings with their BM25
impacts, document lengths, document vectors, passages with their vectors. The snapshot is one
segment (:mod:`rankers.snapshot_segment`); the documents written since are another
(:mod:`rankers.delta_segment`). Documents are numbered end to end: a segment's local row ``r``
is document ``base + r``. Rows deleted or replaced since a segment was written are hidden by
its mask, and never reach a result.

The rankers (:mod:`rankers.keyword`, :mod:`rankers.semantic`, :mod:`rankers.enhance`) are
written once over a :class:`SegmentView`: they ask each segment for its top documents, scores,
vectors and passages, and merge. Statistics that compare documents across segments (the idf
of the coverage feature, and the BM25 of written documents) are summed over the segments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from index.columns import Column
from index.core.bm25 import idf
from index.core.types import F32, F64, I64, U8, B
from rankers.features import gather_segments, pair_sims

if TYPE_CHECKING:
    from rankers.keyword import QueryPlan

__all__ = ["CorpusStats", "PassageLayout", "PassageRuns", "Segment", "SegmentView", "lay_out"]


@dataclass(frozen=True)
class CorpusStats:
    """The live corpus, all segments together, deleted rows excluded."""

    n_docs: int
    avg_len: float
    k1: float
    b: float


@dataclass(frozen=True)
class PassageRuns:
    """The passages of some documents of one segment, each document's run after the other's:
    document i's passages are ``lengths[i]`` consecutive entries."""

    sims: F32
    """Cosine of each passage with the query vector."""
    norms: F32
    """Pair norms (see :func:`index.passages.pair_norms`): > 0 where passage j and j + 1 are
    consecutive sentences of one document."""
    kinds: U8
    lengths: I64
    text: Callable[[int, int, int], tuple[str, int]]
    """``text(i, first, size)``: the text of ``size`` passages of document i from its
    ``first``, and the row of the first in the snapshot's passages (-1 when it has none)."""


class Segment(Protocol):
    """What the rankers read of a segment; every document number here is local (a row)."""

    @property
    def base(self) -> int:
        """The number of the segment's first row."""
        ...

    @property
    def size(self) -> int:
        """Rows, deleted ones included."""
        ...

    @property
    def n_deleted(self) -> int:
        ...

    @property
    def columns(self) -> Mapping[str, Column]:
        """The structured fields of its rows, by field name."""
        ...

    def filtered(self, allow: B) -> Segment:
        """This segment with its rows limited to those `allow` flags (a query's filter):
        every method then treats the others as deleted."""
        ...

    def live(self, rows: I64) -> B:
        """Rows that are current documents (not deleted or replaced since)."""
        ...

    def live_mask(self) -> B:
        """`live` of every row, one flag each (read-only: it may be the segment's own)."""
        ...

    def embedded(self, rows: I64) -> B:
        """Live rows that have their vectors (they take part in the semantic phases)."""
        ...

    def knows(self, word: str) -> bool:
        """Whether the segment's term dictionary has the word (an analyzed index term)."""
        ...

    def df(self, words: Sequence[str]) -> I64:
        """Live documents of this segment containing each word."""
        ...

    def top(self, plan: QueryPlan, view: SegmentView, k: int) -> tuple[I64, F32, F64 | None]:
        """The k best live rows by BM25, best first, and the score of every row when the
        segment is scored densely (0 for deleted rows), else None. `view` gives the corpus
        statistics a segment without precomputed impacts scores with."""
        ...

    def bm25(self, plan: QueryPlan, view: SegmentView, rows: I64) -> F32:
        """The BM25 score of given rows."""
        ...

    def contains(self, word: str, rows: I64) -> B:
        """Which rows contain the word."""
        ...

    def lengths(self, rows: I64) -> F32:
        """The BM25 document length of given rows (the array BM25 normalizes with)."""
        ...

    def rows_with(self, word: str) -> npt.NDArray[np.integer[Any]]:
        """Every row that contains the word, deleted ones included (its postings)."""
        ...

    def vectors(self, rows: I64) -> F32:
        """Unit document vectors of embedded rows."""
        ...

    def nearest(self, query_vector: F32, k: int) -> I64:
        """The k embedded live rows nearest to the query vector, best first."""
        ...

    def passages(self, rows: I64, query_vector: F32) -> PassageRuns:
        """The passages of embedded rows, with their cosines to the query vector."""
        ...


@dataclass(frozen=True)
class PassageLayout:
    """The passages of a list of documents from any segments, laid end to end in list order:
    document i's passages are ``offsets[i] .. offsets[i + 1]``."""

    sims: F32
    pairs: F32
    kinds: U8
    offsets: I64
    parts: tuple[tuple[I64, PassageRuns], ...]
    """Per segment: the list positions of its documents, and their runs."""
    part_of: I64
    """For each list position, the index of its part (and its rank within that part)."""
    rank_in_part: I64

    def text(self, i: int, pos: int, size: int) -> tuple[str, int]:
        """Text of ``size`` passages from layout position ``pos`` (document i's), and the
        snapshot passage row of the first (-1 when it is not the snapshot's)."""
        _, runs = self.parts[int(self.part_of[i])]
        return runs.text(int(self.rank_in_part[i]), pos - int(self.offsets[i]), size)


def lay_out(parts: Sequence[tuple[I64, PassageRuns]], n: int) -> PassageLayout:
    """Place each segment's runs at its documents' positions of an n-document list."""
    lengths = np.zeros(n, dtype=np.int64)
    part_of = np.zeros(n, dtype=np.int64)
    rank_in_part = np.zeros(n, dtype=np.int64)
    for p, (positions, runs) in enumerate(parts):
        lengths[positions] = runs.lengths
        part_of[positions] = p
        rank_in_part[positions] = np.arange(positions.size)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(parts) == 1 and np.array_equal(parts[0][0], np.arange(n)):
        runs = parts[0][1]  # one segment, in list order: its runs are the layout
        sims, norms, kinds = runs.sims, runs.norms, runs.kinds
    else:
        total = int(offsets[-1])
        sims = np.zeros(total, dtype=np.float32)
        norms = np.zeros(total, dtype=np.float32)
        kinds = np.zeros(total, dtype=np.uint8)
        for positions, runs in parts:
            dest, _ = gather_segments(offsets, positions)
            sims[dest], norms[dest], kinds[dest] = runs.sims, runs.norms, runs.kinds
    return PassageLayout(
        sims, pair_sims(sims, norms), kinds, offsets, tuple(parts), part_of, rank_in_part
    )


@dataclass(frozen=True)
class SegmentView:
    """The segments one query searches, in document-number order, and the corpus they make."""

    segments: tuple[Segment, ...]
    stats: CorpusStats
    filtered: bool = False
    """Some rows are left out by a query's filter."""

    @property
    def n_deleted(self) -> int:
        return sum(s.n_deleted for s in self.segments)

    @property
    def single(self) -> Segment | None:
        """The one segment, when the view has one and it hides no row (the common case: no
        writes since the snapshot); the rankers then skip every split and merge."""
        if len(self.segments) == 1 and self.segments[0].n_deleted == 0 and not self.filtered:
            return self.segments[0]
        return None

    def with_filter(self, allow: Callable[[Segment], B]) -> SegmentView:
        """The view with each segment limited to the rows `allow(segment)` flags."""
        return self.with_masks([allow(s) for s in self.segments])

    def with_masks(self, masks: Sequence[B]) -> SegmentView:
        """The view with segment i limited to the rows `masks[i]` flags."""
        segments = tuple(s.filtered(m) for s, m in zip(self.segments, masks, strict=True))
        return replace(self, segments=segments, filtered=True)

    def split(self, docs: I64) -> list[tuple[Segment, I64, I64]]:
        """Per segment holding some of ``docs``: the segment, the positions in ``docs`` and
        the local rows."""
        out = []
        for seg in self.segments:
            pos = np.flatnonzero((docs >= seg.base) & (docs < seg.base + seg.size))
            if pos.size:
                out.append((seg, pos, docs[pos] - seg.base))
        return out

    def gather(self, docs: I64, read: Callable[[Segment, I64], F32]) -> F32:
        """``read(segment, rows)`` for each segment's share of ``docs``, in ``docs`` order."""
        single = self.segments[0] if len(self.segments) == 1 else None
        if single is not None:
            return read(single, docs - single.base)
        out = np.zeros(docs.size, dtype=np.float32)
        for seg, pos, rows in self.split(docs):
            out[pos] = read(seg, rows)
        return out

    def mask(self, docs: I64, read: Callable[[Segment, I64], B]) -> B:
        """A per-document flag read from each segment (False outside every segment)."""
        out = np.zeros(docs.size, dtype=bool)
        for seg, pos, rows in self.split(docs):
            out[pos] = read(seg, rows)
        return out

    def embedded(self, docs: I64) -> B:
        """Live documents with vectors."""
        return self.mask(docs, lambda seg, rows: seg.embedded(rows))

    def idf(self, words: Sequence[str]) -> F32:
        """Each word's idf over the live corpus (document frequencies summed over segments)."""
        df = np.zeros(len(words), dtype=np.int64)
        for seg in self.segments:
            df += seg.df(words)
        return idf(df, max(self.stats.n_docs, 1))

    def vectors(self, docs: I64, dim: int) -> F32:
        """Document vectors of embedded documents, in ``docs`` order."""
        single = self.segments[0] if len(self.segments) == 1 else None
        if single is not None:
            return single.vectors(docs - single.base)
        out = np.zeros((docs.size, dim), dtype=np.float32)
        for seg, pos, rows in self.split(docs):
            out[pos] = seg.vectors(rows)
        return out

    def passages(self, docs: I64, query_vector: F32) -> PassageLayout:
        parts = [(pos, seg.passages(rows, query_vector)) for seg, pos, rows in self.split(docs)]
        return lay_out(parts, docs.size)
