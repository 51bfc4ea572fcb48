"""Evidence fusion: the word bar, BM25 beyond it, and the fused order, from hand-computed tables."""

from __future__ import annotations

import numpy as np
import pytest

from rankers.evidence import DENSE_SCALE, bm25_excess, evidence, word_bar
from rankers.fusion import FusionError, fuse_candidates


@pytest.mark.parametrize(
    ("weighted_idf", "weights", "want"),
    [
        ([2.0, 4.0], [1.0, 1.0], 3.0),
        ([6.0], [1.0], 6.0),
        # a word typed twice weighs 2 and contributes 2 * idf: the bar is its idf, once
        ([2 * 3.0, 5.0], [2.0, 1.0], (6.0 + 5.0) / 3),
        # a last word completed to two vocabulary words shares its weight: it counts once
        ([4.0, 0.5 * 2.0, 0.5 * 6.0], [1.0, 0.5, 0.5], 4.0),
        ([], [], 0.0),
        ([0.0], [0.0], 0.0),
    ],
)
def test_word_bar_table(weighted_idf: list[float], weights: list[float], want: float) -> None:
    assert word_bar(weighted_idf, weights) == pytest.approx(want)


@pytest.mark.parametrize(
    ("bm25", "bar", "want"),
    [
        ([0.0, 3.0, 5.0, 9.5], 5.0, [0.0, 0.0, 0.0, 4.5]),
        ([0.0, 3.0], 0.0, [0.0, 3.0]),
        ([], 2.0, []),
    ],
)
def test_bm25_excess_table(bm25: list[float], bar: float, want: list[float]) -> None:
    got = bm25_excess(np.asarray(bm25, dtype=np.float32), bar)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize(
    ("bm25", "cos", "bar", "scale", "want"),
    [
        ([8.0, 2.0], [0.5, 0.5], 4.0, 10.0, [4.0 + 5.0, 5.0]),
        ([0.0, 6.0], [0.3, 0.1], 6.0, 15.0, [4.5, 1.5]),
    ],
)
def test_evidence_table(
    bm25: list[float], cos: list[float], bar: float, scale: float, want: list[float]
) -> None:
    np.testing.assert_allclose(evidence(bm25, cos, bar, scale), want)


@pytest.mark.parametrize("seed", range(5))
def test_a_one_word_query_is_ranked_by_the_cosine_alone(seed: int) -> None:
    # One word of idf 4.2: Lucene's BM25 never gives more than its idf, which is the bar.
    rng = np.random.default_rng(seed)
    idf = 4.2
    tf = rng.integers(0, 6, size=50).astype(np.float64)
    norm = 1.2 * (0.25 + 0.75 * rng.uniform(0.3, 3.0, size=50))
    bm25 = idf * tf / (tf + norm)
    cos = rng.uniform(-0.1, 0.8, size=50)
    fused = evidence(bm25, cos, word_bar([idf], [1.0]), DENSE_SCALE)
    np.testing.assert_allclose(fused, DENSE_SCALE * cos)


def test_one_matched_word_does_not_outvote_the_cosine() -> None:
    """Regression (the demo catalog): "cans that block out engine drone on a plane" matched
    the word "drone" of every drone, and a z-score sum put them above the headphones that the
    cosine ranked first. Numbers as measured: the query's four words have idf 4.8, 6.8, 5.2
    and 4.4."""
    cand = np.arange(4, dtype=np.int64)
    # drone, drone, headphones (no query word), a bag (no query word)
    bm25 = np.array([4.04, 3.89, 0.0, 0.0], dtype=np.float32)
    cos = np.array([0.287, 0.328, 0.367, 0.2], dtype=np.float32)
    bar = word_bar([4.8, 6.8, 5.2, 4.4], [1.0] * 4)
    ids, _ = fuse_candidates(cand, bm25, cos, "evidence", 0.5, "zscore", 60, bar=bar)
    assert ids.tolist() == [2, 1, 0, 3]
    former, _ = fuse_candidates(cand, bm25, cos, "linear", 0.5, "zscore", 60)
    assert former[0] == 1 and former.tolist().index(2) == 2


def test_evidence_still_counts_a_document_matching_several_words() -> None:
    cand = np.array([10, 20], dtype=np.int64)
    bm25 = np.array([14.0, 0.0], dtype=np.float32)  # three of four words, bar 5.3
    cos = np.array([0.40, 0.55], dtype=np.float32)
    ids, scores = fuse_candidates(cand, bm25, cos, "evidence", 0.5, "zscore", 60, bar=5.3)
    assert ids.tolist() == [10, 20]
    np.testing.assert_allclose(scores, [14.0 - 5.3 + 15 * 0.40, 15 * 0.55], rtol=1e-6)


def test_evidence_ties_go_to_the_lower_id() -> None:
    cand = np.array([3, 7, 9], dtype=np.int64)
    bm25 = np.zeros(3, dtype=np.float32)
    cos = np.array([0.5, 0.5, 0.6], dtype=np.float32)
    ids, _ = fuse_candidates(cand, bm25, cos, "evidence", 0.5, "zscore", 60, bar=1.0)
    assert ids.tolist() == [9, 3, 7]


def test_unknown_candidate_fusion_is_refused() -> None:
    one = np.zeros(1, dtype=np.float32)
    with pytest.raises(FusionError, match="evidence, linear, rrf"):
        fuse_candidates(np.zeros(1, np.int64), one, one, "borda", 0.5, "zscore", 60)
