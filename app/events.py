"""`POST /events`: what a user opened among the results of a search, stored in the click log.

The body is one event or a list of at most `PROGSEARCH_EVENTS_BATCH` (a page may send what it
gathered at once); a list is taken whole or refused whole. An event is
``{"search_id", "doc_id", "kind": "click"}`` or ``{..., "kind": "dwell", "dwell_ms": N}``.
Checks, in order, each a 4xx JSON body (`app.errors`) counted in
``progsearch_events_refused_total{code}``:

    409 no_click_log             this server has no index root to keep the log in
    415 unsupported_media_type   the body is not application/json
    413 body_too_large           over PROGSEARCH_EVENTS_MAX_BYTES (app.bodies, as POST /documents)
    400 invalid_json             not JSON
    422 invalid_event            not events of this shape (the message names the item and field)
    429 too_many_events          over PROGSEARCH_EVENTS_RATE for this client address (Retry-After)
    404 unknown_search           no such search_id, or it expired (PROGSEARCH_CLICK_SEARCH_TTL)
    422 not_shown                that search did not show that document
    503 events_unavailable       Redis (searches, rate limit) is unreachable; searches still work

Accepted events answer 202 ``{"accepted": n, "repeated": m}``: a click already stored for that
search and document is counted in ``repeated`` and not stored again.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.bodies import media_type, read_body
from app.click_log import ClickLog, EventKind, Shown
from app.engine import Engine
from app.errors import ApiError
from app.metrics import Metrics
from app.rate_limit import ClientLimit, LimitStoreError
from app.searches import RecentSearches, SearchStoreError
from app.settings import Settings
from index.sources import check_id

__all__ = ["MAX_DWELL_MS", "EventIn", "Events", "parse_events", "post_events"]

log = logging.getLogger(__name__)

MAX_DWELL_MS = 86_400_000
"""A day: a longer dwell is a tab left open, not reading."""
MAX_SEARCH_ID_CHARS = 64
KINDS: tuple[EventKind, ...] = ("click", "dwell")


@dataclass(frozen=True)
class EventIn:
    """One event as a client sent it, checked for shape (not yet against its search)."""

    search_id: str
    doc_id: str
    kind: EventKind
    dwell_ms: int | None = None


def _invalid(where: str, message: str) -> ApiError:
    return ApiError(422, "invalid_event", f"{where}{message}")


def _event(item: Any, where: str) -> EventIn:
    if not isinstance(item, dict):
        raise _invalid(where, "an event is a JSON object")
    unknown = sorted(set(item) - {"search_id", "doc_id", "kind", "dwell_ms"})
    if unknown:
        raise _invalid(where, f"unknown field {unknown[0]!r} (allowed: search_id, doc_id, "
                       "kind, dwell_ms)")
    search_id = item.get("search_id")
    if not isinstance(search_id, str) or not 1 <= len(search_id) <= MAX_SEARCH_ID_CHARS:
        raise _invalid(where, f"'search_id' must be the string a search's answer carries "
                       f"(1 to {MAX_SEARCH_ID_CHARS} characters)")
    doc_id = item.get("doc_id")
    if not isinstance(doc_id, str):
        raise _invalid(where, "'doc_id' must be a string: the id of a hit")
    try:
        doc_id = check_id(doc_id, "doc_id")
    except ValueError as exc:
        raise _invalid(where, str(exc)) from None
    kind = item.get("kind")
    if kind not in KINDS:
        raise _invalid(where, f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    dwell = item.get("dwell_ms")
    if kind == "click":
        if dwell is not None:
            raise _invalid(where, "'dwell_ms' is for kind 'dwell' only")
        return EventIn(search_id, doc_id, "click")
    if isinstance(dwell, bool) or not isinstance(dwell, int) or \
            not 0 <= dwell <= MAX_DWELL_MS:
        raise _invalid(where, f"'dwell_ms' must be an integer from 0 to {MAX_DWELL_MS}")
    return EventIn(search_id, doc_id, "dwell", dwell)


def parse_events(body: bytes, batch: int) -> list[EventIn]:
    """The events of a body: one object, or a list of 1 to `batch` objects."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(data, list):
        return [_event(data, "")]
    if not 1 <= len(data) <= batch:
        raise _invalid("", f"a list holds 1 to {batch} events, not {len(data)}")
    return [_event(item, f"event {i}: ") for i, item in enumerate(data)]


