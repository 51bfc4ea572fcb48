"""The demo page's follow switch and its "write a product" form (issue 16), in a real Chromium
against a real uvicorn serving the demo catalog.

What a followed list shows is checked against the server itself: a new stream for the same
parameters, read with httpx, and its event of the phase the follow is ranked by (a follow's
updates are ranked by the last phase its stream showed, the enhanced one here, so `GET
/search`, which answers the keyword phase, would rank them otherwise). A written document
is compared once it is embedded: until then the semantic phases know it by its keywords only,
and the follow moves it again when its vectors are stored."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from app.demo import ensure_demo_index
from tests.app.follow_client import write
from tests.server_process import ServerProcess, running_server
from tests.sse import Event, read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

KEY = "page-follow-key"
FACETS = "brand,category,in_stock,price"
"""The facets the page asks for with every stream (static/filters.js)."""
WAIT = 60_000
"""Milliseconds for an update to reach the page: the write, the match, the phase re-run, on
a machine the other test jobs share."""
EMBED_WAIT = 180_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("follow-page")
    root = ensure_demo_index(folder / "demo", progress=False, require_shipped=True)
    env = {
        "PROGSEARCH_API_KEY": KEY,
        "PROGSEARCH_PRECOMPUTE_TOP": "0",
        # A phase that misses its deadline on a loaded machine would leave the page's follow
        # and the reference stream ranked by different phases.
        "PROGSEARCH_SEMANTIC_TIMEOUT": "20",
        "PROGSEARCH_ENHANCED_TIMEOUT": "20",
    }
    with (
        running_server(root, folder / "server.log", env=env) as s,
        httpx.Client(timeout=30) as http,
    ):
        s.wait_ready(http)
        yield s
    assert "Traceback" not in s.output(), s.output()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    yield context.new_page()
    context.close()


def stream_request(page: Page, action: Any) -> str:
    """Run `action`, which starts a search; the URL of the stream it opened, once its
    phases have ended."""
    with page.expect_request(lambda r: "/search/stream" in r.url) as request:
        action()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false", timeout=WAIT)
    return request.value.url


def open_followed(page: Page, server: ServerProcess, **params: str) -> None:
    """Open the page on `params` with follow=1 and wait until its stream is following."""
    url = stream_request(
        page, lambda: page.goto(f"{server.url}/?{urlencode({**params, 'follow': '1'})}")
    )
    assert "follow=1" in url, url
    expect(page.get_by_role("switch", name="Follow")).to_be_checked()
    expect(page.locator("#follow-state")).to_have_text("live", timeout=WAIT)


def url_params(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def facet_box(page: Page, field: str, label: str) -> Locator:
    return (
        page.locator(f'.facet[data-field="{field}"] li')
        .filter(has=page.locator(".value", has_text=re.compile(f"^{re.escape(label)}$")))
        .locator("input")
    )


def shown(page: Page) -> list[str]:
    """The ids of the results shown, in order (not those fading out)."""
    ids: list[str] = page.locator("#results .hit:not(.leaving)").evaluate_all(
        "els => els.map(li => li.dataset.id)"
    )
    return ids


def expect_ids(page: Page, ids: list[str], timeout: float = WAIT) -> None:
    """The page comes to show exactly `ids`, in this order."""
    try:
        page.wait_for_function(
            """ids => {
            const shown = [...document.querySelectorAll('#results .hit:not(.leaving)')]
                .map(li => li.dataset.id);
            return shown.length === ids.length && shown.every((id, i) => id === ids[i]);
        }""",
            arg=ids,
            timeout=timeout,
        )
    except PlaywrightTimeoutError:
        raise AssertionError(f"the page shows {shown(page)}, the server ranks {ids}") from None


def card(page: Page, doc_id: str) -> Locator:
    return page.locator(f'#results .hit[data-id="{doc_id}"]')


def wait_embedded(page: Page, doc_id: str) -> None:
    """Until `GET /documents/{id}` says the document's vectors are stored (asked from the
    page, which polls it without a loop here)."""
    page.wait_for_function(
        """async id => {
        const r = await fetch('/documents/' + encodeURIComponent(id), {cache: 'no-store'});
        return r.ok && (await r.json()).embedded;
    }""",
        arg=doc_id,
        polling=250,
        timeout=EMBED_WAIT,
    )


def ranking(http: httpx.Client, server: ServerProcess, phase: str, **params: str) -> list[str]:
    """The ids a new stream for the page's parameters shows in `phase`."""
    query = urlencode({"k": "10", "facets": FACETS, **params})
    status, events = read_stream(http, f"{server.url}/search/stream?{query}")
    assert status == 200
    event = next((e for e in events if e.event == phase), None)
    assert event is not None, [(e.event, e.data) for e in events]
    return [h["id"] for h in event.data["hits"]]


