"""A filter expression's text to its typed tree, checked against the schema.

The grammar is `filter_grammar.lark`, parsed by lark (LALR, contextual lexer). Every error is a
`FilterError`, a `QueryError` that names the position (1-based, in characters from the start
of the expression) and what was expected there:

    QueryError
    └── FilterError
        ├── FilterSyntaxError   the text is not an expression (or a string has a bad escape)
        ├── FilterFieldError    an unknown field (the closest one suggested), or not filterable
        ├── FilterTypeError     a value or an operator that the field's type does not take
        └── FilterSizeError     over MAX_CHARS characters, MAX_TERMS terms or MAX_DEPTH levels

What a value means depends on its field: a keyword takes a quoted string or a bare word (a
bare `42` or `true` is the text "42" or "true"); a number takes an unquoted number (ints,
floats, signs, exponents; a quoted one is refused, as `price = "cheap"` is); a bool takes
`true` or `false`; a date takes an ISO 8601 date or date-time, quoted or not, or integer epoch
seconds. Keyword and bool fields take `=`, `!=` and `IN` only; ranges need a number or a date.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from index.columns import FieldSpec, parse_date
from index.core.errors import QueryError
from rankers.filter_ast import (
    And,
    Compare,
    CompareOp,
    Exists,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    Scalar,
)

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_TERMS",
    "FilterError",
    "FilterFieldError",
    "FilterSizeError",
    "FilterSyntaxError",
    "FilterTypeError",
    "parse_filter",
]

MAX_CHARS = 4096
MAX_TERMS = 256
"""Conditions plus the values of IN lists (`a IN [x, y]` is two)."""
MAX_DEPTH = 64
"""AND, OR and NOT nested in one another; it also bounds the recursion of every tree walk."""


class FilterError(QueryError):
    """A filter expression that is not acceptable, with where and what was expected."""

    def __init__(self, problem: str, *, position: int, expected: str) -> None:
        super().__init__(f"filter, position {position}: {problem}; expected {expected}")
        self.position = position
        self.expected = expected


class FilterSyntaxError(FilterError):
    """The text is not an expression of the grammar."""


class FilterFieldError(FilterError):
    """An unknown field, or one the schema does not make filterable."""


class FilterTypeError(FilterError):
    """A value or an operator that the field's type does not take."""


class FilterSizeError(FilterError):
    """An expression over one of the size limits."""


@functools.cache
def _lark() -> Lark:
    # Compiling the grammar is the slow part (milliseconds); the compiled parser holds no
    # per-parse state, so one per process is shared by every index and thread.
    grammar = resources.files("rankers").joinpath("filter_grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True)


_TERMINALS = {
    "FIELD": "a field name", "BARE": "a value", "STRING": "a value",
    "OP": "an operator (=, !=, <, <=, >, >=)", "_NOT": "NOT", "_IN": "IN", "_TO": "TO",
    "_EXISTS": "EXISTS", "_IS": "IS", "_NULL": "NULL", "_AND": "AND", "_OR": "OR",
    "LPAR": '"("', "RPAR": '")"', "LSQB": '"["', "RSQB": '"]"', "COMMA": '","',
    "$END": "the end of the expression",
}


def _one_of(names: set[str] | frozenset[str]) -> str:
    said = list(dict.fromkeys(text for name, text in _TERMINALS.items() if name in names))
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"


def _syntax_error(expression: str, exc: UnexpectedInput) -> FilterSyntaxError:
    end = len(expression) + 1
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        at_end = token.type == "$END"
        position = end if at_end else (token.start_pos or 0) + 1
        found = "end of the expression" if at_end else repr(str(token))
        expected = _one_of(exc.accepts or exc.expected)
    elif isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        position, char = at + 1, expression[at]
        found = "an unterminated string" if char in "\"'" else f"the character {char!r}"
        expected = _one_of(exc.allowed)
    else:  # UnexpectedEOF: LALR reports the end as a token, kept for other parsers
        position, found, expected = end, "end of the expression", "more"
    return FilterSyntaxError(f"unexpected {found}", position=position, expected=expected)


def _check_size(tree: Tree[Token]) -> None:
    """Depth and term count, walked with a stack: a tree over MAX_DEPTH must not reach the
    recursive walks, which Python would stop with a RecursionError."""
    terms: list[tuple[int, int]] = []
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in ("or_expr", "and_expr", "negation"):
            if depth == MAX_DEPTH:
                raise FilterSizeError(f"operators nested more than {MAX_DEPTH} deep",
                                      position=node.meta.start_pos + 1,
                                      expected=f"at most {MAX_DEPTH} nested AND, OR and NOT")
            stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
        else:
            lists = [c for c in node.children if isinstance(c, Tree)]
            terms.append((node.meta.start_pos, max(1, len(lists[0].children)) if lists else 1))
    if sum(weight for _, weight in terms) > MAX_TERMS:
        total = 0
        for start, weight in sorted(terms):
            total += weight
            if total > MAX_TERMS:
                raise FilterSizeError(f"more than {MAX_TERMS} terms", position=start + 1,
                                      expected=f"at most {MAX_TERMS} conditions and IN values")


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT64 = 2**63
_EXACT_FLOAT = 2**53


def _number(text: str) -> int | float | None:
    """The canonical number a token spells (an integral float is an int, so `1.0` and `1`
    normalize alike), or None. Ints beyond int64 become floats, as numpy would compare."""
    if not _NUMBER.fullmatch(text):
        return None
    if not any(c in text for c in ".eE"):
        value = int(text)
        return value if -_INT64 <= value < _INT64 else float(value)
    number = float(text)
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) <= _EXACT_FLOAT else number


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
           "r": "\r", "t": "\t"}


