"""Randomized insertion (`rankers.explore.explored_order`): k positions, no repeat, the top k's
order kept around the inserted candidates, and every candidate within the depth shown at
every rank of the top k."""

from __future__ import annotations

import numpy as np
import pytest

from rankers.explore import explored_order


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(("ranked", "k", "depth", "n"), [
    (30, 10, 20, 1), (30, 10, 20, 3), (12, 10, 20, 1), (15, 10, 5, 2), (25, 1, 20, 1),
    (100, 10, 90, 10),
])
def test_k_distinct_positions_with_the_top_kept_in_order(ranked: int, k: int, depth: int,
                                                        n: int) -> None:
    g = rng()
    for _ in range(200):
        order = explored_order(ranked, k, depth, g, n)
        assert order.size == k
        assert len(set(order.tolist())) == k
        deeper = order[order >= k]
        assert deeper.size == min(n, ranked - k, depth, k)
        assert np.all(deeper < min(ranked, k + depth))
        kept = order[order < k]
        # the rest is the top k's first positions, in their order, the last ones pushed out
        assert kept.tolist() == list(range(k - deeper.size))


@pytest.mark.parametrize(("ranked", "k", "depth"), [(10, 10, 20), (5, 10, 20), (30, 10, 0),
                                                    (0, 10, 20)])
def test_no_candidate_below_k_leaves_the_list_as_it_is(ranked: int, k: int, depth: int) -> None:
    assert explored_order(ranked, k, depth, rng()).tolist() == list(range(min(k, ranked)))


def test_every_candidate_within_the_depth_reaches_every_rank_about_uniformly() -> None:
    k, depth, draws = 5, 8, 40_000
    g = rng(7)
    seen = np.zeros((depth, k))
    for _ in range(draws):
        order = explored_order(30, k, depth, g)
        rank = int(np.flatnonzero(order >= k)[0])
        seen[order[rank] - k, rank] += 1
    expected = draws / (depth * k)  # 1000 a cell
    assert seen.min() > 0
    # each cell is binomial(draws, 1/40): 4 standard deviations are about 125
    assert np.abs(seen - expected).max() < 4.5 * np.sqrt(expected)
    # nothing deeper than the depth is ever drawn
    assert all(int(explored_order(30, k, depth, g).max()) < k + depth for _ in range(500))


def test_the_draw_follows_the_generator_only() -> None:
    a = [explored_order(30, 10, 20, rng(3)).tolist() for _ in range(3)]
    assert a[0] == a[1] == a[2]


@pytest.mark.parametrize(("ranked", "k", "depth", "n"), [(30, 0, 20, 1), (30, 10, -1, 1),
                                                         (30, 10, 20, -1), (-1, 10, 20, 1)])
def test_bad_arguments_are_refused(ranked: int, k: int, depth: int, n: int) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        explored_order(ranked, k, depth, rng(), n)
