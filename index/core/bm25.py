"""BM25 as pure functions over arrays.

The variant is Lucene's (as in Lucene 8+ and bm25s's default): a non-negative idf and no
(k1 + 1) factor, which leaves the ranking unchanged. Title and body are *weighted* rather than
fully fielded (BM25F with one shared length normalization): a title occurrence counts as
`title_weight` body occurrences, in the term frequency and in the document length alike. With
`title_weight == 1` this is exactly BM25 over title + body.

Impacts (idf times the saturated term frequency) are computed once, at index time, so the query
path only adds precomputed floats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.errors import SnapshotError

__all__ = ["BM25Params", "idf", "impacts", "top_k"]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2
    b: float = 0.75
    title_weight: float = 2.0
    variant: str = "lucene"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BM25Params:
        params = cls(**data)
        if params.variant != "lucene":
            raise SnapshotError(f"unknown BM25 variant {params.variant!r}; known: 'lucene'")
        return params


def idf(df: npt.NDArray[np.integer[Any]], n_docs: int) -> FloatArray:
    """Lucene's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    d = df.astype(np.float64)
    return np.log1p((n_docs - d + 0.5) / (d + 0.5)).astype(np.float32)


def impacts(
    tf: FloatArray,
    doc_len: FloatArray,
    avg_len: float,
    term_idf: FloatArray,
    k1: float,
    b: float,
) -> FloatArray:
    """Per-posting score contributions; all arrays aligned with the postings."""
    norm = k1 * ((1.0 - b) + b * (doc_len / np.float32(avg_len)))
    return (term_idf * (tf / (tf + norm))).astype(np.float32)


def top_k(scores: npt.NDArray[np.floating[Any]], k: int) -> npt.NDArray[np.int64]:
    """Positions of the k highest scores, best first (equal scores in position order)."""
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)
