"""The app through Starlette's TestClient: endpoints, the stream, the cache, bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from starlette.testclient import TestClient

from app.engine import Engine, SemanticState
from app.server import create_app
from app.settings import Settings
from tests.sse import read_stream

pytestmark = pytest.mark.model


def wait_ready(client: TestClient, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").json()["phases"]["semantic"] != SemanticState.READY.value:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(sample_root: Path) -> Iterator[TestClient]:
    app = create_app(Settings(index=sample_root, max_query_chars=200, max_k=50))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def test_search_json_has_keyword_hits_and_cache_headers(client: TestClient) -> None:
    r = client.get("/search", params={"q": "hiking boots", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["phase"] == "keyword"
    assert 1 <= len(body["hits"]) <= 3
    assert body["hits"][0]["rank"] == 1
    assert "boots" in body["hits"][0]["title"].lower()
    assert set(body["hits"][0]) == {"id", "title", "snippet", "score", "rank", "previous_rank"}
    etag = r.headers["etag"]
    assert body["index_version"] in etag
    assert "max-age" in r.headers["cache-control"]
    again = client.get("/search", params={"q": "hiking boots", "k": 3},
                       headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_search_reports_typo_corrections(client: TestClient) -> None:
    body = client.get("/search", params={"q": "waterprof jacket "}).json()
    assert body["corrected_query"] is not None
    assert {"original": "waterprof", "corrected": "waterproof", "distance": 1} in body[
        "corrections"]


def test_stream_sends_phases_in_order_with_ids_and_retry(client: TestClient) -> None:
    status, events = read_stream(client, "/search/stream?q=shoes+for+running&k=5")
    assert status == 200
    assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]
    version = events[0].data["index_version"]
    assert [e.id for e in events] == [f"{version}.{n}" for n in (1, 2, 3, 4)]
    assert events[0].retry is not None
    semantic = events[1].data
    assert len(semantic["hits"]) == 5
    assert all("previous_rank" in h for h in semantic["hits"])
    keyword_ids = [h["id"] for h in events[0].data["hits"]]
    for hit in semantic["hits"]:
        if hit["previous_rank"] is not None:
            assert keyword_ids[hit["previous_rank"] - 1] == hit["id"]
    enhanced = events[2].data
    assert len(enhanced["hits"]) == 5
    assert all("highlight" in h for h in enhanced["hits"])
    done = events[3].data
    assert set(done["phases"]) == {"keyword", "semantic", "enhanced"}
    assert done["errors"] == []
    assert done["protocol"] == 1


def test_repeat_stream_comes_from_the_cache(client: TestClient) -> None:
    url = "/search/stream?q=espresso+grinder&k=4"
    _, first = read_stream(client, url)
    for _ in range(50):  # the cache is written in the background, after the events are sent
        _, second = read_stream(client, url)
        if second[-1].data["cached"]:
            break
        time.sleep(0.1)
    assert first[-1].data["cached"] is False
    assert second[-1].data["cached"] is True
    assert all(e.data["cached"] for e in second[:3])
    assert [e.data["hits"] for e in first[:3]] == [e.data["hits"] for e in second[:3]]
    metrics = client.get("/metrics").text
    assert 'progsearch_cache_requests_total{kind="keyword",result="hit"}' in metrics


class CountingEngine(Engine):
    """An engine that records the texts it encodes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoded: list[str] = []

    def encode(self, text: str) -> npt.NDArray[np.float32]:
        self.encoded.append(text)
        return super().encode(text)


def test_query_vector_comes_with_the_phase_lookup(sample_root: Path) -> None:
    """Another k misses every phase but not the query vector: it comes with the phases' one
    cache lookup, and the encoder does not run again."""
    engine = CountingEngine.open(sample_root)
    with TestClient(create_app(Settings(), engine=engine)) as c:
        wait_ready(c)
        read_stream(c, "/search/stream?q=burr+grinder+espresso&k=3")
        assert engine.encoded == ["burr grinder espresso"]
        for k in range(4, 40):  # the vector is cached in the background, after the events
            encoded = len(engine.encoded)
            _, events = read_stream(c, f"/search/stream?q=burr+grinder+espresso&k={k}")
            assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]
            assert events[-1].data["cached"] is False and events[1].data["hits"]
            if len(engine.encoded) == encoded:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"every stream encoded the query again: {engine.encoded}")
        metrics = c.get("/metrics").text
        assert 'progsearch_cache_requests_total{kind="embedding",result="hit"}' in metrics


