"""The enhanced phase: re-rank the semantic phase's candidates by their best passages.

For each candidate document, every passage (title, windows of one and two sentences; see
:mod:`index.passages`) is compared with the query vector, in one gather and one matrix product
over the candidates' passages (a CSR layout: ``ptr[d] .. ptr[d + 1]``), and reduced per document
with ``np.maximum.reduceat``. The passage scores are fused with the keyword evidence and the
document similarity: each feature is z-scored over the candidates, then weighted (weights in
:class:`EnhanceSettings`, chosen by leave-one-collection-out validation, see
``bench/fusion_collections.py``). Each hit carries its best passage, HTML-escaped, with the
words that match a query term (after stemming) in ``<mark>`` (:mod:`rankers.highlight`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.core.errors import QueryError
from index.core.types import F32, I64
from index.snapshot import Snapshot
from rankers.evidence import bm25_excess
from rankers.features import (
    FEATURES,
    combine,
    feedback_scores,
    passage_scores,
    reciprocal_ranks,
    weights_problem,
)
from rankers.fusion import previous_ranks
from rankers.highlight import highlight_rows, mark_terms
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.segment import PassageLayout, Segment, SegmentView
from rankers.semantic import SemanticResult, query_bar
from rankers.snapshot_segment import SnapshotPassages, SnapshotSegment
from rankers.types import KeywordResult

if TYPE_CHECKING:
    from rankers.learned import RankModel

__all__ = [
    "DEFAULT_WEIGHTS",
    "FEATURES",
    "SCIFACT_WEIGHTS",
    "Candidates",
    "EnhanceSettings",
    "EnhancedRanker",
    "EnhancedResult",
    "coverage",
    "score_candidates",
]


PRF_DOCS = 3

DEFAULT_WEIGHTS: dict[str, float] = {"bm25_excess": 0.5, "dense": 0.2, "top2": 0.3}
"""The grid-search optimum (step 0.1 on the simplex) of the mean nDCG@10 over SciFact train,
CACM test and the demo catalog's judged queries, the same weights when fitted on any two of
them (``python -m bench.fusion_collections``)."""
SCIFACT_WEIGHTS: dict[str, float] = {"bm25": 0.2, "dense": 0.2, "best": 0.4, "coverage": 0.2}
"""The former default, fitted on SciFact train alone (``python -m bench.enhance``); it does not
carry over to the other collections."""


@dataclass(frozen=True)
class EnhanceSettings:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """Weight of each z-scored feature (names from :data:`FEATURES`; missing ones weigh 0)."""
    model: RankModel | None = None
    """A fitted model (`progsearch tune`, :mod:`rankers.learned`) used instead of the weights."""
    model_version: str = ""
    """The model's version (its file name in ``ROOT/models``), "" for the weights."""

    def __post_init__(self) -> None:
        problem = weights_problem(self.weights)
        if problem is not None:
            raise QueryError(problem)


@dataclass(frozen=True)
class EnhancedResult:
    docs: I64
    scores: F32
    previous: I64
    """Each hit's 0-based rank in the semantic phase's top k, -1 if it was not there."""
    highlights: tuple[str, ...]
    """Each hit's best passage, HTML-escaped, query words in ``<mark>``."""
    passages: I64
    """Row (in ``passages/``) of the first passage of each hit's highlight (-1: none)."""


