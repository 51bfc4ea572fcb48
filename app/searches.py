"""Recent searches: what each answered search showed, kept so that an event on it can be
checked and logged (`POST /events`).

A search's `done` event (and a `GET /search` answer) carries its ``search_id``; the search is
remembered as an `app.click_log.Shown` for `PROGSEARCH_CLICK_SEARCH_TTL` seconds:

- `RedisSearches` with `PROGSEARCH_REDIS_URL` set, under ``ps1:search:{search_id}``, so a
  click reaching another server behind the same Redis is accepted;
- `MemorySearches` otherwise: cachetools' `TTLCache`, bounded by `PROGSEARCH_EVENTS_SEARCHES`.

Remembering runs in the background once the answer is sent: a Redis that fails costs the
search nothing (logged, then Redis is skipped for `PROGSEARCH_REDIS_BACKOFF`). Looking a search
up in a Redis that fails raises `SearchStoreError`, which `POST /events` answers with 503.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from cachetools import TTLCache

from app.click_log import Shown
from app.redis_link import REDIS_ERRORS, RedisLink
from app.settings import Settings

__all__ = [
    "KEY_PREFIX",
    "MemorySearches",
    "RecentSearches",
    "RedisSearches",
    "SearchStoreError",
    "decode_shown",
    "encode_shown",
    "make_searches",
    "new_search_id",
    "shown_order",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "ps1:search:"


class SearchStoreError(Exception):
    """The store of recent searches (Redis) cannot be read now."""


def new_search_id() -> str:
    """An unguessable id (128 random bits, URL-safe): knowing one gives no other."""
    return secrets.token_urlsafe(16)


def shown_order(phases: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, tuple[str, ...]]:
    """The phase whose order a client shows at the end, and that order, from the phases
    sent in turn (name, hit ids). A later phase with no hits where an earlier one had some
    did not rank (no words to embed: browsing by filter or sort), so the earlier list stays,
    as the page and the follows keep it."""
    phase, shown = phases[0][0], tuple(phases[0][1])
    for name, ids in phases[1:]:
        if ids or not shown:
            phase, shown = name, tuple(ids)
    return phase, shown


def encode_shown(shown: Shown) -> bytes:
    return orjson.dumps({"query": shown.query, "filter": shown.filter,
                         "shown": list(shown.shown), "model": shown.model, "at": shown.at})


def decode_shown(search_id: str, raw: bytes) -> Shown | None:
    """The search stored as `raw` (None when it is not one: an entry of another version)."""
    try:
        data: dict[str, Any] = orjson.loads(raw)
        return Shown(search_id, str(data["query"]), str(data["filter"]),
                     tuple(str(i) for i in data["shown"]), str(data["model"]),
                     float(data["at"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class RecentSearches(Protocol):
    backend: str

    async def remember(self, shown: Shown) -> None:
        """Keep `shown` for the TTL; never raises (a failure is logged)."""
        ...

    async def find(self, search_id: str) -> Shown | None:
        """The search of that id, None when unknown or expired; `SearchStoreError` when
        the store cannot be read."""
        ...

    async def close(self) -> None: ...


class MemorySearches:
    """Searches of this process only, the oldest dropped past `size`. Used from the event
    loop only (TTLCache is not thread-safe)."""

    backend = "memory"

    def __init__(self, size: int, ttl: float) -> None:
        self._items: TTLCache[str, Shown] = TTLCache(maxsize=size, ttl=ttl, timer=time.monotonic)

    async def remember(self, shown: Shown) -> None:
        self._items[shown.search_id] = shown

    async def find(self, search_id: str) -> Shown | None:
        return self._items.get(search_id)

    async def close(self) -> None:
        self._items.clear()


class RedisSearches:
    """Searches shared by every server behind one Redis."""

    backend = "redis"

    def __init__(self, url: str, ttl: float, timeout: float, backoff: float) -> None:
        self.ttl_ms = max(1, int(ttl * 1000))
        self._redis = RedisLink(url, timeout, backoff, "the recent searches")

    async def remember(self, shown: Shown) -> None:
        if not self._redis.usable():
            return
        try:
            await self._redis.call(self._redis.client.set(
                KEY_PREFIX + shown.search_id, encode_shown(shown), px=self.ttl_ms))
        except REDIS_ERRORS as exc:
            self._redis.failed("write of a recent search", exc)

    async def find(self, search_id: str) -> Shown | None:
        if not self._redis.usable():
            raise SearchStoreError("redis is unreachable")
        try:
            raw = await self._redis.call(self._redis.client.get(KEY_PREFIX + search_id))
        except REDIS_ERRORS as exc:
            self._redis.failed("read of a recent search", exc)
            raise SearchStoreError("redis is unreachable") from None
        return decode_shown(search_id, raw) if isinstance(raw, bytes) else None

    async def close(self) -> None:
        await self._redis.close()


def make_searches(settings: Settings) -> RecentSearches:
    if settings.redis_url:
        return RedisSearches(settings.redis_url, settings.click_search_ttl,
                             settings.redis_timeout, settings.redis_backoff)
    return MemorySearches(settings.events_searches, settings.click_search_ttl)
