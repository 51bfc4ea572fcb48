"""The write path: `POST /documents`, `DELETE /documents/{id}` and `GET /documents/{id}`.

A write is durable before the call returns: the documents go to the delta log (SQLite WAL,
``synchronous=FULL``, one transaction per request), this process applies them at once and
every other process on its next query, so a written document is found by keyword on the very
next search. The embedding work is then handed to the jobs (a Celery worker, or the server's
own pool): until its vectors are stored the document takes part in the keyword phase only.

Writes need `PROGSEARCH_API_KEY` (compared in constant time); they are refused when none is
configured. With a broker configured and unreachable, writes answer 503 and store nothing,
since the embedding they need could not be scheduled.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.bodies import media_type, read_body
from app.engine import Engine
from app.errors import ApiError
from app.jobs import Jobs
from app.settings import Settings
from index.core.errors import SourceError
from index.core.types import Document
from index.delta import DeltaLog
from index.ingest import parse_documents
from index.schema import Schema
from index.sources import check_id

__all__ = ["Writer", "delete_document", "get_document", "post_documents"]

log = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines",
                "application/ndjson")


@dataclass
class Writer:
    """What the write endpoints share: the engine served live, its log, and the jobs."""

    engine: Engine
    log: DeltaLog
    jobs: Jobs
    settings: Settings
    announce: Callable[[int], Awaitable[None]] | None = None
    """Told each write's seq once it is applied here (the follow hub)."""

    @classmethod
    def make(cls, engine: Engine, jobs: Jobs, settings: Settings,
             announce: Callable[[int], Awaitable[None]] | None = None) -> Writer | None:
        if engine.source is None:
            return None
        return cls(engine, engine.source.log, jobs, settings, announce)

    def check_backlog(self) -> None:
        """Refuse writes while more documents wait for their vectors than the setting allows:
        writes faster than embedding would otherwise grow the delta without bound (the
        documents already waiting are embedded and compacted meanwhile)."""
        limit = self.settings.max_pending
        live = self.engine.rankers.live
        if limit <= 0 or live is None or not self.engine.snapshot.has_vectors:
            return
        waiting = live.view().n_waiting
        if waiting >= limit:
            raise ApiError(429, "backlog",
                           f"{waiting} written documents are waiting to be embedded (at most "
                           f"{limit}); nothing was written, retry later",
                           headers={"Retry-After": "2"})

    def pending(self) -> bool:
        """Documents written and still waiting for their vectors (and the index has vectors)."""
        return self.engine.snapshot.has_vectors and bool(self.log.pending_embeddings(1))

    async def after_write(self, seq: int) -> None:
        """Apply the write here, announce it (follows), then schedule its embedding (and a
        compaction when due)."""
        await anyio.to_thread.run_sync(self.engine.refresh)
        if self.announce is not None:
            await self.announce(seq)
        await self.jobs.index_work()


def _writer(request: Request) -> Writer:
    writer: Writer | None = request.state.writer
    if writer is None:
        raise ApiError(409, "read_only",
                       "this server serves a snapshot folder, not an index root: "
                       "documents cannot be written")
    return writer


def _authorize(request: Request, settings: Settings) -> None:
    if not settings.api_key:
        raise ApiError(403, "writes_disabled",
                       "writes are disabled: the server has no PROGSEARCH_API_KEY")
    given = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(401, "unauthorized",
                       "a valid API key is required (Authorization: Bearer KEY, or X-API-Key)")


def _ndjson(request: Request) -> bool | None:
    kind = media_type(request)
    if kind in NDJSON_TYPES:
        return True
    if kind == "application/json":
        return False
    return None


def _parse(body: bytes, ndjson: bool | None, schema: Schema | None = None) -> list[Document]:
    try:
        return parse_documents(body, ndjson=ndjson, schema=schema)
    except SourceError as exc:
        raise ApiError(422, "invalid_document", str(exc)) from None


async def _check_broker(writer: Writer) -> None:
    if not await writer.jobs.available():
        raise ApiError(503, "broker_unavailable",
                       "the task broker is unreachable, so the documents could not be "
                       "embedded; nothing was written, retry later")


async def post_documents(request: Request) -> Response:
    settings: Settings = request.state.settings
    _authorize(request, settings)
    writer = _writer(request)
    body = await read_body(request, settings.max_body_bytes)
    if not body.strip():
        raise ApiError(422, "invalid_document", "the body holds no document")
    docs = await anyio.to_thread.run_sync(_parse, body, _ndjson(request),
                                          writer.engine.snapshot.manifest.schema)
    await writer.engine.refresh_async()  # the embedding done since, seen before counting
    writer.check_backlog()
    await _check_broker(writer)
    seq = await anyio.to_thread.run_sync(writer.log.append, docs)
    await writer.after_write(seq)
    return JSONResponse(
        {"written": len(docs), "seq": seq, "index_version": writer.engine.version},
        status_code=201 if len(docs) == 1 else 200,
    )


def _doc_id(request: Request) -> str:
    """The id in the path, read by the rule that writes follow (`index.sources.check_id`)."""
    try:
        return check_id(request.path_params["doc_id"])
    except ValueError as exc:
        raise ApiError(422, "invalid_id", f"the path's {exc}") from None


async def delete_document(request: Request) -> Response:
    settings: Settings = request.state.settings
    _authorize(request, settings)
    writer = _writer(request)
    doc_id = _doc_id(request)
    if await anyio.to_thread.run_sync(writer.engine.document, doc_id) is None:
        raise ApiError(404, "not_found", f"no document with id {doc_id!r}")
    await _check_broker(writer)
    seq = await anyio.to_thread.run_sync(writer.log.delete, [doc_id])
    await writer.after_write(seq)
    return JSONResponse({"deleted": doc_id, "seq": seq, "index_version": writer.engine.version})


async def get_document(request: Request) -> Response:
    engine: Engine = request.state.engine
    doc_id = _doc_id(request)
    doc = await anyio.to_thread.run_sync(engine.document, doc_id)
    if doc is None:
        raise ApiError(404, "not_found", f"no document with id {doc_id!r}")
    body: dict[str, Any] = {"id": doc.id, "title": doc.title, "text": doc.text,
                            "fields": doc.fields, "index_version": engine.version,
                            "embedded": engine.is_embedded(doc_id)}
    return JSONResponse(body)
