"""Exploration for learning from clicks: an explored search shows a deeper candidate in its top k.

Clicks logged under one deterministic top k say nothing of the documents below it: nobody saw
them, so no estimator over those clicks can credit a ranking for bringing one of them up. A
share of the searches is therefore *explored* with randomized insertion, the epsilon-greedy
exploration of online learning to rank (Hofmann, Whiteson & de Rijke 2013, "Balancing
exploration and exploitation in listwise and pairwise online learning to rank") restricted to
one slot: ``n`` candidates drawn uniformly without replacement from ranks k+1..k+D are each
inserted at a uniformly random rank of the top k, the documents below shifted down, the last
``n`` of the top k dropped. Everything else keeps its order.

Why the position-based correction (`rankers.propensity`) stays valid: under that model a
click on a document shown at rank r has probability p(r) * relevance, whatever put it there,
and the draw is independent of the user, so a click's weight 1 / p(displayed rank) is
unbiased for the relevance of the documents a search displayed, explored or not. What the
deterministic top k lacked is coverage: a document must have a non-zero chance of display
to be credited (Oosterhuis & de Rijke 2020, "Policy-Aware Unbiased Learning to Rank for
Top-k Rankings"). Here every candidate within depth D has one: at least n / D of the explored
searches show it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["explored_order"]

IntP = npt.NDArray[np.intp]


def explored_order(ranked: int, k: int, depth: int, rng: np.random.Generator, n: int = 1
                   ) -> IntP:
    """The positions (0-based, into a ranked list of ``ranked`` ids) to show for an explored
    search: the first ``k`` with ``n`` candidates from positions k..k+depth-1 inserted at
    uniformly random ranks. With no candidate below k (``ranked <= k`` or ``depth == 0``) it is
    the first min(k, ranked) positions unchanged."""
    if k < 1 or depth < 0 or n < 0 or ranked < 0:
        raise ValueError(f"k must be at least 1 and depth, n, ranked at least 0; got k={k}, "
                         f"depth={depth}, n={n}, ranked={ranked}")
    top = min(k, ranked)
    pool = max(0, min(ranked, k + depth) - k)
    take = min(n, pool, top)
    if take == 0:
        return np.arange(top, dtype=np.intp)
    chosen = k + rng.choice(pool, size=take, replace=False)
    # The ranks the candidates take in the shown list, distinct: drawn together so that one
    # never pushes another down (each lands exactly at its drawn rank).
    slots = np.sort(rng.choice(top, size=take, replace=False))
    out = np.empty(top, dtype=np.intp)
    inserted = np.zeros(top, dtype=bool)
    inserted[slots] = True
    out[inserted] = chosen
    out[~inserted] = np.arange(top - take, dtype=np.intp)
    return out
