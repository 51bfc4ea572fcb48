"""Sorting hits by structured fields, relevance breaking ties.

`price:asc,rating:desc` orders by price, then rating, then the phase's own score (best
first), then document number. Documents with no value for a field come after those with one,
whichever the direction (as Meilisearch and Elasticsearch's `missing: _last` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from index.columns import DateColumn, NumberColumn
from index.core.errors import QueryError
from index.core.types import F32, F64, I64
from rankers.segment import SegmentView

__all__ = ["SortKey", "parse_sort", "sort_order"]

MAX_SORT_KEYS = 4


@dataclass(frozen=True)
class SortKey:
    field: str
    direction: Literal["asc", "desc"] = "asc"

    def __str__(self) -> str:
        return f"{self.field}:{self.direction}"


def parse_sort(text: str, sortable: Sequence[str]) -> tuple[SortKey, ...]:
    """`field:asc,field:desc` (the direction defaults to asc); `QueryError` names what is
    wrong: an unknown or unsortable field, a bad direction, a repeated field, too many keys."""
    keys: list[SortKey] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise QueryError(f"sort {text!r}: an empty key; use field:asc or field:desc")
        name, _, direction = part.partition(":")
        name, direction = name.strip(), (direction.strip() or "asc").lower()
        if name not in sortable:
            allowed = ", ".join(sortable) or "none in this index"
            raise QueryError(f"sort: field {name!r} is not sortable; sortable fields: {allowed}")
        if direction not in ("asc", "desc"):
            raise QueryError(f"sort: direction {direction!r} of {name!r}; use asc or desc")
        if any(k.field == name for k in keys):
            raise QueryError(f"sort: field {name!r} is given twice")
        keys.append(SortKey(name, "asc" if direction == "asc" else "desc"))
    if len(keys) > MAX_SORT_KEYS:
        raise QueryError(f"sort: at most {MAX_SORT_KEYS} keys, got {len(keys)}")
    return tuple(keys)


def _values(view: SegmentView, docs: I64, name: str) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Each document's value of a sortable field, and whether it has one."""
    values = np.zeros(docs.size, dtype=np.float64)
    present = np.zeros(docs.size, dtype=bool)
    for seg, pos, rows in view.split(docs):
        col = seg.columns[name]
        assert isinstance(col, NumberColumn | DateColumn)
        values[pos] = col.values[rows]
        present[pos] = col.present[rows]
    return values, present


def sort_order(view: SegmentView, docs: I64, scores: F32, keys: Sequence[SortKey]) -> I64:
    """The permutation of `docs` that sorts them by `keys`, then score (best first), then
    document number."""
    columns: list[F64] = [docs.astype(np.float64), -scores.astype(np.float64)]
    for key in reversed(keys):
        values, present = _values(view, docs, key.field)
        columns.append(values if key.direction == "asc" else -values)
        columns.append((~present).astype(np.float64))  # missing values last
    return np.lexsort(columns).astype(np.int64)