def _unquote(token: Token) -> str:
    start = (token.start_pos or 0) + 1

    def escape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if len(code) == 5:
            return chr(int(code[1:], 16))
        raise FilterSyntaxError(f"unknown escape \\{code}", position=start + 1 + match.start(),
                                expected="one of \\\" \\' \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")

    text = _ESCAPE.sub(escape, str(token)[1:-1])
    try:
        # \uD83D\uDE00 is one character (JSON's surrogate pairs); a lone half is refused.
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise FilterSyntaxError("a lone UTF-16 surrogate", position=start,
                                expected="a \\uXXXX pair for a character above U+FFFF") from None


_DATE_FORMS = 'an ISO 8601 date ("2024-01-31", "2024-01-31T12:00:00Z") or integer epoch seconds'


class _Checker:
    """The typed tree of a parse tree, each field and value checked against the schema."""

    def __init__(self, schema: Mapping[str, FieldSpec]) -> None:
        self.schema = schema

    def node(self, tree: Tree[Token]) -> FilterNode:
        kind, children = tree.data, tree.children
        if kind in ("or_expr", "and_expr"):
            kids = tuple(self.node(c) for c in children if isinstance(c, Tree))
            return Or(kids) if kind == "or_expr" else And(kids)
        if kind == "negation":
            assert isinstance(children[0], Tree)
            return Not(self.node(children[0]))
        field = children[0]
        assert isinstance(field, Token)
        spec = self.spec(field)
        if kind in ("exists", "is_not_null"):
            return Exists(spec.name)
        if kind in ("not_exists", "is_null"):
            return Not(Exists(spec.name))
        if kind in ("member", "not_member"):
            items = children[1]
            assert isinstance(items, Tree)
            member = In(spec.name, tuple(self.value(spec, v) for v in items.children
                                         if isinstance(v, Token)))
            return member if kind == "member" else Not(member)
        first, last = children[1], children[-1]
        assert isinstance(first, Token) and isinstance(last, Token)
        if kind == "range":
            if spec.type in ("keyword", "bool"):
                raise FilterTypeError(f"a TO range on the {spec.type} field {spec.name!r}",
                                      position=(first.start_pos or 0) + 1,
                                      expected="a number or date field for a range")
            low, high = self.value(spec, first), self.value(spec, last)
            assert not isinstance(low, str | bool) and not isinstance(high, str | bool)
            return Range(spec.name, low, high)
        op: CompareOp = str(first)  # type: ignore[assignment]  # the OP terminal's values
        if spec.type in ("keyword", "bool") and op not in ("=", "!="):
            raise FilterTypeError(f"{op} on the {spec.type} field {spec.name!r}",
                                  position=(first.start_pos or 0) + 1, expected="=, != or IN")
        return Compare(spec.name, op, self.value(spec, last))

    def spec(self, field: Token) -> FieldSpec:
        name, position = str(field), (field.start_pos or 0) + 1
        filterable = sorted(n for n, s in self.schema.items() if s.filterable)
        spec = self.schema.get(name)
        if spec is None:
            # A suggestion only when it is near (half the name's letters, at least 2 edits);
            # otherwise the list of fields says more.
            best = process.extractOne(name, filterable, scorer=Levenshtein.distance,
                                      score_cutoff=max(2, len(name) // 2))
            listed = ", ".join(filterable) if filterable else "none in this index"
            hint = f' (did you mean "{best[0]}"?)' if best is not None else f": {listed}"
            raise FilterFieldError(f"unknown field {name!r}", position=position,
                                   expected=f"a filterable field{hint}")
        if not spec.filterable:
            listed = ", ".join(filterable) if filterable else "none in this index"
            raise FilterFieldError(f"the field {name!r} is not filterable", position=position,
                                   expected=f"a filterable field: {listed}")
        return spec

    def value(self, spec: FieldSpec, token: Token) -> Scalar:
        quoted = token.type == "STRING"
        text = _unquote(token) if quoted else str(token)
        if spec.type == "keyword":
            return text
        number = None if quoted else _number(text)
        if spec.type == "number" and number is not None:
            return number
        if spec.type == "bool" and not quoted and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if spec.type == "date":
            date = _number(text) if number is None else number
            if isinstance(date, int) and -_INT64 <= date < _INT64:
                return date
            try:
                return parse_date(text)
            except (ValueError, OverflowError):
                pass
        expected = {"number": "an unquoted number", "bool": "true or false",
                    "date": _DATE_FORMS}[spec.type]
        shown = f"the string {json.dumps(text, ensure_ascii=False)}" if quoted else repr(text)
        raise FilterTypeError(f"{shown} is not a value of the {spec.type} field "
                              f"{spec.name!r}", position=(token.start_pos or 0) + 1,
                              expected=expected)


def parse_filter(expression: str, schema: Mapping[str, FieldSpec]) -> FilterNode:
    """The typed tree of `expression`, as written (not normalized)."""
    if len(expression) > MAX_CHARS:
        raise FilterSizeError(f"{len(expression)} characters", position=MAX_CHARS + 1,
                              expected=f"at most {MAX_CHARS} characters")
    try:
        tree = _lark().parse(expression)
    except UnexpectedInput as exc:
        raise _syntax_error(expression, exc) from None
    _check_size(tree)
    return _Checker(schema).node(tree)
