"""Follows shown by the semantic phases, against a real server with the encoder: a document
that shares no word with the query reaches the follow once it is embedded, ranked by the
phase the stream showed last."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.follow_client import Follower, write
from tests.app.test_follow import KEY
from tests.server_process import ServerProcess, running_server
from tests.sse import Event, read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

QUERY = {"q": "waterproof rain jacket", "k": 20}


@pytest.fixture
def server(root: Path, tmp_path: Path, http: httpx.Client) -> Iterator[ServerProcess]:
    """A server on a private copy of the sample index, with the encoder and writes on."""
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http)
        yield s
    assert "Traceback" not in s.output(), s.output()


@contextmanager
def following(server: ServerProcess, params: dict[str, Any]) -> Iterator[tuple[Follower, Event]]:
    """A follow stream past its `done` (which had no phase error), closed after."""
    follower = Follower(server.url, params)
    try:
        done = follower.next("done", timeout=60)
        assert done.data["errors"] == [], done.data
        yield follower, done
    finally:
        follower.close()


def test_an_embedded_document_reaches_a_semantic_follow_by_its_vector(
    server: ServerProcess, http: httpx.Client
) -> None:
    with following(server, QUERY) as (follower, _):
        # No word in common with the query: no keyword match can bring it in.
        written = write(http, server.url, KEY, {
            "id": "a1", "title": "Stormproof anorak",
            "text": "A hooded anorak that keeps you dry in heavy showers and downpours."})
        start = time.monotonic()
        update = follower.next("update", timeout=120)
        assert update.data["phase"] == "enhanced"
        assert update.data["added"] == ["a1"]
        assert update.data["seq"] > written["seq"]  # the write of its vectors
        assert http.get(f"{server.url}/documents/a1").json()["embedded"]
        # Ranked as a new stream's last phase ranks it now.
        _, events = read_stream(http, f"{server.url}/search/stream?q={QUERY['q']}&k=20")
        fresh = [h["id"] for h in events[-2].data["hits"]]
        assert events[-2].event == "enhanced"
        assert [h["id"] for h in update.data["hits"]] == fresh
        assert time.monotonic() - start < 120


def test_a_browsing_follow_is_updated_although_its_semantic_phases_rank_nothing(
    server: ServerProcess, http: httpx.Client
) -> None:
    """Regression: with no words (a filter and a sort alone) the semantic phases send no
    hits; the follow was armed as shown by them, with nothing shown, and never updated."""
    params = {"q": "", "k": 50, "filter": 'category = "outdoor"'}
    _, first = read_stream(http, f"{server.url}/search/stream?q=&k=50&filter="
                           "category%20%3D%20%22outdoor%22")
    assert first[0].event == "keyword" and first[0].data["hits"], first
    with following(server, params) as (follower, _):
        write(http, server.url, KEY, {"id": "b1", "title": "Camp stool", "text": "Folds flat.",
                                      "category": "outdoor"})
        write(http, server.url, KEY, {"id": "b2", "title": "Desk lamp", "text": "Warm light.",
                                      "category": "home"})
        update = follower.next("update", timeout=60)
        assert update.data["phase"] == "keyword"
        assert "b1" in update.data["added"] and "b2" not in update.data["added"]
        _, events = read_stream(http, f"{server.url}/search/stream?q=&k=50&filter="
                                "category%20%3D%20%22outdoor%22")
        assert [h["id"] for h in update.data["hits"]] == [
            h["id"] for h in events[0].data["hits"]]


def test_a_rewritten_hit_of_a_semantic_follow_is_marked_changed_not_removed_then_new(
    server: ServerProcess, http: httpx.Client
) -> None:
    """Regression: a shown document rewritten had no vectors until embedded again, so the
    follow's next ranking dropped it (`removed`) and the one after brought it back as
    `added`. It is now held until its vectors are stored, then marked `changed`."""
    with following(server, QUERY) as (follower, _):
        _, events = read_stream(http, f"{server.url}/search/stream?q={QUERY['q']}&k=20")
        target = events[-2].data["hits"][0]["id"]
        old = http.get(f"{server.url}/documents/{target}").json()
        write(http, server.url, KEY, {**{k: old[k] for k in ("id", "title")},
                                      "text": old["text"] + " Now with taped seams."})
        update = follower.next("update", timeout=120)
        assert target in update.data["changed"], update.data
        assert target not in update.data["removed"] + update.data["added"], update.data
        assert http.get(f"{server.url}/documents/{target}").json()["embedded"]
