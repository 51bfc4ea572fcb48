"""Which streams are explored (`app.explore.Explorer`), how a deep phase is cut back to what is
sent (`sent_payload`), and the settings that turn exploration off."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.explore import Explorer, sent_payload
from app.params import SearchParams
from app.settings import Settings, SettingsError


def explorer(share: float = 1.0, depth: int = 20, seed: int = 0) -> Explorer:
    return Explorer(share, depth, np.random.default_rng(seed))


def payload(n: int, previous: list[int | None] | None = None) -> dict[str, Any]:
    prev = previous if previous is not None else [None] * n
    return {"phase": "enhanced", "k": n, "query": "q",
            "hits": [{"id": f"d{i}", "rank": i + 1, "previous_rank": prev[i],
                      "highlight": f"h{i}"} for i in range(n)]}


PLAIN = SearchParams("red shoes", 10, False)


@pytest.mark.parametrize(("params", "seen", "wanted"), [
    (PLAIN, 0, True),
    (PLAIN, 1, False),  # a resumed stream
    (SearchParams("red shoes", 10, False, follow=True), 0, False),
    (SearchParams("red shoes", 10, False, sort="price:asc"), 0, False),
    (SearchParams("", 10, False, filter="price < 5"), 0, False),  # browsing
    (SearchParams("red shoes", 10, False, filter="price < 5"), 0, True),
])
def test_which_streams_are_explored(params: SearchParams, seen: int, wanted: bool) -> None:
    assert explorer().wants(params, seen) is wanted


@pytest.mark.parametrize(("share", "depth"), [(0.0, 20), (1.0, 0)])
def test_share_or_depth_zero_turns_it_off(share: float, depth: int) -> None:
    e = explorer(share, depth)
    assert not e.on
    assert not any(e.wants(PLAIN, 0) for _ in range(100))


def test_the_share_is_the_probability_of_a_stream() -> None:
    e = explorer(0.05, seed=1)
    share = np.mean([e.wants(PLAIN, 0) for _ in range(20_000)])
    assert 0.04 < share < 0.06  # binomial sd 0.0015


def test_the_deep_parameters_differ_in_k_only() -> None:
    deep = explorer(depth=7).deep(PLAIN)
    assert deep.k == 17
    assert (deep.q, deep.prefix, deep.digest) == (PLAIN.q, PLAIN.prefix, PLAIN.digest)


def test_an_earlier_phase_is_cut_to_k_with_unsent_previous_ranks_null() -> None:
    deep = payload(8, [3, 7, None, 1, 2, 8, 4, 5])
    sent, explored = sent_payload(deep, 4)
    assert not explored
    assert sent["k"] == 4
    assert [h["id"] for h in sent["hits"]] == ["d0", "d1", "d2", "d3"]
    assert [h["previous_rank"] for h in sent["hits"]] == [3, None, None, 1]
    assert deep["k"] == 8 and len(deep["hits"]) == 8  # the cached payload is left alone
    assert deep["hits"][1]["previous_rank"] == 7


def test_the_final_phase_is_sent_in_the_explored_order_ranked_again() -> None:
    deep = payload(8, [1, 2, 3, 4, 5, 6, 7, 8])
    sent, explored = sent_payload(deep, 4, [0, 6, 1, 2])
    assert explored
    assert [h["id"] for h in sent["hits"]] == ["d0", "d6", "d1", "d2"]
    assert [h["rank"] for h in sent["hits"]] == [1, 2, 3, 4]
    assert [h["previous_rank"] for h in sent["hits"]] == [1, None, 2, 3]
    assert sent["hits"][1]["highlight"] == "h6"


def test_an_order_within_the_top_k_is_not_explored() -> None:
    _, explored = sent_payload(payload(3), 4, [0, 1, 2])
    assert not explored


@pytest.mark.parametrize(("name", "value"), [("EXPLORE_SHARE", "1.5"), ("EXPLORE_SHARE", "-0.1"),
                                             ("EXPLORE_DEPTH", "-1"), ("EXPLORE_DEPTH", "101"),
                                             ("EXPLORE_DEPTH", "x")])
def test_bad_settings_stop_the_start(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"PROGSEARCH_{name}"):
        Settings.from_env({f"PROGSEARCH_{name}": value})


def test_the_settings_default_and_parse() -> None:
    assert (Settings().explore_share, Settings().explore_depth) == (0.0, 20)
    s = Settings.from_env({"PROGSEARCH_EXPLORE_SHARE": "0", "PROGSEARCH_EXPLORE_DEPTH": "5"})
    assert (s.explore_share, s.explore_depth) == (0.0, 5)
    assert not Explorer.of(s).on
