"""A Redis connection for what may do without Redis (the prediction cache, the recent
searches): calls bounded by a timeout, and after a failure Redis skipped for a short
backoff, so a dead or paused server costs one timeout per backoff period, not one per
request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["REDIS_ERRORS", "RedisLink"]

log = logging.getLogger(__name__)

T = TypeVar("T")
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a call through the link may raise when Redis is unreachable, slow or refusing."""


class RedisLink:
    def __init__(self, url: str, timeout: float, backoff: float, skipping: str) -> None:
        """``skipping``: what is skipped during the backoff, for the log ("the cache")."""
        self.timeout = timeout
        self.backoff = backoff
        self._skipping = skipping
        self._down_until = 0.0
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=0,
        )

    def usable(self) -> bool:
        """Not within the backoff after a failure."""
        return time.monotonic() >= self._down_until

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed: logged once per backoff period, then skipped for it."""
        if self.usable():
            log.warning("redis %s failed (%s: %s); skipping %s for %.1f s",
                        what, type(exc).__name__, exc, self._skipping, self.backoff)
        self._down_until = time.monotonic() + self.backoff

    async def call(self, work: Awaitable[T], timeout: float | None = None) -> T:
        """``work`` bounded as a whole (connection set-up and retries included): twice the
        socket timeout unless ``timeout`` is given."""
        return await asyncio.wait_for(work, self.timeout * 2 if timeout is None else timeout)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (RedisError, OSError) as exc:  # closing a dead connection is not an error
            log.debug("redis close: %s", exc)
