"""The prediction cache: one interface, two backends.

`RedisCache` is used when `PROGSEARCH_REDIS_URL` is set, `MemoryCache` (cachetools' LRU
with a TTL) otherwise. A cache is an optimisation, never a dependency: every Redis failure or
timeout is logged, counted and answered as a miss, and after a failure Redis is skipped for a
short backoff so a dead or paused server costs one timeout per backoff period, not one per
request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from cachetools import TTLCache

from app.metrics import Metrics
from app.redis_link import REDIS_ERRORS, RedisLink

__all__ = ["Cache", "MemoryCache", "RedisCache", "make_cache"]

log = logging.getLogger(__name__)


class Cache(Protocol):
    backend: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes) -> None: ...

    async def count(self, key: str, member: str) -> None:
        """Add one to `member`'s count in the counter `key` (the query log)."""
        ...

    async def top(self, key: str, n: int) -> list[str]:
        """The `n` members of the counter `key` with the highest counts."""
        ...

    async def close(self) -> None: ...


class MemoryCache:
    """LRU with a TTL (`cachetools.TTLCache`: a read makes an entry the most recent; expired
    entries are dropped on the next write), for one process. Not thread-safe: used from the
    event loop only."""

    backend = "memory"

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._items: TTLCache[str, bytes] = TTLCache(maxsize=size, ttl=ttl, timer=time.monotonic)
        self._counters: dict[str, Counter[str]] = {}

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # `TTLCache.get` looks a key up twice (`in`, then the item), each with its clock read;
        # this is every request's first step, so once.
        items = self._items
        found: list[bytes | None] = []
        for key in keys:
            try:
                found.append(items[key])
            except KeyError:
                found.append(None)
        return found

    async def set(self, key: str, value: bytes) -> None:
        self._items[key] = value

    async def count(self, key: str, member: str) -> None:
        counter = self._counters.setdefault(key, Counter())
        counter[member] += 1
        if len(counter) > 4 * self.size:  # keep the log bounded: drop the rarest half
            for name, _ in counter.most_common()[len(counter) // 2:]:
                del counter[name]

    async def top(self, key: str, n: int) -> list[str]:
        return [m for m, _ in self._counters.get(key, Counter()).most_common(n)]

    async def close(self) -> None:
        self._items.clear()


class RedisCache:
    backend = "redis"

    def __init__(self, url: str, ttl: float, timeout: float, backoff: float,
                 metrics: Metrics) -> None:
        self.ttl_ms = max(1, int(ttl * 1000))
        self.metrics = metrics
        self._redis = RedisLink(url, timeout, backoff, "the cache")
        self._client = self._redis.client

    def _failed(self, what: str, exc: BaseException) -> None:
        self.metrics.cache_failures.labels("redis").inc()
        self._redis.failed(what, exc)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys or not self._redis.usable():
            return [None] * len(keys)
        try:
            values = await self._redis.call(self._client.mget(list(keys)))
        except REDIS_ERRORS as exc:
            self._failed("get", exc)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) else None for v in values]

    async def set(self, key: str, value: bytes) -> None:
        if not self._redis.usable():
            return
        try:
            await self._redis.call(self._client.set(key, value, px=self.ttl_ms))
        except REDIS_ERRORS as exc:
            self._failed("set", exc)

    async def count(self, key: str, member: str) -> None:
        if not self._redis.usable():
            return
        try:
            await self._redis.call(self._client.zincrby(key, 1, member))
        except REDIS_ERRORS as exc:
            self._failed("count", exc)

    async def claim(self, key: str) -> bool:
        """Set `key` if absent (for a day): true for exactly one caller across processes."""
        try:
            done = await self._redis.call(self._client.set(key, b"1", nx=True, ex=86_400), 5.0)
        except REDIS_ERRORS as exc:
            self._failed("claim", exc)
            return False
        return bool(done)

    async def top(self, key: str, n: int) -> list[str]:
        try:
            members = await self._redis.call(self._client.zrevrange(key, 0, n - 1), 5.0)
        except REDIS_ERRORS as exc:
            self._failed("top", exc)
            return []
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def close(self) -> None:
        await self._redis.close()


def make_cache(redis_url: str | None, *, size: int, ttl: float, timeout: float,
               backoff: float, metrics: Metrics) -> Cache:
    if redis_url:
        return RedisCache(redis_url, ttl, timeout, backoff, metrics)
    return MemoryCache(size, ttl)
