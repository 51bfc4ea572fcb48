"""A query's structured part (filter, facets, sort) checked against the schema, and the view
it limits: one mask per segment, computed once and cached by the segment's version.

Filter parses are cached by expression (`rankers.filters.FilterParser`), masks by (segment
version, canonical filter): the snapshot's mask lives until a new snapshot, the written
documents' until the next write.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache

from index.columns import DateColumn, FieldSpec, KeywordColumn
from index.core.errors import QueryError
from index.core.types import F32, I64, B
from rankers.filter_ast import FilterNode
from rankers.filter_eval import evaluate
from rankers.filters import FilterParser
from rankers.segment import Segment, SegmentView
from rankers.sorting import SortKey, parse_sort, sort_order

__all__ = ["Structured", "StructuredQueries", "browse", "field_values", "in_order"]

MASKS = 64


@dataclass(frozen=True)
class Structured:
    filter: FilterNode | None
    filter_text: str
    """The filter's canonical text: equivalent expressions share it (and a cache entry)."""
    facets: tuple[str, ...]
    sort: tuple[SortKey, ...]

    @property
    def sort_text(self) -> str:
        return ",".join(str(k) for k in self.sort)


class StructuredQueries:
    """Held by an engine for one schema; thread-safe."""

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        self.schema = {f.name: f for f in fields}
        self.filters = FilterParser(self.schema)
        """Parses cached by expression (`rankers.filters`)."""
        self._masks: LRUCache[Hashable, B] = LRUCache(MASKS)
        self._lock = threading.Lock()

    def parse(self, filter_text: str, facets: Sequence[str], sort: str) -> Structured:
        """Check the three parameters; `QueryError` (400) names what is wrong."""
        parsed = self.filters.parse(filter_text) if filter_text else None
        for name in facets:
            spec = self.schema.get(name)
            if spec is None or not spec.facetable:
                allowed = ", ".join(n for n, s in self.schema.items() if s.facetable) or "none"
                raise QueryError(f"facets: field {name!r} is not facetable; facetable: {allowed}")
        sortable = [n for n, s in self.schema.items() if s.sortable]
        keys = parse_sort(sort, sortable) if sort else ()
        return Structured(parsed.node if parsed else None, parsed.key if parsed else "",
                          tuple(dict.fromkeys(facets)), keys)

    def limit(self, view: SegmentView, query: Structured,
              versions: Sequence[Hashable]) -> SegmentView:
        """The view limited to the rows passing the filter (`versions`: each segment's, for
        the mask cache)."""
        node = query.filter
        if node is None:
            return view
        return view.with_masks([self._mask(seg, node, query.filter_text, version)
                                for seg, version in zip(view.segments, versions, strict=True)])

    def admits(self, view: SegmentView, query: Structured, versions: Sequence[Hashable],
               docs: I64) -> B:
        """Which of ``docs`` (numbers in ``view``) pass the query's filter, all without one:
        read from the masks `limit` computes and caches, so a search of the same filter at
        the same versions reuses them."""
        out = np.ones(docs.size, dtype=bool)
        node = query.filter
        if node is None or docs.size == 0:
            return out
        version_of = {id(seg): v for seg, v in zip(view.segments, versions, strict=True)}
        for seg, pos, rows in view.split(docs):
            out[pos] = self._mask(seg, node, query.filter_text, version_of[id(seg)])[rows]
        return out

    def _mask(self, seg: Segment, node: FilterNode, text: str, version: Hashable) -> B:
        key = (version, text)
        with self._lock:
            found = self._masks.get(key)
        if found is None:
            found = evaluate(node, seg.columns, seg.size)
            with self._lock:
                self._masks[key] = found
        return found


def browse(view: SegmentView, query: Structured, k: int) -> I64:
    """An empty query with a filter or a sort: the first k documents that pass, in the sort
    order (by document number without a sort)."""
    docs = np.concatenate([
        np.flatnonzero(seg.live_mask()) + seg.base
        for seg in view.segments
    ]).astype(np.int64)
    if not query.sort:
        return docs[:k]
    order = sort_order(view, docs, np.zeros(docs.size, dtype=np.float32), query.sort)
    return docs[order[:k]]


def in_order(view: SegmentView, query: Structured | None, docs: I64, scores: F32,
             k: int) -> tuple[I64, F32]:
    """The top k of a phase's ranked hits as shown: by relevance, or by the sort (the hits
    are the phase's most relevant ones; the sort orders them, relevance breaking ties)."""
    if query is None or not query.sort or docs.size == 0:
        return docs[:k], scores[:k]
    order = sort_order(view, docs, scores, query.sort)[:k]
    return docs[order], scores[order]


def field_values(view: SegmentView, docs: I64) -> list[dict[str, object]]:
    """Each document's structured fields, read from the columns: keyword values as a string
    (or a list, when a document has several), numbers, true/false, dates in ISO 8601 (UTC);
    a null is left out."""
    out: list[dict[str, object]] = [{} for _ in range(docs.size)]
    for seg, pos, rows in view.split(docs):
        for name, col in seg.columns.items():
            if isinstance(col, KeywordColumn):
                for i, r in zip(pos.tolist(), rows.tolist(), strict=True):
                    codes = col.codes[col.ptr[r] : col.ptr[r + 1]]
                    if codes.size:
                        words = [str(col.values[c]) for c in codes]
                        out[i][name] = words[0] if len(words) == 1 else words
                continue
            present = col.present[rows]
            values = col.values[rows].tolist()
            for i, ok, v in zip(pos.tolist(), present.tolist(), values, strict=True):
                if not ok:
                    continue
                if isinstance(col, DateColumn):
                    out[i][name] = dt.datetime.fromtimestamp(v, dt.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ")
                else:
                    out[i][name] = v
    return out