def follow_phase(page: Page) -> str:
    phase = page.locator("#results").get_attribute("data-phase")
    assert phase in ("semantic", "enhanced"), phase  # the encoder was ready: a meaning follow
    return phase


def counts(http: httpx.Client, server: ServerProcess, q: str, field: str) -> dict[str, int]:
    r = http.get(f"{server.url}/search", params={"q": q, "k": 1, "facets": field})
    assert r.status_code == 200, r.text
    return {str(v): n for v, n in r.json()["facets"][field]["values"]}


def expect_counts(page: Page, field: str, expected: dict[str, int]) -> None:
    rows = page.locator(f'.facet[data-field="{field}"] li')
    expect(rows.locator(".value")).to_have_text(list(expected), timeout=WAIT)
    expect(rows.locator(".n")).to_have_text([str(n) for n in expected.values()])


def delete(http: httpx.Client, server: ServerProcess, doc_id: str) -> None:
    r = http.delete(
        f"{server.url}/documents/{quote(doc_id, safe='')}",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200, r.text


RAIN: dict[str, Any] = {
    "id": "follow-rain",
    "title": "Storm rain jacket",
    "text": "A light rain jacket for hiking in the rain.",
    "brand": "Followfield",
    "category": "Outdoor Clothing",
    "price": 59.0,
    "rating": 4.5,
    "in_stock": True,
}


def test_a_write_slides_into_place_marked_new_and_a_delete_removes_it(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    q = "rain jacket"
    stream = stream_request(page, lambda: page.goto(f"{server.url}/?q=rain+jacket"))
    assert "follow" not in stream
    switch = page.get_by_role("switch", name="Follow")
    expect(switch).not_to_be_checked()
    stream = stream_request(page, switch.check)
    assert "follow=1" in stream and url_params(page)["follow"] == ["1"]
    expect(page.locator("#follow-state")).to_have_text("live", timeout=WAIT)
    before = shown(page)
    categories = counts(http, server, q, "category")
    expect_counts(page, "category", categories)

    write(http, server.url, KEY, RAIN)
    new = card(page, RAIN["id"])
    expect(new).to_be_visible(timeout=WAIT)
    expect(new).to_have_class(re.compile(r"\bhit-new\b"))
    expect(new.locator(".badge-new")).to_have_text("new")
    expect(page.locator("#follow-state")).to_have_text(re.compile("^live \N{MIDDLE DOT} "))
    assert RAIN["id"] not in before
    # Once embedded, in the place a new stream ranked by the same phase gives it, still marked.
    wait_embedded(page, RAIN["id"])
    phase = follow_phase(page)
    expected = ranking(http, server, phase, q=q)
    assert RAIN["id"] in expected
    expect_ids(page, expected)
    expect(new).to_have_attribute("data-rank", str(expected.index(RAIN["id"]) + 1))
    expect(new).to_have_class(re.compile(r"\bhit-new\b"))
    expect(page.locator("#results .hit-new")).to_have_count(1)
    # The update carries no counts: the page asks for them again.
    grown = counts(http, server, q, "category")
    assert grown != categories
    expect_counts(page, "category", grown)

    delete(http, server, RAIN["id"])
    expect(new).to_have_count(0, timeout=WAIT)
    expected = ranking(http, server, phase, q=q)
    assert RAIN["id"] not in expected
    expect_ids(page, expected)
    expect_counts(page, "category", categories)


def sse(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.event}\ndata: {json.dumps(event.data)}\n\n"


def test_an_update_marks_changed_hits_and_fades_removed_ones(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    """`changed` needs a rewritten document to stay shown, which a meaning-ranked follow does
    not do (the rewrite has no vectors until it is embedded again, so it leaves and comes
    back as added): the update is played from a stream the server answered, with its last
    two hits swapped, the first marked changed and one replaced."""
    query = urlencode({"q": "tent", "k": "10", "facets": FACETS})
    status, events = read_stream(http, f"{server.url}/search/stream?{query}")
    assert status == 200 and events[-1].event == "done"
    last = next(e for e in reversed(events) if e.event in ("semantic", "enhanced"))
    hits = [dict(h) for h in last.data["hits"]]
    ids = [h["id"] for h in hits]
    swapped = [*hits[:-3], hits[-2], hits[-3]]
    update_hits = [
        {**h, "rank": rank, "previous_rank": ids.index(h["id"]) + 1}
        for rank, h in enumerate(swapped, 1)
    ] + [{**hits[0], "id": "played-new", "title": "Played tent", "rank": 10, "previous_rank": None}]
    update = Event(
        "update",
        f"{events[-1].id.rpartition('.')[0]}.99",
        {
            "phase": last.event,
            "index_version": last.data["index_version"],
            "query": "tent",
            "k": 10,
            "seq": 95,
            "hits": update_hits,
            "added": ["played-new"],
            "removed": [ids[-1]],
            "changed": [ids[0]],
        },
        None,
    )
    body = "retry: 600000\n\n" + "".join(sse(e) for e in [*events, update])
    page.route(
        "**/search/stream?*",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=body
        ),
    )
    page.goto(f"{server.url}/?q=tent&follow=1")
    edited = card(page, ids[0])
    expect(edited.locator(".badge-edited")).to_have_text("edited", timeout=WAIT)
    expect(edited).to_have_class(re.compile(r"\bhit-changed\b"))
    expect(edited).not_to_have_class(re.compile(r"\bhit-new\b"))
    expect(card(page, "played-new").locator(".badge-new")).to_have_text("new")
    expect(page.locator("#results .hit-changed")).to_have_count(1)
    # The removed hit fades out of the list, the two swapped ones show their move.
    expect(card(page, ids[-1])).to_have_count(0)
    expect_ids(page, [h["id"] for h in update_hits])
    expect(card(page, ids[-3]).locator(".move.down")).to_have_text(
        "\N{BLACK DOWN-POINTING TRIANGLE} 1"
    )
    expect(card(page, ids[-2]).locator(".move.up")).to_have_text("\N{BLACK UP-POINTING TRIANGLE} 1")


def test_without_follow_a_write_leaves_the_list_as_it_was(
    browser: Browser, http: httpx.Client, server: ServerProcess
) -> None:
    still_context = browser.new_context(viewport={"width": 1200, "height": 1000})
    live_context = browser.new_context(viewport={"width": 1200, "height": 1000})
    try:
        still = still_context.new_page()
        stream = stream_request(still, lambda: still.goto(f"{server.url}/?q=tent"))
        assert "follow" not in stream
        expect(still.get_by_role("switch", name="Follow")).not_to_be_checked()
        expect(still.locator("#follow-state")).to_have_text("")
        before = shown(still)
        live = live_context.new_page()
        open_followed(live, server, q="tent")
        assert shown(live) == before

        doc: dict[str, Any] = {
            "id": "still-tent",
            "title": "Tent, ultralight backpacking tent",
            "text": "A two-person tent that pitches in a minute.",
            "brand": "Followfield",
            "category": "Camping",
            "price": 149.0,
            "rating": 4.6,
            "in_stock": True,
        }
        write(http, server.url, KEY, doc)
        # The same write reaches the followed page, and its last update once embedded: the
        # page without follow had its chance to change too.
        expect(card(live, doc["id"])).to_be_visible(timeout=WAIT)
        wait_embedded(live, doc["id"])
        expected = ranking(http, server, follow_phase(live), q="tent")
        assert doc["id"] in expected
        expect_ids(live, expected)
        assert shown(still) == before
        expect(card(still, doc["id"])).to_have_count(0)
        expect(still.locator("#results .hit-new")).to_have_count(0)
    finally:
        still_context.close()
        live_context.close()


def test_a_filtered_follow_does_not_show_a_write_outside_its_filter(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    q = "backpack"
    brand = next(iter(counts(http, server, q, "brand")))
    open_followed(page, server, q=q, brand=brand)
    expect(facet_box(page, "brand", brand)).to_be_checked()
    outside: dict[str, Any] = {
        "id": "outside-pack",
        "title": "Backpack, hiking backpack",
        "text": "A roomy backpack for day hikes.",
        "brand": "Elsewhere Gear",
        "category": "Camping",
        "price": 79.0,
        "rating": 4.8,
        "in_stock": True,
    }
    inside = {**outside, "id": "inside-pack", "brand": brand}
    write(http, server.url, KEY, outside)
    write(http, server.url, KEY, inside)
    # The update that brings the second write is ranked after both.
    expect(card(page, inside["id"])).to_be_visible(timeout=WAIT)
    expect(card(page, outside["id"])).to_have_count(0)
    wait_embedded(page, outside["id"])
    wait_embedded(page, inside["id"])
    phase = follow_phase(page)
    expected = ranking(http, server, phase, q=q, filter=f'brand = "{brand}"')
    assert inside["id"] in expected and outside["id"] not in expected
    expect_ids(page, expected)
    assert {b.strip() for b in page.locator("#results .hit .meta .brand").all_inner_texts()} == {
        brand
    }
    # Without the filter the other write would be shown: the filter is what keeps it out.
    assert outside["id"] in ranking(http, server, phase, q=q)


def test_the_form_writes_a_product_that_the_followed_list_shows(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    open_followed(page, server, q="espresso machine")
    before = shown(page)
    form = page.locator("#write-form")
    expect(form).to_be_hidden()  # collapsed by default
    page.locator("#write summary").click()
    expect(form).to_be_visible()
    form.get_by_label("Id", exact=True).fill("form-espresso")
    form.get_by_label("Title", exact=True).fill("Barista espresso machine")
    form.get_by_label("Text", exact=True).fill("A compact espresso machine with a steam wand.")
    form.get_by_label("Brand", exact=True).fill("Formfield")
    form.get_by_label("Category", exact=True).fill("Kitchen")
    form.get_by_label("Price", exact=True).fill("199.5")
    form.get_by_label("In stock", exact=True).uncheck()
    key = form.get_by_label("API key", exact=True)
    expect(key).to_have_attribute("type", "password")

    # A wrong key: the server's message, and nothing written.
    key.fill("not-the-key")
    result = page.locator("#write-result")
    form.get_by_role("button", name="Write").click()
    expect(result).to_have_text(
        "Not written: a valid API key is required (Authorization: Bearer KEY, or X-API-Key)",
        timeout=WAIT,
    )
    expect(result).to_have_class(re.compile(r"\bbad\b"))
    assert http.get(f"{server.url}/documents/form-espresso").status_code == 404

    key.fill(KEY)
    form.get_by_role("button", name="Write").click()
    expect(result).to_have_text(re.compile(r"^Written “form-espresso” \(seq \d+, "), timeout=WAIT)
    expect(result).to_have_class(re.compile(r"\bok\b"))
    written = http.get(f"{server.url}/documents/form-espresso").json()
    assert written["title"] == "Barista espresso machine"
    assert written["fields"] == {
        "brand": "Formfield",
        "category": "Kitchen",
        "price": 199.5,
        "in_stock": False,
    }
    new = card(page, "form-espresso")
    expect(new).to_be_visible(timeout=WAIT)
    expect(new.locator(".badge-new")).to_have_text("new")
    assert "form-espresso" not in before
    # The key is kept for this tab only, never in the address.
    assert KEY not in page.url and "not-the-key" not in page.url
    assert page.evaluate("sessionStorage.getItem('progsearch-api-key')") == KEY
    stream_request(page, page.reload)
    assert KEY not in page.url
    expect(page.locator("#api-key")).to_have_value(KEY)

    # The server out of reach: said so, and the form can be sent again.
    page.locator("#write summary").click()
    form.get_by_label("Title", exact=True).fill("Espresso tamper")
    page.route("**/documents", lambda route: route.abort())
    form.get_by_role("button", name="Write").click()
    expect(result).to_have_text("Not written: cannot reach the server.", timeout=WAIT)
    expect(form.get_by_role("button", name="Write")).to_be_enabled()


def test_reload_keeps_follow_from_the_url(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    stream_request(page, lambda: page.goto(f"{server.url}/?q=kettle"))
    switch = page.get_by_role("switch", name="Follow")
    stream_request(page, switch.check)
    assert url_params(page) == {"q": ["kettle"], "follow": ["1"]}
    stream = stream_request(page, page.reload)
    assert "follow=1" in stream
    expect(switch).to_be_checked()
    expect(page.locator("#follow-state")).to_have_text("live", timeout=WAIT)
    # The reloaded page follows: a write reaches it.
    doc: dict[str, Any] = {
        "id": "reload-kettle",
        "title": "Kettle, electric kettle",
        "text": "A kettle that boils a kettle of water fast.",
        "brand": "Followfield",
        "category": "Kitchen",
        "price": 39.0,
        "rating": 4.2,
        "in_stock": True,
    }
    write(http, server.url, KEY, doc)
    expect(card(page, doc["id"]).locator(".badge-new")).to_have_text("new", timeout=WAIT)
    # Off again: the URL says so, and the next stream does not follow.
    stream = stream_request(page, switch.uncheck)
    assert "follow" not in stream and "follow" not in url_params(page)
    expect(page.locator("#follow-state")).to_have_text("")


def tab_to(page: Page, target: Locator, most: int = 20) -> None:
    """Press Tab until `target` has the focus (at most `most` times)."""
    for _ in range(most):
        if target.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_phone_width_keyboard_reaches_the_switch_and_the_form(
    browser: Browser, server: ServerProcess
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        pg = context.new_page()
        stream_request(pg, lambda: pg.goto(f"{server.url}/?q=jacket"))
        switch = pg.get_by_role("switch", name="Follow")
        pg.locator("#q").focus()
        tab_to(pg, switch)
        stream = stream_request(pg, lambda: pg.keyboard.press("Space"))
        assert "follow=1" in stream
        expect(switch).to_be_checked()
        expect(switch).to_be_focused()
        expect(pg.locator("#follow-state")).to_have_text("live", timeout=WAIT)
        assert url_params(pg)["follow"] == ["1"]
        # Tab reaches the form's summary too; Enter opens it, and Tab goes into it.
        summary = pg.locator("#write summary")
        pg.locator("#q").focus()
        tab_to(pg, summary)
        pg.keyboard.press("Enter")
        title = pg.locator("#write-form").get_by_label("Title", exact=True)
        expect(title).to_be_visible()
        pg.keyboard.press("Tab")
        pg.keyboard.press("Tab")
        expect(title).to_be_focused()
        for width in (
            pg.evaluate("document.documentElement.scrollWidth"),
            pg.locator("#write-form").evaluate("el => el.getBoundingClientRect().right"),
            pg.locator(".toolbar").evaluate("el => el.getBoundingClientRect().right"),
        ):
            assert width <= 390, width
        # ↓ from the search box still enters the list.
        pg.locator("#q").press("ArrowDown")
        expect(pg.locator("#results .hit").first).to_be_focused()
    finally:
        context.close()
