"""A per-client rate limit, with the `limits` library's moving window.

With `PROGSEARCH_REDIS_URL` set the window lives in Redis (one limit for a client whichever
server it reaches); otherwise in this process. A Redis that fails or does not answer within
twice `PROGSEARCH_REDIS_TIMEOUT` raises `LimitStoreError`: the caller refuses (503) rather
than letting everything through.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

__all__ = ["ClientLimit", "LimitStoreError"]

KEY_PREFIX = "ps1:limit"


class LimitStoreError(Exception):
    """The rate limit's storage (Redis) cannot be reached now."""


class ClientLimit:
    """`rate` (e.g. "120/minute") per client address, for one kind of request (`name`)."""

    def __init__(self, name: str, rate: str, redis_url: str | None = None,
                 timeout: float = 0.05) -> None:
        self.name = name
        self.item: RateLimitItem = parse(rate)
        self.timeout = timeout
        self._pool: aioredis.ConnectionPool | None = None
        storage: Storage
        if redis_url:
            self._pool = aioredis.ConnectionPool.from_url(
                redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            # Our own pool, so that `close` can close its connections.
            pool: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(f"async+{redis_url}", wrap_exceptions=True,
                                   implementation="redispy", key_prefix=KEY_PREFIX, **pool)
        else:
            storage = MemoryStorage()
        self.backend = "redis" if redis_url else "memory"
        self._limiter = MovingWindowRateLimiter(storage)

    async def take(self, client: str, cost: int = 1) -> int | None:
        """Take `cost` from `client`'s allowance: None when it had that much, else the seconds
        until it has (for `Retry-After`)."""
        try:
            async with asyncio.timeout(self.timeout * 2 if self._pool is not None else None):
                if await self._limiter.hit(self.item, self.name, client, cost=cost):
                    return None
                stats = await self._limiter.get_window_stats(self.item, self.name, client)
        except (StorageError, RedisError, OSError, TimeoutError) as exc:
            raise LimitStoreError(f"{type(exc).__name__}") from None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(RedisError, OSError):  # a dead connection closes too
                await self._pool.aclose()