class EnhancedRanker:
    """The enhanced phase over a view: the snapshot's passages and those of written
    documents are read through their segments, and scored by the same code."""

    def __init__(
        self, snapshot: Snapshot, keyword: KeywordRanker, settings: EnhanceSettings | None = None
    ) -> None:
        if not snapshot.manifest.has_passages:
            raise QueryError(
                "this snapshot has no passages; rebuild it without --no-passages (and with vectors)"
            )
        self.snapshot = snapshot
        self.keyword = keyword
        self.settings = settings or EnhanceSettings()
        self.doc_vectors: npt.NDArray[Any] = snapshot.arrays["vectors/vectors.npy"]
        self.passages = SnapshotPassages(snapshot)
        self.view: SegmentView = SnapshotSegment(
            keyword, self.doc_vectors, None, self.passages
        ).alone()
        """The snapshot alone, searched when no other view is given."""

    def features(
        self,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        semantic: SemanticResult,
        view: SegmentView | None = None,
    ) -> Candidates:
        """Every feature of the semantic phase's hits that have their vectors, and the
        passage layout the highlights need."""
        view = view or self.view
        docs, sem_scores = semantic.docs, semantic.scores
        semantic_ranks = np.arange(docs.size)  # 0-based, in the semantic phase's list
        if view.single is None:
            keep = view.embedded(docs)
            docs, sem_scores, semantic_ranks = docs[keep], sem_scores[keep], np.flatnonzero(keep)
        if keyword.all_scores is not None:
            bm25 = keyword.all_scores[docs].astype(np.float32)
        else:
            bm25 = view.gather(docs, lambda seg, rows: seg.bm25(plan, view, rows))
        q = np.asarray(query_vector, dtype=np.float32)
        doc_vectors = view.vectors(docs, q.size)
        dense = doc_vectors @ q
        layout = view.passages(docs, q)
        ps = passage_scores(layout.sims, layout.pairs, layout.offsets, layout.kinds)
        lengths = view.gather(docs, lambda seg, rows: seg.lengths(rows))
        feats = {
            "bm25": bm25,
            "bm25_excess": bm25_excess(bm25, query_bar(plan, view)).astype(np.float32),
            "dense": dense.astype(np.float32),
            "semantic": sem_scores,
            "best": ps.best,
            "best1": ps.best1,
            "top2": ps.top2,
            "title": ps.title,
            "coverage": coverage(plan, docs, view),
            "prf": feedback_scores(doc_vectors, PRF_DOCS),
            "keyword_rr": reciprocal_ranks(previous_ranks(docs, keyword.docs)),
            "semantic_rr": reciprocal_ranks(semantic_ranks),
            "doc_len": np.log1p(lengths).astype(np.float32),
            "query_words": np.full(docs.size, len(plan.words), dtype=np.float32),
            "passages": np.log1p(np.diff(layout.offsets)).astype(np.float32),
            "best_at": ps.best_at,
        }
        return Candidates(docs, semantic.docs, feats, layout)

    def rerank(
        self,
        query: str,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        semantic: SemanticResult,
        k: int,
        view: SegmentView | None = None,
        settings: EnhanceSettings | None = None,
    ) -> EnhancedResult:
        """The top ``k`` of the semantic phase's hits (run it with k = its candidate depth),
        re-ranked; ``query`` is the query text (unused by scoring, kept for the highlights'
        callers and future features). ``settings`` replaces the ranker's own (`eval`'s
        reference row of the default weights)."""
        del query
        if semantic.docs.size == 0:
            return _empty()
        c = self.features(plan, keyword, query_vector, semantic, view)
        if c.docs.size == 0:
            return _empty()
        fused = score_candidates(c.features, settings or self.settings)
        order = np.lexsort((np.arange(fused.size), -fused))[:k]
        docs = c.docs[order]
        layout = c.layout
        first, size = highlight_rows(layout.sims, layout.pairs, layout.offsets, layout.kinds, order)
        terms = frozenset(stem for stem, _ in plan.words)
        highlights, rows = [], []
        for i, pos, n in zip(order.tolist(), first.tolist(), size.tolist(), strict=True):
            text, row = layout.text(i, pos, n) if pos >= 0 else ("", -1)
            highlights.append(mark_terms(text, terms, self.keyword.analyzer) if pos >= 0 else "")
            rows.append(row)
        return EnhancedResult(
            docs,
            fused[order].astype(np.float32),
            previous_ranks(docs, c.ranked[:k]),
            tuple(highlights),
            np.asarray(rows, dtype=np.int64),
        )


    def with_settings(self, settings: EnhanceSettings) -> EnhancedRanker:
        """The same ranker over the same loaded arrays, ranking with ``settings``."""
        other = copy.copy(self)
        other.settings = settings
        return other

    @property
    def version(self) -> str:
        """What ranks the candidates: the installed model's version, or ``default``."""
        return self.settings.model_version or "default"


def score_candidates(features: dict[str, F32], settings: EnhanceSettings) -> npt.NDArray[Any]:
    """The fused score of each candidate: the fitted model's, else the weighted z-scores."""
    if settings.model is not None:
        return settings.model.score(features)
    return combine(dict(features), settings.weights)


@dataclass(frozen=True)
class Candidates:
    """The candidates the enhanced phase re-ranks, with their features."""

    docs: I64
    """The semantic phase's hits that have their vectors, in its order."""
    ranked: I64
    """All of the semantic phase's hits, in its order (for the previous ranks)."""
    features: dict[str, F32]
    layout: PassageLayout


def coverage(plan: QueryPlan, docs: I64, view: SegmentView) -> F32:
    """Share of the query's idf-weighted terms each document contains, the idf taken over the
    live corpus (document frequencies summed over the segments)."""
    total = np.zeros(docs.size, dtype=np.float32)
    if docs.size == 0 or not plan.words:
        return total
    words = [w for w, _ in plan.words]
    weights = np.asarray([w for _, w in plan.words], dtype=np.float32) * view.idf(words)
    mass = float(np.sum(weights))
    if mass <= 0:
        return total
    for word, w in zip(words, weights.tolist(), strict=True):
        total += np.float32(w) * view.mask(docs, _contains(word))
    return total / np.float32(mass)


def _contains(word: str) -> Callable[[Segment, I64], npt.NDArray[np.bool_]]:
    return lambda seg, rows: seg.contains(word, rows)


def _empty() -> EnhancedResult:
    empty = np.empty(0, dtype=np.int64)
    return EnhancedResult(empty, np.empty(0, dtype=np.float32), empty, (), empty)
