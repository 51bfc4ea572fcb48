"""The typed tree of a filter expression, its canonical text and its normal form.

A tree is built from text checked against the schema (`rankers.filter_parse`), so its values
already have their field's type: a `str` for a keyword, an `int` or a `float` for a number, a
`bool`, and an `int` (epoch seconds, UTC) for a date, which is how a date prints in the
canonical text (`"2024-01-31"` and `1706659200` are one value). `IS NULL` is `Not(Exists(...))`, and
`NOT IN` is `Not(In(...))`: one node per meaning keeps normalization and evaluation small.

`to_text` prints any tree as an expression that parses back to the same tree. `normalize_node`
rewrites a tree into the canonical one of its equivalents that the rules below reach, so that
equivalent expressions share a cache entry:

- AND and OR operands are flattened, deduplicated and sorted by their canonical text;
- double negations are removed, and `NOT (a = x)` is `a != x` (the two mean the same, see
  `rankers.filter_eval`);
- an IN list is sorted and deduplicated, and `a IN [x]` is `a = x`;
- a range `a low TO high` is kept as written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "And",
    "Compare",
    "CompareOp",
    "Exists",
    "FilterNode",
    "In",
    "Not",
    "Or",
    "Range",
    "Scalar",
    "format_value",
    "normalize_node",
    "to_text",
]

Scalar = str | int | float | bool
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Compare:
    field: str
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """`field low TO high`, both ends included (as Meilisearch)."""

    field: str
    low: int | float
    high: int | float


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class Not:
    child: FilterNode


@dataclass(frozen=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[FilterNode, ...]


FilterNode = Compare | In | Range | Exists | Not | And | Or


def format_value(value: Scalar) -> str:
    """A value as the grammar reads it back: strings always double-quoted (so a keyword that
    looks like a number or a keyword of the language stays a string), numbers as Python
    prints them (`repr` of a float round-trips)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON escapes are a subset of the grammar's; non-ASCII characters are kept as is.
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def to_text(node: FilterNode) -> str:
    """The expression of a tree; parentheses exactly where the tree needs them."""
    if isinstance(node, Compare):
        return f"{node.field} {node.op} {format_value(node.value)}"
    if isinstance(node, In):
        return f"{node.field} IN [{', '.join(format_value(v) for v in node.values)}]"
    if isinstance(node, Range):
        return f"{node.field} {format_value(node.low)} TO {format_value(node.high)}"
    if isinstance(node, Exists):
        return f"{node.field} EXISTS"
    if isinstance(node, Not):
        if isinstance(node.child, Exists):
            return f"{node.child.field} IS NULL"
        return f"NOT {_operand(node.child)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(_operand(c) for c in node.children)


def _operand(node: FilterNode) -> str:
    # Every AND or OR operand of an AND, OR or NOT is parenthesized, even where precedence
    # would not need it, so that the printed text parses back to the very same tree.
    text = to_text(node)
    return f"({text})" if isinstance(node, And | Or) else text


def _value_key(value: Scalar) -> tuple[bool, Scalar]:
    # The values of one field share a type (numbers: int or float), so they compare.
    return (isinstance(value, str), value)


_NEGATED: dict[CompareOp, CompareOp] = {"=": "!=", "!=": "="}


def normalize_node(node: FilterNode) -> FilterNode:
    """The canonical tree of `node` (see the module docstring); it matches the same rows."""
    if isinstance(node, In):
        values = tuple(sorted(set(node.values), key=_value_key))
        return Compare(node.field, "=", values[0]) if len(values) == 1 else In(node.field, values)
    if isinstance(node, Not):
        child = normalize_node(node.child)
        if isinstance(child, Not):
            return child.child
        if isinstance(child, Compare) and child.op in _NEGATED:
            return Compare(child.field, _NEGATED[child.op], child.value)
        return Not(child)
    if isinstance(node, And | Or):
        kind = type(node)
        flat: dict[str, FilterNode] = {}
        for child in node.children:
            child = normalize_node(child)
            for part in child.children if isinstance(child, kind) else (child,):
                flat.setdefault(to_text(part), part)
        children = tuple(flat[text] for text in sorted(flat))
        return children[0] if len(children) == 1 else kind(children)
    return node
