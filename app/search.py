"""The phases as the service runs them: cache first, single flight on a miss, a deadline each.

A phase result is cached as the JSON of its payload, under
`ps1:{index version}:{phase}:{k}:{query digest}`; query vectors under
`ps1:emb:{encoder fingerprint}:{query digest}`. A new index version makes the old phase
entries unreachable without any scan, and they expire with their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import orjson

from app.cache import Cache
from app.engine import Engine, KeywordState, SemanticState
from app.jobs import JobError, Jobs
from app.metrics import Metrics
from app.params import SearchParams
from app.settings import Settings
from app.singleflight import SingleFlight

__all__ = ["EMBEDDING", "QUERY_LOG", "PhaseError", "PhaseResult", "Searcher"]

log = logging.getLogger(__name__)

# The keyword phase runs on the event loop when the corpus is small enough to score in well
# under a millisecond; a thread hop would cost more than it saves. Larger corpora use threads.
INLINE_DOCS = 200_000
QUERY_LOG = "ps1:querylog"
EMBEDDING = "embedding"
"""Looked up like a phase: the cached query vector."""
Vector = np.ndarray[Any, np.dtype[np.float32]]


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a background task's exception (the phase that awaits it reports it)."""
    if not task.cancelled():
        task.exception()


class PhaseError(Exception):
    def __init__(self, phase: str, code: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.code = code
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"phase": self.phase, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class PhaseResult:
    payload: dict[str, Any] | None
    """A payload computed by this request; None when it came from the cache as `raw`."""
    raw: bytes | None
    """The cached JSON of the payload, sent as it is (no decoding and encoding again)."""
    took_ms: float

    @property
    def cached(self) -> bool:
        return self.raw is not None

    def body(self) -> bytes:
        """The payload's JSON with `took_ms` and `cached` added."""
        took = round(self.took_ms, 3)
        if self.raw is not None:
            return self.raw[:-1] + b',"took_ms":%s,"cached":true}' % repr(took).encode()
        assert self.payload is not None
        return orjson.dumps({**self.payload, "took_ms": took, "cached": False})


class Searcher:
    def __init__(self, engine: Engine, cache: Cache, metrics: Metrics, settings: Settings,
                 jobs: Jobs) -> None:
        self.engine = engine
        self.jobs = jobs
        self.cache = cache
        self.metrics = metrics
        self.settings = settings
        self._flights: SingleFlight[Any] = SingleFlight()
        self._writes: set[asyncio.Task[None]] = set()
        self._semantic_limit = anyio.CapacityLimiter(settings.encoder_concurrency)

    def key(self, phase: str, params: SearchParams) -> str:
        """The cache key of a phase's payload, or of the query vector for `EMBEDDING`."""
        if phase == EMBEDDING:
            return f"ps1:emb:{self.engine.encoder_fingerprint}:{params.digest}"
        return f"ps1:{self.engine.version}:{phase}:{params.k}:{params.digest}"

    def _store(self, key: str, payload: dict[str, Any]) -> None:
        """Write to the cache in the background: the client does not wait for it."""
        task = asyncio.ensure_future(self.cache.set(key, orjson.dumps(payload)))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def log_query(self, params: SearchParams) -> None:
        """Count the query in the query log (in the background), for precomputation."""
        task = asyncio.ensure_future(self.cache.count(QUERY_LOG, params.log_member))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def lookup(self, phases: list[str], params: SearchParams) -> dict[str, bytes]:
        """Cached payloads (their JSON) of several phases, in one round trip; `EMBEDDING`
        among the phases also looks up the query vector (its float32 bytes)."""
        values = await self.cache.get_many([self.key(p, params) for p in phases])
        found = {}
        for phase, value in zip(phases, values, strict=True):
            self.metrics.cache_requests.labels(phase, "miss" if value is None else "hit").inc()
            if value is None:
                continue
            if phase == EMBEDDING:
                if len(value) % 4 == 0:
                    found[phase] = value
            elif value[:1] == b"{" and value[-1:] == b"}":
                found[phase] = value
        return found

    # -- keyword ------------------------------------------------------------------------
    def _keyword_work(self, params: SearchParams) -> tuple[dict[str, Any], KeywordState]:
        state = self.engine.keyword_state(params, self.settings.candidates)
        return self.engine.keyword_payload(params, state), state

    async def keyword_state(self, params: SearchParams) -> tuple[dict[str, Any], KeywordState]:
        if self.engine.n_docs <= INLINE_DOCS:
            return self._keyword_work(params)
        with anyio.fail_after(self.settings.keyword_timeout):
            return await anyio.to_thread.run_sync(
                self._keyword_work, params, abandon_on_cancel=True
            )

    async def keyword(self, params: SearchParams, cached: bytes | None = None
                      ) -> tuple[PhaseResult, KeywordState | None]:
        start = time.perf_counter()
        if cached is not None:
            return self._done("keyword", cached, True, start), None
        try:
            payload, state = await self.keyword_state(params)
        except TimeoutError:
            raise PhaseError("keyword", "timeout",
                             "the keyword phase passed its deadline") from None
        self._store(self.key("keyword", params), payload)
        return self._done("keyword", payload, False, start), state

    # -- semantic -----------------------------------------------------------------------
    def _check_semantic(self, phase: str = "semantic") -> None:
        state = self.engine.semantic_state
        if state == SemanticState.LOADING:
            raise PhaseError(phase, "warming_up", "the query encoder is still loading")
        if state != SemanticState.READY:
            raise PhaseError(phase, "unavailable", self.engine.semantic_error)

    async def _vector(self, params: SearchParams, looked_up: bool = False) -> Vector:
        """The query vector: from the cache, else encoded once however many ask at a time.
        `looked_up`: the caller's `lookup` already missed it in the cache."""
        text = params.normalized.split("\x00", 1)[0]
        key = self.key(EMBEDDING, params)
        if not looked_up:
            value = (await self.lookup([EMBEDDING], params)).get(EMBEDDING)
            if value is not None:
                return np.frombuffer(value, dtype=np.float32)

        async def encode() -> Vector:
            vector = await anyio.to_thread.run_sync(
                self.engine.encode, text, limiter=self._semantic_limit, abandon_on_cancel=True
            )
            task = asyncio.ensure_future(self.cache.set(key, vector.astype(np.float32).tobytes()))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            return vector

        vector, _ = await self._flights.run(key, encode)
        result: Vector = vector
        return result

    def overloaded(self) -> bool:
        """Query encodings are waiting for the encoder: the cores are saturated. The embedded
        enhanced phase (the costliest, and the last) then gives way, so the keyword and
        semantic phases of the waiting streams meet their deadlines."""
        return self._semantic_limit.statistics().tasks_waiting > 0

    def start_vector(self, params: SearchParams, cached: dict[str, bytes] | None = None
                     ) -> asyncio.Future[Vector] | None:
        """Start computing the query vector now, so the encoder runs on another core while the
        keyword phase is answered (None when the encoder is not ready: the phases report it).
        `cached`: what a `lookup` that included `EMBEDDING` found (the vector, or a miss)."""
        if self.engine.semantic_state != SemanticState.READY:
            return None
        if cached is not None and EMBEDDING in cached:
            done: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
            done.set_result(np.frombuffer(cached[EMBEDDING], dtype=np.float32))
            return done
        task = asyncio.ensure_future(self._vector(params, looked_up=cached is not None))
        task.add_done_callback(_consume)
        return task

    async def _query_vector(self, params: SearchParams, started: asyncio.Future[Vector] | None
                            ) -> Vector:
        if started is not None:
            return await asyncio.shield(started)
        return await self._vector(params)

    async def semantic(self, params: SearchParams, state: KeywordState | None,
                       cached: bytes | None = None,
                       vector_task: asyncio.Future[Vector] | None = None) -> PhaseResult:
        start = time.perf_counter()
        if cached is not None:
            return self._done("semantic", cached, True, start)
        self._check_semantic()
        key = self.key("semantic", params)

        async def work() -> dict[str, Any]:
            vector = await self._query_vector(params, vector_task)
            kw = state
            if kw is None:  # the keyword phase came from the cache: rebuild its candidates
                kw = self.engine.keyword_state(params, self.settings.candidates)
            return await anyio.to_thread.run_sync(
                self.engine.semantic_payload, params, kw, vector, abandon_on_cancel=True
            )

        try:
            with anyio.fail_after(self.settings.semantic_timeout):
                payload, _ = await self._flights.run(key, work)
        except TimeoutError:
            raise PhaseError("semantic", "timeout",
                             "the semantic phase passed its deadline") from None
        self._store(key, payload)
        return self._done("semantic", payload, False, start)

    # -- enhanced -----------------------------------------------------------------------
    async def enhanced(self, params: SearchParams, cached: bytes | None = None,
                       vector_task: asyncio.Future[Vector] | None = None) -> PhaseResult:
        start = time.perf_counter()
        if cached is not None:
            return self._done("enhanced", cached, True, start)
        if not self.engine.has_passages:
            raise PhaseError("enhanced", "unavailable",
                             "this index has no passages; rebuild it without --no-passages")
        self._check_semantic("enhanced")
        if self.jobs.mode == "embedded" and self.overloaded():
            raise PhaseError("enhanced", "overloaded",
                             "the server is busy encoding queries; the enhanced phase was skipped")
        key = self.key("enhanced", params)
        deadline = self.settings.enhanced_timeout

        async def work() -> dict[str, Any]:
            vector = await self._query_vector(params, vector_task)
            request = {"q": params.q, "k": params.k, "prefix": params.prefix,
                       "vector": vector.tolist(), "version": self.engine.version}
            return await self.jobs.enhance(request, deadline)

        try:
            with anyio.fail_after(deadline):
                payload, _ = await self._flights.run(key, work)
        except TimeoutError:
            raise PhaseError("enhanced", "timeout",
                             "the enhanced phase passed its deadline") from None
        except JobError as exc:
            raise PhaseError("enhanced", exc.code, exc.message) from None
        self._store(key, payload)
        return self._done("enhanced", payload, False, start)

    def _done(self, phase: str, payload: dict[str, Any] | bytes, cached: bool,
              start: float) -> PhaseResult:
        took = time.perf_counter() - start
        self.metrics.phase_seconds.labels(phase, "cache" if cached else "computed").observe(took)
        if isinstance(payload, bytes):
            return PhaseResult(None, payload, took * 1000)
        return PhaseResult(payload, None, took * 1000)

    async def flush(self) -> None:
        """Wait for the cache writes started so far."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        await self._flights.drain()
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
