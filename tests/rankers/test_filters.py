"""The filter language: parse tables, errors with their position, normal forms, the size
limits, the parse cache, masks over hand-built columns, and a Hypothesis property: generated
trees over generated columns, printed and parsed back, match a per-row Python evaluation."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.columns import (
    BoolColumn,
    Column,
    DateColumn,
    FieldSpec,
    FieldType,
    KeywordColumn,
    NumberColumn,
)
from index.core.errors import QueryError
from rankers.filter_ast import CompareOp, to_text
from rankers.filter_eval import keyword_rows
from rankers.filters import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_TERMS,
    And,
    Compare,
    Exists,
    FilterError,
    FilterFieldError,
    FilterNode,
    FilterParser,
    FilterSizeError,
    FilterSyntaxError,
    FilterTypeError,
    In,
    Not,
    Or,
    Range,
    evaluate,
    normalize,
    parse_filter,
    schema_fingerprint,
)

SPECS: dict[str, FieldType] = {
    "category": "keyword", "tags": "keyword", "price": "number", "in_stock": "bool",
    "added": "date", "ghost": "number",
}
SCHEMA: dict[str, FieldSpec] = {n: FieldSpec(n, t) for n, t in SPECS.items()}
SCHEMA["secret"] = FieldSpec("secret", "keyword", filterable=False)

MARCH_1 = 1709251200  # 2024-03-01T00:00:00Z
DAY = 86400


# -- building columns from Python values, as the index builder lays them out ---------------
def keyword_column(rows: Sequence[Sequence[str]]) -> KeywordColumn:
    runs = [sorted(set(r)) for r in rows]
    dictionary = sorted({v for r in runs for v in r})
    code = {v: i for i, v in enumerate(dictionary)}
    ptr = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in runs], out=ptr[1:])
    codes = np.array([code[v] for r in runs for v in r], dtype=np.int32)
    values = np.array(dictionary, dtype=str) if dictionary else np.empty(0, dtype="U1")
    return KeywordColumn(values, ptr, codes)


def scalar_column(kind: FieldType, rows: Sequence[Any]) -> Column:
    present = np.array([v is not None for v in rows], dtype=np.bool_)
    if kind == "bool":
        return BoolColumn(np.array([bool(v) for v in rows], dtype=np.bool_), present)
    if kind == "date":
        return DateColumn(np.array([v or 0 for v in rows], dtype=np.int64), present)
    numbers = [0 if v is None else v for v in rows]
    if all(isinstance(v, int) for v in numbers):
        return NumberColumn(np.array(numbers, dtype=np.int64), present)
    return NumberColumn(np.array(numbers, dtype=np.float64), present)


def columns_of(data: Mapping[str, Sequence[Any]]) -> dict[str, Column]:
    return {name: keyword_column(vs) if SPECS[name] == "keyword" else
            scalar_column(SPECS[name], vs) for name, vs in data.items()}


def rows_of(mask: np.ndarray) -> set[int]:
    assert mask.dtype == np.bool_
    return {int(i) for i in np.flatnonzero(mask)}


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("price = 3", Compare("price", "=", 3)),
        ("price != 3", Compare("price", "!=", 3)),
        ("price<3", Compare("price", "<", 3)),
        ("price <= -3", Compare("price", "<=", -3)),
        ("price > 2.5", Compare("price", ">", 2.5)),
        ("price >= 2.5e3", Compare("price", ">=", 2500)),
        ("price = 1e-3", Compare("price", "=", 0.001)),
        ("price = +4", Compare("price", "=", 4)),
        ("price = .5", Compare("price", "=", 0.5)),
        ("price = 1.0", Compare("price", "=", 1)),
        ("price = 99999999999999999999", Compare("price", "=", 1e20)),
        ("price IN [1, 2.5]", In("price", (1, 2.5))),
        ("price in []", In("price", ())),
        ("category NOT IN [a]", Not(In("category", ("a",)))),
        ("price 1 TO 5", Range("price", 1, 5)),
        ("price -5.5 to 1e2", Range("price", -5.5, 100)),
        ("price EXISTS", Exists("price")),
        ("price exists", Exists("price")),
        ("price NOT EXISTS", Not(Exists("price"))),
        ("price IS NULL", Not(Exists("price"))),
        ("price is not null", Exists("price")),
        ("in_stock = true", Compare("in_stock", "=", True)),
        ("in_stock != FALSE", Compare("in_stock", "!=", False)),
        ("in_stock IN [true]", In("in_stock", (True,))),
        ("category = jackets", Compare("category", "=", "jackets")),
        ("category = 42", Compare("category", "=", "42")),
        ("category = true", Compare("category", "=", "true")),
        ("category = in", Compare("category", "=", "in")),
        ("category = navy-blue", Compare("category", "=", "navy-blue")),
        ("category = Café", Compare("category", "=", "Café")),
        ("category = 'x y'", Compare("category", "=", "x y")),
        ("category IN[a,'b',\"c\"]", In("category", ("a", "b", "c"))),
        ('added = "2024-03-01"', Compare("added", "=", MARCH_1)),
        ("added = 2024-03-01", Compare("added", "=", MARCH_1)),
        ("added = '2024-03-01T12:00:00Z'", Compare("added", "=", MARCH_1 + 43200)),
        ("added = 2024-03-01T12:00:00+02:00", Compare("added", "=", MARCH_1 + 36000)),
        ("added > 1709251200", Compare("added", ">", MARCH_1)),
        ('added = "1709251200"', Compare("added", "=", MARCH_1)),
        ("added 2024-03-01 TO 2024-03-02", Range("added", MARCH_1, MARCH_1 + DAY)),
        # precedence: NOT > AND > OR, parentheses first
        ("price = 1 OR price = 2 AND price = 3",
         Or((Compare("price", "=", 1), And((Compare("price", "=", 2), Compare("price", "=", 3)))))),
        ("(price = 1 OR price = 2) AND price = 3",
         And((Or((Compare("price", "=", 1), Compare("price", "=", 2))), Compare("price", "=", 3)))),
        ("NOT price = 1 AND price = 2",
         And((Not(Compare("price", "=", 1)), Compare("price", "=", 2)))),
        ("not (price = 1 or price = 2)",
         Not(Or((Compare("price", "=", 1), Compare("price", "=", 2))))),
        ("NOT NOT price EXISTS", Not(Not(Exists("price")))),
        ("((price EXISTS))", Exists("price")),
        ("price = 1 and price = 2 and price = 3",
         And((Compare("price", "=", 1), Compare("price", "=", 2), Compare("price", "=", 3)))),
        ("  price\n=\t1  ", Compare("price", "=", 1)),
    ],
)
def test_parse_table(text: str, tree: FilterNode) -> None:
    assert parse_filter(text, SCHEMA) == tree


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"back\\slash"', "back\\slash"),
        (r'"a\nb\tc\r"', "a\nb\tc\r"),
        (r'"\/\b\f"', "/\b\f"),
        (r'"\u00e9t\u00C9"', "étÉ"),
        (r'"\ud83d\ude00"', "\U0001f600"),
        ('"raw 😀 é"', "raw 😀 é"),
        (r"'double \" inside'", 'double " inside'),
        ("\"single ' inside\"", "single ' inside"),
        ('""', ""),
    ],
)
def test_string_escapes(text: str, value: str) -> None:
    assert parse_filter(f"category = {text}", SCHEMA) == Compare("category", "=", value)


# -- errors: the class, the 1-based position and what was expected --------------------------
@pytest.mark.parametrize(
    ("text", "error", "position", "expected"),
    [
        ("", FilterSyntaxError, 1, 'a field name, NOT or "("'),
        ("price = ", FilterSyntaxError, 9, "a value"),
        ("price == 3", FilterSyntaxError, 8, "a value"),
        ("(price = 1", FilterSyntaxError, 11, '")"'),
        ("price = 1)", FilterSyntaxError, 10, "the end of the expression"),
        ("price = 1 AND", FilterSyntaxError, 14, 'a field name, NOT or "("'),
        ("price = 1 price = 2", FilterSyntaxError, 11, "AND, OR or the end of the expression"),
        ("price IN [1,", FilterSyntaxError, 13, "a value"),
        ("price IS", FilterSyntaxError, 9, "NOT or NULL"),
        ("price 1 TO", FilterSyntaxError, 11, "a value"),
        ("price", FilterSyntaxError, 6, "an operator"),
        ('category = "open', FilterSyntaxError, 12, "a value"),
        ("é = 1", FilterSyntaxError, 1, "a field name"),
        (r"category = 'x\q'", FilterSyntaxError, 14, r"\uXXXX"),
        (r'category = "\ud800"', FilterSyntaxError, 12, "pair"),
        ("prise = 3", FilterFieldError, 1, 'did you mean "price"'),
        ("price = 1 AND zzz = 2", FilterFieldError, 15, "a filterable field: added, category"),
        ("secret = x", FilterFieldError, 1, "a filterable field: added, category"),
        ('price = "cheap"', FilterTypeError, 9, "an unquoted number"),
        ('price = "3"', FilterTypeError, 9, "an unquoted number"),
        ("price = cheap", FilterTypeError, 9, "an unquoted number"),
        ("price = 1e999", FilterTypeError, 9, "an unquoted number"),
        ("price IN [1, x]", FilterTypeError, 14, "an unquoted number"),
        ("price 1 TO x", FilterTypeError, 12, "an unquoted number"),
        ("in_stock > 3", FilterTypeError, 10, "=, != or IN"),
        ("in_stock = yes", FilterTypeError, 12, "true or false"),
        ('in_stock = "true"', FilterTypeError, 12, "true or false"),
        ("in_stock true TO false", FilterTypeError, 10, "a number or date field"),
        ("category < b", FilterTypeError, 10, "=, != or IN"),
        ("category 1 TO 3", FilterTypeError, 10, "a number or date field"),
        ('added = "yesterday"', FilterTypeError, 9, "ISO 8601"),
        ('added = "2024-13-45"', FilterTypeError, 9, "ISO 8601"),
        ("added = 1.5", FilterTypeError, 9, "epoch seconds"),
    ],
)
def test_errors_name_position_and_expected(
    text: str, error: type[FilterError], position: int, expected: str
) -> None:
    with pytest.raises(error) as caught:
        parse_filter(text, SCHEMA)
    assert isinstance(caught.value, QueryError)
    assert caught.value.position == position
    assert expected in caught.value.expected
    assert str(caught.value).startswith(f"filter, position {position}: ")
    assert expected in str(caught.value)


def test_unknown_field_far_from_every_name_lists_them() -> None:
    with pytest.raises(FilterFieldError) as caught:
        parse_filter("b = 1", SCHEMA)
    assert "did you mean" not in caught.value.expected
    fields = "added, category, ghost, in_stock, price, tags"
    assert caught.value.expected == f"a filterable field: {fields}"


# -- size limits ----------------------------------------------------------------------------
def test_characters_up_to_the_limit() -> None:
    text = "price = 1".ljust(MAX_CHARS)
    assert parse_filter(text, SCHEMA) == Compare("price", "=", 1)
    with pytest.raises(FilterSizeError) as caught:
        parse_filter(text + " ", SCHEMA)
    assert caught.value.position == MAX_CHARS + 1
    assert caught.value.expected == f"at most {MAX_CHARS} characters"


def test_terms_up_to_the_limit() -> None:
    listed = f"price IN [{', '.join(str(i) for i in range(MAX_TERMS))}]"
    assert isinstance(parse_filter(listed, SCHEMA), In)
    over = " OR ".join(f"price = {i}" for i in range(MAX_TERMS + 1))
    assert len(over) <= MAX_CHARS
    with pytest.raises(FilterSizeError) as caught:
        parse_filter(over, SCHEMA)
    assert caught.value.position == over.index(f"price = {MAX_TERMS}") + 1
    assert caught.value.expected == f"at most {MAX_TERMS} conditions and IN values"
    with pytest.raises(FilterSizeError):
        parse_filter(f"price IN [{', '.join(str(i) for i in range(MAX_TERMS + 1))}]", SCHEMA)


def test_nesting_up_to_the_limit() -> None:
    assert parse_filter("NOT " * MAX_DEPTH + "price EXISTS", SCHEMA) is not None
    with pytest.raises(FilterSizeError) as caught:
        parse_filter("NOT " * (MAX_DEPTH + 1) + "price EXISTS", SCHEMA)
    assert caught.value.position == 4 * MAX_DEPTH + 1
    # Parentheses alone add no operator, so they do not count.
    deep = "(" * 1000 + "price EXISTS" + ")" * 1000
    assert parse_filter(deep, SCHEMA) == Exists("price")


def test_regression_deep_nesting_is_a_size_error_not_a_recursion_error() -> None:
    nested = "price = 1"
    for i in range(MAX_DEPTH + 5):
        nested = f"price = {i} {'AND' if i % 2 else 'OR'} ({nested})"
    assert len(nested) <= MAX_CHARS
    with pytest.raises(FilterSizeError):
        parse_filter(nested, SCHEMA)


# -- normalization --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "texts",
    [
        ("category = x AND price = 2", "price = 2 AND category = x"),
        ("NOT NOT price EXISTS", "price EXISTS", "price IS NOT NULL", "NOT price IS NULL"),
        ("price IS NULL", "NOT price EXISTS", "price NOT EXISTS"),
        ("NOT category = x", "category != x", "NOT (category IN [x])", "category NOT IN [x]"),
        ("NOT (category != x)", "category = x", "category IN ['x', x]"),
        ("category IN [b, a, b]", "category IN ['a', \"b\"]", "category in [\"b\", a]"),
        ("price = 1 OR (price = 2 OR price = 3)", "(price = 3 OR price = 1) OR price = 2"),
        ("price = 1 AND (price = 2 AND price = 3)", "price = 3 and price = 2 and price = 1"),
        ("price = 1.0", "price = 1", "price = 1e0", "price = +1"),
        ("price = 1e3", "price = 1000"),
        ("price = -0", "price = 0", "price = 0.0"),
        ('added = "2024-03-01"', "added = 1709251200", "added = '2024-03-01T00:00:00Z'",
         "added = 2024-03-01T01:00:00+01:00"),
        ("price EXISTS AND price EXISTS", "price EXISTS", "(price EXISTS OR price EXISTS)"),
        (r'category = "a\u0062"', "category = ab", "category = 'ab'"),
        ("price > 1 and price < 5", "PRICE < 5 AND price > 1".replace("PRICE", "price")),
    ],
)
def test_equivalent_expressions_normalize_alike(texts: tuple[str, ...]) -> None:
    assert len({normalize(t, SCHEMA) for t in texts}) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("price < 3", "NOT price >= 3"),  # a null matches the second only
        ("category = a", "category = A"),
        ("category = 42", "category = 42.0"),  # keywords are text
        ("price 1 TO 5", "price 5 TO 1"),
    ],
)
def test_different_expressions_stay_apart(a: str, b: str) -> None:
    assert normalize(a, SCHEMA) != normalize(b, SCHEMA)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("category = jackets", 'category = "jackets"'),
        ("not (category = jackets) and price >= 10 or in_stock = TRUE",
         '(category != "jackets" AND price >= 10) OR in_stock = true'),
        ("tags NOT IN [b, a]", 'NOT tags IN ["a", "b"]'),
        ("tags IN [b]", 'tags = "b"'),
        ("added 2024-01-01 TO 2024-12-31", "added 1704067200 TO 1735603200"),
        ("price not exists or price > 1.50", "price > 1.5 OR price IS NULL"),
        (r"category = 'say \"hi\"\n'", r'category = "say \"hi\"\n"'),
        ("NOT (price = 1 OR NOT price = 2)", "NOT (price != 2 OR price = 1)"),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    assert normalize(text, SCHEMA) == canonical
    assert normalize(canonical, SCHEMA) == canonical


# -- the parse cache ------------------------------------------------------------------------
def test_parser_caches_and_equivalents_share_the_key() -> None:
    parser = FilterParser(SCHEMA)
    first = parser.parse("price < 100 AND category = jackets")
    assert parser.parse("price < 100 AND category = jackets") is first
    other = parser.parse("category = 'jackets' and price < 100")
    assert other is not first and other.key == first.key and other.node == first.node
    assert first.key == 'category = "jackets" AND price < 100'


def test_parser_cache_is_bounded() -> None:
    parser = FilterParser(SCHEMA, size=2)
    a = parser.parse("price = 1")
    assert parser.parse("price = 1") is a
    parser.parse("price = 2")
    parser.parse("price = 3")
    again = parser.parse("price = 1")
    assert again is not a and again == a


def test_parser_errors_each_time() -> None:
    parser = FilterParser(SCHEMA)
    for _ in range(2):
        with pytest.raises(FilterTypeError):
            parser.parse('price = "cheap"')


def test_schema_fingerprint() -> None:
    reordered = dict(reversed(list(SCHEMA.items())))
    assert schema_fingerprint(reordered) == schema_fingerprint(SCHEMA)
    changed = {**SCHEMA, "price": FieldSpec("price", "number", filterable=False)}
    assert schema_fingerprint(changed) != schema_fingerprint(SCHEMA)
    assert FilterParser(changed).fingerprint != FilterParser(SCHEMA).fingerprint


# -- evaluation on hand-built columns -------------------------------------------------------
SEGMENT: dict[str, list[Any]] = {
    "category": [["jackets"], ["shoes"], [], ["jackets"], ["hats"]],
    "tags": [["rain", "hiking"], ["winter"], [], ["rain"], ["hiking", "winter"]],
    "price": [120, 249.5, None, 80, 15],
    "in_stock": [True, False, None, True, False],
    "added": [MARCH_1, MARCH_1 + DAY + 43200, None, MARCH_1 - DAY, None],
}


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("category = jackets", {0, 3}),
        ("category != jackets", {1, 2, 4}),
        ("NOT category = jackets", {1, 2, 4}),
        ("category = coats", set()),
        ("category IN [hats, shoes, coats]", {1, 4}),
        ("tags = rain", {0, 3}),
        ("tags != rain", {1, 2, 4}),
        ("tags IN [winter, hiking]", {0, 1, 4}),
        ("tags NOT IN [winter]", {0, 2, 3}),
        ("tags IN []", set()),
        ("price > 100", {0, 1}),
        ("price <= 80", {3, 4}),
        ("price < 80", {4}),
        ("price >= 249.5", {1}),
        ("NOT price > 100", {2, 3, 4}),
        ("price = 120", {0}),
        ("price != 120", {1, 2, 3, 4}),
        ("price = 249.5", {1}),
        ("price IN [15, 80, 7]", {3, 4}),
        ("price 15 TO 120", {0, 3, 4}),
        ("price 120 TO 15", set()),
        ("in_stock = true", {0, 3}),
        ("in_stock != true", {1, 2, 4}),
        ("in_stock = false", {1, 4}),
        ('added >= "2024-03-01"', {0, 1}),
        ("added < 2024-03-02", {0, 3}),
        ('added "2024-03-02" TO "2024-03-02T23:59:59Z"', {1}),
        ("added = 1709251200", {0}),
        ("price EXISTS", {0, 1, 3, 4}),
        ("price IS NULL", {2}),
        ("tags EXISTS", {0, 1, 3, 4}),
        ("category IS NOT NULL", {0, 1, 3, 4}),
        ("added NOT EXISTS", {2, 4}),
        ("category = jackets AND price < 100 OR category = hats", {3, 4}),
        ("category = jackets AND (price < 100 OR in_stock = false)", {3}),
        ("NOT (category = jackets OR tags = winter)", {2}),
        ("ghost = 1", set()),
        ("ghost != 1", {0, 1, 2, 3, 4}),
        ("ghost IS NULL", {0, 1, 2, 3, 4}),
    ],
)
def test_evaluate_table(text: str, rows: set[int]) -> None:
    columns = columns_of(SEGMENT)
    before = {name: col.present.copy() for name, col in columns.items()}
    mask = evaluate(parse_filter(text, SCHEMA), columns, 5)
    assert mask.shape == (5,)
    assert rows_of(mask) == rows
    assert rows_of(evaluate(FilterParser(SCHEMA).parse(text).node, columns, 5)) == rows
    for name, col in columns.items():  # evaluation never writes into a column
        assert np.array_equal(col.present, before[name])


def test_regression_exists_mask_is_not_the_columns_own_array() -> None:
    columns = columns_of(SEGMENT)
    mask = evaluate(parse_filter("price EXISTS AND price > 100", SCHEMA), columns, 5)
    assert rows_of(mask) == {0, 1}
    price = columns["price"]
    assert isinstance(price, NumberColumn)
    assert price.present.tolist() == [True, True, False, True, True]


LETTERS = [chr(c) for c in range(ord("a"), ord("p"))]


@pytest.mark.parametrize("lists", [True, False])
@pytest.mark.parametrize("share", [0.001, 0.02, 0.3, 0.9])
def test_keyword_rows_every_path(share: float, lists: bool) -> None:
    # Single values and lists, either side of the sparse cutoff (one hit in 10 rows), few
    # wanted values (compared one by one) and many (a lookup table), nulls among them.
    rng = np.random.default_rng(7)
    rows: list[list[str]] = []
    for _ in range(4000):
        drawn = [v for v in ["x", *LETTERS] if rng.random() < (share if v == "x" else 0.1)]
        rows.append(drawn if lists else drawn[:1])
    column = keyword_column(rows)
    for wanted in (["x"], ["x", "z"], ["w"], [], ["x", *LETTERS[:9]], LETTERS):
        expected = {i for i, r in enumerate(rows) if set(r) & set(wanted)}
        assert rows_of(keyword_rows(column, wanted)) == expected


def test_number_in_many_values() -> None:
    columns = columns_of(SEGMENT)
    listed = ", ".join(str(v) for v in [1, 2, 3, 4, 5, 6, 7, 8, 15, 120, 249.5])
    assert rows_of(evaluate(parse_filter(f"price IN [{listed}]", SCHEMA), columns, 5)) == {0, 1, 4}


# -- the property: generated trees over generated columns -----------------------------------
KEYWORDS = ["a", "b", "in", "NOT", "x y", 'q"uote', "back\\slash", "é", "42", "", "true",
            "line\nbreak", "\U0001f600"]
NUMBERS: list[int | float] = [-3, 0, 1, 2, 7, -1.5, 0.25, 3.5, 1e20]
DATES = [-DAY, 0, MARCH_1, MARCH_1 + 1, MARCH_1 + DAY]

keyword_values = st.sampled_from(KEYWORDS)
number_values = st.sampled_from(NUMBERS)
bool_values = st.booleans()
date_values = st.sampled_from(DATES)
VALUES: dict[FieldType, st.SearchStrategy[Any]] = {
    "keyword": keyword_values, "number": number_values, "bool": bool_values, "date": date_values,
}
ORDER_OPS: list[CompareOp] = ["=", "!=", "<", "<=", ">", ">="]
EQUALITY_OPS: list[CompareOp] = ["=", "!="]
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@st.composite
def segments(draw: st.DrawFn) -> dict[str, list[Any]]:
    n = draw(st.integers(1, 40))
    data: dict[str, list[Any]] = {}
    for name in ("category", "tags"):
        lists = st.lists(keyword_values, max_size=1 if name == "category" else 3, unique=True)
        data[name] = draw(st.lists(lists, min_size=n, max_size=n))
    for name in ("price", "in_stock", "added"):
        values = VALUES[SPECS[name]]
        if name == "price" and draw(st.booleans()):
            values = st.sampled_from([v for v in NUMBERS if isinstance(v, int)])
        data[name] = draw(st.lists(st.none() | values, min_size=n, max_size=n))
    return data


@st.composite
def conditions(draw: st.DrawFn) -> FilterNode:
    field = draw(st.sampled_from(sorted(SPECS)))
    kind = SPECS[field]
    values = VALUES[kind]
    ordered = kind in ("number", "date")
    shape = draw(st.sampled_from(["compare", "in", "exists"] + (["range"] if ordered else [])))
    if shape == "exists":
        return Exists(field)
    if shape == "in":
        return In(field, tuple(draw(st.lists(values, max_size=4))))
    if shape == "range":
        return Range(field, draw(values), draw(values))
    op = draw(st.sampled_from(ORDER_OPS if ordered else EQUALITY_OPS))
    return Compare(field, op, draw(values))


def combine(children: st.SearchStrategy[FilterNode]) -> st.SearchStrategy[FilterNode]:
    many = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(children.map(Not), many.map(And), many.map(Or))


trees = st.recursive(conditions(), combine, max_leaves=12)


def brute(node: FilterNode, data: Mapping[str, Sequence[Any]], row: int) -> bool:
    """The meaning of a tree for one row, stated again in plain Python."""
    if isinstance(node, And):
        return all(brute(c, data, row) for c in node.children)
    if isinstance(node, Or):
        return any(brute(c, data, row) for c in node.children)
    if isinstance(node, Not):
        return not brute(node.child, data, row)
    value: Any = data[node.field][row] if node.field in data else None
    keyword = SPECS[node.field] == "keyword"
    has = bool(value) if keyword else value is not None
    if isinstance(node, Exists):
        return has
    if isinstance(node, In):
        return any(brute(Compare(node.field, "=", v), data, row) for v in node.values)
    if isinstance(node, Range):
        return has and node.low <= value <= node.high
    equal = node.value in value if keyword else has and value == node.value
    if node.op in ("=", "!="):
        return equal if node.op == "=" else not equal
    return has and bool(COMPARE[node.op](value, node.value))


@settings(max_examples=300, deadline=None)
@given(data=segments(), tree=trees)
def test_generated_trees_match_a_per_row_evaluation(
    data: dict[str, list[Any]], tree: FilterNode
) -> None:
    rows = len(data["price"])
    columns = columns_of(data)  # "ghost" has no column: all null
    expected = [i for i in range(rows) if brute(tree, data, i)]
    text = to_text(tree)
    parsed = parse_filter(text, SCHEMA)
    assert parsed == tree  # printing then parsing gives the same tree back
    for node in (tree, FilterParser(SCHEMA).parse(text).node):
        mask = evaluate(node, columns, rows)
        assert mask.shape == (rows,) and mask.dtype == np.bool_
        assert np.flatnonzero(mask).tolist() == expected
    assert normalize(normalize(text, SCHEMA), SCHEMA) == normalize(text, SCHEMA)
