"""The demo page's facets, price range, sort, chips and URL state (issue 14), in a real
Chromium against a real uvicorn serving the demo catalog. What the page shows is checked
against the server itself: `GET /search` with the same filter, `GET /documents/{id}`."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, expect

from app.demo import ensure_demo_index
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

KEY = "facets-key"
SCREENSHOT_DIR = "PROGSEARCH_SCREENSHOT_DIR"
"""Where the chips test saves its screenshot (the README's is static/screenshots); unset, it
goes to the test's own temporary folder, so a test run leaves the checkout as it was."""
# A brand the filter language must quote: a space, a double quote and a backslash.
ODD_BRAND = 'Quill "Q" \\ Lantern Co'
ODD = {"id": "odd-brand", "title": "Zephyrine storm lantern",
       "text": "Zephyrine storm lantern for camping, with a hook.",
       "brand": ODD_BRAND, "category": "Camping", "price": 42.5, "rating": 4.4,
       "in_stock": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("facets")
    root = ensure_demo_index(folder / "demo", progress=False, require_shipped=True)
    with running_server(root, folder / "server.log", env={"PROGSEARCH_API_KEY": KEY}) as s, \
            httpx.Client(timeout=30) as http:
        s.wait_ready(http)
        yield s


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    pg = context.new_page()
    pg.goto(server.url + "/")
    yield pg
    context.close()


def settled(page: Page, action: Any) -> None:
    """Run `action` (which starts a search) and wait until that search's stream has ended."""
    with page.expect_request(lambda r: "/search/stream" in r.url):
        action()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false", timeout=30_000)


def search(page: Page, query: str) -> None:
    settled(page, lambda: page.locator("#q").fill(query))


def facet_box(page: Page, field: str, label: str) -> Any:
    return page.locator(f'.facet[data-field="{field}"] li').filter(
        has=page.locator(".value", has_text=re.compile(f"^{re.escape(label)}$"))).locator("input")


def sidebar_counts(page: Page, field: str) -> dict[str, int]:
    rows = page.locator(f'.facet[data-field="{field}"] li')
    values = rows.locator(".value").all_inner_texts()
    counts = rows.locator(".n").all_inner_texts()
    return {v: int(n) for v, n in zip(values, counts, strict=True)}


def server_counts(http: httpx.Client, q: str, field: str, filter_: str = "") -> dict[str, int]:
    params = {"q": q, "k": 1, "facets": field}
    if filter_:
        params["filter"] = filter_
    r = http.get("/search", params=params)
    assert r.status_code == 200, r.text
    return {str(v): n for v, n in r.json()["facets"][field]["values"]}


def expect_counts(page: Page, field: str, expected: dict[str, int],
                  ticked: tuple[str, ...] = ()) -> None:
    """The sidebar shows exactly the server's counts (ticked values too, at 0 if absent)."""
    want = {**{t: 0 for t in ticked}, **expected}
    rows = page.locator(f'.facet[data-field="{field}"] li')
    expect(rows).to_have_count(len(want))
    expect(rows.locator(".value")).to_have_text(list(want))
    expect(rows.locator(".n")).to_have_text([str(n) for n in want.values()])


def cards(page: Page) -> list[dict[str, Any]]:
    return page.locator("#results .hit").evaluate_all("""els => els.map(li => {
        const number = (sel, key) => {
            const el = li.querySelector(sel);
            return el ? Number(el.dataset[key]) : null;
        };
        return {
            id: li.dataset.id,
            brand: li.querySelector('.meta .brand')?.textContent ?? null,
            price: number('.meta .price', 'price'),
            rating: number('.meta .rating', 'rating'),
        };
    })""")


def url_params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_ticking_a_brand_narrows_results_and_changes_counts(page: Page,
                                                            http: httpx.Client) -> None:
    search(page, "jacket")
    before = cards(page)
    assert len(before) == 10 and len({c["brand"] for c in before}) > 1, before
    expect_counts(page, "brand", server_counts(http, "jacket", "brand"))
    categories = server_counts(http, "jacket", "category")
    expect_counts(page, "category", categories)

    first, second = list(sidebar_counts(page, "brand"))[:2]
    settled(page, lambda: facet_box(page, "brand", first).check())
    assert {c["brand"] for c in cards(page)} == {first}
    one = f'brand = "{first}"'
    narrowed = server_counts(http, "jacket", "category", one)
    assert narrowed != categories  # the counts did change
    expect_counts(page, "category", narrowed)
    # Counts of the ticked field itself leave its own condition out: the other brands still
    # say what ticking them would add.
    expect_counts(page, "brand", server_counts(http, "jacket", "brand"))
    assert url_params(page)["brand"] == [first]

    # Two brands: either (OR); and in stock: both (AND).
    settled(page, lambda: facet_box(page, "brand", second).check())
    assert {c["brand"] for c in cards(page)} <= {first, second}
    both = f'brand IN ["{first}", "{second}"]'
    either = server_counts(http, "jacket", "category", both)
    assert either != narrowed
    expect_counts(page, "category", either)
    expect_counts(page, "in_stock", {
        {"True": "In stock", "False": "Out of stock"}[v]: n
        for v, n in server_counts(http, "jacket", "in_stock", both).items()})
    settled(page, lambda: facet_box(page, "in_stock", "In stock").check())
    for card in cards(page):
        fields = http.get(f"/documents/{card['id']}").json()["fields"]
        assert fields["in_stock"] is True and fields["brand"] in (first, second), fields
    expect_counts(page, "category",
                  server_counts(http, "jacket", "category", f"{both} AND in_stock = true"))


def test_price_range_is_respected_by_every_card(page: Page, http: httpx.Client) -> None:
    search(page, "headphones")
    assert any(not 50 <= c["price"] <= 120 for c in cards(page))
    settled(page, lambda: (page.locator("#price-min").fill("50"),
                           page.locator("#price-max").fill("120")))
    shown = cards(page)
    assert shown and all(50 <= c["price"] <= 120 for c in shown), shown
    expect(page.locator("#chips .chip")).to_have_text([re.compile("Price: 50 \N{EN DASH} 120")])
    assert url_params(page)["price_min"] == ["50"] and url_params(page)["price_max"] == ["120"]
    expect_counts(page, "brand", server_counts(http, "headphones", "brand", "price 50 TO 120"))
    # Bounds the wrong way round: the range between them.
    settled(page, lambda: (page.locator("#price-min").fill("120"),
                           page.locator("#price-max").fill("50")))
    assert cards(page) == shown
    expect(page.locator("#chips .chip")).to_have_text([re.compile("Price: 50 \N{EN DASH} 120")])
    # One bound alone: price <= b, price >= a.
    settled(page, lambda: (page.locator("#price-min").fill(""),
                           page.locator("#price-max").fill("30")))
    shown = cards(page)
    assert shown and all(c["price"] <= 30 for c in shown), shown
    expect(page.locator("#chips .chip")).to_have_text(
        [re.compile("Price: \N{LESS-THAN OR EQUAL TO} 30")])
    settled(page, lambda: (page.locator("#price-min").fill("50"),
                           page.locator("#price-max").fill("")))
    shown = cards(page)
    assert shown and all(c["price"] >= 50 for c in shown) and max(c["price"] for c in shown) > 120
    expect_counts(page, "brand", server_counts(http, "headphones", "brand", "price >= 50"))


@pytest.mark.parametrize(("choice", "key", "descending"), [
    ("price-asc", "price", False), ("price-desc", "price", True), ("rating-desc", "rating", True),
])
def test_sorting_orders_the_cards(page: Page, choice: str, key: str, descending: bool) -> None:
    search(page, "tent")
    settled(page, lambda: page.locator("#sort").select_option(choice))
    values = [c[key] for c in cards(page)]
    assert len(values) == 10 and None not in values, values
    assert values == sorted(values, reverse=descending), values
    assert values != sorted(values, reverse=not descending)
    assert url_params(page)["sort"] == [choice]


def test_a_filter_matching_nothing_shows_the_empty_state(page: Page) -> None:
    empty = page.locator("#empty")
    expect(empty).to_be_hidden()  # no query is not "nothing matches"
    expect(page.locator("#results .hit")).to_have_count(0)
    search(page, "zzzzqqqq ")
    expect(page.locator("#status")).to_contain_text("No results for")
    expect(empty).to_be_hidden()

    search(page, "kettle")
    settled(page, lambda: page.locator("#price-min").fill("100000"))
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No products match these filters")
    expect(page.locator("#results .hit")).to_have_count(0)
    expect(page.locator("#status")).not_to_contain_text("No results")
    settled(page, lambda: empty.get_by_role("button", name="Clear filters").click())
    expect(empty).to_be_hidden()
    expect(page.locator("#results .hit")).to_have_count(10)
    expect(page.locator("#chips")).to_be_hidden()
    expect(page.locator("#price-min")).to_have_value("")
    assert "price_min" not in url_params(page)


def test_reload_and_a_shared_link_keep_the_state(page: Page, browser: Browser,
                                                 server: ServerProcess) -> None:
    search(page, "backpack")
    brand = next(iter(sidebar_counts(page, "brand")))
    settled(page, lambda: facet_box(page, "brand", brand).check())
    settled(page, lambda: page.locator("#price-max").fill("150"))
    settled(page, lambda: page.locator("#sort").select_option("price-desc"))
    shown = cards(page)
    link = page.url
    assert url_params(page) == {"q": ["backpack"], "brand": [brand], "price_max": ["150"],
                                "sort": ["price-desc"]}

    def same_state(pg: Page) -> None:
        expect(pg.locator("#q")).to_have_value("backpack")
        expect(facet_box(pg, "brand", brand)).to_be_checked()
        expect(pg.locator("#price-max")).to_have_value("150")
        expect(pg.locator("#sort")).to_have_value("price-desc")
        expect(pg.locator("#chips .chip")).to_have_count(2)
        expect(pg.locator("#results")).to_have_attribute("aria-busy", "false", timeout=30_000)
        assert cards(pg) == shown

    settled(page, page.reload)
    same_state(page)
    other = browser.new_context(viewport={"width": 1200, "height": 1000})
    try:
        fresh = other.new_page()
        settled(fresh, lambda: fresh.goto(link))
        same_state(fresh)
    finally:
        other.close()


def test_removing_a_chip_removes_its_condition(page: Page, tmp_path: Path) -> None:
    search(page, "jacket")
    unfiltered = cards(page)
    brand = next(iter(sidebar_counts(page, "brand")))
    settled(page, lambda: facet_box(page, "brand", brand).check())
    settled(page, lambda: page.locator("#price-min").fill("40"))
    chips = page.locator("#chips .chip")
    expect(chips).to_have_text([re.compile(f"Brand: {re.escape(brand)}"),
                                re.compile("Price: ≥ 40")])
    page.wait_for_function("() => document.getAnimations().length === 0")  # FLIP moves ended
    shot = Path(os.environ.get(SCREENSHOT_DIR) or tmp_path) / "facets.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    settled(page, lambda: chips.first.click())
    expect(facet_box(page, "brand", brand)).not_to_be_checked()
    assert "brand" not in url_params(page)
    assert len({c["brand"] for c in cards(page)}) > 1
    # By keyboard: the remaining chip, then focus goes back to the search box.
    expect(chips).to_have_count(1)
    expect(chips.first).to_be_focused()
    settled(page, lambda: page.keyboard.press("Enter"))
    expect(chips).to_have_count(0)
    expect(page.locator("#chips")).to_be_hidden()
    expect(page.locator("#q")).to_be_focused()
    assert url_params(page) == {"q": ["jacket"]}
    assert cards(page) == unfiltered

    # Clear all removes every condition at once.
    settled(page, lambda: facet_box(page, "brand", brand).check())
    settled(page, lambda: page.locator("#price-min").fill("40"))
    assert cards(page) != unfiltered
    settled(page, lambda: page.get_by_role("button", name="Clear all").click())
    expect(chips).to_have_count(0)
    expect(page.locator("#q")).to_be_focused()
    assert url_params(page) == {"q": ["jacket"]}
    assert cards(page) == unfiltered


def test_a_brand_needing_quotes_is_filtered_exactly(page: Page, http: httpx.Client) -> None:
    r = http.post("/documents", content=orjson.dumps(ODD),
                  headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 120  # the semantic phases see it once it is embedded
    while not http.get("/documents/odd-brand").json()["embedded"]:
        assert time.monotonic() < deadline, "the written document was never embedded"
        time.sleep(0.2)
    search(page, "zephyrine")
    settled(page, lambda: facet_box(page, "brand", ODD_BRAND).check())
    shown = cards(page)
    assert [c["id"] for c in shown] == ["odd-brand"] and shown[0]["brand"] == ODD_BRAND
    assert url_params(page)["brand"] == [ODD_BRAND]
    chip = page.locator("#chips .chip")
    expect(chip).to_have_text([f"Brand: {ODD_BRAND}\N{MULTIPLICATION SIGN}"])
    expect(chip).to_have_attribute("aria-label", f"Remove filter Brand: {ODD_BRAND}")
    settled(page, page.reload)
    expect(facet_box(page, "brand", ODD_BRAND)).to_be_checked()
    assert [c["id"] for c in cards(page)] == ["odd-brand"]


def test_phone_width_folds_the_filters_and_keyboard_works_them(browser: Browser,
                                                               server: ServerProcess) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        pg = context.new_page()
        pg.goto(server.url + "/")
        search(pg, "jacket")
        sidebar = pg.locator("#filters")
        toggle = pg.locator("#filters-toggle")
        expect(sidebar).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        # Tab from the search box reaches the button; Enter opens the sidebar.
        pg.locator("#q").focus()
        pg.keyboard.press("Tab")
        expect(toggle).to_be_focused()
        pg.keyboard.press("Enter")
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        box = pg.locator('.facet[data-field="brand"] input').first
        brand = pg.locator('.facet[data-field="brand"] .value').first.inner_text()
        pg.keyboard.press("Tab")
        expect(box).to_be_focused()
        settled(pg, lambda: pg.keyboard.press("Space"))
        expect(box).to_be_checked()
        expect(box).to_be_focused()  # the counts changed around it
        assert {c["brand"] for c in cards(pg)} == {brand}
        expect(toggle).to_contain_text("(1)")
        page_width = pg.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, page_width
    finally:
        context.close()
