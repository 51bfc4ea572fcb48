"""Opening a result on the demo page, in a real Chromium against a real uvicorn: a click and
a keyboard open (Enter on a focused result) each store one click event, on the search the
page shows, in the server's click log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.click_log import ClickLog, Session
from app.demo import ensure_demo_index
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo catalog's index root, of this module alone: its click log starts empty."""
    folder = tmp_path_factory.mktemp("page-clicks")
    return ensure_demo_index(folder / "demo", progress=False, require_shipped=True)


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    """Without Redis: the searches are remembered in the server's process."""
    with running_server(root, root.parent / "server.log") as s, \
            httpx.Client(timeout=30) as http:
        s.wait_ready(http)
        yield s


def sessions(root: Path) -> list[Session]:
    log = ClickLog.open(root)
    try:
        return log.sessions()
    finally:
        log.close()


def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def search(page: Page, query: str) -> list[str]:
    """Search, wait for the stream's end, and the ids shown."""
    page.locator("#q").fill(query)
    page.locator("#q").press("Enter")  # the search starts now (the list is busy), not debounced
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#results .hit").nth(1)).to_be_visible()
    return [str(i) for i in page.locator("#results .hit").evaluate_all(
        "items => items.map((li) => li.dataset.id)")]


def test_a_click_and_a_keyboard_open_each_store_one_event(page: Page, root: Path) -> None:
    before = len(sessions(root))
    shown = search(page, "rain jacket for hiking")
    page.locator(f'#results .hit[data-id="{shown[0]}"]').click()
    until(lambda: len(sessions(root)) == before + 1)
    page.locator("#q").press("ArrowDown")  # into the list: the first result
    page.keyboard.press("ArrowDown")  # the second
    expect(page.locator(f'#results .hit[data-id="{shown[1]}"]')).to_be_focused()
    page.keyboard.press("Enter")
    until(lambda: len(sessions(root)[-1].events) == 2)
    session = sessions(root)[-1]
    assert session.shown.query == "rain jacket for hiking"
    assert session.shown.shown == tuple(shown)  # the order the page showed at the end
    assert [(e.doc_id, e.rank, e.kind) for e in session.events] == [
        (shown[0], 1, "click"), (shown[1], 2, "click")]
    expect(page.locator(f'#results .hit[data-id="{shown[0]}"]')).to_have_class(
        re.compile(r"\bopened\b"))


def posts(server: ServerProcess) -> float:
    """`POST /events` requests the server has had."""
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r'^progsearch_requests_total\{endpoint="events"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_new_search_gets_its_own_id_and_a_double_click_is_one_event(
        page: Page, root: Path, server: ServerProcess) -> None:
    search(page, "espresso grinder")
    first = sessions(root)
    shown = search(page, "running shoes")
    sent = posts(server)
    page.locator(f'#results .hit[data-id="{shown[1]}"]').dblclick()
    until(lambda: posts(server) == sent + 2)  # both clicks were sent
    assert len(sessions(root)) == len(first) + 1
    session = sessions(root)[-1]
    assert session.shown.query == "running shoes"
    assert [(e.doc_id, e.rank) for e in session.events] == [(shown[1], 2)]
