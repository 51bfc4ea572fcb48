"""The built-in demo catalog: about 5,000 shop products generated from word tables.

Products are built from concepts (a rain jacket for hiking), each said in several ways, so that a
query in one wording should find products written in another: what the semantic phase is for.

    generate_catalog(n, seed) -> list[Product]      deterministic for a seed
    write_catalog(path, n, seed) -> list[Product]   the same, written as JSONL (`progsearch index`)
    judged_queries(products) -> list[JudgedQuery]   paraphrase queries and their relevant ids

Command line: `python -m app.catalog --out FILE [--n 5000] [--seed 7] [--queries FILE]`.
"""

from __future__ import annotations

from app.catalog.files import write_beir, write_catalog, write_jsonl, write_queries
from app.catalog.generator import DEFAULT_N, DEFAULT_SEED, generate_catalog
from app.catalog.queries import judged_queries
from app.catalog.tables import load_tables
from app.catalog.types import JudgedQuery, Product

__all__ = [
    "DEFAULT_N",
    "DEFAULT_SEED",
    "JudgedQuery",
    "Product",
    "generate_catalog",
    "judged_queries",
    "load_tables",
    "write_beir",
    "write_catalog",
    "write_jsonl",
    "write_queries",
]
