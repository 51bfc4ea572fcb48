"""Writing the catalog and its judged queries: JSONL, and a BEIR folder for `progsearch eval`."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.catalog.generator import DEFAULT_N, DEFAULT_SEED, generate_catalog
from app.catalog.types import JudgedQuery, Product

__all__ = [
    "SCHEMA",
    "catalog_record",
    "query_record",
    "write_beir",
    "write_catalog",
    "write_jsonl",
    "write_queries",
]

SCHEMA = Path(__file__).with_name("schema.toml")
"""The catalog's structured fields, for `progsearch index --schema`."""


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """One JSON object a line, UTF-8, "\\n" line ends whatever the platform: the same records
    give the same bytes. Returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def query_record(query: JudgedQuery) -> dict[str, Any]:
    return {
        "id": query.id,
        "query": query.text,
        "relevant": sorted(query.relevant),
        "concept": query.concept,
        "category": query.category,
        "overlap": query.overlap,
    }


IN_STOCK_PERCENT = 88


def catalog_record(product: Product) -> dict[str, Any]:
    """A product as the index reads it: its structured fields at the top level (`SCHEMA`),
    the other attributes as `name:value` keywords. Whether it is in stock comes from its id,
    so the same catalog always has the same stock."""
    attrs = dict(product["attributes"])
    record: dict[str, Any] = {k: v for k, v in product.items() if k != "attributes"}
    for name in ("price", "rating", "reviews", "material"):
        if name in attrs:
            record[name] = attrs.pop(name)
    record["in_stock"] = zlib.crc32(product["id"].encode()) % 100 < IN_STOCK_PERCENT
    record["attributes"] = sorted(f"{k}:{v}" for k, v in attrs.items())
    return record


def write_catalog(path: Path, n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> list[Product]:
    """Generate the catalog and write it as JSONL that `progsearch index` reads."""
    products = generate_catalog(n, seed)
    write_jsonl(path, (catalog_record(p) for p in products))
    return products


def write_queries(path: Path, queries: list[JudgedQuery]) -> int:
    """Judged queries as JSONL: id, query, relevant (sorted product ids), concept, category,
    overlap."""
    return write_jsonl(path, (query_record(q) for q in queries))


def write_beir(folder: Path, products: list[Product], queries: list[JudgedQuery]) -> None:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv), so that
    `progsearch index DIR` and `progsearch eval IDX --dataset DIR --split test` compare phases."""
    corpus = (
        {"_id": p["id"], **{k: v for k, v in catalog_record(p).items() if k != "id"}}
        for p in products
    )
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", ({"_id": q.id, "text": q.text} for q in queries))
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            fh.writelines(f"{q.id}\t{doc}\t1\n" for doc in sorted(q.relevant))
