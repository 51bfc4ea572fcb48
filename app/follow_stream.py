"""The events of a follow stream (`GET /search/stream?follow=1`): the phases and `done` as
any stream, then an `update` event each time the follow's results change.

Ids continue past `done`: an update's id is `{stream version}.{n}` with `n = done + seq`, the
write's sequence number (and always past the previous id). Every id from `done` on names a
state stored in the cache (Redis when configured, so any server process can resume it) under
`ps1:follow:{k}:{query digest}:{id}`: the keyword ranking and the list the client was sent.
A client resuming with `Last-Event-ID` gets no phase again: its follow starts from that state,
is re-run at once, and sends one update only if the results changed since, against the list
the client shows (so nothing is lost or repeated, whatever updates were coalesced or missed
while it was away). An id whose state has expired restarts the stream. A follow ends after
`PROGSEARCH_FOLLOW_LIFETIME` seconds; its client reconnects and resumes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import orjson
from sse_starlette import ServerSentEvent

from app.follow import Follow, update_payload
from app.follow_hub import FollowHub
from app.params import SearchParams
from app.search import Searcher
from app.stream import phase_events
from index.core.types import F32

__all__ = ["Resume", "follow_events", "lookup_resume", "state_key"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resume:
    """A stored follow state: what a client that saw event `n` of `version` knew."""

    version: str
    n: int
    ranked: tuple[str, ...]
    sent: tuple[str, ...]
    phase: str = "keyword"


def state_key(params: SearchParams, event_id: str) -> str:
    return f"ps1:follow:{params.k}:{params.digest}:{event_id}"


async def lookup_resume(searcher: Searcher, params: SearchParams, last_event_id: str | None
                        ) -> Resume | None:
    """The state a `Last-Event-ID` at or past `done` names, if it is still stored."""
    if not last_event_id:
        return None
    version, _, n = last_event_id.strip().rpartition(".")
    if not version or not n.isdigit() or int(n) < searcher.phases.done:
        return None
    key = state_key(params, f"{version}.{n}")
    raw = (await searcher.cache.get_many([key]))[0]
    if raw is None:
        return None
    try:
        state = orjson.loads(raw)
        return Resume(version, int(n), tuple(map(str, state["ranked"])),
                      tuple(map(str, state["sent"])), str(state.get("phase", "keyword")))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _remember(searcher: Searcher, follow: Follow, event_id: str) -> None:
    state = {"ranked": list(follow.ranked), "sent": list(follow.sent), "phase": follow.phase}
    searcher.remember(state_key(follow.params, event_id), orjson.dumps(state))


async def _vector(searcher: Searcher, follow: Follow, phase: str) -> F32 | None:
    """The query vector of a follow shown by a semantic phase (from the cache, usually: the
    phases just used it); None for a keyword follow, or when it cannot be had (the follow's
    updates are then keyword-ranked)."""
    if phase == searcher.phases.first.name:
        return None
    try:
        with anyio.fail_after(searcher.settings.semantic_timeout):
            return await searcher.vector(follow.params)
    except Exception:  # the follow goes on, ranked by keywords
        log.warning("no query vector for a follow shown by the %s phase", phase)
        return None


async def follow_events(searcher: Searcher, hub: FollowHub, follow: Follow, seen: int,
                        resume: Resume | None, retry_ms: int, lifetime: float
                        ) -> AsyncIterator[ServerSentEvent]:
    done = searcher.phases.done
    version = follow.stream_version
    retry: int | None = retry_ms
    try:
        if resume is None:
            keyword: tuple[str, ...] = ()
            shown: tuple[str, ...] = ()
            phase = searcher.phases.first.name
            async for event in phase_events(searcher, follow.params, seen, retry_ms):
                retry = None
                if event.event not in ("error", "done") and event.data is not None:
                    ids = tuple(h["id"] for h in orjson.loads(event.data)["hits"])
                    first = event.event == searcher.phases.first.name
                    # A later phase with no hits where the first had some did not rank
                    # (browsing: no words to embed), so the follow stays the first's.
                    if first or ids or not shown:
                        shown, phase = ids, str(event.event)
                    if first:
                        keyword = ids
                yield event
            hub.arm(follow, keyword, shown, done, phase, await _vector(searcher, follow, phase))
            _remember(searcher, follow, f"{version}.{done}")
        else:
            vector = await _vector(searcher, follow, resume.phase)
            hub.arm(follow, resume.ranked, resume.sent, resume.n, resume.phase, vector)
        deadline = anyio.current_time() + lifetime
        while not follow.closed:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await follow.wake.wait()
            ranked = follow.take()
            if ranked is None:
                if anyio.current_time() >= deadline:
                    return  # the client reconnects with its last id and resumes
                continue
            data = update_payload(ranked, follow.sent, ranked.rewritten, follow.params)
            follow.sent = ranked.ids
            event_id = f"{version}.{follow.next_n(done, ranked.seq)}"
            _remember(searcher, follow, event_id)
            searcher.metrics.follow_updates.inc()
            yield ServerSentEvent(data=orjson.dumps(data).decode(), event="update", id=event_id,
                                  retry=retry)
            retry = None
    finally:
        hub.close(follow)
