"""The percolator: which open follows a write can change, and the k-th score gate."""

from __future__ import annotations

import pytest

from rankers.percolate import Percolator, can_enter


def test_only_follows_sharing_a_term_or_showing_an_id_are_candidates() -> None:
    p: Percolator[str] = Percolator()
    p.add("coffee", {"coffe", "grinder"})
    p.add("tent", {"tent"})
    p.add("browse", set(), every=True)
    p.show("tent", {"p05"})
    by_term, by_id = p.candidates({"grinder", "burr"}, {"n1"})
    assert by_term == {"coffee", "browse"} and by_id == set()
    by_term, by_id = p.candidates(set(), {"p05"})
    assert by_term == {"browse"} and by_id == {"tent"}


def test_removed_and_reshown_follows_leave_the_reverse_maps() -> None:
    p: Percolator[int] = Percolator()
    p.add(1, {"a", "b"})
    p.show(1, {"x"})
    p.show(1, {"y"})
    assert p.candidates(set(), {"x"}) == (set(), set())
    assert p.candidates(set(), {"y"}) == (set(), {1})
    p.remove(1)
    assert p.candidates({"a", "b"}, {"y"}) == (set(), set())
    assert len(p) == 0
    p.show(1, {"z"})  # a follow that is gone shows nothing
    assert p.candidates(set(), {"z"}) == (set(), set())


@pytest.mark.parametrize(("best", "kth", "ties", "enters"), [
    (0.0, None, False, False),   # no shared term in the document's text
    (0.1, None, False, True),    # fewer than k hits: anything matching enters
    (2.0, 1.5, False, True),
    (1.5, 1.5, False, False),    # a tie goes to the older (lower-numbered) document
    (1.5, 1.5, True, True),
    (1.0, 1.5, False, False),
])
def test_can_enter(best: float, kth: float | None, ties: bool, enters: bool) -> None:
    assert can_enter(best, kth, ties) is enters
