"""Highlights on the demo page, in a real Chromium against a real uvicorn (issue "Hardening",
item 7): the server's highlight is HTML-escaped with `<mark>` added, and the page escaped it
again, so "children's rooms" showed as `children&#x27;s rooms`. The page must show the text as
written, and document text must still never become markup."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from app.demo import ensure_demo_index
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

KEY = "page-key"
HOSTILE = {
    "id": "hostile-markup",
    "title": "Zebrafish <b>bold</b> tank",
    "text": "Zebrafish tank kit & <img src=x onerror=\"window.pwned=1\"> <script>window.pwned=2"
            "</script> \"quoted\" for children's rooms.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("highlight")
    root = ensure_demo_index(folder / "demo", progress=False, require_shipped=True)
    with running_server(root, folder / "server.log", env={"PROGSEARCH_API_KEY": KEY}) as s, \
            httpx.Client(timeout=30) as http:
        s.wait_ready(http)
        yield s


def search(page: Page, query: str) -> None:
    page.locator("#q").fill(query)
    expect(page.locator('.phase[data-phase="enhanced"]')).to_have_class(re.compile(r"\bdone\b"))


def test_highlight_escaped_twice_shows_the_apostrophe(page: Page) -> None:
    search(page, "nano tank for children's rooms")
    bodies = page.locator("#results .hit p")
    expect(bodies.filter(has_text="children's rooms").first).to_be_visible()
    expect(page.locator("#results .hit mark").first).to_be_visible()
    texts = " ".join(bodies.all_inner_texts())
    for entity in ("&#x27;", "&#39;", "&amp;", "&quot;", "&lt;", "&gt;"):
        assert entity not in texts, (entity, texts[:500])


def test_highlight_of_hostile_text_stays_text(page: Page, server: ServerProcess) -> None:
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{server.url}/documents", content=orjson.dumps(HOSTILE),
                      headers={"Authorization": f"Bearer {KEY}",
                               "Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 120  # highlights come with the enhanced phase: embedded
        while not http.get(f"{server.url}/documents/{HOSTILE['id']}").json()["embedded"]:
            assert time.monotonic() < deadline, "the document was not embedded"
            time.sleep(0.1)
    search(page, "zebrafish tank kit")
    hit = page.locator(f'#results .hit[data-id="{HOSTILE["id"]}"]')
    expect(hit.locator("mark").first).to_be_visible()
    body = hit.locator("p")
    expect(body).to_contain_text('Zebrafish tank kit & <img src=x onerror="window.pwned=1">')
    expect(body).to_contain_text('"quoted" for children\'s rooms.')
    expect(hit.locator("h2")).to_have_text("Zebrafish <b>bold</b> tank")
    assert hit.locator("img, script, b").count() == 0
    assert body.locator("*").evaluate_all("els => els.map(e => e.tagName)") == ["MARK"] * \
        body.locator("mark").count()
    assert page.evaluate("window.pwned") is None
