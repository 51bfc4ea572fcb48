"""Explored streams on real servers behind one real Redis: one server explores every stream
(`PROGSEARCH_EXPLORE_SHARE=1`), the other none (share 0, exploration off). An explored stream
sends k hits in every phase, its final phase one candidate from ranks k+1..k+depth of the
answer computed for k + depth; the search is remembered with what was sent; the cached
answers are the plain ones, untouched; follows and `GET /search` are not explored."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from httpx_sse import connect_sse

from app.click_log import ClickLog
from tests.redis_server import PrivateRedis, private_redis
from tests.server_process import ServerProcess, running_server
from tests.sse import Event, read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

K, DEPTH = 3, 5
PHASES = ("keyword", "semantic", "enhanced")


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    with private_redis() as r:
        yield r


@pytest.fixture(scope="module")
def root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explore") / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return root


def env(redis: PrivateRedis, share: str) -> dict[str, str]:
    return {"PROGSEARCH_REDIS_URL": redis.url, "PROGSEARCH_EXPLORE_SHARE": share,
            "PROGSEARCH_EXPLORE_DEPTH": str(DEPTH), "PROGSEARCH_CLICK_TRAIN_SECONDS": "0"}


@pytest.fixture(scope="module")
def explored(root: Path, redis: PrivateRedis, http: httpx.Client) -> Iterator[ServerProcess]:
    with running_server(root, root.parent / "explored.log", env=env(redis, "1")) as s:
        s.wait_ready(http)
        yield s


@pytest.fixture(scope="module")
def plain(root: Path, redis: PrivateRedis, explored: ServerProcess, http: httpx.Client
          ) -> Iterator[ServerProcess]:
    with running_server(root, root.parent / "plain.log", env=env(redis, "0")) as s:
        s.wait_ready(http)
        yield s


def phases(http: httpx.Client, server: ServerProcess, q: str, k: int
           ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each phase's event data by name, and `done`'s."""
    status, events = read_stream(http, f"{server.url}/search/stream?q={quote(q)}&k={k}")
    assert status == 200
    assert [e.event for e in events] == [*PHASES, "done"], [e.event for e in events]
    return {e.event: e.data for e in events[:-1]}, events[-1].data


def ids(data: dict[str, Any]) -> list[str]:
    return [str(h["id"]) for h in data["hits"]]


def explored_count(http: httpx.Client, server: ServerProcess) -> float:
    text = http.get(f"{server.url}/metrics").text
    found = re.search(r"^progsearch_explored_searches_total (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def test_an_explored_stream_sends_k_hits_and_one_deeper_candidate_last(
        http: httpx.Client, explored: ServerProcess, plain: ServerProcess) -> None:
    deep, _ = phases(http, plain, "rain jacket", K + DEPTH)  # the answer for k + depth
    for _ in range(100):  # its cache writes run after the answer: wait until they are in
        if phases(http, plain, "rain jacket", K + DEPTH)[1]["cached"]:
            break
    matched = len(deep["keyword"]["hits"])  # the keyword phase lists the words' matches only
    assert len(deep["semantic"]["hits"]) == len(deep["enhanced"]["hits"]) == K + DEPTH
    before = explored_count(http, explored)
    sent, done = phases(http, explored, "rain jacket", K)
    for name in PHASES:
        n = min(K, matched) if name == "keyword" else K
        assert sent[name]["k"] == K and len(sent[name]["hits"]) == n
        assert [h["rank"] for h in sent[name]["hits"]] == list(range(1, n + 1))
    assert ids(sent["keyword"]) == ids(deep["keyword"])[:K]
    assert ids(sent["semantic"]) == ids(deep["semantic"])[:K]
    final, pool = ids(sent["enhanced"]), ids(deep["enhanced"])
    inserted = [d for d in final if d in pool[K:]]
    assert len(inserted) == 1 and len(set(final)) == K
    assert [d for d in final if d != inserted[0]] == pool[: K - 1]  # the rest, in order
    # previous ranks are ranks in what the client was sent before
    for name, before_name in (("semantic", "keyword"), ("enhanced", "semantic")):
        earlier = ids(sent[before_name])
        for hit in sent[name]["hits"]:
            expected = earlier.index(hit["id"]) + 1 if hit["id"] in earlier else None
            assert hit["previous_rank"] == expected, (name, hit)
    # the deep answer was computed (and cached) by the plain server: k + depth is its key
    assert all(sent[p]["cached"] for p in PHASES) and done["cached"]
    assert explored_count(http, explored) == before + 1
    assert explored_count(http, plain) == 0


def click(http: httpx.Client, server: ServerProcess, search_id: str, doc: str
          ) -> httpx.Response:
    body = orjson.dumps({"search_id": search_id, "doc_id": doc, "kind": "click"})
    headers = {"Content-Type": "application/json", "X-Forwarded-For": "10.0.1.1"}
    for _ in range(100):  # the search is remembered once the answer is sent
        r = http.post(f"{server.url}/events", content=body, headers=headers)
        if r.status_code != 404:
            break
    return r


def test_the_search_is_remembered_with_the_order_sent(
        http: httpx.Client, explored: ServerProcess, plain: ServerProcess, root: Path) -> None:
    q = "warm winter coat"
    reference, _ = phases(http, plain, q, K)
    sent, done = phases(http, explored, q, K)
    final = ids(sent["enhanced"])
    doc = next(d for d in final if d not in ids(reference["enhanced"]))  # the explored one
    r = click(http, explored, done["search_id"], doc)
    assert r.status_code == 202, r.text
    log = ClickLog.open(root)
    try:
        session = next(s for s in log.sessions() if s.shown.search_id == done["search_id"])
    finally:
        log.close()
    assert list(session.shown.shown) == final
    assert session.clicked() == {doc: final.index(doc) + 1}  # its displayed rank


def test_cached_answers_of_plain_searches_are_unchanged(
        http: httpx.Client, explored: ServerProcess, plain: ServerProcess) -> None:
    q = "leather boots"
    first, _ = phases(http, plain, q, K)
    deep_first, _ = phases(http, plain, q, K + DEPTH)
    sent, _ = phases(http, explored, q, K)
    again, _ = phases(http, plain, q, K)
    deep_again, _ = phases(http, plain, q, K + DEPTH)
    for name in PHASES:
        assert again[name]["cached"] and deep_again[name]["cached"]
        assert again[name]["hits"] == first[name]["hits"]
        assert deep_again[name]["hits"] == deep_first[name]["hits"]
    assert ids(sent["enhanced"]) != ids(first["enhanced"])  # the explored one differed


def test_follows_and_the_json_answer_are_not_explored(
        http: httpx.Client, explored: ServerProcess, plain: ServerProcess) -> None:
    q = "hiking backpack"
    reference, _ = phases(http, plain, q, K)
    before = explored_count(http, explored)
    r = http.get(f"{explored.url}/search", params={"q": q, "k": K})
    assert r.status_code == 200 and ids(r.json()) == ids(reference["keyword"])
    url = f"{explored.url}/search/stream?q={quote(q)}&k={K}&follow=1"
    got: list[Event] = []
    with connect_sse(http, "GET", url) as source:  # a follow stays open after done
        for e in source.iter_sse():
            if e.data:
                got.append(Event(e.event, e.id, orjson.loads(e.data), e.retry))
            if e.event == "done":
                break
    final = next(e.data for e in got if e.event == "enhanced")
    assert ids(final) == ids(reference["enhanced"])
    assert explored_count(http, explored) == before
