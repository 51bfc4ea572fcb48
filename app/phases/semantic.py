"""The semantic phase: the keyword candidates and the query's nearest neighbours, fused."""

from __future__ import annotations

import anyio
import numpy as np

from app.engine import KeywordState
from app.phases.base import BasePhase
from app.phases.types import BareQuery, Computed, Context, Need, Ranking

__all__ = ["SemanticPhase"]


class SemanticPhase(BasePhase):
    name = "semantic"
    seq = 2
    needs = frozenset({Need.VECTOR})

    async def compute(self, ctx: Context) -> Computed:
        vector = await ctx.vector()
        keyword = ctx.previous(KeywordState)
        if keyword is None:  # the keyword phase came from the cache: rebuild its candidates
            keyword = ctx.engine.keyword_state(ctx.params, ctx.settings.candidates)
        payload = await anyio.to_thread.run_sync(
            ctx.engine.semantic_payload, ctx.params, keyword, vector, abandon_on_cancel=True
        )
        return Computed(payload)

    def rank(self, query: BareQuery) -> Ranking:
        semantic = query.rankers.semantic
        assert semantic is not None  # its readiness said the encoder is loaded
        keyword = query.rankers.keyword
        if not keyword.analyzer.words(query.text):
            # No word, no meaning to embed: no hits rather than an empty string's neighbours.
            empty = np.empty(0, dtype=np.int64)
            return Ranking(empty, np.empty(0, dtype=np.float32), empty)
        plan = keyword.plan(query.text, prefix=query.prefix)
        candidates = keyword.run(plan, semantic.fusion.candidates)
        fused = semantic.fuse(plan, candidates, query.vector(), query.k)
        return Ranking(fused.docs, fused.scores, fused.previous)

    def references(self, query: BareQuery) -> dict[str, Ranking]:
        """`dense`: the nearest neighbours alone, what fusion with the keyword candidates adds
        to."""
        semantic = query.rankers.semantic
        assert semantic is not None
        docs, scores = semantic.dense(query.vector(), query.k)
        return {"dense": Ranking(docs, scores)}
