"""The command line's text for structured fields, shared by `search` and `query`."""

from __future__ import annotations

import pytest

from app.cli_format import facet_lines, fields_text, structured_text, value_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (120, "120"),
        (120.0, "120"),
        (4.99, "4.99"),
        (1.5e20, "1.5e+20"),
        ("outdoor", "outdoor"),
        ("Borea Outdoor", '"Borea Outdoor"'),
        ("a=b", '"a=b"'),
        ("", '""'),
        (["red", "dark blue"], '[red, "dark blue"]'),
        ("2024-01-31T00:00:00Z", "2024-01-31T00:00:00Z"),
    ],
)
def test_value_text(value: object, text: str) -> None:
    assert value_text(value) == text


def test_fields_keep_the_payload_order() -> None:
    assert fields_text({"category": "outdoor", "price": 25.0, "in_stock": False}) == \
        "category=outdoor price=25 in_stock=false"
    assert fields_text({}) == ""


def test_facet_lines() -> None:
    facets = {
        "brand": {"matched": 12, "values": [["Alpa", 7], ["Borea Outdoor", 5]], "min": None,
                  "max": None},
        "price": {"matched": 11, "values": [], "min": 4.99, "max": 420.0},
        "in_stock": {"matched": 12, "values": [[True, 9], [False, 3]], "min": None,
                     "max": None},
        "rating": {"matched": 0, "values": [], "min": None, "max": None},
    }
    assert facet_lines(facets) == [
        'brand (12 matched): Alpa 7, "Borea Outdoor" 5',
        "price (11 matched): min 4.99, max 420",
        "in_stock (12 matched): true 9, false 3",
        "rating (0 matched): -",
    ]


def test_structured_text() -> None:
    assert structured_text({"filter": 'a = "b"', "sort": "price:asc"}) == \
        'filter: a = "b"; sort: price:asc'
    assert structured_text({"filter": None, "sort": "price:asc"}) == "sort: price:asc"
    assert structured_text({"hits": []}) is None
