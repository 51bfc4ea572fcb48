"""The prediction cache backends and single flight, against a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.cache import MemoryCache, RedisCache
from app.metrics import Metrics
from app.singleflight import SingleFlight
from tests.redis_server import free_port, private_redis

pytestmark = pytest.mark.anyio


def _failures(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "progsearch_cache_failures_total", {"backend": "redis"}
    )
    return value or 0.0


async def test_memory_cache_evicts_least_recent_and_expires() -> None:
    cache = MemoryCache(size=2, ttl=60)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get_many(["a"]) == [b"1"]  # "a" is now the most recent
    await cache.set("c", b"3")
    assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    short = MemoryCache(size=2, ttl=0.01)
    await short.set("x", b"1")
    time.sleep(0.02)
    assert await short.get_many(["x"]) == [None]


async def test_memory_cache_keeps_the_last_size_entries_and_expired_ones_make_room() -> None:
    cache = MemoryCache(size=10, ttl=60)
    for i in range(100):
        await cache.set(f"k{i}", str(i).encode())
    values = await cache.get_many([f"k{i}" for i in range(100)])
    assert values == [None] * 90 + [str(i).encode() for i in range(90, 100)]
    short = MemoryCache(size=2, ttl=0.01)
    await short.set("a", b"1")
    await short.set("b", b"2")
    time.sleep(0.02)
    await short.set("c", b"3")
    await short.set("d", b"4")
    assert await short.get_many(["a", "b", "c", "d"]) == [None, None, b"3", b"4"]
    await short.close()
    assert await short.get_many(["c", "d"]) == [None, None]


async def test_redis_cache_round_trip_and_ttl() -> None:
    metrics = Metrics()
    with private_redis() as server:
        cache = RedisCache(server.url, ttl=60, timeout=0.5, backoff=1.0, metrics=metrics)
        await cache.set("k1", b"\x00\xffbytes")
        assert await cache.get_many(["k1", "missing"]) == [b"\x00\xffbytes", None]
        await cache.close()
    assert _failures(metrics) == 0


async def test_redis_down_is_a_miss_then_skipped_during_backoff() -> None:
    metrics = Metrics()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl=60, timeout=0.2, backoff=30,
                       metrics=metrics)
    assert await cache.get_many(["a", "b"]) == [None, None]
    await cache.set("a", b"1")  # skipped: Redis is in backoff
    assert _failures(metrics) == 1
    await cache.close()


async def test_paused_redis_answers_a_miss_within_the_timeout() -> None:
    metrics = Metrics()
    with private_redis() as server:
        cache = RedisCache(server.url, ttl=60, timeout=0.1, backoff=0.0, metrics=metrics)
        await cache.set("k", b"v")
        server.pause()
        try:
            start = time.monotonic()
            assert await cache.get_many(["k"]) == [None]
            waited = time.monotonic() - start
        finally:
            server.resume()
        assert _failures(metrics) == 1
        assert waited < 5  # bounded by the timeout, not hung on the paused server
        # Once the server is back, the cache works again (backoff 0).
        assert await cache.get_many(["k"]) in ([b"v"], [None])
        assert await cache.get_many(["k"]) == [b"v"]
        await cache.close()


async def test_single_flight_runs_concurrent_identical_work_once() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.ensure_future(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one client goes away; the others still get the result
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert calls == 1
    assert [r[0] for r in results] == [42] * 4
    assert all(shared for _, shared in results)  # the cancelled waiter started the work
    assert len(flights) == 0
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
