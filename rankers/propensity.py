"""Position-bias correction of clicks: inverse propensity weighting, as pure functions.

A user clicks a result only after looking at it, and looks at lower ranks less often, so raw
clicks favour whatever was shown first. The position-based model says a result at rank r is
examined with probability

    p(r) = (1 / r) ** eta

and a click on it is weighted by 1 / p(r) (Joachims, Swaminathan & Schnabel 2017, "Unbiased
Learning-to-Rank with Biased Feedback"): summed over many searches, the weighted clicks of a
document estimate its relevance as if every rank were examined alike.

- ``eta`` (`PROGSEARCH_CLICK_ETA`, default 1.0) is how fast attention falls with the rank:
  0 is no correction (every rank looked at), 1 the usual choice for web search, 2 a steep
  fall. It is not estimated from the log: clicks logged under one ranking cannot tell a
  position's examination from the relevance of what was shown there (that needs
  interventions, such as swapping two ranks for some users), and a dwell time says how long
  a clicked result held its reader, not whether an unclicked one was seen.
- Ranks are capped at `RANK_CAP` (20) before weighting, so one click deep in a list weighs at
  most 20 ** eta: clipped propensities trade a little bias for a bounded variance (one
  lucky click at rank 90 would otherwise outweigh fifty at the top).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["RANK_CAP", "ideal_dcg", "ips_dcg", "ips_weights", "propensities"]

F64 = npt.NDArray[np.float64]
RANK_CAP = 20
"""Ranks beyond this one weigh as this one: the largest weight is ``RANK_CAP ** eta``."""
DCG_DEPTH = 10


def _check(eta: float, cap: int) -> None:
    if not eta >= 0:
        raise ValueError(f"eta must be at least 0, got {eta!r}")
    if cap < 1:
        raise ValueError(f"the rank cap must be at least 1, got {cap!r}")


def propensities(ranks: npt.ArrayLike, eta: float = 1.0, cap: int = RANK_CAP) -> F64:
    """p(r) = (1 / min(r, cap)) ** eta for 1-based ranks."""
    _check(eta, cap)
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and r.min() < 1:
        raise ValueError(f"ranks are 1-based, got {r.min():g}")
    out: F64 = np.minimum(r, cap) ** -eta
    return out


def ips_weights(ranks: npt.ArrayLike, eta: float = 1.0, cap: int = RANK_CAP) -> F64:
    """The weight of a click at each rank: 1 / p(rank), at most ``cap ** eta``."""
    return 1.0 / propensities(ranks, eta, cap)


def ips_dcg(new_ranks: npt.ArrayLike, weights: npt.ArrayLike, depth: int = DCG_DEPTH) -> float:
    """IPS-weighted DCG of a new order: the sum over clicked documents of their weight times
    1 / log2(1 + new rank), for those the new order puts in its first ``depth``."""
    r = np.asarray(new_ranks, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    kept = r <= depth
    return float(np.sum(w[kept] / np.log2(1.0 + r[kept])))


def ideal_dcg(weights: npt.ArrayLike, depth: int = DCG_DEPTH) -> float:
    """The most `ips_dcg` can be for these clicks: the heaviest ranked first."""
    w = np.sort(np.asarray(weights, dtype=np.float64))[::-1][:depth]
    return float(np.sum(w / np.log2(np.arange(2, w.size + 2))))
