"""The keyword phase: BM25 over the impact postings, typo correction and completion."""

from __future__ import annotations

import anyio

from app.engine import Engine
from app.params import SearchParams
from app.phases.base import BasePhase
from app.phases.types import BareQuery, Computed, Context, Ranking
from app.settings import Settings

__all__ = ["INLINE_DOCS", "KeywordPhase"]

# The keyword phase runs on the event loop when the corpus is small enough to score in well
# under a millisecond; a thread hop would cost more than it saves. Larger corpora use threads.
INLINE_DOCS = 200_000


class KeywordPhase(BasePhase):
    name = "keyword"
    seq = 1

    def deadline(self, settings: Settings) -> float:
        return settings.keyword_timeout

    def inline(self, engine: Engine) -> bool:
        return engine.n_docs <= INLINE_DOCS

    async def compute(self, ctx: Context) -> Computed:
        if self.inline(ctx.engine):
            return _work(ctx.engine, ctx.params, ctx.settings.candidates)
        return await anyio.to_thread.run_sync(
            _work, ctx.engine, ctx.params, ctx.settings.candidates, abandon_on_cancel=True
        )

    def rank(self, query: BareQuery) -> Ranking:
        result = query.rankers.keyword.search(query.text, query.k, prefix=query.prefix)
        return Ranking(result.docs, result.scores, keyword=result)


def _work(engine: Engine, params: SearchParams, depth: int) -> Computed:
    # The candidates run `depth` deep and are kept: the semantic phase fuses them.
    state = engine.keyword_state(params, depth)
    return Computed(engine.keyword_payload(params, state), state)
