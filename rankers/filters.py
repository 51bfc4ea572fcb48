"""Filters over structured fields: an expression, checked against the schema, becomes one
boolean mask over the rows of a segment, which every phase reads.

    parser = FilterParser(schema)            # once per loaded index
    f = parser.parse('category = jackets AND price < 100')
    f.key                                    # 'category = "jackets" AND price < 100'
    mask = evaluate(f.node, columns, rows)   # per segment

The language (Meilisearch's and Typesense's is the model)::

    price < 100            comparisons: = != < <= > >=
    brand IN [Alpa, "Borea Outdoor"]         brand NOT IN [...]
    price 10 TO 100        a range, both ends included
    rating EXISTS          rating NOT EXISTS, rating IS NULL, rating IS NOT NULL
    NOT a = 1 AND (b = 2 OR c = 3)          precedence NOT > AND > OR; keywords any case
    added >= "2024-01-31T12:00:00Z"         dates: ISO 8601 or epoch seconds
    title_tag = "say \\"hi\\"\\n"             strings in '...' or "...", JSON's escapes

`rankers.filter_parse` says how values are read per field type and lists the errors (each a
`QueryError` with `position` and `expected`), `rankers.filter_eval` what each condition
matches (`!=` is `NOT =` and matches nulls), `rankers.filter_ast` the tree and its normal form.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from cachetools import LRUCache

from index.columns import FieldSpec
from rankers.filter_ast import (
    And,
    Compare,
    Exists,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    normalize_node,
    to_text,
)
from rankers.filter_eval import evaluate
from rankers.filter_parse import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_TERMS,
    FilterError,
    FilterFieldError,
    FilterSizeError,
    FilterSyntaxError,
    FilterTypeError,
    parse_filter,
)

__all__ = [
    "CACHE_SIZE",
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_TERMS",
    "And",
    "Compare",
    "Exists",
    "Filter",
    "FilterError",
    "FilterFieldError",
    "FilterNode",
    "FilterParser",
    "FilterSizeError",
    "FilterSyntaxError",
    "FilterTypeError",
    "In",
    "Not",
    "Or",
    "Range",
    "evaluate",
    "normalize",
    "parse_filter",
    "schema_fingerprint",
]

CACHE_SIZE = 1024


@dataclass(frozen=True)
class Filter:
    """A checked expression: its normalized tree, and that tree's text, the key equivalent
    expressions share (for caches of parsed filters, of masks and of answers)."""

    node: FilterNode
    key: str


def schema_fingerprint(schema: Mapping[str, FieldSpec]) -> str:
    """What a parse depends on, the field specs in name order, as a digest: a string caches
    its hash, where a tuple of specs would be hashed again on every lookup."""
    specs = repr(tuple(schema[name] for name in sorted(schema)))
    return hashlib.blake2b(specs.encode("utf-8"), digest_size=16).hexdigest()


class FilterParser:
    """Parses expressions against one schema and keeps the last `size` results.

    A parse is cached under (schema fingerprint, text): the fingerprint is computed once, and
    keeps an entry from being read by a parser of another schema should a cache be shared.
    Errors are not cached; a bad expression costs a parse each time, like a good one's miss.
    """

    def __init__(self, schema: Mapping[str, FieldSpec], size: int = CACHE_SIZE) -> None:
        self.schema = dict(schema)
        self.fingerprint = schema_fingerprint(self.schema)
        self._cache: LRUCache[tuple[str, str], Filter] = LRUCache(size)
        # cachetools caches are not thread-safe; phases parse on worker threads.
        self._lock = threading.Lock()

    def parse(self, expression: str) -> Filter:
        key = (self.fingerprint, expression)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        node = normalize_node(parse_filter(expression, self.schema))
        parsed = Filter(node, to_text(node))
        with self._lock:
            self._cache[key] = parsed
        return parsed


def normalize(expression: str, schema: Mapping[str, FieldSpec]) -> str:
    """The canonical text of `expression`: equal for expressions `normalize_node` makes equal
    (operand order, double negations, `NOT =` and `!=`, keyword case, quoting, numbers)."""
    return to_text(normalize_node(parse_filter(expression, schema)))
