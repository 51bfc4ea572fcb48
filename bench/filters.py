"""Filter expressions: parse time (cache miss and hit) and mask evaluation over generated
columns, with one numpy comparison over the same rows as the floor.

    .venv/bin/python -m bench.filters --rows 1000000

The columns are those of the issue's figures: a category with 20 values, a brand with 500
values under a Zipf-like skew, a price, an in-stock flag, a rating with 20 % nulls, and tags
(0 to 3 per document, a CSR list column). A miss parses a text not seen before (the same
expression with trailing spaces, so every call misses); a hit parses the same text again.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from bench.timing import print_table, summarize, time_calls
from index.columns import (
    BoolColumn,
    Column,
    FieldSpec,
    FieldType,
    KeywordColumn,
    NumberColumn,
)
from rankers.filters import FilterParser, evaluate

EXPRESSIONS = [
    "category = c07",
    "brand IN [b000, b001, b002]",
    "brand = b250",
    "price 10 TO 50",
    "in_stock = true AND price < 100",
    "category = c03 AND (brand = b010 OR brand = b020) AND in_stock = true",
    "tags = t05",
    "NOT category IN [c01, c02] AND rating EXISTS",
]


def keyword(rng: np.random.Generator, names: list[str], lengths: np.ndarray,
            weights: np.ndarray | None = None) -> KeywordColumn:
    """A keyword column of `lengths` values per row drawn from `names` (sorted)."""
    ptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    # The builder's runs are sorted and without repeats; these may repeat a code within a
    # row (tags: 3 draws of 40), which changes no mask and no timing that matters.
    codes = rng.choice(len(names), size=int(ptr[-1]), p=weights).astype(np.int32)
    return KeywordColumn(np.array(names), ptr, codes)


def columns(rows: int, seed: int = 0) -> dict[str, Column]:
    rng = np.random.default_rng(seed)
    ones = np.ones(rows, dtype=np.int64)
    zipf = 1.0 / np.arange(1, 501)
    return {
        "category": keyword(rng, [f"c{i:02d}" for i in range(20)], ones),
        "brand": keyword(rng, [f"b{i:03d}" for i in range(500)], ones, zipf / zipf.sum()),
        "tags": keyword(rng, [f"t{i:02d}" for i in range(40)], rng.integers(0, 4, rows)),
        "price": NumberColumn(np.round(rng.lognormal(4, 1, rows), 2),
                              np.ones(rows, dtype=np.bool_)),
        "rating": NumberColumn(rng.integers(1, 6, rows).astype(np.int64),
                               rng.random(rows) >= 0.2),
        "in_stock": BoolColumn(rng.random(rows) < 0.7, np.ones(rows, dtype=np.bool_)),
    }


FIELDS: list[tuple[str, FieldType]] = [
    ("category", "keyword"), ("brand", "keyword"), ("tags", "keyword"), ("price", "number"),
    ("rating", "number"), ("in_stock", "bool")]
SCHEMA = {name: FieldSpec(name, kind) for name, kind in FIELDS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=50, help="evaluations timed per expression")
    args = ap.parse_args()
    print("command:", shlex.join(["python", "-m", "bench.filters", *sys.argv[1:]]))
    cols = columns(args.rows)
    parser = FilterParser(SCHEMA, size=100_000)

    misses = [e + " " * i for i in range(200) for e in EXPRESSIONS]
    miss = summarize(time_calls(parser.parse, misses, warmup=0) * 1e6)
    hit = summarize(time_calls(parser.parse, EXPRESSIONS * 200) * 1e6)
    print(f"\nparse, {len(misses)} calls each (µs)")
    print_table([["cache miss", miss["p50"], miss["p99"]], ["cache hit", hit["p50"], hit["p99"]]],
                ["", "p50", "p99"])

    category = cols["category"]
    assert isinstance(category, KeywordColumn)
    floor = summarize(time_calls(lambda _: category.codes == 7, [None] * args.repeat) * 1e3)
    table = [["(floor: codes == 7)", "", floor["p50"], floor["p99"]]]
    for expression in EXPRESSIONS:
        node = parser.parse(expression).node
        mask = evaluate(node, cols, args.rows)
        times = time_calls(lambda n: evaluate(n, cols, args.rows), [node] * args.repeat)
        stats = summarize(times * 1e3)
        table.append([expression, f"{mask.mean():.2%}", stats["p50"], stats["p99"]])
    print(f"\nevaluation over {args.rows:,} rows, {args.repeat} calls each (ms)")
    print_table(table, ["expression", "selected", "p50", "p99"])


if __name__ == "__main__":
    main()
