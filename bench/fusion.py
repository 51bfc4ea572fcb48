"""Fusion for the semantic phase on a BEIR split: quality of each method (which picks the
default), and latency of ANN search plus fusion.

    .venv/bin/python -m bench.fusion --index /tmp/sfv --dataset ../shared/data/scifact --split train

Query vectors are computed once and reused by every variant, so only fusion differs. Only a
handful of principled settings are compared (no per-query or fine-grained tuning); the
default was chosen across collections by ``bench.fusion_collections``. The latency is
that of `SemanticRanker.fuse` with the query vector and keyword candidates given: nearest
neighbours, exact BM25 and cosine of every candidate, fusion, previous ranks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from app.beir import split_queries
from app.evaluate import METRICS, evaluate_run
from bench.timing import print_table, summarize, time_calls
from index.core.encoder import Encoder, EncoderConfig
from index.snapshot import load_snapshot
from rankers.keyword import KeywordRanker
from rankers.semantic import FusionSettings, SemanticRanker

VARIANTS = [
    FusionSettings(),
    FusionSettings("rrf", dense_weight=0.5),
    FusionSettings("linear", dense_weight=0.5, norm="minmax"),
    FusionSettings("linear", dense_weight=0.5, norm="zscore"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--encoder", default="int8", choices=["int8", "fp32"])
    args = ap.parse_args()
    print("command:", shlex.join(["python", "-m", "bench.fusion", *sys.argv[1:]]))
    snapshot = load_snapshot(args.index)
    keyword = KeywordRanker(snapshot)
    encoder = Encoder.load(EncoderConfig(kind=args.encoder))
    queries, qrels = split_queries(args.dataset, args.split)
    vectors = {q: encoder.encode_query(t) for q, t in queries.items()}
    plans = {q: keyword.plan(t) for q, t in queries.items()}
    rows = []
    for fusion in VARIANTS:
        ranker = SemanticRanker(snapshot, keyword, encoder, fusion)
        run = {}
        for q in queries:
            kw = keyword.run(plans[q], fusion.candidates)
            res = ranker.fuse(plans[q], kw, vectors[q], 100)
            ids = snapshot.external_ids(res.docs)
            run[q] = {d: float(len(ids) - i) for i, d in enumerate(ids)}
        m = evaluate_run(run, qrels)
        if fusion.method == "evidence":
            name, weight = "evidence (default)", f"scale {fusion.dense_scale:g}"
        else:
            name = fusion.method + ("" if fusion.method == "rrf" else f" ({fusion.norm})")
            weight = f"{fusion.dense_weight:g}"
        rows.append([name, weight, *(f"{m[k]:.4f}" for k in METRICS)])
    print_table(rows, ["fusion", "dense weight", *METRICS])
    ranker = SemanticRanker(snapshot, keyword, encoder, FusionSettings())
    candidates = {q: keyword.run(plans[q], ranker.fusion.candidates) for q in queries}
    ids = list(queries)
    secs = time_calls(
        lambda q: ranker.fuse(plans[q], candidates[q], vectors[q], 10), ids, warmup=50
    )
    s = summarize(secs * 1e3)
    print(
        f"ANN search + fusion (default {ranker.fusion}), {snapshot.n_docs} documents, "
        f"{ranker.index.params.kind} index: p50 {s['p50']:.3f} ms, p99 {s['p99']:.3f} ms"
    )
    print(
        f"{len(queries)} queries of split {args.split!r}; encoder {args.encoder}; "
        f"numpy {np.__version__}"
    )


if __name__ == "__main__":
    main()
