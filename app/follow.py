"""One open follow: what its client was shown, the latest state waiting for it, and the
`update` event between the two.

A follow has one pending-state slot, not a queue: the matcher (`app.follow_hub`) puts the
latest ranking in it and wakes the stream; the stream takes whatever is there when it is
ready to send. A client that reads slowly therefore gets the latest state, never a backlog,
and the matcher never waits for any client. The event compares that state with what the
client was last sent, so coalesced updates lose nothing: `added`, `removed` and each hit's
`previous_rank` are against the list the client shows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from app.params import SearchParams
from index.core.types import F32

__all__ = ["Follow", "Ranked", "update_payload"]


@dataclass(frozen=True)
class Ranked:
    """A follow's keyword top k as of one write."""

    seq: int
    """The write sequence number the ranking reflects."""
    version: str
    """The index version it was computed at."""
    ids: tuple[str, ...]
    hits: list[dict[str, Any]] = field(compare=False)
    kth: float | None = None
    """The k-th relevance score (None: fewer than k hits), the bar a new document must pass."""
    rewritten: frozenset[str] = frozenset()
    """Shown ids whose document a write replaced since the previous ranking."""
    words: tuple[tuple[str, float], ...] = field(default=(), compare=False)
    """The query's weighted stems as the ranking scored them (`QueryPlan.words`)."""
    unplanned: frozenset[str] = field(default=frozenset(), compare=False)
    """Stems of query words the ranking could not search (unknown, or corrected): a write
    holding one may change the plan itself."""
    phase: str = "keyword"
    """The phase that ranked `ids`: the last one the follow's stream showed."""
    keyword_ids: tuple[str, ...] = field(default=(), compare=False)
    """The keyword phase's top k (the same as `ids` for a keyword follow)."""
    bar: float = -1.0
    """The lowest cosine between the query and a shown document (-1: fewer than k shown with
    vectors), which a newly embedded document must pass to be worth a re-run."""
    floor: float | None = None
    """For a follow ranked by the semantic phase, its k-th fused score (None: fewer than k,
    or another phase): a newly embedded document whose BM25 plus scaled cosine stays under it
    cannot enter (the fusion counts only part of the BM25)."""


def update_payload(ranked: Ranked, sent: tuple[str, ...], rewritten: frozenset[str],
                   params: SearchParams) -> dict[str, Any]:
    """The `update` event's data: the new hits with their rank in `sent` (the list the client
    was last sent), and the ids added, removed, or still shown with a rewritten document."""
    before = {doc_id: rank for rank, doc_id in enumerate(sent, 1)}
    now = set(ranked.ids)
    return {
        "phase": ranked.phase,
        "index_version": ranked.version,
        "query": params.q,
        "k": params.k,
        "seq": ranked.seq,
        "hits": [{**hit, "previous_rank": before.get(hit["id"])} for hit in ranked.hits],
        "added": [doc_id for doc_id in ranked.ids if doc_id not in before],
        "removed": [doc_id for doc_id in sent if doc_id not in now],
        "changed": [doc_id for doc_id in ranked.ids if doc_id in before and doc_id in rewritten],
    }


class Follow:
    """An open follow. The hub writes `ranked` and `kth` (the matcher's view) and the slot;
    the stream reads the slot and writes `sent`. Both run on the event loop; the matcher's
    thread only reads."""

    def __init__(self, key: int, params: SearchParams, client: str, stream_version: str,
                 ranked: tuple[str, ...], sent: tuple[str, ...], last_n: int,
                 phase: str = "keyword", vector: F32 | None = None) -> None:
        self.key = key
        self.params = params
        self.client = client
        self.stream_version = stream_version
        """The version of the stream's ids (the one its phases were answered at)."""
        self.ranked = ranked
        """The keyword ranking the matcher last computed (its k-th score is the bar)."""
        self.kth: float | None = None
        self.floor: float | None = None
        """The k-th fused score, for a follow of the semantic phase (`Ranked.floor`)."""
        self.words: tuple[tuple[str, float], ...] = ()
        self.unplanned: frozenset[str] = frozenset()
        self.known = False
        """`kth` and `words` were computed (until then a write that may concern the follow is
        matched by re-running its query)."""
        self.sent = sent
        """The ids in the order the client was last sent them."""
        self.shown = sent
        """The ids last put in the slot: an update is due when a re-run ranks others."""
        self.phase = phase
        """The phase whose ranking the follow shows: the last its stream sent."""
        self.vector = vector
        """The query vector, for a follow shown by a semantic phase."""
        self.last_n = last_n
        self.opened = time.monotonic()
        self.rewritten: frozenset[str] = frozenset()
        self._slot: Ranked | None = None
        self.wake = asyncio.Event()
        self.closed = False
        self.armed = False
        """Its phases were sent and writes are matched to it."""

    def offer(self, ranked: Ranked) -> None:
        """Put the latest state in the slot (replacing any the client has not taken)."""
        if self._slot is not None:
            ranked = replace(ranked, rewritten=ranked.rewritten | self._slot.rewritten)
        self._slot = ranked
        self.wake.set()

    def take(self) -> Ranked | None:
        ranked, self._slot = self._slot, None
        self.wake.clear()
        return ranked

    def end(self) -> None:
        self.closed = True
        self.wake.set()

    @property
    def farewell(self) -> _Farewell:
        """An event-like object whose `set` ends the follow (the stream's shutdown event)."""
        return _Farewell(self)

    def next_n(self, done: int, seq: int) -> int:
        """The `n` of the next update's id: past `done` by the write's seq, and always past
        the last id sent (a compaction keeps the seq and may still reorder)."""
        self.last_n = max(done + seq, self.last_n + 1)
        return self.last_n


class _Farewell:
    def __init__(self, follow: Follow) -> None:
        self._follow = follow

    def set(self) -> None:
        self._follow.end()

    def is_set(self) -> bool:
        return self._follow.closed
