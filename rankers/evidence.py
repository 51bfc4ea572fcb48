"""BM25 evidence beyond one query word, and the semantic phase's fusion of it with the cosine.

A document's BM25 score (Lucene's variant) is a sum over the query's words, each at most its
weighted idf, reached as the term frequency saturates. What a single word can give is weak
evidence that a document is about the query as a whole: a paraphrase ("cans that block out
engine drone on a plane") matches one word of many wrong documents (drones). So BM25 counts
only beyond the *bar*, the mean weighted idf of the query's words: the most an average word can
add alone. Of a one-word query nothing is left, and the cosine alone ranks.

The excess is added to the cosine in raw units (``excess + dense_scale * cos``), not normalized
per query: a z-score stretches a weak BM25 (one common word matched) to the same spread as a
strong one, which is how a fixed 0.5/0.5 z-score sum let BM25 outvote a better dense ranking.
Both raw scales mean the same on every collection: idf is in nats of rarity, the cosine comes
from one encoder. ``dense_scale`` (one cosine point is worth that many nats) was chosen by
leave-one-collection-out validation (``python -m bench.fusion_collections``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from index.core.types import F64

__all__ = ["DENSE_SCALE", "bm25_excess", "evidence", "word_bar"]

DENSE_SCALE = 15.0
"""BM25 nats one unit of cosine is worth in :func:`evidence`."""


def word_bar(weighted_idf: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """The mean weighted idf of the query's words: ``sum(w * idf) / sum(w)`` (0 without words).

    A word completed to several vocabulary words (search as you type) shares its weight among
    them, so it counts once."""
    mass = float(np.sum(np.asarray(weights, dtype=np.float64)))
    if mass <= 0:
        return 0.0
    return float(np.sum(np.asarray(weighted_idf, dtype=np.float64))) / mass


def bm25_excess(bm25: npt.ArrayLike, bar: float) -> F64:
    """BM25 beyond the bar, never negative."""
    return np.maximum(np.asarray(bm25, dtype=np.float64) - bar, 0.0)


def evidence(bm25: npt.ArrayLike, cos: npt.ArrayLike, bar: float, dense_scale: float) -> F64:
    """The fused score of candidates that have both scores: ``bm25_excess + dense_scale * cos``."""
    return bm25_excess(bm25, bar) + dense_scale * np.asarray(cos, dtype=np.float64)

