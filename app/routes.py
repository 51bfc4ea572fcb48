"""HTTP endpoints. Loaded state comes from the lifespan through `request.state`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.documents import delete_document, get_document, post_documents
from app.engine import Engine, SemanticState
from app.errors import ApiError
from app.events import post_events
from app.follow_hub import FollowHub
from app.follow_stream import follow_events, lookup_resume
from app.metrics import CONTENT_TYPE_LATEST, Metrics
from app.params import SearchParams, parse_search
from app.phases import Capabilities
from app.search import PhaseError, Searcher
from app.settings import Settings
from app.stream import PhaseStream, phase_events, resume_after

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).resolve().parent.parent / "static"
# The page's Content-Security-Policy, like every answer's, is app.middleware.SECURITY_HEADERS.
PAGE_HEADERS = {"Cache-Control": "no-cache"}


def _state(request: Request) -> tuple[Engine, Searcher, Metrics, Settings]:
    s = request.state
    return s.engine, s.searcher, s.metrics, s.settings


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip() for t in header.split(",")}
    return "*" in tags or etag in tags or etag.removeprefix("W/") in tags


async def search(request: Request) -> Response:
    engine, searcher, metrics, settings = _state(request)
    metrics.requests.labels("search").inc()
    params = parse_search(request.scope["query_string"], settings)
    if params.follow:
        raise ApiError(400, "invalid_follow", "follow=1 is for GET /search/stream only")
    await engine.refresh_async()
    params = engine.check(params)  # filter, facets, sort: 400 before any answer
    searcher.log_query(params)
    etag = f'W/"{engine.version}"'
    # private: each answer carries its own search_id (a revalidated answer keeps its id, which
    # names the same results: the ETag is the index version).
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={settings.cache_max_age}"}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    try:
        result = await searcher.answer(searcher.phases.first, params)
    except PhaseError as exc:
        metrics.errors.labels(exc.code).inc()
        return JSONResponse({"error": exc.payload()}, status_code=503)
    search_id = searcher.remember_search(params, [(searcher.phases.first, result)])
    return Response(result.body({"search_id": search_id}), media_type="application/json",
                    headers=headers)


async def search_stream(request: Request) -> Response:
    engine, searcher, metrics, settings = _state(request)
    metrics.requests.labels("stream").inc()
    params = parse_search(request.scope["query_string"], settings)
    await engine.refresh_async()
    params = engine.check(params)  # filter, facets, sort: 400 before any answer
    last_id = request.headers.get("last-event-id")
    if params.follow:
        return await _follow_stream(request, params, last_id)
    seen = resume_after(last_id, engine.version, searcher.phases)
    if seen >= searcher.phases.done:
        return Response(status_code=204)

    async def events() -> AsyncIterator[ServerSentEvent]:
        metrics.open_streams.inc()
        try:
            async for event in phase_events(searcher, params, seen, settings.retry_ms):
                yield event
        finally:
            metrics.open_streams.dec()

    return _stream(events(), metrics, settings)


async def _follow_stream(request: Request, params: SearchParams, last_id: str | None
                         ) -> Response:
    """A stream that stays open after `done` (`app.follow_stream`): resumed from a stored
    state, or from the phases the client has not seen."""
    engine, searcher, metrics, settings = _state(request)
    hub: FollowHub | None = request.state.follows
    if hub is None:
        raise ApiError(409, "read_only", "this server serves a snapshot folder, not an index "
                       "root: its results never change, so there is nothing to follow")
    resume = await lookup_resume(searcher, params, last_id)
    seen = 0
    version = engine.version
    if resume is not None:
        version = resume.version
    else:  # the phases not seen yet; an id at or past `done` whose state expired: all again
        seen = resume_after(last_id, version, searcher.phases)
        seen = 0 if seen >= searcher.phases.done else seen
    client = request.client.host if request.client is not None else ""
    follow = hub.open(params, client, version)  # 429 before any byte of the stream

    async def events() -> AsyncIterator[ServerSentEvent]:
        metrics.open_streams.inc()
        try:
            async for event in follow_events(searcher, hub, follow, seen, resume,
                                             settings.retry_ms, settings.follow_lifetime):
                yield event
        finally:
            metrics.open_streams.dec()
            hub.close(follow)

    # On shutdown sse-starlette "sets" this: the follow ends, and its stream finishes cleanly
    # within the grace period instead of being cancelled mid-response.
    farewell = cast(anyio.Event, follow.farewell)
    return _stream(events(), metrics, settings, farewell, settings.shutdown_grace)


def _stream(events: AsyncIterator[ServerSentEvent], metrics: Metrics, settings: Settings,
            shutdown: anyio.Event | None = None, grace: float = 0) -> Response:
    return PhaseStream(
        events,
        metrics=metrics,
        ping=settings.ping_seconds,
        send_timeout=settings.send_timeout,
        shutdown_event=shutdown,
        shutdown_grace_period=grace,
        headers={"Cache-Control": "no-store"},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    engine, searcher, _, _ = _state(request)
    await engine.refresh_async()
    caps = Capabilities.of(engine)  # read once: every phase judges the same state
    phases: dict[str, Any] = {p.name: p.readiness(caps).state for p in searcher.phases}
    status = caps.encoder
    body: dict[str, Any] = {
        "ready": True,
        "index_version": engine.version,
        "documents": engine.n_docs,
        "phases": phases,
    }
    if status.state != SemanticState.READY and status.error:
        body["semantic_error"] = status.error
    hub: FollowHub | None = request.state.follows
    if hub is not None:
        body["follows"] = {"open": len(hub), "announcements": hub.announcements}
    return JSONResponse(body)


async def metrics_endpoint(request: Request) -> Response:
    _, _, metrics, _ = _state(request)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


routes = [
    Route("/", page, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    Route("/search", search, methods=["GET"]),
    Route("/search/stream", search_stream, methods=["GET"]),
    Route("/documents", post_documents, methods=["POST"]),
    Route("/documents/{doc_id:path}", get_document, methods=["GET"]),
    Route("/documents/{doc_id:path}", delete_document, methods=["DELETE"]),
    Route("/events", post_events, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
