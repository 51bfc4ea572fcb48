"""The semantic phase: embed the query, find its nearest documents, fuse with the keyword phase.

The candidates are the union of the keyword top-N and the nearest-neighbour top-N. Every
candidate gets both of its scores exactly (its BM25 score by binary search in the postings of
the query terms, its cosine from the memory-mapped vectors), so fusion never has to guess a
missing score. The default fusion is :mod:`rankers.evidence` (BM25 beyond what one query word
gives, plus the scaled cosine); the former fixed 0.5/0.5 z-score sum is
``FusionSettings(method="linear")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.errors import QueryError
from index.core.types import F32, I64
from index.snapshot import Snapshot
from index.vectors import VectorIndex, load_vector_index
from rankers.evidence import DENSE_SCALE, word_bar
from rankers.fusion import CANDIDATE_FUSIONS, fuse_candidates, previous_ranks
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.segment import SegmentView
from rankers.snapshot_segment import SnapshotSegment
from rankers.types import KeywordResult

__all__ = ["FusionSettings", "SemanticRanker", "SemanticResult", "query_bar"]


FUSION_METHODS = CANDIDATE_FUSIONS


@dataclass(frozen=True)
class FusionSettings:
    method: str = "evidence"
    """"evidence" (BM25 beyond the query's word bar plus ``dense_scale`` times the cosine),
    "linear" (normalized scores, ``dense_weight``) or "rrf"."""
    dense_weight: float = 0.5
    """Share of the dense score in linear fusion, or of the dense list in RRF."""
    norm: str = "zscore"
    rrf_k: float = 60.0
    dense_scale: float = DENSE_SCALE
    """BM25 nats one unit of cosine is worth in evidence fusion."""
    candidates: int = 100
    """Depth of each candidate list (keyword and nearest neighbours)."""

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise QueryError(f"fusion {self.method!r} is unknown; use one of {FUSION_METHODS}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise QueryError(f"dense_weight must be within [0, 1], got {self.dense_weight}")
        if not (np.isfinite(self.dense_scale) and self.dense_scale > 0):
            raise QueryError(f"dense_scale must be finite and > 0, got {self.dense_scale}")
        if self.candidates < 1:
            raise QueryError(f"candidates must be at least 1, got {self.candidates}")


@dataclass(frozen=True)
class SemanticResult:
    docs: I64
    scores: F32
    previous: I64
    """Each hit's 0-based rank in the keyword phase, -1 if the keyword phase did not show it."""


class SemanticRanker:
    """Holds the vector index; `encoder` is anything with `encode_query(text) -> (d,) array`."""

    def __init__(
        self,
        snapshot: Snapshot,
        keyword: KeywordRanker,
        encoder: Any,
        fusion: FusionSettings | None = None,
        threads: int = 1,
    ) -> None:
        params = snapshot.manifest.index_params
        if params is None:
            raise QueryError("this snapshot has no vectors; rebuild it without --no-vectors")
        self.snapshot = snapshot
        self.keyword = keyword
        self.encoder = encoder
        self.fusion = fusion or FusionSettings()
        self.vectors: npt.NDArray[Any] = snapshot.arrays["vectors/vectors.npy"]
        self.index: VectorIndex = load_vector_index(
            snapshot.folder / "vectors", params, threads=threads
        )
        self.view: SegmentView = SnapshotSegment(keyword, self.vectors, self.index).alone()
        """The snapshot alone, searched when no other view is given."""

    def dense(self, query_vector: F32, k: int) -> tuple[I64, F32]:
        """Nearest documents by cosine (vectors are unit length)."""
        return self.index.search(query_vector, k)

    def fuse(
        self,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        k: int,
        view: SegmentView | None = None,
    ) -> SemanticResult:
        """Fused top-k from the keyword phase's result (its candidates, best first, run with
        `fusion.candidates` as k) and the query's vector, over `view` (default: the snapshot
        alone). A document takes part once it has its vector."""
        view = view or self.view
        depth = self.fusion.candidates
        q = np.asarray(query_vector, dtype=np.float32)
        parts = [keyword.docs[:depth]]
        parts += [seg.nearest(q, depth) + seg.base for seg in view.segments]
        cand = np.unique(np.concatenate(parts))
        if view.single is None:
            cand = cand[view.embedded(cand)]
        if cand.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return SemanticResult(empty, np.empty(0, dtype=np.float32), empty)
        if keyword.all_scores is not None:
            bm25 = keyword.all_scores[cand].astype(np.float32)
        else:
            bm25 = view.gather(cand, lambda seg, rows: seg.bm25(plan, view, rows))
        cos = view.gather(cand, lambda seg, rows: (seg.vectors(rows) @ q).astype(np.float32))
        f = self.fusion
        bar = query_bar(plan, view) if f.method == "evidence" else 0.0
        ids, scores = fuse_candidates(cand, bm25, cos, f.method, f.dense_weight, f.norm, f.rrf_k,
                                      bar=bar, dense_scale=f.dense_scale)
        ids, scores = ids[:k], scores[:k].astype(np.float32)
        return SemanticResult(ids, scores, previous_ranks(ids, keyword.docs[:k]))

    def search(self, query: str, k: int, *, prefix: bool = False) -> SemanticResult:
        """The whole phase for one query: keyword candidates, query vector, fusion.

        A query with no word in it (empty, punctuation, symbols) has no meaning to embed
        either: it gets no hits rather than the neighbours of an empty string.
        """
        if not self.keyword.analyzer.words(query):
            empty = np.empty(0, dtype=np.int64)
            return SemanticResult(empty, np.empty(0, dtype=np.float32), empty)
        plan = self.keyword.plan(query, prefix=prefix)
        candidates = self.keyword.run(plan, self.fusion.candidates)
        return self.fuse(plan, candidates, self.encoder.encode_query(query), k)


def query_bar(plan: QueryPlan, view: SegmentView) -> float:
    """The query's word bar (:func:`rankers.evidence.word_bar`), the idf taken over the live
    corpus of ``view`` (document frequencies summed over its segments, as for coverage)."""
    if not plan.words:
        return 0.0
    words = [w for w, _ in plan.words]
    weights = np.asarray([w for _, w in plan.words], dtype=np.float64)
    return word_bar(weights * view.idf(words), weights)
