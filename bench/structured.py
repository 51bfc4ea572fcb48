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
from typing import Any

import numpy as np
import numpy.typing as npt

from app.beir import read_queries
from bench.peers import TantivyPeer
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


def generated_fields(n: int) -> dict[str, npt.NDArray[Any]]:
    """The fields of `n` documents, deterministic: category and brand codes, price, stock."""
    rng = np.random.default_rng(11)
    return {
        "category": rng.integers(0, 20, n),
        "brand": np.minimum(rng.zipf(1.3, n), 500) - 1,
        "price": np.round(np.exp(rng.normal(3.5, 1.0, n)), 2),
        "in_stock": rng.random(n) < 0.9,
    }


def with_fields(source: Path, out: Path) -> None:
    with open(source, "rb") as fh:
        lines = fh.readlines()
    f = generated_fields(len(lines))
    with open(out, "w", encoding="utf-8") as fh:
        for i, line in enumerate(lines):
            record = json.loads(line)
            record.update(category=f"c{f['category'][i]:02d}", brand=f"b{f['brand'][i]:03d}",
                          price=float(f["price"][i]), in_stock=bool(f["in_stock"][i]))
            fh.write(json.dumps(record) + "\n")


def tantivy_peer(corpus: Path, path: Path) -> TantivyPeer:
    """tantivy over the same corpus, with the price as a fast field (built in `path`)."""
    with open(corpus, encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    for d in docs:
        d.setdefault("title", "")
        d.setdefault("text", "")
    return TantivyPeer(docs, path=path, numbers=["price"])


def peer_times(peer: TantivyPeer, texts: list[str], below: tuple[str, float],
               ours_p50: float) -> list[float]:
    """tantivy's p50 and p99 filtered, its p50 unfiltered (interleaved, parsed beforehand),
    its own filtered/unfiltered ratio, and `ours_p50` over its filtered p50."""
    pairs = [(peer.parse(t), peer.parse(t, below)) for t in texts]
    plain, filtered = [], []
    for q, f in pairs:
        if q is None or f is None:
            continue
        t0 = time.perf_counter_ns()
        peer.top(q, 10)
        t1 = time.perf_counter_ns()
        peer.top(f, 10)
        t2 = time.perf_counter_ns()
        plain.append((t1 - t0) / 1e6)
        filtered.append((t2 - t1) / 1e6)
    a, b = summarize(plain), summarize(filtered)
    return [b["p50"], b["p99"], a["p50"], b["p50"] / a["p50"], ours_p50 / b["p50"]]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__)
    ap.add_argument("--big", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/progsearch-bench-structured"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--no-peer", action="store_true", help="skip tantivy")
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

    peer = None
    if not args.no_peer:
        started = time.perf_counter()
        peer = tantivy_peer(corpus, args.work / "tantivy")
        print(f"tantivy built in {time.perf_counter() - started:.1f} s")
    rows, peer_rows = [], []
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
        if peer is not None:
            peer_rows.append([f"{kept / snap.n_docs:.4%}", b["p50"],
                              *peer_times(peer, texts, ("price", cut), b["p50"])])
    print(f"\n{snap.n_docs:,} documents, {len(plans)} SciFact queries, k=10, keyword phase")
    print_table(rows, ["filter keeps", "unfiltered p50 ms", "p99", "filtered p50 ms", "p99",
                       "p50 ratio", "mask ms (once)"])

    if peer_rows:
        print("\nthe same filtered queries in tantivy 0.27 (price as a fast field, top 10)")
        print_table(peer_rows, ["filter keeps", "progsearch p50 ms", "tantivy p50 ms", "p99",
                                "unfiltered p50 ms", "tantivy filtered/unfiltered",
                                "progsearch/tantivy"])

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
