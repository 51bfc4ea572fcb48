"""The view over segments: splitting documents by segment, and passages laid out across them."""

from __future__ import annotations

import numpy as np

from rankers.segment import PassageRuns, lay_out


def _runs(lengths: list[int], start: float, tag: int) -> PassageRuns:
    total = sum(lengths)
    sims = (np.arange(total, dtype=np.float32) + np.float32(start)) / 100
    norms = np.zeros(total, dtype=np.float32)
    kinds = np.full(total, tag, dtype=np.uint8)

    def text(i: int, first: int, size: int) -> tuple[str, int]:
        return f"{tag}:{i}:{first}:{size}", tag

    return PassageRuns(sims, norms, kinds, np.asarray(lengths, dtype=np.int64), text)


def test_lay_out_places_each_segments_runs_at_its_documents_positions() -> None:
    # Documents 0 and 2 come from segment A (runs of 2 and 1 passages), 1 and 3 from B (3, 0).
    a = _runs([2, 1], start=0, tag=1)
    b = _runs([3, 0], start=50, tag=2)
    layout = lay_out([(np.array([0, 2]), a), (np.array([1, 3]), b)], 4)
    np.testing.assert_array_equal(layout.offsets, [0, 2, 5, 6, 6])
    np.testing.assert_array_equal(layout.kinds, [1, 1, 2, 2, 2, 1])
    np.testing.assert_allclose(layout.sims, [0.0, 0.01, 0.5, 0.51, 0.52, 0.02])
    # Text is asked of the segment that holds the document, at its own rank and position.
    assert layout.text(2, 5, 1) == ("1:1:0:1", 1)
    assert layout.text(1, 3, 2) == ("2:0:1:2", 2)


def test_lay_out_of_one_segment_in_order_is_its_runs() -> None:
    a = _runs([1, 2], start=0, tag=1)
    layout = lay_out([(np.arange(2), a)], 2)
    assert layout.sims is a.sims
    np.testing.assert_array_equal(layout.offsets, [0, 1, 3])


def test_pairs_never_span_two_documents() -> None:
    a = _runs([2], start=0, tag=1)
    a = PassageRuns(a.sims, np.array([1.0, 0.0], np.float32), a.kinds, a.lengths, a.text)
    b = _runs([1], start=10, tag=2)
    layout = lay_out([(np.array([1]), a), (np.array([0]), b)], 2)
    # Document 0 (from B) has one passage, then document 1's pair of sentences.
    assert np.isneginf(layout.pairs[0]) and np.isneginf(layout.pairs[2])
    np.testing.assert_allclose(layout.pairs[1], layout.sims[1] + layout.sims[2])
