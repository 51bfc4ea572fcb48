"""Search parameters: every bad input is refused with a 4xx and a stable code."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from app.errors import ApiError
from app.params import parse_search
from app.settings import Settings

SETTINGS = Settings(max_query_chars=50, max_k=100, default_k=10)


def qs(**params: str) -> bytes:
    return "&".join(f"{k}={quote(v)}" for k, v in params.items()).encode()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "empty_query"),
        (b"q=", 400, "empty_query"),
        (b"q=%20%20%09", 400, "empty_query"),
        (qs(q="a" * 51), 414, "query_too_long"),
        (b"q=" + b"a" * 100_000, 414, "query_too_long"),
        (b"q=%ff%fe", 400, "invalid_encoding"),
        (b"q=caf\xe9", 400, "invalid_encoding"),
        (b"q=a%00b", 400, "invalid_query"),
        (b"q=a%07b", 400, "invalid_query"),
        (b"q=a&k=0", 400, "invalid_k"),
        (b"q=a&k=-3", 400, "invalid_k"),
        (b"q=a&k=101", 400, "invalid_k"),
        (b"q=a&k=1000000000", 400, "invalid_k"),
        (b"q=a&k=ten", 400, "invalid_k"),
        (b"q=a&k=", 400, "invalid_k"),
        (b"q=a&prefix=2", 400, "invalid_prefix"),
        (b"q=a&order=asc", 400, "unknown_parameter"),
        (b"q=a&q=b", 400, "repeated_parameter"),
    ],
)
def test_bad_input_is_refused(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_search(raw, SETTINGS)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message


@pytest.mark.parametrize(
    ("raw", "q", "k", "prefix"),
    [
        (qs(q="rain jacket"), "rain jacket", 10, True),
        (qs(q="rain jacket "), "rain jacket ", 10, False),
        (qs(q="rain jacket", prefix="0"), "rain jacket", 10, False),
        (qs(q="rain", k="3"), "rain", 3, True),
        (qs(q="中文 ✓ 😀"), "中文 ✓ 😀", 10, False),
        ("q=caf\u00e9".encode(), "café", 10, True),
        (b"q=%2B%2B%2B", "+++", 10, False),
        (qs(q="a" * 50), "a" * 50, 10, True),
    ],
)
def test_good_input(raw: bytes, q: str, k: int, prefix: bool) -> None:
    params = parse_search(raw, SETTINGS)
    assert (params.q, params.k, params.prefix) == (q, k, prefix)


def test_cache_identity_ignores_case_and_spacing_but_not_completion() -> None:
    a = parse_search(qs(q="Rain   JACKET"), SETTINGS)
    b = parse_search(qs(q="rain jacket"), SETTINGS)
    c = parse_search(qs(q="rain jacket "), SETTINGS)
    assert a.digest == b.digest
    assert b.digest != c.digest
    assert parse_search(qs(q="ﬁsh"), SETTINGS).digest == parse_search(qs(q="fish"), SETTINGS).digest


@pytest.mark.parametrize(
    ("query", "fixes", "expected"),
    [
        ("waterprof jaket for hiking", [("waterprof", "waterproof"), ("jaket", "jacket")],
         "waterproof jacket for hiking"),
        ("Espreso  machine", [("espreso", "espresso")], "espresso machine"),
        ("tent", [], None),
        ("café-noir", [("noir", "noire")], "café-noire"),
    ],
)
def test_corrected_query_keeps_the_other_words(query: str, fixes: list[tuple[str, str]],
                                                expected: str | None) -> None:
    from app.payloads import corrected_query
    from rankers.types import Correction

    assert corrected_query(query, [Correction(a, b, 1) for a, b in fixes]) == expected


def test_structured_parameters() -> None:
    params = parse_search(qs(q="jacket", filter=" price < 100 ", facets="brand, category,",
                             sort="price:asc"), SETTINGS)
    assert (params.filter, params.facets, params.sort) == ("price < 100", ("brand", "category"),
                                                           "price:asc")
    plain = parse_search(qs(q="jacket"), SETTINGS)
    assert params.structured and not plain.structured
    assert params.digest != plain.digest
    # Without structured parameters the cache identity is what it always was.
    assert plain.normalized == "jacket\x001"


@pytest.mark.parametrize(
    ("raw", "ok"),
    [(b"filter=price%20%3C%2010", True), (b"q=&sort=price:asc", True), (b"q=", False),
     (b"facets=brand", False)],
)
def test_browsing_needs_a_filter_or_a_sort(raw: bytes, ok: bool) -> None:
    if ok:
        assert parse_search(raw, SETTINGS).q == ""
    else:
        with pytest.raises(ApiError) as err:
            parse_search(raw, SETTINGS)
        assert err.value.code == "empty_query"


def test_structured_parameters_are_bounded() -> None:
    with pytest.raises(ApiError) as err:
        parse_search(qs(q="a", filter="x" * 5000), SETTINGS)
    assert err.value.status == 400 and "filter is longer" in err.value.message
