"""Structured fields at 1M documents: filtered keyword search and facet counting.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.structured --big /tmp/gen1m/corpus.jsonl \\
        --data ../shared/data/scifact [--work /tmp/progsearch-bench-structured]

The corpus (bench.gen_corpus) gets generated fields, deterministic by document: a category
of 20 values, a brand of 500 under a Zipf distribution, a price (log-normal) and an in-stock
flag (90 %). It is indexed keyword-only with a schema. Then, in this process, the SciFact
queries run through the keyword phase with filters on the price that keep about 50, 10, 1,
0.1 and 0.01 % of the documents, next to the same queries unfiltered, interleaved query by
query; the filter's masks are computed once per expression and cached by index version, as
the service does (their cost is printed on its own). Facets: category, brand and in stock
counted over a match set of about 30 % of the documents.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.beir import read_queries
from bench.timing import print_table, summarize

SHARES = (0.5, 0.1, 0.01, 0.001, 0.0001)
SCHEMA = """
[fields.category]
type = "keyword"
facetable = true
[fields.brand]
type = "keyword"
facetable = true
[fields.price]
type = "number"
sortable = true
[fields.in_stock]
type = "bool"
facetable = true
"""


def with_fields(source: Path, out: Path) -> None:
    rng = np.random.default_rng(11)
    with open(source, "rb") as fh:
        lines = fh.readlines()
    n = len(lines)
    category = rng.integers(0, 20, n)
    brand = np.minimum(rng.zipf(1.3, n), 500) - 1
    price = np.round(np.exp(rng.normal(3.5, 1.0, n)), 2)
    stock = rng.random(n) < 0.9
    with open(out, "w", encoding="utf-8") as fh:
        for i, line in enumerate(lines):
            record = json.loads(line)
            record.update(category=f"c{category[i]:02d}", brand=f"b{brand[i]:03d}",
                          price=float(price[i]), in_stock=bool(stock[i]))
            fh.write(json.dumps(record) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__)
    ap.add_argument("--big", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/progsearch-bench-structured"))
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, "-m", "bench.structured",
                                  *sys.argv[1:]]))
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, index, schema = args.work / "corpus.jsonl", args.work / "index", args.work / "s.toml"
    if not (index / "CURRENT").exists():
        with_fields(args.big, corpus)
        schema.write_text(SCHEMA)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app.cli", "index", str(corpus), "--out",
                        str(index), "--no-vectors", "--schema", str(schema), "--quiet"],
                       check=True)
        print(f"built in {time.perf_counter() - started:.1f} s")

    from index.columns import NumberColumn
    from index.snapshot import load_snapshot
    from rankers.facets import count_facets
    from rankers.filter_eval import evaluate
    from rankers.keyword import KeywordRanker
    from rankers.structured import StructuredQueries

    snap = load_snapshot(index)
    keyword = KeywordRanker(snap)
    assert snap.manifest.schema is not None
    queries = StructuredQueries(snap.manifest.schema.fields)
    price = snap.columns["price"]
    assert isinstance(price, NumberColumn)
    texts = list(read_queries(args.data / "queries.jsonl").values())[: args.queries]
    plans = [keyword.plan(t) for t in texts]
    for p in plans[:30]:
        keyword.run(p, 10)

    rows = []
    base = keyword.view
    for share in SHARES:
        cut = float(np.quantile(price.values, share))
        text = f"price < {cut}"
        query = queries.parse(text, (), "")
        assert query.filter is not None
        t0 = time.perf_counter()
        evaluate(query.filter, snap.columns, snap.n_docs)
        mask_ms = (time.perf_counter() - t0) * 1000
        view = queries.limit(base, query, [snap.version])
        kept = int(np.count_nonzero(view.segments[0].allow))  # type: ignore[attr-defined]
        plain, filtered = [], []
        for p in plans:  # interleaved, query by query
            t0 = time.perf_counter_ns()
            keyword.run(p, 10)
            t1 = time.perf_counter_ns()
            view = queries.limit(base, query, [snap.version])  # cached mask, as served
            keyword.run(p, 10, view)
            t2 = time.perf_counter_ns()
            plain.append((t1 - t0) / 1e6)
            filtered.append((t2 - t1) / 1e6)
        a, b = summarize(plain), summarize(filtered)
        rows.append([f"{kept / snap.n_docs:.4%}", a["p50"], a["p99"], b["p50"], b["p99"],
                     b["p50"] / a["p50"], mask_ms])
    print(f"\n{snap.n_docs:,} documents, {len(plans)} SciFact queries, k=10, keyword phase")
    print_table(rows, ["filter keeps", "unfiltered p50 ms", "p99", "filtered p50 ms", "p99",
                       "p50 ratio", "mask ms (once)"])

    cut = float(np.quantile(price.values, 0.3))
    query = queries.parse(f"price < {cut}", ("category", "brand", "in_stock"), "")
    view = queries.limit(base, query, [snap.version])
    times = []
    for _ in range(30):
        t0 = time.perf_counter_ns()
        counts = count_facets(view, [], query.facets)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    s = summarize(times)
    print(f"\nfacets category, brand, in_stock over {counts[0].matched:,} matches "
          f"({counts[0].matched / snap.n_docs:.1%}): p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
