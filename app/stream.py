"""The SSE stream of one search: `keyword`, `semantic`, `enhanced`, then `done` (protocol 1).

Event ids are `{index version}.{sequence}`, the sequence fixed per phase (keyword 1,
semantic 2, enhanced 3, done 4). An `error` event takes the id of the phase it replaces, so a
client resuming with `Last-Event-ID` gets exactly the phases after the last one it saw. An id
from another index version restarts the stream; one at or past `done` gets 204, which tells
an EventSource to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import orjson
from sse_starlette import ServerSentEvent

from app.params import SearchParams
from app.search import EMBEDDING, PhaseError, PhaseResult, Searcher

__all__ = ["PROTOCOL", "SEQUENCE", "phase_events", "resume_after"]

log = logging.getLogger(__name__)

PROTOCOL = 1
SEQUENCE = {"keyword": 1, "semantic": 2, "enhanced": 3, "done": 4}
PHASES = ("keyword", "semantic", "enhanced")


def resume_after(last_event_id: str | None, version: str) -> int:
    """The sequence number already seen by a reconnecting client (0: send everything)."""
    if not last_event_id:
        return 0
    seen_version, _, seq = last_event_id.strip().rpartition(".")
    if seen_version != version or not seq.isdigit():
        return 0
    return min(int(seq), SEQUENCE["done"])


def _event(name: str, version: str, data: bytes, retry: int | None,
           phase: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(
        data=data.decode(), event=name, id=f"{version}.{SEQUENCE[phase or name]}", retry=retry
    )


async def phase_events(searcher: Searcher, params: SearchParams, seen: int,
                       retry_ms: int) -> AsyncIterator[ServerSentEvent]:
    log_query = seen == 0  # a resumed stream was counted when it began
    start = time.perf_counter()
    version = searcher.engine.version
    wanted = [p for p in PHASES if SEQUENCE[p] > seen]
    retry: int | None = retry_ms
    timings: dict[str, float] = {}
    errors: list[str] = []
    all_cached = True
    needs_vector = any(p in wanted for p in ("semantic", "enhanced"))
    # One round trip to the cache: the phases, and the query vector they may need.
    cached = await searcher.lookup([*wanted, EMBEDDING] if needs_vector else wanted, params)
    state = None
    vector = None
    if any(p in wanted and p not in cached for p in ("semantic", "enhanced")):
        vector = searcher.start_vector(params, cached)
        if vector is not None:
            # Let the vector's task reach the encoder's thread (a cache lookup, then the
            # hand-off) before the keyword phase holds the loop.
            for _ in range(3):
                await asyncio.sleep(0)
    for phase in wanted:
        try:
            result: PhaseResult
            if phase == "keyword":
                result, state = await searcher.keyword(params, cached.get("keyword"))
            elif phase == "semantic":
                result = await searcher.semantic(params, state, cached.get("semantic"), vector)
            else:
                result = await searcher.enhanced(params, cached.get("enhanced"), vector)
        except PhaseError as exc:
            failure = exc
        except Exception:  # one phase failing must not end the stream
            # The exception goes to the log only: its type and text may tell of the server.
            log.exception("%s phase failed", phase)
            failure = PhaseError(phase, "failed", f"the {phase} phase failed")
        else:
            timings[phase] = round(result.took_ms, 3)
            all_cached = all_cached and result.cached
            yield _event(phase, version, result.body(), retry)
            retry = None
            if log_query:  # counted after the first event, which must not wait for it
                searcher.log_query(params)
                log_query = False
            continue
        errors.append(phase)
        all_cached = False
        searcher.metrics.errors.labels(failure.code).inc()
        yield _event("error", version, orjson.dumps(failure.payload()), retry, phase)
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
    }
    yield _event("done", version, orjson.dumps(done), retry)
