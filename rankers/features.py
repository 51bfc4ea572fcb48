"""The enhanced phase's features as pure functions over arrays.

Passages are laid out as a CSR over candidate documents (``offsets[i] .. offsets[i + 1]`` are
document i's), so every reduction is one numpy call with no Python loop over documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.core.types import F32, F64, I64
from index.passages import TITLE

__all__ = [
    "FEATURES",
    "PassageScores",
    "combine",
    "feedback_scores",
    "gather_segments",
    "pair_sims",
    "passage_scores",
    "reciprocal_ranks",
    "segment_max",
    "weights_problem",
    "zscore",
]

FEATURES = (
    "bm25", "bm25_excess", "dense", "semantic", "best", "best1", "top2", "title", "coverage", "prf",
    "keyword_rr", "semantic_rr", "doc_len", "query_words", "passages", "best_at",
)
"""Per-candidate features: keyword score, keyword score beyond the query's word bar
(:mod:`rankers.evidence`), document cosine, the semantic phase's fused score, best passage
cosine (title, sentences and sentence pairs), best single passage, mean of the two best single
passages, title passage cosine, the idf-weighted share of the query's terms that the document
contains, the cosine to the centroid of the semantic phase's top `rankers.enhance.PRF_DOCS`
documents (pseudo-relevance feedback); then the reciprocal rank (1 / (1 + rank), 0 when absent)
in the keyword phase's list and in the semantic phase's, log(1 + the document's BM25 length),
the query's words (the same for every candidate), log(1 + the document's passages) and where
its best single passage is (`PassageScores.best_at`). New features go at the end: a stored model
names the ones it was fitted on (:mod:`rankers.learned`)."""


def gather_segments(ptr: I64, docs: I64) -> tuple[I64, I64]:
    """Passage rows of ``docs``, laid end to end, and the offsets of each document's run
    (``offsets[i] .. offsets[i + 1]`` are document i's rows), with no Python loop."""
    lo = ptr[docs]
    lengths = ptr[docs + 1] - lo
    offsets = np.zeros(docs.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rows = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(lo - offsets[:-1], lengths)
    return rows, offsets


def segment_max(values: F32, offsets: I64, fill: float = 0.0) -> F32:
    """Maximum of each run ``values[offsets[i]:offsets[i + 1]]``; ``fill`` for an empty run."""
    n = offsets.size - 1
    out = np.full(n, fill, dtype=np.float32)
    nonempty = offsets[1:] > offsets[:-1]
    if values.size:
        # reduceat over the starts of non-empty runs only: each then ends where the next begins.
        out[nonempty] = np.maximum.reduceat(values, offsets[:-1][nonempty])
    return out


def pair_sims(sims: F32, norms: F32) -> F32:
    """Cosines of the windows of two sentences: passage j and j + 1 when ``norms[j] > 0`` (the
    length of the sum of their unit vectors, see :func:`index.passages.pair_norms`), else -inf."""
    out = np.full(sims.size, -np.inf, dtype=np.float32)
    j = np.flatnonzero(norms > 0)
    out[j] = (sims[j] + sims[j + 1]) / norms[j]
    return out


@dataclass(frozen=True)
class PassageScores:
    best: F32
    """Best cosine of each document's passages: title, sentences and pairs of sentences."""
    best1: F32
    """Best cosine of its single passages (title, sentences)."""
    top2: F32
    """Mean of the two best single passages (the best alone when a document has one)."""
    title: F32
    """Cosine of the title passage (the best passage when there is no title)."""
    best_at: F32
    """Where the best single passage is in the document's run, from 0 (its first: the title
    when it has one) to 1 (its last); 0 for a document of one passage or none."""


def passage_scores(
    sims: F32, pairs: F32, offsets: I64, kinds: npt.NDArray[np.uint8]
) -> PassageScores:
    """Per-document passage features from the cosines of the documents' passages and of their
    sentence pairs (``sims``, ``pairs`` and ``kinds`` laid out as by :func:`gather_segments`)."""
    n = offsets.size - 1
    lengths = np.diff(offsets)
    seg = np.repeat(np.arange(n, dtype=np.int64), lengths)
    best1 = segment_max(sims, offsets)
    best = np.maximum(best1, segment_max(pairs, offsets, fill=-np.inf))
    # One sort by (document, descending cosine) gives every document's best and second best.
    order = np.lexsort((-sims, seg))
    starts = offsets[:-1]
    nonempty = lengths > 0
    first = np.where(nonempty, starts, 0)
    second = np.where(lengths > 1, starts + 1, first)
    if sims.size:
        top2 = np.where(nonempty, (sims[order[first]] + sims[order[second]]) / 2, 0.0)
        # The sort is stable: of equal cosines, the earlier passage is the best.
        at = np.where(nonempty, (order[first] - starts) / np.maximum(lengths - 1, 1), 0.0)
    else:
        top2 = np.zeros(n)
        at = np.zeros(n)
    title_sims = np.where(kinds == TITLE, sims, np.float32(-np.inf)).astype(np.float32)
    title = segment_max(title_sims, offsets, fill=-np.inf)
    title = np.where(np.isfinite(title), title, best)
    return PassageScores(
        best.astype(np.float32),
        best1,
        top2.astype(np.float32),
        title.astype(np.float32),
        at.astype(np.float32),
    )


def reciprocal_ranks(ranks: I64) -> F32:
    """1 / (1 + rank) of 0-based ranks, 0 where the rank is -1 (not in the list)."""
    out: F32 = np.where(ranks >= 0, 1.0 / (1.0 + np.maximum(ranks, 0)), 0.0).astype(np.float32)
    return out


def feedback_scores(vectors: F32, ranked: int) -> F32:
    """Cosine of each row of ``vectors`` (the candidates' unit document vectors, best first) to
    the centroid of the first ``ranked`` rows: documents like the top hits score high."""
    if vectors.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    centroid = vectors[:ranked].sum(axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(centroid))
    if norm == 0.0:
        return np.zeros(vectors.shape[0], dtype=np.float32)
    out: F32 = (vectors @ (centroid / np.float32(norm))).astype(np.float32)
    return out


def zscore(values: npt.ArrayLike) -> F64:
    """Mean 0 and standard deviation 1 over the candidates (all zeros when they are all equal)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    std = v.std()
    return (v - v.mean()) / std if std > 0 else np.zeros_like(v)


def weights_problem(weights: Mapping[str, float]) -> str | None:
    """What is wrong with feature weights (a name not in :data:`FEATURES`, a weight not
    finite), or None; the caller raises its own error with it."""
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        return f"unknown enhanced features {unknown}; use names from {FEATURES}"
    if any(not np.isfinite(w) for w in weights.values()):
        return f"enhanced feature weights must be finite: {dict(weights)}"
    return None


def combine(features: dict[str, npt.ArrayLike], weights: dict[str, float]) -> F64:
    """Weighted sum of the z-scored features (a feature without weight is ignored)."""
    total: F64 | None = None
    for name, weight in weights.items():
        if weight == 0.0:
            continue
        part = weight * zscore(features[name])
        total = part if total is None else total + part
    if total is None:
        size = len(np.asarray(next(iter(features.values())))) if features else 0
        return np.zeros(size, dtype=np.float64)
    return total
