"""Explored searches: a share of the streams shows a deeper candidate in its final top k, so
the click log covers documents below rank k (`rankers.explore` says which scheme and why the
click weights stay valid).

An explored stream computes its phases for k + `PROGSEARCH_EXPLORE_DEPTH` hits: that is its
own cache key (k is part of it), and the payload cached under it is the plain answer for that
k, so no cached answer is ever altered. What is sent is cut back to k: every phase's event
shows k hits and says ``k`` as asked, a ``previous_rank`` beyond k (a rank the client was not
sent) becomes null, and the final phase's event shows the explored order. The search is
remembered (`app.searches`) with the order sent, so a click's rank is its displayed rank.

Only fresh streams with words and no sort are explored: a follow (its updates compare with
what it was sent), `GET /search` and a resumed stream are not, and a sort is the user's own
order, not a ranking to learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.params import SearchParams
from app.settings import Settings
from rankers.explore import explored_order

__all__ = ["Explorer", "sent_payload"]


@dataclass
class Explorer:
    """Which searches are explored, and the random source of their draws (one per server,
    created with its `Searcher`; used from the event loop only, as a `Generator` is not
    thread-safe)."""

    share: float
    depth: int
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @classmethod
    def of(cls, settings: Settings) -> Explorer:
        return cls(settings.explore_share, settings.explore_depth)

    @property
    def on(self) -> bool:
        return self.share > 0 and self.depth > 0

    def wants(self, params: SearchParams, seen: int) -> bool:
        """Explore this stream (drawn with probability `share`)?"""
        if not self.on or seen or params.follow or params.sort or not params.q.strip():
            return False
        return self.share >= 1 or bool(self.rng.random() < self.share)

    def deep(self, params: SearchParams) -> SearchParams:
        """The parameters the explored stream's phases are computed with."""
        return replace(params, k=params.k + self.depth)

    def order(self, ranked: int, k: int) -> list[int]:
        """Positions of the deep final list to show (`rankers.explore.explored_order`)."""
        return [int(i) for i in explored_order(ranked, k, self.depth, self.rng)]


def sent_payload(payload: dict[str, Any], k: int, order: list[int] | None = None
                 ) -> tuple[dict[str, Any], bool]:
    """A phase's payload computed for a deeper k as an explored stream sends it: its first k
    hits, or the hits at ``order``'s positions (the final phase), ranked 1.. again, with ``k``
    as asked and any ``previous_rank`` beyond k null; and whether a hit from below k is
    shown."""
    hits: list[dict[str, Any]] = payload.get("hits", [])
    picked = hits[:k] if order is None else [hits[i] for i in order]
    shown = []
    for rank, hit in enumerate(picked, 1):
        previous = hit.get("previous_rank")
        shown.append({**hit, "rank": rank,
                      "previous_rank": previous if previous is not None and previous <= k
                      else None})
    explored = order is not None and any(i >= k for i in order)
    return {**payload, "k": k, "hits": shown}, explored
