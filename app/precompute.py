"""Precomputed popular queries: the most frequent queries of the log, run through every phase
into the cache, so their whole stream is a cache hit.

It runs after each index change: a server whose cache is in Redis claims the new index
version with `SET NX` once its encoder is ready, and the one that wins precomputes for all;
`progsearch precompute` runs it by hand.
"""

from __future__ import annotations

import logging

from app.params import SearchParams
from app.phases import Need, Phase
from app.search import QUERY_LOG, PhaseError, Searcher

__all__ = ["claim_version", "precompute"]

log = logging.getLogger(__name__)


def _wanted(searcher: Searcher) -> list[Phase]:
    """Every phase, but those that need passages on an index built without them: such an
    index is complete without them. (A query whose phase cannot run otherwise is not counted
    as precomputed.)"""
    has_passages = searcher.engine.has_passages
    return [p for p in searcher.phases if has_passages or Need.PASSAGES not in p.needs]


async def precompute(searcher: Searcher, top: int) -> int:
    """Fill the cache for the `top` most frequent logged queries; returns how many ran."""
    members = await searcher.cache.top(QUERY_LOG, top)
    wanted = _wanted(searcher)
    done = 0
    for member in members:
        try:
            params = SearchParams.from_log_member(member)
        except ValueError:
            continue
        query = await searcher.begin(params, wanted)
        try:
            for phase in wanted:  # a phase found in the cache costs nothing here
                await searcher.run(phase, query)
        except PhaseError as exc:
            log.warning("precompute %r: %s phase %s", params.q, exc.phase, exc.code)
            continue
        done += 1
    await searcher.flush()
    log.info("precomputed %d of the %d most frequent queries for version %s",
             done, len(members), searcher.engine.version)
    return done


async def claim_version(searcher: Searcher) -> bool:
    """True for the one process that should precompute this index version."""
    claim = getattr(searcher.cache, "claim", None)
    if claim is None:
        return True
    result: bool = await claim(f"ps1:precomputed:{searcher.engine.version}")
    return result
