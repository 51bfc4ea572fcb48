"""The position-bias correction: propensities, weights and the IPS-weighted DCG."""

from __future__ import annotations

import numpy as np
import pytest

from rankers.propensity import RANK_CAP, ideal_dcg, ips_dcg, ips_weights, propensities


@pytest.mark.parametrize(("ranks", "eta", "cap", "expected"), [
    ([1, 2, 4], 1.0, 20, [1.0, 0.5, 0.25]),
    ([1, 2, 4], 2.0, 20, [1.0, 0.25, 0.0625]),
    ([1, 7, 90], 0.0, 20, [1.0, 1.0, 1.0]),  # eta 0: no correction
    ([19, 20, 21, 500], 1.0, 20, [1 / 19, 1 / 20, 1 / 20, 1 / 20]),  # capped
    ([3, 9], 0.5, 4, [3 ** -0.5, 0.5]),
])
def test_propensities_follow_the_position_based_model(
        ranks: list[int], eta: float, cap: int, expected: list[float]) -> None:
    np.testing.assert_allclose(propensities(ranks, eta, cap), expected)
    np.testing.assert_allclose(ips_weights(ranks, eta, cap), 1 / np.asarray(expected))


def test_the_largest_weight_is_the_cap_to_the_eta() -> None:
    assert ips_weights([10_000], eta=1.5).max() == pytest.approx(RANK_CAP ** 1.5)


@pytest.mark.parametrize(("ranks", "eta", "cap", "message"), [
    ([0, 1], 1.0, 20, "1-based"),
    ([1], -0.5, 20, "eta must be at least 0"),
    ([1], float("nan"), 20, "eta must be at least 0"),
    ([1], 1.0, 0, "rank cap"),
])
def test_bad_arguments_are_refused(ranks: list[int], eta: float, cap: int,
                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        propensities(ranks, eta, cap)


def test_weighted_clicks_estimate_relevance_without_the_position_bias() -> None:
    """Users who examine rank r with probability 1/r and click what is relevant: the
    IPS-weighted click rate of a relevant document is its relevance at any rank, where the
    raw click rate falls with the rank."""
    rng = np.random.default_rng(0)
    ranks = np.arange(1, 11)
    n = 200_000
    clicks = rng.random((n, ranks.size)) < 1.0 / ranks  # every document relevant
    raw = clicks.mean(axis=0)
    weighted = (clicks * ips_weights(ranks)).mean(axis=0)
    assert raw[0] > 5 * raw[-1]
    np.testing.assert_allclose(weighted, 1.0, atol=0.03)


@pytest.mark.parametrize(("new_ranks", "weights", "expected"), [
    ([1], [3.0], 3.0),
    ([1, 3], [1.0, 2.0], 1.0 + 2.0 / 2.0),
    ([2, 11], [1.0, 5.0], 1.0 / np.log2(3)),  # beyond the first 10: nothing
    ([], [], 0.0),
])
def test_ips_dcg(new_ranks: list[int], weights: list[float], expected: float) -> None:
    assert ips_dcg(new_ranks, weights) == pytest.approx(expected)


def test_the_ideal_ranks_the_heaviest_clicks_first() -> None:
    assert ideal_dcg([1.0, 4.0]) == pytest.approx(4.0 + 1.0 / np.log2(3))
    assert ideal_dcg([1.0, 4.0]) == pytest.approx(ips_dcg([2, 1], [1.0, 4.0]))
    assert ideal_dcg(np.ones(12)) == pytest.approx(ips_dcg(np.arange(1, 13), np.ones(12)))
