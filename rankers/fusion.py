"""Fusion of several ranked lists (e.g. keyword and semantic) into one, over numpy arrays.

Conventions shared by every function here:

- An id list is a 1-D integer array, best first. An id repeated within one list counts once,
  at its first (best) position; for :func:`linear`, at its highest score.
- Ties in the fused score go to the document seen first when the input lists are read in the
  order given, each from its top: the earlier lists (the keyword phase, say) win ties, so a
  re-ranking moves documents only when the scores say so.
- Scores are summed in float64, so the order is decided at full precision; they are returned
  as float32 like every ranker's scores.
- Invalid parameters raise :class:`FusionError`, a :class:`~index.core.errors.QueryError` that is
  also a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from index.core.errors import QueryError
from rankers.evidence import DENSE_SCALE, evidence
from rankers.types import IdArray, ScoreArray

__all__ = [
    "CANDIDATE_FUSIONS",
    "FUSION_METHODS",
    "NORMS",
    "FusionError",
    "fuse",
    "fuse_candidates",
    "linear",
    "linear_aligned",
    "previous_ranks",
    "rrf",
]

Float64Array = npt.NDArray[np.float64]
Norm = Literal["minmax", "zscore", "max"]
NORMS: tuple[str, ...] = ("minmax", "zscore", "max")
FUSION_METHODS: tuple[str, ...] = ("rrf", "linear")
CANDIDATE_FUSIONS: tuple[str, ...] = ("evidence", "linear", "rrf")
"""What :func:`fuse_candidates` (the semantic phase) accepts: ``evidence`` is the default."""


class FusionError(QueryError, ValueError):
    """A fusion method or one of its parameters is not acceptable."""


def _as_ids(ids: npt.ArrayLike, what: str) -> IdArray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise FusionError(f"{what} must be a 1-D array of ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise FusionError(f"{what} must hold integer ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _weights(weights: Sequence[float] | None, count: int) -> Float64Array:
    if weights is None:
        return np.ones(count, dtype=np.float64)
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (count,):
        raise FusionError(f"got {array.size} weights for {count} lists; give one per list")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise FusionError(f"weights must be finite and >= 0, got {array.tolist()}")
    return array


def _first_occurrences(ids: IdArray) -> npt.NDArray[np.intp]:
    """Positions of the first occurrence of each distinct id, in list order."""
    _, first = np.unique(ids, return_index=True)
    return np.sort(first)


def _ordered(
    unique: IdArray, first: npt.NDArray[np.intp], scores: Float64Array
) -> tuple[IdArray, ScoreArray]:
    """Sort by score, ties by first appearance (``first`` indexes the concatenated input)."""
    order = np.lexsort((first, -scores))
    return unique[order], scores[order].astype(np.float32)


def _combine(ids: IdArray, contributions: Float64Array) -> tuple[IdArray, ScoreArray]:
    """Sum the contributions per id, best first."""
    if ids.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    scores = np.asarray(np.bincount(inverse, weights=contributions), dtype=np.float64)
    return _ordered(unique, first, scores)


def rrf(
    ranked_id_lists: Sequence[npt.ArrayLike],
    k: float = 60,
    weights: Sequence[float] | None = None,
) -> tuple[IdArray, ScoreArray]:
    """Reciprocal rank fusion: a document scores sum(weight_i / (k + rank_i)), rank from 1.

    Returns the fused ids (best first) and their scores.
    """
    if not np.isfinite(k) or k < 0:
        raise FusionError(f"rrf k must be a finite number >= 0, got {k}")
    lists = [_as_ids(ids, f"ranked_id_lists[{i}]") for i, ids in enumerate(ranked_id_lists)]
    w = _weights(weights, len(lists))
    all_ids: list[IdArray] = []
    contributions: list[Float64Array] = []
    for ids, weight in zip(lists, w, strict=True):
        first = _first_occurrences(ids)
        all_ids.append(ids[first])
        contributions.append(weight / (k + 1.0 + first.astype(np.float64)))
    if not all_ids:
        return _combine(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
    return _combine(np.concatenate(all_ids), np.concatenate(contributions))


def _normalize(scores: Float64Array, norm: str) -> Float64Array:
    if scores.size == 0:
        return scores
    if norm == "minmax":
        low, span = scores.min(), np.ptp(scores)
        # All-equal scores carry no order: every document of the list gets 1.
        return (scores - low) / span if span > 0 else np.ones_like(scores)
    if norm == "zscore":
        std = scores.std()
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    if norm == "max":
        top = np.abs(scores).max()
        return scores / top if top > 0 else np.zeros_like(scores)
    raise FusionError(f"normalization {norm!r} is unknown; use one of {', '.join(NORMS)}")


def linear(
    id_lists: Sequence[npt.ArrayLike],
    score_lists: Sequence[npt.ArrayLike],
    weights: Sequence[float] | None = None,
    norm: str = "minmax",
) -> tuple[IdArray, ScoreArray]:
    """Weighted sum of per-list normalized scores.

    ``norm`` is "minmax" (to [0, 1]), "zscore" (mean 0, sd 1) or "max" (divide by the largest
    absolute score). A document missing from a list gets that list's lowest normalized score:
    it ranked below everything the list returned, and scoring it any higher would reward
    absence. Returns the fused ids (best first) and their scores.
    """
    if norm not in NORMS:
        raise FusionError(f"normalization {norm!r} is unknown; use one of {', '.join(NORMS)}")
    if len(id_lists) != len(score_lists):
        raise FusionError(f"got {len(id_lists)} id lists but {len(score_lists)} score lists")
    w = _weights(weights, len(id_lists))
    kept_ids: list[IdArray] = []
    kept_scores: list[Float64Array] = []
    for i, (raw_ids, raw_scores) in enumerate(zip(id_lists, score_lists, strict=True)):
        ids = _as_ids(raw_ids, f"id_lists[{i}]")
        scores = np.asarray(raw_scores, dtype=np.float64)
        if scores.shape != ids.shape:
            raise FusionError(f"score_lists[{i}] has shape {scores.shape}, ids {ids.shape}")
        if not np.all(np.isfinite(scores)):
            raise FusionError(f"score_lists[{i}] holds NaN or infinite scores")
        # Keep each id's best score; a stable sort keeps list order among equal scores.
        order = np.argsort(-scores, kind="stable")
        best = order[_first_occurrences(ids[order])]
        best.sort()
        kept_ids.append(ids[best])
        kept_scores.append(_normalize(scores[best], norm))
    if not kept_ids or sum(ids.size for ids in kept_ids) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    union, first = np.unique(np.concatenate(kept_ids), return_index=True)
    # Start every document at each list's floor, then raise it where the list has it.
    floors = np.array([s.min() if s.size else 0.0 for s in kept_scores])
    total = np.full(union.size, float(np.dot(w, floors)))
    for weight, ids, normed, floor in zip(w, kept_ids, kept_scores, floors, strict=True):
        total[np.searchsorted(union, ids)] += weight * (normed - floor)
    return _ordered(union, first, total)


def fuse(
    method: str,
    id_lists: Sequence[npt.ArrayLike],
    score_lists: Sequence[npt.ArrayLike] | None = None,
    *,
    weights: Sequence[float] | None = None,
    k: float = 60,
    norm: str = "minmax",
) -> tuple[IdArray, ScoreArray]:
    """Dispatch to :func:`rrf` (ignores scores) or :func:`linear` (needs ``score_lists``)."""
    if method == "rrf":
        return rrf(id_lists, k=k, weights=weights)
    if method == "linear":
        if score_lists is None:
            raise FusionError("fusion method 'linear' needs score_lists")
        return linear(id_lists, score_lists, weights=weights, norm=norm)
    raise FusionError(
        f"fusion method {method!r} is unknown; use one of {', '.join(FUSION_METHODS)}"
    )


def previous_ranks(new_ids: npt.ArrayLike, old_ids: npt.ArrayLike) -> IdArray:
    """For each id of ``new_ids``, its 0-based position in ``old_ids`` (first one), else -1."""
    new = _as_ids(new_ids, "new_ids")
    old = _as_ids(old_ids, "old_ids")
    if old.size == 0:
        return np.full(new.size, -1, dtype=np.int64)
    sorter = np.argsort(old, kind="stable")
    positions = np.searchsorted(old, new, sorter=sorter)
    positions = np.minimum(positions, old.size - 1)
    found = old[sorter[positions]] == new
    return np.where(found, sorter[positions], -1).astype(np.int64)


def linear_aligned(
    score_lists: Sequence[npt.ArrayLike], weights: Sequence[float], norm: str = "zscore"
) -> Float64Array:
    """Weighted sum of normalized scores that all describe the same documents, in the same
    order (no id matching needed, so it is much cheaper than :func:`linear`)."""
    arrays = [np.asarray(s, dtype=np.float64) for s in score_lists]
    if len(arrays) != len(weights):
        raise FusionError(f"{len(arrays)} score lists but {len(weights)} weights")
    if len({a.shape for a in arrays}) > 1:
        raise FusionError("aligned score lists must have the same length")
    total = np.zeros(arrays[0].shape if arrays else (0,), dtype=np.float64)
    for scores, weight in zip(arrays, weights, strict=True):
        total += weight * _normalize(scores, norm)
    return total


def fuse_candidates(
    cand: npt.NDArray[np.int64],
    bm25: npt.NDArray[np.float32],
    cos: npt.NDArray[np.float32],
    method: str,
    dense_weight: float,
    norm: str,
    rrf_k: float,
    *,
    bar: float = 0.0,
    dense_scale: float = DENSE_SCALE,
) -> tuple[IdArray, ScoreArray]:
    """Candidates that each have both scores, fused, best first (equal scores: lower id).

    "evidence": :func:`rankers.evidence.evidence` (BM25 beyond ``bar`` plus ``dense_scale``
    times the cosine); "linear": ``dense_weight`` of the normalized cosine plus the rest of the
    normalized BM25; "rrf": the two candidate orders, weighted the same way."""
    w = dense_weight
    if method == "rrf":
        lists = [cand[np.argsort(-bm25, kind="stable")], cand[np.argsort(-cos, kind="stable")]]
        return fuse("rrf", lists, weights=[1.0 - w, w], k=rrf_k)
    if method == "evidence":
        fused = evidence(bm25, cos, bar, dense_scale)
    elif method == "linear":
        # Every candidate has both scores: fuse the aligned arrays directly.
        fused = linear_aligned([bm25, cos], [1.0 - w, w], norm=norm)
    else:
        raise FusionError(
            f"fusion method {method!r} is unknown; use one of {', '.join(CANDIDATE_FUSIONS)}"
        )
    order = np.lexsort((cand, -fused))
    return cand[order], fused[order].astype(np.float32)
