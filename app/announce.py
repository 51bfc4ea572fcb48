"""Write announcements between server processes, over Redis pub/sub.

Every accepted write publishes its sequence number on `ps1:writes:{root digest}` (one channel
per index root, so two indexes sharing a Redis stay apart). Each server process subscribes in
its lifespan and hands every number to its follow hub, which refreshes its view of the delta
log and matches the new changes against its follows.

Announcements are a hint, never the data: the log is the truth, and a process that missed a
message finds the change at the next one, or when it polls. While Redis is unreachable the
listener says `down` (shown by `/readyz`), retries every `backoff` seconds, and the hub polls
the log itself, so follows keep seeing local and remote writes, a little later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["Announcer", "channel_for"]

log = logging.getLogger(__name__)

LISTEN_POLL = 1.0
"""Seconds one wait for a message lasts (the loop then checks for cancellation)."""


def channel_for(root: Path) -> str:
    digest = hashlib.blake2b(str(Path(root).resolve()).encode(), digest_size=8).hexdigest()
    return f"ps1:writes:{digest}"


class Announcer:
    def __init__(self, url: str, channel: str, *, timeout: float, backoff: float) -> None:
        self.channel = channel
        self.timeout = timeout
        self.backoff = backoff
        self.state = "connecting"
        """`up` while subscribed, `down` after a failure until the next subscription."""
        self._url = url
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, health_check_interval=0,
        )

    @property
    def up(self) -> bool:
        return self.state == "up"

    async def publish(self, seq: int) -> None:
        """Announce a write; a failure is logged and marks the listener's state `down`.
        While down, nothing is published (every process polls the log meanwhile), so a dead
        Redis does not slow writes."""
        if self.state == "down":
            return
        try:
            await asyncio.wait_for(self._client.publish(self.channel, str(seq)),
                                   self.timeout * 2)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("publish", exc)

    async def listen(self, heard: Callable[[int | None], None]) -> None:
        """Call `heard(seq)` for every announcement, until cancelled; `heard(None)` after each
        (re)subscription, since announcements may have been missed before it."""
        while True:
            client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=self.timeout, socket_timeout=LISTEN_POLL * 5,
                retry_on_timeout=False, health_check_interval=0,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout * 4)
                if self.state != "up":
                    log.info("following writes announced on redis %s", self.channel)
                self.state = "up"
                heard(None)
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_POLL)
                    if message is not None and message.get("type") == "message":
                        heard(_seq(message.get("data")))
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("subscription", exc)
            finally:
                await _close(pubsub, client)
            await asyncio.sleep(self.backoff)

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.state != "down":
            log.warning("redis %s for write announcements failed (%s: %s); follows poll the "
                        "log until it is back", what, type(exc).__name__, exc)
        self.state = "down"

    async def close(self) -> None:
        await _close(None, self._client)


def _seq(data: object) -> int | None:
    text = data.decode() if isinstance(data, bytes) else str(data)
    return int(text) if text.isdigit() else None


async def _close(pubsub: object | None, client: aioredis.Redis) -> None:
    try:
        if pubsub is not None:
            await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[attr-defined]
        await asyncio.wait_for(client.aclose(), 1.0)
    except (RedisError, OSError, TimeoutError) as exc:  # closing a dead connection
        log.debug("redis close: %s", exc)
