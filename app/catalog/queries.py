"""Judged paraphrase queries for the demo catalog, taken from the same concept tables.

Each concept carries a few shopper phrasings (`ask`) that no product uses. A judged query is one
of them, and its relevant products are every product of its concept. A phrasing is kept only if
few of its index terms (the project analyzer's stems, stopwords dropped) occur in the titles of
those products: the point is to ask for a thing in other words than the shop uses. The choice
looks at words only, never at a ranker's results, so the set is not tuned to any ranker.
"""

from __future__ import annotations

from app.catalog.generator import concept_order
from app.catalog.tables import load_tables
from app.catalog.types import JudgedQuery, Product, Tables
from index.analyzer import Analyzer

__all__ = ["DEFAULT_MAX_OVERLAP", "DEFAULT_QUERIES", "judged_queries", "term_overlap"]

DEFAULT_QUERIES = 50
DEFAULT_MAX_OVERLAP = 0.25
"""At most a quarter of a query's terms may appear in its targets' titles (one word in four)."""
MIN_RELEVANT = 3


def term_overlap(query: str, titles: list[str], analyzer: Analyzer) -> float:
    """Share of the query's index terms that occur in any of the titles (0 when it has none)."""
    terms = analyzer.terms(query)
    if not terms:
        return 0.0
    title_terms = {t for title in titles for t in analyzer.terms(title)}
    return sum(t in title_terms for t in terms) / len(terms)


def judged_queries(
    products: list[Product],
    *,
    limit: int = DEFAULT_QUERIES,
    max_overlap: float = DEFAULT_MAX_OVERLAP,
    tables: Tables | None = None,
) -> list[JudgedQuery]:
    """Up to `limit` queries (0: no limit), one per concept, categories taking turns.

    A concept is skipped when it has fewer than 3 products, or when none of its phrasings stays
    within `max_overlap`; the first phrasing that does is used. Ids are q001, q002, …
    """
    tables = tables if tables is not None else load_tables()
    analyzer = Analyzer()
    members: dict[str, list[Product]] = {}
    for product in products:
        members.setdefault(product["concept"], []).append(product)
    queries: list[JudgedQuery] = []
    for concept, _ in concept_order(tables):
        if limit and len(queries) >= limit:
            break
        targets = members.get(concept.key, [])
        if len(targets) < MIN_RELEVANT:
            continue
        titles = [p["title"] for p in targets]
        for ask in concept.asks:
            overlap = term_overlap(ask, titles, analyzer)
            if overlap <= max_overlap:
                queries.append(
                    JudgedQuery(
                        id=f"q{len(queries) + 1:03d}",
                        text=ask,
                        relevant=frozenset(p["id"] for p in targets),
                        concept=concept.key,
                        category=concept.category,
                        overlap=round(overlap, 3),
                    )
                )
                break
    return queries
