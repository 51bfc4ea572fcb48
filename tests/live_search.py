"""The rankers over a live index's current view, as the tests of written documents call them."""

from __future__ import annotations

from typing import Any

from rankers.delta_segment import live_view
from rankers.enhance import EnhancedRanker, EnhancedResult
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.live import LiveIndex
from rankers.semantic import SemanticRanker, SemanticResult
from rankers.types import KeywordResult


class LiveSearch:
    """Each call takes the view of `live` as it is now, like one request does."""

    def __init__(self, live: LiveIndex, keyword: KeywordRanker) -> None:
        self.live = live
        self.keyword = keyword

    def plan(self, query: str, *, prefix: bool = False) -> QueryPlan:
        return self.keyword.plan(query, prefix=prefix, view=live_view(self.live, self.keyword))

    def run(self, plan: QueryPlan, k: int) -> KeywordResult:
        return self.keyword.run(plan, k, live_view(self.live, self.keyword))

    def search(self, query: str, k: int = 10, *, prefix: bool = False) -> KeywordResult:
        return self.run(self.plan(query, prefix=prefix), k)

    def fuse(self, semantic: SemanticRanker, plan: QueryPlan, keyword: KeywordResult,
             query_vector: Any, k: int) -> SemanticResult:
        view = live_view(self.live, self.keyword, semantic)
        return semantic.fuse(plan, keyword, query_vector, k, view)

    def rerank(self, enhanced: EnhancedRanker, plan: QueryPlan, keyword: KeywordResult,
               query_vector: Any, semantic: SemanticResult, k: int) -> EnhancedResult:
        view = live_view(self.live, self.keyword, None, enhanced)
        return enhanced.rerank("", plan, keyword, query_vector, semantic, k, view)
