"""The SSE stream of one search: each phase of the registry in order, then `done` (protocol 1).

Event ids are `{index version}.{sequence}`, the sequence fixed per phase (keyword 1,
semantic 2, enhanced 3) and `done` one past the last phase (4). An `error` event takes the
id of the phase it replaces, so a client resuming with `Last-Event-ID` gets exactly the
phases after the last one it saw. An id from another index version restarts the stream; one
at or past `done` gets 204, which tells an EventSource to stop reconnecting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from app.explore import sent_payload
from app.metrics import Metrics
from app.params import SearchParams
from app.phases import Phase, PhaseError, Registry
from app.search import PhaseResult, Searcher

__all__ = ["PROTOCOL", "DroppedStreamFilter", "PhaseStream", "phase_events", "resume_after"]

log = logging.getLogger(__name__)

PROTOCOL = 1
INCOMPLETE = "ASGI callable returned without completing response"
"""What uvicorn logs, as an error, when an app returns before its response is complete."""

_dropped: ContextVar[bool] = ContextVar("progsearch_stream_dropped", default=False)
"""Set in the request's own context when its stream was dropped (read by the log filter)."""


def resume_after(last_event_id: str | None, version: str, phases: Registry) -> int:
    """The sequence number already seen by a reconnecting client (0: send everything)."""
    if not last_event_id:
        return 0
    seen_version, _, seq = last_event_id.strip().rpartition(".")
    if seen_version != version or not seq.isdigit():
        return 0
    return min(int(seq), phases.done)


def _event(name: str, version: str, seq: int, data: bytes, retry: int | None
           ) -> ServerSentEvent:
    return ServerSentEvent(data=data.decode(), event=name, id=f"{version}.{seq}", retry=retry)


async def phase_events(searcher: Searcher, params: SearchParams, seen: int,
                       retry_ms: int) -> AsyncIterator[ServerSentEvent]:
    log_query = seen == 0  # a resumed stream was counted when it began
    start = time.perf_counter()
    version = searcher.engine.version
    phases = searcher.phases
    wanted = phases.after(seen)
    retry: int | None = retry_ms
    timings: dict[str, float] = {}
    errors: list[str] = []
    sent: list[tuple[Phase, PhaseResult]] = []
    all_cached = True
    # An explored stream computes its phases for a deeper k and sends them cut back to k,
    # the final one in the explored order (`app.explore`).
    explorer = searcher.explorer
    explore = explorer.wants(params, seen)
    query = await searcher.begin(explorer.deep(params) if explore else params, wanted)
    for phase in wanted:
        try:
            result: PhaseResult = await searcher.run(phase, query)
            if explore:
                result = _explored(searcher, result, params.k, phase is wanted[-1])
        except PhaseError as exc:
            failure = exc
        except Exception:  # one phase failing must not end the stream
            # The exception goes to the log only: its type and text may tell of the server.
            log.exception("%s phase failed", phase.name)
            failure = PhaseError(phase.name, "failed", f"the {phase.name} phase failed")
        else:
            timings[phase.name] = round(result.took_ms, 3)
            sent.append((phase, result))
            all_cached = all_cached and result.cached
            yield _event(phase.name, version, phase.seq, result.body(), retry)
            retry = None
            if log_query:  # counted after the first event, which must not wait for it
                searcher.log_query(params)
                log_query = False
            continue
        errors.append(phase.name)
        all_cached = False
        searcher.metrics.errors.labels(failure.code).inc()
        yield _event("error", version, phase.seq, orjson.dumps(failure.payload()), retry)
        retry = None
    if log_query:
        searcher.log_query(params)
    done = {
        "protocol": PROTOCOL,
        "index_version": version,
        "phases": timings,
        "errors": errors,
        "total_ms": round((time.perf_counter() - start) * 1000, 3),
        "cached": all_cached and bool(timings),
        "search_id": searcher.remember_search(params, sent),
    }
    yield _event("done", version, phases.done, orjson.dumps(done), retry)


def _explored(searcher: Searcher, result: PhaseResult, k: int, final: bool) -> PhaseResult:
    """A phase of an explored stream as it is sent: k hits, the final phase's in the explored
    order (counted when it shows a deeper candidate). It stays `cached` if it came from the
    cache: the deep answer did."""
    payload = result.payload if result.payload is not None else orjson.loads(result.raw or b"{}")
    order = searcher.explorer.order(len(payload.get("hits", ())), k) if final else None
    sent, explored = sent_payload(payload, k, order)
    if explored:
        searcher.metrics.explored.inc()
    if result.raw is not None:
        return PhaseResult(None, orjson.dumps(sent), result.took_ms)
    return PhaseResult(sent, None, result.took_ms)


class PhaseStream(EventSourceResponse):
    """The stream's response. A client that takes no event within `send_timeout` is dropped
    (sse-starlette raises `SendTimeoutError`): that is the client's doing, so it is one log
    line and the error code `client_timeout`, not an internal error with its traceback."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], *, metrics: Metrics,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, self._bounded(send))
        except SendTimeoutError:
            log.info("dropped a stream whose client took no event for %s s", self.send_timeout)
            self.metrics.errors.labels("client_timeout").inc()
            # The response cannot be completed (that would be one more send to the client
            # that takes none), so uvicorn will say so: `DroppedStreamFilter` knows why.
            _dropped.set(True)


    def _bounded(self, send: Send) -> Send:
        """`send` with the response's last message under `send_timeout` too: sse-starlette
        bounds each event's send but not the empty one that ends the body, and with the
        client's window full that one waits for it forever (a stream whose last event just
        fitted in the buffers was never dropped)."""
        timeout = self.send_timeout

        async def bounded(message: Message) -> None:
            if timeout is None or message["type"] != "http.response.body" or \
                    message.get("more_body", False):
                await send(message)
                return
            with anyio.move_on_after(timeout) as scope:
                await send(message)
            if scope.cancel_called:
                raise SendTimeoutError()

        return bounded


class DroppedStreamFilter(logging.Filter):
    """Drops uvicorn's "returned without completing response" error for a stream that
    `PhaseStream` dropped, which it has logged already; installed on `uvicorn.error` by the
    app's lifespan. The mark lives in the request's context, so any other incomplete
    response is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_dropped.get() and record.getMessage().startswith(INCOMPLETE))
