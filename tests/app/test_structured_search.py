"""Filters, facets and sorting through the HTTP API: every phase of the stream keeps to the
filter, facet counts cover the whole match set, a sort orders what each phase shows, and bad
structured parameters get 400 with the JSON error body."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source
from index.vector_params import VectorOptions
from tests.app.test_api import wait_ready
from tests.sse import read_stream

pytestmark = pytest.mark.model

WORDS = ["rain", "jacket", "hiking", "boots", "warm", "coat", "trail", "shoes", "tent", "lamp"]
CATEGORIES = ["outdoor", "footwear", "camping"]


def products() -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for i in range(60):
        title = " ".join(rng.sample(WORDS, 3))
        out.append({"id": f"p{i}", "title": title, "text": f"A {title} for the trail.",
                    "category": rng.choice(CATEGORIES), "price": rng.randint(5, 300),
                    "in_stock": rng.random() < 0.7})
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = tmp_path_factory.mktemp("structured")
    source = work / "products.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in products()))
    root = work / "index"
    write_snapshot(open_source(source), root,
                   BuildOptions(workers=1, vectors=VectorOptions(batch_size=16)))
    with TestClient(create_app(Settings(index=root))) as c:
        wait_ready(c)
        yield c


BY_ID = {p["id"]: p for p in products()}


def cheap_outdoor(doc_id: str) -> bool:
    p = BY_ID[doc_id]
    return bool(p["category"] == "outdoor" and p["price"] < 150)


def test_every_phase_keeps_to_the_filter(client: TestClient) -> None:
    status, events = read_stream(
        client, "/search/stream?q=rain jacket&k=10&filter=category = outdoor AND price < 150")
    assert status == 200
    phases = {e.event: e.data for e in events if "hits" in e.data}
    assert set(phases) == {"keyword", "semantic", "enhanced"}
    for name, data in phases.items():
        assert data["hits"], name
        assert all(cheap_outdoor(h["id"]) for h in data["hits"]), name
        assert all(h["fields"]["category"] == "outdoor" for h in data["hits"]), name
    assert phases["keyword"]["filter"] == 'category = "outdoor" AND price < 150'


def test_facets_count_the_whole_match_set(client: TestClient) -> None:
    data = client.get("/search", params={"q": "rain", "k": 1, "facets": "category,price",
                                         "filter": "in_stock = true"}).json()
    matches = [p for p in products() if "rain" in p["title"] and p["in_stock"]]
    counts = Counter(p["category"] for p in matches)
    facets = data["facets"]
    assert facets["category"]["matched"] == len(matches) > 1
    assert dict((v, c) for v, c in facets["category"]["values"]) == counts
    prices = [p["price"] for p in matches]
    assert (facets["price"]["min"], facets["price"]["max"]) == (min(prices), max(prices))
    assert len(data["hits"]) == 1  # counts cover every match, not the page shown


def test_sorting_orders_what_each_phase_shows(client: TestClient) -> None:
    status, events = read_stream(client, "/search/stream?q=trail&k=8&sort=price:desc")
    assert status == 200
    for e in events:
        if "hits" in e.data:
            prices = [h["fields"]["price"] for h in e.data["hits"]]
            assert prices == sorted(prices, reverse=True), e.event
            assert e.data["hits"]


def test_browsing_with_a_filter_and_no_query(client: TestClient) -> None:
    data = client.get("/search", params={"filter": "category = camping", "sort": "price:asc",
                                         "k": 5}).json()
    camping = sorted((p for p in products() if p["category"] == "camping"),
                     key=lambda p: (p["price"], p["id"]))
    assert [h["id"] for h in data["hits"]] == [p["id"] for p in camping[:5]]


@pytest.mark.parametrize("extra", [{"facets": "category,price"}, {"filter": "price > 1"},
                                   {"sort": "price:asc"}])
def test_unknown_words_with_structured_parameters_match_nothing(
        client: TestClient, extra: dict[str, str]) -> None:
    """A query whose words are all unknown is not an empty query: it matches nothing, with a
    filter, facets or a sort as without (it used to browse the whole index)."""
    data = client.get("/search", params={"q": "zzzqqqx ", "k": 5, **extra}).json()
    assert data["unknown"] == ["zzzqqqx"]
    assert data["hits"] == []
    for facet in (data.get("facets") or {}).values():
        assert facet == {"matched": 0, "values": [], "min": None, "max": None}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"q": "a", "filter": "price = \"cheap\""}, "price"),
        ({"q": "a", "filter": "colour = red"}, "colour"),
        ({"q": "a", "filter": "price <"}, "position"),
        ({"q": "a", "facets": "nope"}, "not facetable"),
        ({"q": "a", "sort": "category:asc"}, "not sortable"),
    ],
)
def test_bad_structured_parameters_get_400(client: TestClient, params: dict[str, str],
                                           needle: str) -> None:
    for path in ("/search", "/search/stream"):
        r = client.get(path, params=params)
        assert r.status_code == 400, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_query"
        assert needle in error["message"].lower() or needle in error["message"]


def test_equivalent_filters_share_a_cache_entry(client: TestClient) -> None:
    first = client.get("/search",
                       params={"q": "boots", "filter": "price < 100 AND in_stock = true"})
    second = client.get("/search",
                        params={"q": "boots", "filter": "in_stock = true  and price<100"})
    assert first.json()["hits"] == second.json()["hits"]
    assert first.json()["filter"] == second.json()["filter"] == "in_stock = true AND price < 100"
