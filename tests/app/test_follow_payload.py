"""The `update` event's data, and the coalescing slot of a follow."""

from __future__ import annotations

from typing import Any

import pytest

from app.follow import Follow, Ranked, update_payload
from app.params import SearchParams


def hits(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "title": i, "snippet": "", "score": 1.0, "rank": r}
            for r, i in enumerate(ids, 1)]


PARAMS = SearchParams("q", 3, False)


def test_update_is_against_the_list_the_client_was_sent() -> None:
    ranked = Ranked(7, "v+7", ("n", "a", "b"), hits("n", "a", "b"))
    data = update_payload(ranked, ("a", "b", "c"), frozenset({"b"}), PARAMS)
    assert data["added"] == ["n"] and data["removed"] == ["c"] and data["changed"] == ["b"]
    assert [h["previous_rank"] for h in data["hits"]] == [None, 1, 2]
    assert data["seq"] == 7 and data["phase"] == "keyword" and data["k"] == 3


@pytest.mark.anyio
async def test_a_slow_reader_gets_the_latest_state_not_a_backlog() -> None:
    follow = Follow(1, PARAMS, "127.0.0.1", "v", ("a",), ("a",), 4)
    follow.offer(Ranked(5, "v+5", ("b", "a"), hits("b", "a"), rewritten=frozenset({"a"})))
    follow.offer(Ranked(6, "v+6", ("c", "b", "a"), hits("c", "b", "a")))
    assert follow.wake.is_set()
    taken = follow.take()
    assert taken is not None and taken.seq == 6
    assert taken.rewritten == {"a"}  # what the skipped state knew is kept
    assert follow.take() is None and not follow.wake.is_set()


def test_ids_pass_done_by_the_seq_and_always_grow() -> None:
    follow = Follow(1, PARAMS, "", "v", (), (), 4)
    assert follow.next_n(4, 10) == 14
    assert follow.next_n(4, 10) == 15  # same seq (a compaction reordered): still past
    assert follow.next_n(4, 30) == 34
