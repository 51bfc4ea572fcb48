"""The phases as the service runs them: cache first, single flight on a miss, a deadline each.

Every phase goes through `Searcher.run`, written once: the cached payload if the request's
lookup found one; else the phase's readiness and refusal, its computation under its deadline
and shared by concurrent identical requests, the metrics, and the cache write in the
background. What differs between phases is said by the phase objects (`app.phases`).

A phase result is cached as the JSON of its payload, under
`ps1:{phase's cache version}:{phase}:{k}:{query digest}` (the index version, and for the
enhanced phase its installed model's, `Phase.cache_version`); query vectors under
`ps1:emb:{encoder fingerprint}:{query digest}`. A new index version makes the old phase
entries unreachable without any scan, and they expire with their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import orjson

from app.cache import Cache
from app.click_log import Shown
from app.engine import Engine, SemanticState
from app.explore import Explorer
from app.jobs import JobError, Jobs
from app.metrics import Metrics
from app.params import SearchParams
from app.phases import PHASES, Capabilities, Need, Phase, PhaseError, Registry
from app.phases.types import KeptStates
from app.searches import MemorySearches, RecentSearches, new_search_id, shown_order
from app.settings import Settings
from app.singleflight import SingleFlight, consume
from index.core.types import F32

__all__ = ["EMBEDDING", "QUERY_LOG", "PhaseError", "PhaseResult", "Query", "Searcher"]

log = logging.getLogger(__name__)

QUERY_LOG = "ps1:querylog"
EMBEDDING = "embedding"
"""Looked up like a phase: the cached query vector."""


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

    def body(self, extra: Mapping[str, Any] | None = None) -> bytes:
        """The payload's JSON with `took_ms` and `cached` added, and `extra`'s fields."""
        took = round(self.took_ms, 3)
        if self.raw is not None:
            more = b"," + orjson.dumps(extra)[1:-1] if extra else b""
            return self.raw[:-1] + b',"took_ms":%s,"cached":true%s}' % (repr(took).encode(),
                                                                         more)
        assert self.payload is not None
        return orjson.dumps({**self.payload, "took_ms": took, "cached": False, **(extra or {})})

    def ids(self) -> list[str]:
        """The ids of its hits, in their order."""
        data = self.payload if self.payload is not None else orjson.loads(self.raw or b"{}")
        return [str(hit["id"]) for hit in data.get("hits", ())]


class Query(KeptStates):
    """One request's run through the phases: what its lookup found, its query vector (started
    once), and the state its phases keep for the later ones. It is the `Context` the phases
    compute from."""

    def __init__(self, searcher: Searcher, params: SearchParams, cached: dict[str, bytes],
                 vector: asyncio.Future[F32] | None = None) -> None:
        self.searcher = searcher
        self.params = params
        self.cached = cached
        self._vector = vector
        super().__init__()

    @property
    def engine(self) -> Engine:
        return self.searcher.engine

    @property
    def settings(self) -> Settings:
        return self.searcher.settings

    @property
    def jobs(self) -> Jobs:
        return self.searcher.jobs

    async def vector(self) -> F32:
        if self._vector is not None:
            # shield: a phase cancelled at its deadline must not cancel the encoding the
            # next phase of the request (or another request) awaits.
            return await asyncio.shield(self._vector)
        return await self.searcher.vector(self.params)

    def overloaded(self) -> bool:
        return self.searcher.overloaded()


class Searcher:
    def __init__(self, engine: Engine, cache: Cache, metrics: Metrics, settings: Settings,
                 jobs: Jobs, phases: Registry = PHASES,
                 searches: RecentSearches | None = None) -> None:
        self.engine = engine
        self.jobs = jobs
        self.cache = cache
        self.metrics = metrics
        self.settings = settings
        self.phases = phases
        self.searches = searches if searches is not None else MemorySearches(
            settings.events_searches, settings.click_search_ttl)
        """Where answered searches are remembered for `POST /events` (closed with this)."""
        self.explorer = Explorer.of(settings)
        """Which streams are explored, and its random source."""
        self._flights: SingleFlight[Any] = SingleFlight()
        self._writes: set[asyncio.Task[None]] = set()
        self._semantic_limit = anyio.CapacityLimiter(settings.encoder_concurrency)

    def key(self, phase: str, params: SearchParams) -> str:
        """The cache key of a phase's payload, or of the query vector for `EMBEDDING`."""
        if phase == EMBEDDING:
            return f"ps1:emb:{self.engine.encoder_fingerprint}:{params.digest}"
        version = self.phases[phase].cache_version(self.engine)
        return f"ps1:{version}:{phase}:{params.k}:{params.digest}"

    def _background(self, work: Any) -> None:
        """Run a cache write in the background: the client does not wait for it."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        task.add_done_callback(consume)

    def _store(self, key: str, payload: dict[str, Any]) -> None:
        self._background(self.cache.set(key, orjson.dumps(payload)))

    def remember(self, key: str, value: bytes) -> None:
        """Write `value` to the cache under `key`, in the background."""
        self._background(self.cache.set(key, value))

    def log_query(self, params: SearchParams) -> None:
        """Count the query in the query log (in the background), for precomputation."""
        self._background(self.cache.count(QUERY_LOG, params.log_member))

    def remember_search(self, params: SearchParams,
                        sent: Sequence[tuple[Phase, PhaseResult]]) -> str | None:
        """A new search id for what these phases sent (in turn), remembered in the background:
        the answer that carries the id never waits for it. None when no phase was sent."""
        if not sent:
            return None
        search_id = new_search_id()
        rankings = {phase.name: phase.ranking(self.engine) for phase, _ in sent}
        at = time.time()

        async def remember() -> None:
            try:
                phase, shown = shown_order([(p.name, r.ids()) for p, r in sent])
                await self.searches.remember(
                    Shown(search_id, params.q, params.filter, shown, rankings[phase], at))
            except Exception:  # an event on this search will get 404; the search is answered
                log.exception("remembering search %s failed", search_id)

        self._background(remember())
        return search_id

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

    # -- a request --------------------------------------------------------------------------
    async def begin(self, params: SearchParams, wanted: Sequence[Phase]) -> Query:
        """A request for these phases: one cache round trip for all of them (and the query
        vector, when one needs it), and the vector's encoding started if a phase will."""
        names = [p.name for p in wanted]
        needs_vector = any(Need.VECTOR in p.needs for p in wanted)
        cached = await self.lookup([*names, EMBEDDING] if needs_vector else names, params)
        vector = None
        if any(Need.VECTOR in p.needs and p.name not in cached for p in wanted):
            vector = self._start_vector(params, cached)
            if vector is not None:
                # Let the vector's task reach the encoder's thread (a cache lookup, then the
                # hand-off) before the first phase holds the loop.
                for _ in range(3):
                    await asyncio.sleep(0)
        return Query(self, params, cached, vector)

    async def run(self, phase: Phase, query: Query) -> PhaseResult:
        """One phase of a request: from the cache, else computed once however many ask at a
        time. Raises `PhaseError` when the phase cannot answer."""
        start = time.perf_counter()
        cached = query.cached.get(phase.name)
        if cached is not None:
            return self._done(phase, cached, True, start)
        ready = phase.readiness(Capabilities.of(self.engine))
        if not ready.ok:
            raise PhaseError(phase.name, ready.code, ready.message)
        refused = phase.refuse(query)
        if refused is not None:
            raise refused
        key = self.key(phase.name, query.params)
        try:
            if phase.inline(self.engine):
                computed = await phase.compute(query)
            else:
                with anyio.fail_after(phase.deadline(self.settings)):
                    computed, _ = await self._flights.run(key, lambda: phase.compute(query))
        except TimeoutError:
            raise PhaseError(phase.name, "timeout",
                             f"the {phase.name} phase passed its deadline") from None
        except JobError as exc:
            raise PhaseError(phase.name, exc.code, exc.message) from None
        query.keep(computed.state)
        self._store(key, computed.payload)
        return self._done(phase, computed.payload, False, start)

    async def answer(self, phase: Phase, params: SearchParams) -> PhaseResult:
        """One phase alone (`GET /search` answers the first)."""
        return await self.run(phase, await self.begin(params, [phase]))

    def _done(self, phase: Phase, payload: dict[str, Any] | bytes, cached: bool,
              start: float) -> PhaseResult:
        took = time.perf_counter() - start
        source = "cache" if cached else "computed"
        self.metrics.phase_seconds.labels(phase.name, source).observe(took)
        if isinstance(payload, bytes):
            return PhaseResult(None, payload, took * 1000)
        return PhaseResult(payload, None, took * 1000)

    # -- the query vector -------------------------------------------------------------------
    async def vector(self, params: SearchParams, looked_up: bool = False) -> F32:
        """The query vector: from the cache, else encoded once however many ask at a time.
        `looked_up`: the caller's `lookup` already missed it in the cache."""
        text = params.text
        key = self.key(EMBEDDING, params)
        if not looked_up:
            value = (await self.lookup([EMBEDDING], params)).get(EMBEDDING)
            if value is not None:
                return np.frombuffer(value, dtype=np.float32)

        async def encode() -> F32:
            vector = await anyio.to_thread.run_sync(
                self.engine.encode, text, limiter=self._semantic_limit, abandon_on_cancel=True
            )
            self._background(self.cache.set(key, vector.astype(np.float32).tobytes()))
            return vector

        vector, _ = await self._flights.run(key, encode)
        result: F32 = vector
        return result

    def overloaded(self) -> bool:
        """Query encodings are waiting for the encoder: the cores are saturated."""
        return self._semantic_limit.statistics().tasks_waiting > 0

    def _start_vector(self, params: SearchParams, cached: dict[str, bytes]
                      ) -> asyncio.Future[F32] | None:
        """Start computing the query vector now, so the encoder runs on another core while the
        first phase is answered (None when the encoder is not ready: the phases report it).
        `cached`: what a `lookup` that included `EMBEDDING` found (the vector, or a miss)."""
        if self.engine.semantic_state is not SemanticState.READY:
            return None
        if EMBEDDING in cached:
            done: asyncio.Future[F32] = asyncio.get_running_loop().create_future()
            done.set_result(np.frombuffer(cached[EMBEDDING], dtype=np.float32))
            return done
        task = asyncio.ensure_future(self.vector(params, looked_up=True))
        task.add_done_callback(consume)  # the phase that awaits it reports its failure
        return task

    async def flush(self) -> None:
        """Wait for the cache writes started so far."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        await self._flights.drain()
        await self.flush()
        await self.searches.close()
