"""Facet counts over the whole match set of a query, in every segment of a view.

The match set is every live document that passes the filter and holds at least one of the
query's terms (every document that passes, for an empty query: browse mode), not only the top
k shown (Meilisearch's bug #4494 is counting the shown page). A keyword field counts each
value once per matching document (a list counts each of its values); a number or date field
gives its min and max over the matches that have one; a bool field counts true and false.

The counts are the keyword phase's: the semantic phases re-rank and may add documents that
hold no query term, and those are not counted (the stream flags them, see `app.payloads`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index.columns import BoolColumn, Column, DateColumn, KeywordColumn, NumberColumn
from index.core.types import I64, B
from rankers.segment import Segment, SegmentView

__all__ = ["FacetCounts", "count_facets", "matching_rows"]

TOP_VALUES = 10


@dataclass(frozen=True)
class FacetCounts:
    field: str
    matched: int
    """Matching documents that have a value."""
    values: tuple[tuple[str | bool, int], ...] = ()
    """The most frequent values (keyword, bool) with their counts, most frequent first."""
    min: float | None = None
    max: float | None = None


def matching_rows(seg: Segment, words: Sequence[str]) -> B:
    """Rows of one segment in the match set: live, passing the filter, holding a query term
    (any row, for a query with no term). Read-only: it may be the segment's own mask."""
    live = seg.live_mask()
    if not words:
        return live
    hit = np.zeros(seg.size, dtype=bool)
    for word in words:
        hit[seg.rows_with(word)] = True
    return hit & live


class _Matches:
    """One segment's match set, as flags and (gathered once, when a field needs them) rows."""

    def __init__(self, mask: B) -> None:
        self.mask = mask
        self._rows: I64 | None = None

    @property
    def rows(self) -> I64:
        if self._rows is None:
            self._rows = np.flatnonzero(self.mask)
        return self._rows


def _count(column: Column, matches: _Matches, counter: Counter[str | bool]
           ) -> tuple[int, float, float]:
    """Add the values of the matching rows to `counter`; (documents with a value, min, max)."""
    mask = matches.mask
    if isinstance(column, KeywordColumn):
        single = column.row_code
        if single is not None:  # one value a row: one gather of the rows, one count
            counts = np.bincount(single[matches.rows] + 1, minlength=column.values.size + 1)
            matched, counts = int(matches.rows.size - counts[0]), counts[1:]
        else:
            picked = column.codes[mask[column.code_rows]]
            counts = np.bincount(picked, minlength=column.values.size)
            matched = int(np.count_nonzero(mask & column.present))
        nonzero = np.flatnonzero(counts)
        for value, count in zip(column.values[nonzero].tolist(), counts[nonzero].tolist(),
                                strict=True):
            counter[str(value)] += count
        return matched, np.nan, np.nan
    present = mask & column.present
    n = int(np.count_nonzero(present))
    if isinstance(column, BoolColumn):
        true = int(np.count_nonzero(present & column.values))
        counter[True] += true
        counter[False] += n - true
        return n, np.nan, np.nan
    assert isinstance(column, NumberColumn | DateColumn)
    if n == 0:
        return 0, np.nan, np.nan
    values = column.values[present]
    return n, float(values.min()), float(values.max())


def count_facets(view: SegmentView, words: Sequence[str], fields: Sequence[str],
                 top: int = TOP_VALUES) -> list[FacetCounts]:
    """Counts of each field over the match set of a query whose index terms are `words`."""
    matches = [_Matches(matching_rows(seg, words)) for seg in view.segments]
    out = []
    for name in fields:
        counter: Counter[str | bool] = Counter()
        matched, lo, hi = 0, np.inf, -np.inf
        for seg, found in zip(view.segments, matches, strict=True):
            n, seg_lo, seg_hi = _count(seg.columns[name], found, counter)
            matched += n
            if n and not np.isnan(seg_lo):
                lo, hi = min(lo, seg_lo), max(hi, seg_hi)
        best = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]
        numeric = np.isfinite(lo)
        out.append(FacetCounts(name, matched, tuple((v, c) for v, c in best if c),
                               lo if numeric else None, hi if numeric else None))
    return out
