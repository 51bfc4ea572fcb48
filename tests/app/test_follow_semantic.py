"""Follows shown by the semantic phases, against a real server with the encoder: a document
that shares no word with the query reaches the follow once it is embedded, ranked by the
phase the stream showed last."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.app.follow_client import Follower, write
from tests.app.test_follow import KEY
from tests.server_process import running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

QUERY = {"q": "waterproof rain jacket", "k": 20}


def test_an_embedded_document_reaches_a_semantic_follow_by_its_vector(
    root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http)
        follower = Follower(s.url, QUERY)
        try:
            done = follower.next("done", timeout=60)
            assert done.data["errors"] == [], done.data
            # No word in common with the query: no keyword match can bring it in.
            written = write(http, s.url, KEY, {
                "id": "a1", "title": "Stormproof anorak",
                "text": "A hooded anorak that keeps you dry in heavy showers and downpours."})
            start = time.monotonic()
            update = follower.next("update", timeout=120)
            assert update.data["phase"] == "enhanced"
            assert update.data["added"] == ["a1"]
            assert update.data["seq"] > written["seq"]  # the write of its vectors
            assert http.get(f"{s.url}/documents/a1").json()["embedded"]
            # Ranked as a new stream's last phase ranks it now.
            _, events = read_stream(http, f"{s.url}/search/stream?q={QUERY['q']}&k=20")
            fresh = [h["id"] for h in events[-2].data["hits"]]
            assert events[-2].event == "enhanced"
            assert [h["id"] for h in update.data["hits"]] == fresh
            assert time.monotonic() - start < 120
        finally:
            follower.close()
    assert "Traceback" not in s.output(), s.output()


def test_a_browsing_follow_is_updated_although_its_semantic_phases_rank_nothing(
    root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    """Regression: with no words (a filter and a sort alone) the semantic phases send no
    hits; the follow was armed as shown by them, with nothing shown, and never updated."""
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http)
        follower = Follower(s.url, {"q": "", "k": 50, "filter": 'category = "outdoor"'})
        try:
            keyword = follower.next("keyword", timeout=60)
            assert keyword.data["hits"], keyword.data
            done = follower.next("done", timeout=60)
            assert done.data["errors"] == [], done.data
            write(http, s.url, KEY, {"id": "b1", "title": "Camp stool", "text": "Folds flat.",
                                     "category": "outdoor"})
            write(http, s.url, KEY, {"id": "b2", "title": "Desk lamp", "text": "Warm light.",
                                     "category": "home"})
            update = follower.next("update", timeout=60)
            assert update.data["phase"] == "keyword"
            assert "b1" in update.data["added"] and "b2" not in update.data["added"]
            _, events = read_stream(http, f"{s.url}/search/stream?q=&k=50&filter="
                                    "category%20%3D%20%22outdoor%22")
            assert [h["id"] for h in update.data["hits"]] == [
                h["id"] for h in events[0].data["hits"]]
        finally:
            follower.close()


def test_a_rewritten_hit_of_a_semantic_follow_is_marked_changed_not_removed_then_new(
    root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    """Regression: a shown document rewritten had no vectors until embedded again, so the
    follow's next ranking dropped it (`removed`) and the one after brought it back as
    `added`. It is now held until its vectors are stored, then marked `changed`."""
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http)
        follower = Follower(s.url, QUERY)
        try:
            done = follower.next("done", timeout=60)
            assert done.data["errors"] == [], done.data
            _, events = read_stream(http, f"{s.url}/search/stream?q={QUERY['q']}&k=20")
            shown = [h["id"] for h in events[-2].data["hits"]]
            target = shown[0]
            old = http.get(f"{s.url}/documents/{target}").json()
            write(http, s.url, KEY, {**{k: old[k] for k in ("id", "title")},
                                     "text": old["text"] + " Now with taped seams."})
            update = follower.next("update", timeout=120)
            assert target in update.data["changed"], update.data
            assert target not in update.data["removed"] + update.data["added"], update.data
            assert http.get(f"{s.url}/documents/{target}").json()["embedded"]
        finally:
            follower.close()
