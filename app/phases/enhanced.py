"""The enhanced phase: the semantic candidates re-ranked by their best passages.

It goes through `Jobs`: a Celery worker, or the server's embedded pool. The request carries
the query vector, so a worker does not encode it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from app.engine import Engine
from app.phases.base import BasePhase
from app.phases.types import BareQuery, Computed, Context, Need, PhaseError, Ranking
from app.settings import Settings

if TYPE_CHECKING:
    # As in `app.engine`: the semantic stack (FAISS) stays out of the start-up path.
    from index.core.types import F32
    from rankers.enhance import EnhanceSettings
    from rankers.keyword import QueryPlan
    from rankers.semantic import SemanticResult
    from rankers.types import KeywordResult

__all__ = ["EnhancedPhase", "rerank_inputs"]


class EnhancedPhase(BasePhase):
    name = "enhanced"
    seq = 3
    needs = frozenset({Need.VECTOR, Need.PASSAGES})

    def deadline(self, settings: Settings) -> float:
        return settings.enhanced_timeout

    def cache_version(self, engine: Engine) -> str:
        # A newly installed model must never be served an answer ranked by the old one; with
        # none installed, the key is the other phases' (the version alone).
        model = self.ranking(engine)
        return engine.version if model == "default" else f"{engine.version}~{model}"

    def ranking(self, engine: Engine) -> str:
        return engine.model_version

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
        return self._rank(query, None)

    def references(self, query: BareQuery) -> dict[str, Ranking]:
        """With a fitted model installed, the default weights too, for comparison."""
        enhanced = query.rankers.enhanced
        if enhanced is None or enhanced.settings.model is None:
            return {}
        from rankers.enhance import EnhanceSettings

        return {f"{self.name} (default)": self._rank(query, EnhanceSettings())}

    def _rank(self, query: BareQuery, settings: EnhanceSettings | None) -> Ranking:
        enhanced = query.rankers.enhanced
        inputs = rerank_inputs(query)
        if inputs is None:
            empty = np.empty(0, dtype=np.int64)
            return Ranking(empty, np.empty(0, dtype=np.float32), empty)
        assert enhanced is not None  # its readiness said so
        plan, candidates, vector, fused = inputs
        res = enhanced.rerank(query.text, plan, candidates, vector, fused, query.k,
                              settings=settings)
        return Ranking(res.docs, res.scores, res.previous)


def rerank_inputs(query: BareQuery) -> tuple[QueryPlan, KeywordResult, F32, SemanticResult] | None:
    """What the enhanced phase re-ranks for a query (None: the query has no word): its plan,
    keyword candidates, vector and the semantic phase's whole candidate list (not its top k).
    `progsearch tune` computes its features from the same."""
    rankers = query.rankers
    keyword, semantic = rankers.keyword, rankers.semantic
    assert semantic is not None  # its readiness said so
    if not keyword.analyzer.words(query.text):
        return None
    depth = semantic.fusion.candidates
    plan = keyword.plan(query.text, prefix=query.prefix)
    candidates = keyword.run(plan, depth)
    vector = query.vector()
    return plan, candidates, vector, semantic.fuse(plan, candidates, vector, depth)
