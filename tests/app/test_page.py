"""The demo page in a real Chromium (Debian's, driven by Playwright) against a real uvicorn."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.demo import ensure_demo_index
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

TIME = re.compile(r"^\d+(\.\d)? ms$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real uvicorn serving the built-in demo catalog, as `make demo` does."""
    folder = tmp_path_factory.mktemp("page")
    root = ensure_demo_index(folder / "demo", progress=False, require_shipped=True)
    with running_server(root, folder / "server.log") as s, httpx.Client(timeout=30) as http:
        s.wait_ready(http)
        yield s


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    pg = context.new_page()
    other_hosts: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith(server.url) else other_hosts.append(r.url))
    pg.goto(server.url + "/")
    yield pg
    context.close()
    assert other_hosts == [], f"the page asked other hosts: {other_hosts}"


def test_typing_shows_keyword_then_semantic_results(page: Page) -> None:
    page.locator("#q").press_sequentially("rain jacket for hiking", delay=30)
    results = page.locator("#results .hit")
    expect(results.first).to_be_visible()
    expect(page.locator('.phase[data-phase="keyword"]')).to_have_class(re.compile(r"\bdone\b"))
    semantic = page.locator('.phase[data-phase="semantic"]')
    expect(semantic).to_have_class(re.compile(r"\bdone\b"))
    for phase in ("keyword", "semantic"):
        text = page.locator(f'.phase[data-phase="{phase}"] .time').inner_text()
        assert TIME.match(text), (phase, text)
    titles = results.locator("h2").all_inner_texts()
    assert any("jacket" in t.lower() or "shell" in t.lower() for t in titles[:3]), titles
    expect(page.locator('.phase[data-phase="enhanced"]')).to_have_class(re.compile(r"\bdone\b"))
    # The enhanced phase brings highlights with the query's words marked.
    expect(results.locator("mark").first).to_be_visible()
    # The stream ended: no badge is left waiting.
    expect(page.locator(".phase.pending")).to_have_count(0)


def test_typo_shows_the_correction(page: Page) -> None:
    page.locator("#q").fill("espreso machine ")
    corrected = page.locator("#corrected")
    expect(corrected).to_be_visible()
    expect(corrected).to_contain_text("espresso")
    expect(page.locator("#results .hit").first).to_contain_text("spresso")


def test_keyboard_moves_through_results(page: Page) -> None:
    page.locator("#q").fill("coffee grinder ")
    expect(page.locator('.phase[data-phase="semantic"]')).to_have_class(re.compile(r"\bdone\b"))
    page.locator("#q").press("ArrowDown")
    expect(page.locator("#results .hit").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#results .hit").nth(1)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#q")).to_be_focused()


def test_bad_input_and_unreachable_server_show_a_message(page: Page,
                                                          server: ServerProcess) -> None:
    page.locator("#q").fill("x" * 2000)
    expect(page.locator("#status")).to_contain_text("limit")
    page.route("**/search/stream*", lambda route: route.abort())
    page.route("**/search?*", lambda route: route.abort())
    page.locator("#q").fill("tent")
    expect(page.locator("#status")).to_contain_text("Cannot reach the search server")