@dataclass
class Events:
    """What `POST /events` needs, made once in the lifespan."""

    searches: RecentSearches
    limit: ClientLimit
    log: ClickLog | None
    metrics: Metrics
    settings: Settings

    @classmethod
    def make(cls, settings: Settings, engine: Engine, searches: RecentSearches,
             metrics: Metrics) -> Events:
        limit = ClientLimit("events", settings.events_rate, settings.redis_url,
                            settings.redis_timeout)
        return cls(searches, limit, open_click_log(engine), metrics, settings)

    async def close(self) -> None:
        await self.limit.close()
        if self.log is not None:
            self.log.close()


def open_click_log(engine: Engine) -> ClickLog | None:
    """The click log of the index root served (None for a snapshot folder, or a root this
    process cannot write to: events are then refused with 409)."""
    root: Path | None = engine.source.root if engine.source is not None else engine.models
    if root is None:
        return None
    try:
        return ClickLog.open(root)
    except (OSError, sqlite3.Error) as exc:
        log.warning("no click log: %s cannot be opened (%s)", root.name, exc)
        return None


async def _searches_of(events: Events, wanted: list[EventIn]) -> dict[str, Shown]:
    found: dict[str, Shown] = {}
    for event in wanted:
        if event.search_id in found:
            continue
        shown = await events.searches.find(event.search_id)
        if shown is None:
            raise ApiError(404, "unknown_search",
                           f"no search {event.search_id!r}: unknown, or answered more than "
                           f"{events.settings.click_search_ttl:g} s ago")
        found[event.search_id] = shown
    for event in wanted:
        if found[event.search_id].rank_of(event.doc_id) is None:
            raise ApiError(422, "not_shown", f"search {event.search_id!r} did not show "
                           f"document {event.doc_id!r}")
    return found


def _store(log_: ClickLog, wanted: list[EventIn], shown: dict[str, Shown]) -> list[bool]:
    """Store the request's events in one transaction; which were new (not a repeated click)."""
    stored = log_.add_all([(shown[e.search_id], e.doc_id, e.kind, e.dwell_ms) for e in wanted])
    return [event is not None for event in stored]


async def _accept(request: Request, events: Events) -> dict[str, int]:
    settings = events.settings
    log_ = events.log
    if log_ is None:
        raise ApiError(409, "no_click_log", "this server serves a snapshot folder, not an "
                       "index root it can write to: there is no click log to keep events in")
    if media_type(request) != "application/json":
        raise ApiError(415, "unsupported_media_type", "events are sent as application/json")
    body = await read_body(request, settings.events_max_bytes)
    wanted = parse_events(body, settings.events_batch)
    client = request.client.host if request.client is not None else ""
    try:
        wait = await events.limit.take(client, len(wanted))
        if wait is not None:
            raise ApiError(429, "too_many_events", f"this address sent more events than "
                           f"{settings.events_rate} allows; retry in {wait} s",
                           headers={"Retry-After": str(wait)})
        shown = await _searches_of(events, wanted)
    except (LimitStoreError, SearchStoreError):
        raise ApiError(503, "events_unavailable", "events cannot be checked now (Redis is "
                       "unreachable); searches still work, retry later") from None
    stored = await anyio.to_thread.run_sync(_store, log_, wanted, shown)
    for event, new in zip(wanted, stored, strict=True):
        if new:
            events.metrics.events_accepted.labels(event.kind).inc()
    accepted = sum(stored)
    return {"accepted": accepted, "repeated": len(stored) - accepted}


async def post_events(request: Request) -> Response:
    events: Events = request.state.events
    events.metrics.requests.labels("events").inc()
    try:
        answer = await _accept(request, events)
    except ApiError as exc:
        events.metrics.events_refused.labels(exc.code).inc()
        raise
    return JSONResponse(answer, status_code=202)
