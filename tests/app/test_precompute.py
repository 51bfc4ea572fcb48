"""Precomputed popular queries: the query log, precompute into the cache, the version claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from app.cache import MemoryCache, RedisCache
from app.engine import Engine
from app.jobs import EmbeddedJobs
from app.metrics import Metrics
from app.params import SearchParams
from app.precompute import claim_version, precompute
from app.search import QUERY_LOG, Searcher
from app.settings import Settings
from index.snapshot import resolve_version
from tests.redis_server import private_redis

pytestmark = [pytest.mark.anyio, pytest.mark.model]

PHASES = ["keyword", "semantic", "enhanced"]


@pytest.fixture(scope="module")
def engine(sample_root: Path) -> Engine:
    e = Engine.open(sample_root)
    e.load_encoder()
    return e


async def test_precompute_fills_every_phase_of_the_most_frequent_queries(engine: Engine) -> None:
    cache = MemoryCache(size=1000, ttl=600)
    jobs = EmbeddedJobs(engine)
    searcher = Searcher(engine, cache, Metrics(), Settings(), jobs)
    counts = {"hiking boots": 5, "espresso": 3, "desk lamp": 1}
    for q, n in counts.items():
        for _ in range(n):
            searcher.log_query(SearchParams(q, 10, False))
    await searcher.flush()
    assert await cache.top(QUERY_LOG, 2) == [
        SearchParams("hiking boots", 10, False).log_member,
        SearchParams("espresso", 10, False).log_member,
    ]
    assert await precompute(searcher, top=2) == 2
    for q, cached in [("hiking boots", True), ("espresso", True), ("desk lamp", False)]:
        found = await searcher.lookup(PHASES, SearchParams(q, 10, False))
        assert (set(found) == set(PHASES)) is cached, q
    await jobs.close()


async def test_only_one_process_claims_a_version(engine: Engine) -> None:
    with private_redis() as server:
        caches = [RedisCache(server.url, 60, 1.0, 0.0, Metrics()) for _ in range(3)]
        searchers = [Searcher(engine, c, Metrics(), Settings(), EmbeddedJobs(engine))
                     for c in caches]
        claims = [await claim_version(s) for s in searchers]
        assert claims == [True, False, False]
        for s in searchers:
            await s.jobs.close()
            await s.cache.close()


def test_precompute_command_fills_redis(sample_root: Path) -> None:
    version = resolve_version(sample_root).name
    with private_redis() as server:
        client = redis.Redis.from_url(server.url)
        client.zincrby(QUERY_LOG, 4, SearchParams("tea kettle", 10, False).log_member)
        client.zincrby(QUERY_LOG, 2, SearchParams("yoga", 5, True).log_member)
        run = subprocess.run(
            [sys.executable, "-m", "app.cli", "precompute", str(sample_root), "--top", "5",
             "--redis-url", server.url],
            capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert "precomputed 2 queries" in run.stdout
        keys = sorted(k.decode().rsplit(":", 1)[0] for k in client.keys(f"ps1:{version}:*"))
        assert keys == sorted(f"ps1:{version}:{p}:{k}" for p in PHASES for k in (5, 10))


def test_a_write_gets_the_popular_queries_precomputed_for_the_new_version(
    sample_root: Path, tmp_path: Path
) -> None:
    import shutil
    import time

    from starlette.testclient import TestClient

    from app.server import create_app
    from tests.app.test_api import wait_ready
    from tests.sse import read_stream

    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    with private_redis() as server:
        settings = Settings(index=root, redis_url=server.url, api_key="k", precompute_top=3,
                            precompute_interval=0.1)
        with TestClient(create_app(settings)) as c:
            wait_ready(c)
            for _ in range(3):
                read_stream(c, "/search/stream?q=tea+kettle")
            r = c.post("/documents", headers={"X-API-Key": "k"},
                       json={"id": "n1", "title": "Copper tea kettle", "text": "Whistles."})
            assert r.status_code == 201
            deadline = time.monotonic() + 60
            while not c.get("/documents/n1").json()["embedded"]:  # the last change
                assert time.monotonic() < deadline
                time.sleep(0.05)
            version = c.get("/readyz").json()["index_version"]
            assert "+" in version
            client = redis.Redis.from_url(server.url)
            while len(client.keys(f"ps1:{version}:*")) < len(PHASES):
                assert time.monotonic() < deadline, client.keys("ps1:*")
                time.sleep(0.05)
            _, events = read_stream(c, "/search/stream?q=tea+kettle")
            assert events[-1].event == "done"
            assert events[-1].data["cached"] is True
            assert events[-1].data["index_version"] == version
            assert "n1" in [h["id"] for h in events[0].data["hits"]]


async def test_embedded_enhanced_phase_gives_way_while_encodings_wait(engine: Engine) -> None:
    import anyio

    from app.phases import ENHANCED
    from app.search import PhaseError

    settings = Settings(encoder_concurrency=1)
    jobs = EmbeddedJobs(engine)
    searcher = Searcher(engine, MemoryCache(size=100, ttl=60), Metrics(), settings, jobs)
    params = SearchParams("hiking boots", 10, False)
    limit = searcher._semantic_limit
    running, waiting = object(), object()
    await limit.acquire_on_behalf_of(running)  # one encoding runs...
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit.acquire_on_behalf_of, waiting)  # ...and another waits its turn
        await anyio.sleep(0.01)
        assert searcher.overloaded()
        with pytest.raises(PhaseError) as info:
            await searcher.answer(ENHANCED, params)
        assert info.value.code == "overloaded"
        limit.release_on_behalf_of(running)
    limit.release_on_behalf_of(waiting)
    assert not searcher.overloaded()
    result = await searcher.answer(ENHANCED, params)
    assert result.payload is not None and result.payload["hits"]
    await jobs.close()
