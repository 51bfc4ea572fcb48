"""The enhanced phase: the semantic candidates re-ranked by their best passages.

It goes through `Jobs`: a Celery worker, or the server's embedded pool. The request carries
the query vector, so a worker does not encode it again.
"""

from __future__ import annotations

import numpy as np

from app.phases.base import BasePhase
from app.phases.types import BareQuery, Computed, Context, Need, PhaseError, Ranking
from app.settings import Settings

__all__ = ["EnhancedPhase"]


class EnhancedPhase(BasePhase):
    name = "enhanced"
    seq = 3
    needs = frozenset({Need.VECTOR, Need.PASSAGES})

    def deadline(self, settings: Settings) -> float:
        return settings.enhanced_timeout

    def refuse(self, ctx: Context) -> PhaseError | None:
        # The costliest phase, and the last: computed in this process, it gives way while
        # query encodings wait for the encoder, so the keyword and semantic phases of the
        # waiting streams meet their deadlines. Workers elsewhere do not take these cores.
        if ctx.jobs.mode == "embedded" and ctx.overloaded():
            return PhaseError(self.name, "overloaded",
                              "the server is busy encoding queries; the enhanced phase was skipped")
        return None

    async def compute(self, ctx: Context) -> Computed:
        vector = await ctx.vector()
        params = ctx.params
        request = {**params.to_request(), "vector": vector.tolist(),
                   "version": ctx.engine.version}
        return Computed(await ctx.jobs.enhance(request, self.deadline(ctx.settings)))

    def rank(self, query: BareQuery) -> Ranking:
        rankers = query.rankers
        keyword, semantic, enhanced = rankers.keyword, rankers.semantic, rankers.enhanced
        assert semantic is not None and enhanced is not None  # its readiness said so
        if not keyword.analyzer.words(query.text):
            empty = np.empty(0, dtype=np.int64)
            return Ranking(empty, np.empty(0, dtype=np.float32), empty)
        depth = semantic.fusion.candidates
        plan = keyword.plan(query.text, prefix=query.prefix)
        candidates = keyword.run(plan, depth)
        vector = query.vector()
        # The semantic phase's whole candidate list is re-ranked, not its top k.
        fused = semantic.fuse(plan, candidates, vector, depth)
        res = enhanced.rerank(query.text, plan, candidates, vector, fused, query.k)
        return Ranking(res.docs, res.scores, res.previous)
