"""The phases as the service computes them, run in this process without the service:
`progsearch search` with a filter, facets or a sort.

The payloads are the server's (`Phase.compute`: hits with their `fields`, the keyword
phase's `facets`), but there is no cache, no single flight and no deadline: a command line
waits for its answer. The enhanced phase's task body runs on a thread here, as the server's
embedded pool runs it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from app.engine import Engine
from app.params import SearchParams
from app.phases.types import KeptStates, Phase
from app.settings import Settings
from index.core.errors import ProgsearchError
from index.core.types import F32

if TYPE_CHECKING:
    from app.jobs import Jobs

__all__ = ["LocalQuery", "local_payloads", "local_settings"]


NO_DEADLINE = 24 * 3600.0


def local_settings(max_k: int) -> Settings:
    """The service's settings as the command line uses them: its own bound on k, and no
    deadline a phase could pass."""
    return replace(Settings(), max_k=max_k, keyword_timeout=NO_DEADLINE,
                   semantic_timeout=NO_DEADLINE, enhanced_timeout=NO_DEADLINE)


class LocalQuery(KeptStates):
    """One search through the phases in this process: the `Context` they compute from."""

    def __init__(self, engine: Engine, params: SearchParams, settings: Settings,
                 jobs: Jobs) -> None:
        self.engine = engine
        self.params = params
        self.settings = settings
        self.jobs = jobs
        self._vector: F32 | None = None
        super().__init__()

    async def vector(self) -> F32:
        if self._vector is None:  # the text the server encodes, once for every phase
            self._vector = await anyio.to_thread.run_sync(self.engine.encode, self.params.text)
        return self._vector

    def overloaded(self) -> bool:
        return False  # nothing else waits for this process's encoder


async def local_payloads(engine: Engine, params: SearchParams, phases: Sequence[Phase],
                         settings: Settings) -> list[dict[str, Any]]:
    """Each phase's payload as the server sends it (`took_ms` and `cached` added), in order.
    `params` must have been checked (`Engine.check`); a phase that cannot answer is a
    `ProgsearchError` naming it."""
    from app.jobs import EmbeddedJobs, JobError

    jobs = EmbeddedJobs(engine, threads=1)
    query = LocalQuery(engine, params, settings, jobs)
    payloads = []
    try:
        for phase in phases:
            refused = phase.refuse(query)
            if refused is not None:
                raise ProgsearchError(f"the {phase.name} phase is unavailable: {refused.message}")
            started = time.perf_counter()
            try:
                computed = await phase.compute(query)
            except JobError as exc:
                raise ProgsearchError(f"the {phase.name} phase failed: {exc.message}") from None
            took_ms = round((time.perf_counter() - started) * 1e3, 3)
            query.keep(computed.state)
            payloads.append({**computed.payload, "took_ms": took_ms, "cached": False})
    finally:
        await jobs.close()
    return payloads
