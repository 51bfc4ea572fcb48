"""The semantic phase's nearest neighbours under a filter, at 1M vectors: latency and
recall@10 against exact filtered search, next to the same queries unfiltered and to FAISS
post-filtering (search, then drop what fails the filter) in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.filtered_semantic --data ../shared/data/scifact \\
        [--size 1000000] [--work-dir ~/.cache/progsearch/bench]

The vectors are bench.semantic's: perturbed copies of the real SciFact document vectors, in
the project's default HNSW (sq8 nodes, M=32, efConstruction=200, efSearch 320, 100 re-scored
exactly), cached in --work-dir and shared with bench.semantic. The queries are the SciFact
queries through the int8 encoder. The filters are bench.structured's: a price generated per
document, `price < cut` at cuts keeping about 50, 10, 1, 0.1 and 0.01 % of the documents.

Each query asks for the phase's 100 candidates, as the semantic phase does, through
`rankers.snapshot_segment.nearest_within` (exact search up to 5,000 allowed rows, else the
graph with FAISS's bitmap selector and a raised efSearch); recall@10 is the overlap of its first
10 with the exact filtered top 10. The three ways take turns query by query. The query's
encoding and the fusion, which a filter does not change, are not included.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from bench.semantic import PerturbedCopies, cached_hnsw, read_queries, real_vectors
from bench.structured import SHARES, generated_fields
from bench.timing import print_table, summarize
from index.core.encoder import Encoder, EncoderConfig
from index.vector_params import IndexParams
from index.vectors import VectorIndex
from rankers.snapshot_segment import nearest_within

DEPTH = 100  # the semantic phase's candidates
I64 = npt.NDArray[np.int64]


def exact_top10(vectors: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_],
                queries: npt.NDArray[np.float32]) -> I64:
    """The exact top 10 of each query among the allowed rows, (n_queries, <=10)."""
    rows = np.flatnonzero(allowed)
    best = np.full((len(queries), 10), -1, dtype=np.int64)
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    for start in range(0, rows.size, 200_000):
        part = rows[start : start + 200_000]
        sims = queries @ vectors[part].T
        s = np.concatenate([best_s, sims], axis=1)
        ids = np.concatenate([best, np.broadcast_to(part, sims.shape)], axis=1)
        width = min(10, s.shape[1])
        top = np.argpartition(-s, width - 1, axis=1)[:, :width]
        best_s = np.take_along_axis(s, top, axis=1)
        best = np.take_along_axis(ids, top, axis=1)
    return best


def recall(found: list[I64], exact: I64) -> float:
    out = []
    for f, e in zip(found, exact, strict=True):
        want = set(e[e >= 0].tolist())
        out.append(len(set(f[:10].tolist()) & want) / max(1, len(want)))
    return float(np.mean(out))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.filtered_semantic", description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2, help="for building; queries use 1")
    ap.add_argument("--shares", default=",".join(map(str, SHARES)),
                    help="shares of the documents the filters keep")
    ap.add_argument("--work-dir", type=Path,
                    default=Path.home() / ".cache" / "progsearch" / "bench")
    args = ap.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, "-m", "bench.filtered_semantic",
                                  *sys.argv[1:]]))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    real, fingerprint = real_vectors(args.work_dir, args.data, 5_183, args.threads)
    vectors = PerturbedCopies(real, seed=1).sample(args.size)
    faiss.omp_set_num_threads(args.threads)
    hnsw, built = cached_hnsw(args.work_dir, f"{fingerprint}|{len(real)}|{args.size}|perturbed",
                              vectors, 32, 200, "sq8")
    print("HNSW:", built if isinstance(built, str) else f"built in {built:.0f} s")
    params = IndexParams("hnsw", args.size, hnsw.d, hnsw_m=32, ef_construction=200,
                         ef_search=320, storage="sq8", refine=100)
    ann = VectorIndex(hnsw, params, threads=1, vectors=vectors)
    int8 = Encoder.load(EncoderConfig(kind="int8", threads=1))
    queries = int8.encode_queries(read_queries(args.data, args.queries))
    price = generated_fields(args.size)["price"]
    for q in queries[:20]:
        ann.search(q, DEPTH)

    rows = []
    for share in [float(x) for x in args.shares.split(",")]:
        allowed = price < float(np.quantile(price, share))
        exact = exact_top10(vectors, allowed, queries)
        plain: list[float] = []
        ours: list[float] = []
        post: list[float] = []
        got_ours: list[I64] = []
        got_post: list[I64] = []
        for q in queries:  # interleaved, query by query
            t0 = time.perf_counter_ns()
            ann.search(q, DEPTH)
            t1 = time.perf_counter_ns()
            got_ours.append(nearest_within(ann, vectors, allowed, q, DEPTH))
            t2 = time.perf_counter_ns()
            ids, _ = ann.search(q, DEPTH)
            got_post.append(ids[allowed[ids]])
            t3 = time.perf_counter_ns()
            plain.append((t1 - t0) / 1e6)
            ours.append((t2 - t1) / 1e6)
            post.append((t3 - t2) / 1e6)
        a, b, c = summarize(plain), summarize(ours), summarize(post)
        rows.append([f"{allowed.mean():.4%}", a["p50"], a["p99"], b["p50"], b["p99"],
                     b["p50"] / a["p50"], recall(got_ours, exact), c["p50"],
                     recall(got_post, exact)])
    print(f"\n{args.size:,} vectors, {len(queries)} SciFact queries, {DEPTH} candidates, "
          "1 thread; recall@10 against exact filtered search")
    print_table(rows, ["filter keeps", "unfiltered p50 ms", "p99", "filtered p50 ms", "p99",
                       "p50 ratio", "recall@10", "post-filter p50 ms", "post-filter recall@10"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
