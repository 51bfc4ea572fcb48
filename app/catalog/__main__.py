"""`python -m app.catalog`: write the demo catalog and its judged queries."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app.catalog.files import write_beir, write_jsonl, write_queries
from app.catalog.generator import DEFAULT_N, DEFAULT_SEED, generate_catalog
from app.catalog.queries import DEFAULT_MAX_OVERLAP, DEFAULT_QUERIES, judged_queries

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app.catalog",
        description="Write the built-in demo product catalog (JSONL for `progsearch index`) "
        "and judged paraphrase queries.",
    )
    p.add_argument("--out", type=Path, help="catalog JSONL file")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="number of products")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--queries", type=Path, help="judged queries JSONL file")
    p.add_argument(
        "--n-queries", type=int, default=DEFAULT_QUERIES, help="at most this many (0: all)"
    )
    p.add_argument(
        "--max-overlap",
        type=float,
        default=DEFAULT_MAX_OVERLAP,
        help="largest share of a query's terms found in its targets' titles",
    )
    p.add_argument("--beir", type=Path, help="also write a BEIR folder for `progsearch eval`")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.out or args.queries or args.beir):
        parser.error("nothing to write: give --out, --queries and/or --beir")
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if args.n_queries < 0 or not 0 <= args.max_overlap <= 1:
        parser.error("--n-queries must be >= 0 and --max-overlap between 0 and 1")
    start = time.perf_counter()
    products = generate_catalog(args.n, args.seed)
    took = time.perf_counter() - start
    if args.out:
        write_jsonl(args.out, (dict(p) for p in products))
        concepts = len({p["concept"] for p in products})
        categories = len({p["category"] for p in products})
        print(
            f"wrote {len(products)} products ({categories} categories, {concepts} concepts, "
            f"seed {args.seed}) to {args.out}; generated in {took:.2f} s",
            file=sys.stderr,
        )
    if args.queries or args.beir:
        queries = judged_queries(products, limit=args.n_queries, max_overlap=args.max_overlap)
        if args.queries:
            write_queries(args.queries, queries)
            print(f"wrote {len(queries)} judged queries to {args.queries}", file=sys.stderr)
        if args.beir:
            write_beir(args.beir, products, queries)
            print(f"wrote a BEIR folder to {args.beir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