def test_last_event_id_resumes_after_the_phases_seen(client: TestClient) -> None:
    _, events = read_stream(client, "/search/stream?q=tent&k=3")
    keyword_id = events[0].id
    _, rest = read_stream(client, "/search/stream?q=tent&k=3",
                          headers={"Last-Event-ID": keyword_id})
    assert [e.event for e in rest] == ["semantic", "enhanced", "done"]
    status, none = read_stream(client, "/search/stream?q=tent&k=3",
                               headers={"Last-Event-ID": events[-1].id})
    assert (status, none) == (204, [])
    _, stale = read_stream(client, "/search/stream?q=tent&k=3",
                           headers={"Last-Event-ID": "some-old-version.2"})
    assert [e.event for e in stale] == ["keyword", "semantic", "enhanced", "done"]


def test_wordless_query_gets_empty_phases_not_an_error(client: TestClient) -> None:
    _, events = read_stream(client, "/search/stream?q=%21%3F%2B")
    assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]
    assert all(e.data["hits"] == [] for e in events[:3])


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/search?q=", 400, "empty_query"),
        ("/search/stream?q=", 400, "empty_query"),
        ("/search?q=" + "a" * 201, 414, "query_too_long"),
        ("/search/stream?q=a&k=0", 400, "invalid_k"),
        ("/search?q=a&k=1000000000", 400, "invalid_k"),
        ("/search?q=%C3%28", 400, "invalid_encoding"),
        ("/search/stream?q=a&debug=1", 400, "unknown_parameter"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_bad_requests_get_json_errors(client: TestClient, url: str, status: int,
                                      code: str) -> None:
    r = client.get(url)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code
    metrics = client.get("/metrics").text
    assert f'progsearch_errors_total{{code="{code}"}}' in metrics


def test_post_is_not_allowed(client: TestClient) -> None:
    r = client.post("/search", content=b"q=a")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["phases"] == {"keyword": "ready", "semantic": "ready", "enhanced": "ready"}
    assert ready["documents"] == 20
    text = client.get("/metrics").text
    for name in ("progsearch_phase_seconds_bucket", "progsearch_open_streams",
                 "progsearch_cache_requests_total"):
        assert name in text


class SlowEncoderEngine(Engine):
    """An engine whose encoder waits for a signal, to see the warm-up from outside."""

    release = threading.Event()

    def _load_encoder(self) -> None:
        self.release.wait(60)
        super()._load_encoder()


def test_semantic_phase_warms_up_while_keyword_answers(sample_root: Path) -> None:
    engine = SlowEncoderEngine.open(sample_root)
    with TestClient(create_app(Settings(), engine=engine)) as c:
        assert c.get("/readyz").json()["phases"]["semantic"] == "loading"
        _, events = read_stream(c, "/search/stream?q=coffee")
        assert [e.event for e in events] == ["keyword", "error", "error", "done"]
        assert events[1].data == {"phase": "semantic", "code": "warming_up",
                                  "message": "the query encoder is still loading"}
        assert events[2].data["phase"] == "enhanced"
        assert events[2].data["code"] == "warming_up"
        assert [e.id.rsplit(".", 1)[1] for e in events] == ["1", "2", "3", "4"]
        assert events[0].data["hits"]
        assert events[3].data["errors"] == ["semantic", "enhanced"]
        SlowEncoderEngine.release.set()
        wait_ready(c)
        # The warm-up error was not cached: the same query now gets its semantic phase.
        _, events = read_stream(c, "/search/stream?q=coffee")
        assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]


def test_index_without_vectors_reports_semantic_unavailable(snapshot_root: Path) -> None:
    with TestClient(create_app(Settings(index=snapshot_root))) as c:
        ready = c.get("/readyz").json()
        assert ready["phases"]["semantic"] == "unavailable"
        _, events = read_stream(c, "/search/stream?q=protein+kinase")
        assert [e.event for e in events] == ["keyword", "error", "error", "done"]
        assert events[1].data["code"] == events[2].data["code"] == "unavailable"
