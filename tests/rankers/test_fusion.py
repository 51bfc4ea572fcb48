"""Fusion functions: hand-computed tables, a naive reference, and parameter errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from index.core.errors import QueryError
from rankers.fusion import FusionError, fuse, linear, linear_aligned, previous_ranks, rrf


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@pytest.mark.parametrize(
    ("lists", "k", "weights", "want_ids", "want_scores"),
    [
        # doc1 = 1/61 + 1/62, doc3 = 1/63 + 1/61, doc2 = 1/62
        (
            [ids(1, 2, 3), ids(3, 1)],
            60,
            None,
            [1, 3, 2],
            [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62],
        ),
        # equal scores: the earlier list wins the tie
        ([ids(1), ids(2)], 60, None, [1, 2], [1 / 61, 1 / 61]),
        ([ids(2), ids(1)], 60, None, [2, 1], [1 / 61, 1 / 61]),
        # doc1 = 2/1 + 1/2, doc2 = 2/2 + 1/1
        ([ids(1, 2), ids(2, 1)], 0, [2.0, 1.0], [1, 2], [2.5, 2.0]),
        # a repeated id counts once, at its best rank; 7 is at rank 3
        ([ids(5, 5, 7)], 0, None, [5, 7], [1.0, 1 / 3]),
        # a zero weight silences a list but keeps its documents
        ([ids(1), ids(2)], 0, [0.0, 1.0], [2, 1], [1.0, 0.0]),
        ([], 60, None, [], []),
        ([ids()], 60, None, [], []),
    ],
)
def test_rrf_table(
    lists: list[np.ndarray],
    k: float,
    weights: list[float] | None,
    want_ids: list[int],
    want_scores: list[float],
) -> None:
    got_ids, got_scores = rrf(lists, k=k, weights=weights)
    assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)


@pytest.mark.parametrize(
    ("id_lists", "score_lists", "weights", "norm", "want_ids", "want_scores"),
    [
        # minmax: A -> [1, .5, 0], B -> [1, 0]; doc4 misses A and gets A's floor 0
        (
            [ids(1, 2, 3), ids(3, 4)],
            [[10.0, 5.0, 0.0], [0.9, 0.1]],
            [1.0, 1.0],
            "minmax",
            [1, 3, 2, 4],
            [1.0, 1.0, 0.5, 0.0],
        ),
        # zscore: A -> [1, -1], B -> [1, -1]; doc1 gets B's floor -1, doc3 A's floor -1
        (
            [ids(1, 2), ids(2, 3)],
            [[3.0, 1.0], [4.0, 0.0]],
            [1.0, 2.0],
            "zscore",
            [2, 1, 3],
            [1.0, -1.0, -3.0],
        ),
        # max: A -> [1, .5], B -> [-1]; doc1 gets B's floor -1
        ([ids(1, 2), ids(2)], [[4.0, 2.0], [-3.0]], [1.0, 1.0], "max", [1, 2], [0.0, -0.5]),
        # all-equal scores normalize to 1 under minmax
        (
            [ids(1, 2), ids(2, 3)],
            [[3.0, 3.0], [2.0, 1.0]],
            None,
            "minmax",
            [2, 1, 3],
            [2.0, 1.0, 1.0],
        ),
        # a repeated id keeps its highest score: 1 -> 5, 2 -> 3
        ([ids(1, 1, 2)], [[1.0, 5.0, 3.0]], None, "minmax", [1, 2], [1.0, 0.0]),
        ([ids(), ids()], [[], []], None, "minmax", [], []),
    ],
)
def test_linear_table(
    id_lists: list[np.ndarray],
    score_lists: list[list[float]],
    weights: list[float] | None,
    norm: str,
    want_ids: list[int],
    want_scores: list[float],
) -> None:
    got_ids, got_scores = linear(id_lists, score_lists, weights, norm=norm)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6, atol=1e-7)


def naive_rrf(lists: Sequence[np.ndarray], k: float) -> dict[int, float]:
    scores: dict[int, float] = {}
    for ranked in lists:
        seen: set[int] = set()
        for rank, doc in enumerate(ranked.tolist(), start=1):
            if doc not in seen:
                seen.add(doc)
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return scores


def test_rrf_matches_naive_reference_on_random_lists() -> None:
    rng = np.random.default_rng(7)
    lists = [rng.integers(0, 300, size=n) for n in (100, 250, 40)]
    got_ids, got_scores = rrf(lists, k=10)
    want = naive_rrf(lists, k=10)
    assert sorted(got_ids.tolist()) == sorted(want)
    np.testing.assert_allclose(got_scores, [want[d] for d in got_ids.tolist()], rtol=1e-6)
    assert np.all(np.diff(got_scores) <= 0)


def test_fuse_dispatches() -> None:
    a, b = ids(1, 2), ids(2, 3)
    np.testing.assert_array_equal(fuse("rrf", [a, b])[0], rrf([a, b])[0])
    scores = [np.array([2.0, 1.0]), np.array([5.0, 4.0])]
    np.testing.assert_array_equal(
        fuse("linear", [a, b], scores, norm="zscore")[1], linear([a, b], scores, norm="zscore")[1]
    )


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'cosine'.*rrf, linear") as caught:
        fuse("cosine", [ids(1)])
    assert isinstance(caught.value, QueryError)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fuse("linear", [ids(1)]), "needs score_lists"),
        (lambda: rrf([ids(1), ids(2)], weights=[1.0]), "1 weights for 2 lists"),
        (lambda: rrf([ids(1)], weights=[-1.0]), ">= 0"),
        (lambda: rrf([ids(1)], k=-1), "k must be"),
        (lambda: rrf([np.array([1.5])]), "integer ids"),
        (lambda: rrf([np.array([[1, 2]])]), "1-D"),
        (lambda: linear([ids(1)], [[1.0]], norm="softmax"), "'softmax'.*minmax, zscore, max"),
        (lambda: linear([ids(1, 2)], [[1.0]]), "shape"),
        (lambda: linear([ids(1)], [[np.nan]]), "NaN"),
        (lambda: linear([ids(1)], []), "1 id lists but 0 score lists"),
    ],
)
def test_bad_parameters_raise(call: Callable[[], object], message: str) -> None:
    with pytest.raises(FusionError, match=message):
        call()


@pytest.mark.parametrize(
    ("new", "old", "want"),
    [
        (ids(3, 1, 9), ids(1, 2, 3), [2, 0, -1]),
        (ids(1, 2), ids(), [-1, -1]),
        (ids(), ids(1), []),
        (ids(4, 5), ids(4, 4, 5), [0, 2]),
        (ids(10, 20, 30), ids(30, 20, 10), [2, 1, 0]),
    ],
)
def test_previous_ranks(new: np.ndarray, old: np.ndarray, want: list[int]) -> None:
    got = previous_ranks(new, old)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("norm", ["minmax", "zscore"])
def test_linear_aligned_equals_linear_on_shared_candidates(norm: str) -> None:
    rng = np.random.default_rng(4)
    ids = np.arange(50, dtype=np.int64)
    a, b = rng.random(50), rng.random(50)
    expected_ids, expected = linear([ids, ids], [a, b], weights=[0.3, 0.7], norm=norm)
    fused = linear_aligned([a, b], [0.3, 0.7], norm=norm)
    np.testing.assert_allclose(fused[expected_ids], expected, rtol=1e-5)


def test_linear_aligned_refuses_mismatched_lists() -> None:
    with pytest.raises(FusionError, match="same length"):
        linear_aligned([np.ones(3), np.ones(4)], [0.5, 0.5])
    with pytest.raises(FusionError, match="weights"):
        linear_aligned([np.ones(3)], [0.5, 0.5])
