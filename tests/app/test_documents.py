"""Writing documents over HTTP: the key, bad bodies, and every phase seeing each write at once
(keyword) or once embedded (semantic, enhanced), with no stale answer from the cache."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from index.delta import DeltaLog
from tests.app.test_api import wait_ready
from tests.sse import read_stream

pytestmark = pytest.mark.model

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    settings = Settings(index=root, api_key=KEY, max_body_bytes=64 * 1024)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def ids(hits: list[dict[str, object]]) -> list[object]:
    return [h["id"] for h in hits]


def phases(client: TestClient, q: str, k: int = 10) -> dict[str, list[object]]:
    status, events = read_stream(client, f"/search/stream?q={q}&k={k}")
    assert status == 200
    return {e.event: ids(e.data["hits"]) for e in events if "hits" in e.data}


def wait_embedded(client: TestClient, doc_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not client.get(f"/documents/{doc_id}").json()["embedded"]:
        assert time.monotonic() < deadline, f"{doc_id} was not embedded"
        time.sleep(0.05)


def test_writes_need_the_key(client: TestClient) -> None:
    doc = {"id": "n1", "title": "Alpine espresso grinder", "text": "Burr grinder."}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]},
                    {"Authorization": KEY}):
        r = client.post("/documents", json=doc, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.delete("/documents/p01").status_code == 401
    assert client.get("/documents/n1").status_code == 404
    assert client.post("/documents", json=doc, headers={"X-API-Key": KEY}).status_code == 201


def test_writes_are_refused_without_a_configured_key(root: Path) -> None:
    with TestClient(create_app(Settings(index=root))) as c:
        r = c.post("/documents", json={"id": "x", "title": "t"}, headers=AUTH)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "writes_disabled"


def test_bad_bodies_get_413_and_422_and_write_nothing(client: TestClient, root: Path) -> None:
    big = json.dumps({"id": "big", "title": "t", "text": "x" * 70_000})
    r = client.post("/documents", content=big, headers=AUTH)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    cases = {
        b"": "no document",
        b"{not json": "malformed JSON",
        b'{"title": "no id"}': "'id'",
        b'{"id": "a", "title": 3}': "'title'",
        b'{"id": "a", "title": "", "text": " "}': "both empty",
        b"[1, 2]": "item 0",
        b'{"id": "ok", "title": "fine"}\n{"id": "b", "text": []}\n': "line 2",
        b"\xff\xfe\x00binary": "",
    }
    for body, words in cases.items():
        r = client.post("/documents", content=body, headers=AUTH)
        assert r.status_code == 422, body
        error = r.json()["error"]
        assert error["code"] == "invalid_document"
        assert words in error["message"], (body, error)
    # The valid first line of the bad NDJSON batch was not written either.
    assert client.get("/documents/ok").status_code == 404
    assert DeltaLog.open(root).last_seq() == 0


def test_a_written_document_is_found_by_keyword_on_the_next_query(client: TestClient) -> None:
    before = client.get("/search", params={"q": "zanzibar grinder"})
    assert "n1" not in ids(before.json()["hits"])
    r = client.post("/documents", headers=AUTH, json={
        "id": "n1", "title": "Zanzibar burr grinder", "text": "Conical burrs for espresso.",
        "brand": "Kilo"})
    assert r.status_code == 201
    assert r.json()["written"] == 1
    after = client.get("/search", params={"q": "zanzibar grinder"},
                       headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200  # the version moved: no 304, no stale cache entry
    assert after.json()["index_version"] == r.json()["index_version"]
    assert ids(after.json()["hits"])[0] == "n1"
    got = client.get("/documents/n1").json()
    assert (got["title"], got["fields"]) == ("Zanzibar burr grinder", {"brand": "Kilo"})


def test_embedding_brings_a_new_document_into_every_phase(client: TestClient) -> None:
    q = "zanzibar+burr+grinder"
    assert "n2" not in phases(client, q).get("semantic", [])
    r = client.post("/documents", headers=AUTH, json={
        "id": "n2", "title": "Zanzibar burr grinder", "text": "Conical burrs for espresso."})
    assert r.status_code == 201
    wait_embedded(client, "n2")
    found = phases(client, q)
    assert set(found) == {"keyword", "semantic", "enhanced"}
    for phase, hits in found.items():
        assert hits[0] == "n2", phase
    _, events = read_stream(client, f"/search/stream?q={q}")
    enhanced = next(e for e in events if e.event == "enhanced")
    assert "<mark>" in enhanced.data["hits"][0]["highlight"]


def test_updates_and_deletes_are_never_stale(client: TestClient) -> None:
    q = "ridge+hiking+boots"
    wait_embedded(client, "p03")
    assert phases(client, q)["keyword"][0] == "p03"  # and now every phase is cached
    r = client.post("/documents", headers=AUTH, json={
        "id": "p03", "title": "Glazed ceramic teapot", "text": "A teapot for green tea."})
    assert r.status_code == 201
    for phase, hits in phases(client, q).items():
        assert "p03" not in hits, phase
    assert phases(client, "ceramic+teapot")["keyword"][0] == "p03"
    wait_embedded(client, "p03")
    assert "p03" in phases(client, "ceramic+teapot")["semantic"]
    r = client.delete("/documents/p03", headers=AUTH)
    assert r.status_code == 200
    for query in (q, "ceramic+teapot"):
        for phase, hits in phases(client, query).items():
            assert "p03" not in hits, (query, phase)
    assert client.get("/documents/p03").status_code == 404
    assert client.delete("/documents/p03", headers=AUTH).status_code == 404


def test_ndjson_batch(client: TestClient) -> None:
    lines = "".join(
        json.dumps({"id": f"b{i}", "title": f"Quokka lantern model {i}", "text": "Camp light."})
        + "\n" for i in range(50)
    )
    r = client.post("/documents", content=lines,
                    headers={**AUTH, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200
    assert r.json()["written"] == 50
    hits = client.get("/search", params={"q": "quokka lantern", "k": 50}).json()["hits"]
    assert {h["id"] for h in hits} == {f"b{i}" for i in range(50)}


def test_compaction_moves_the_server_to_a_new_version_with_every_document(root: Path) -> None:
    settings = Settings(index=root, api_key=KEY, compact_changes=4)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        first = c.get("/readyz").json()["index_version"]
        for i in range(2):
            r = c.post("/documents", headers=AUTH, json={
                "id": f"c{i}", "title": f"Marmot thermos {i}", "text": "Keeps tea hot."})
            assert r.status_code == 201
        # Two upserts and their two embeddings make four changes: a compaction follows.
        deadline = time.monotonic() + 120
        while "+" in (version := c.get("/readyz").json()["index_version"]) or version == first:
            assert time.monotonic() < deadline, version
            time.sleep(0.05)
        assert version != first
        found = phases(c, "marmot+thermos")
        for phase in ("keyword", "semantic", "enhanced"):
            assert set(found[phase][:2]) == {"c0", "c1"}, phase
        assert c.get("/documents/c1").json()["embedded"] is True
        assert c.get("/readyz").json()["documents"] == 22
