"""The enhanced phase on a BEIR split: feature weights chosen by cross-validation, and latency.

    python -m bench.enhance --index /tmp/sfp --dataset ../shared/data/scifact --split train

The semantic phase runs once per query (int8 query encoder, top 100 fused candidates) and every
feature of :mod:`rankers.enhance` is computed once per candidate. A few feature sets, each a
principled family (no per-query tuning), are fitted by a grid search over weights on the simplex
(step ``--step``): for each of ``--folds`` folds of the queries, the weights that maximize mean
nDCG@10 on the other folds are scored on the held-out one. The table shows the held-out mean
(the honest figure), the weights fitted on all queries and their nDCG@10 on all queries (which
flatters them slightly). The latency is that of `EnhancedRanker.rerank` with k = 10, highlights
included, given the keyword result, query vector and semantic candidates.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.beir import split_queries
from bench.timing import print_table, summarize, time_calls
from index.core.encoder import Encoder, EncoderConfig
from index.snapshot import load_snapshot
from rankers.enhance import EnhancedRanker, EnhanceSettings
from rankers.features import zscore
from rankers.keyword import KeywordRanker
from rankers.semantic import SemanticRanker

F64 = npt.NDArray[np.float64]

FEATURE_SETS: list[tuple[str, ...]] = [
    ("bm25", "dense"),
    ("bm25", "dense", "best1"),
    ("bm25", "dense", "best"),
    ("bm25", "dense", "best", "top2"),
    ("bm25", "dense", "best", "title"),
    ("bm25", "dense", "best", "coverage"),
    ("bm25", "dense", "best", "top2", "coverage"),
    ("bm25", "dense", "best", "top2", "title", "coverage"),
    ("semantic", "best", "top2", "coverage"),
    ("bm25", "dense", "best", "coverage", "prf"),
    ("bm25", "dense", "best", "top2", "coverage", "prf"),
]


def minmax(values: F64) -> F64:
    span = values.max() - values.min() if values.size else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def rank_share(values: F64) -> F64:
    """1 for the best candidate down to 0 for the worst, by rank (ties share the lower)."""
    n = values.size
    if n < 2:
        return np.ones_like(values)
    ranks = np.argsort(np.argsort(-values, kind="stable"), kind="stable")
    return 1.0 - ranks / (n - 1)


NORMS = {"zscore": zscore, "minmax": minmax, "rank": rank_share}


def simplex(m: int, step: float) -> F64:
    """Every weight vector of m non-negative multiples of `step` summing to 1."""
    n = round(1 / step)
    rows = [c for c in itertools.product(range(n + 1), repeat=m) if sum(c) == n]
    return np.asarray(rows, dtype=np.float64) / n


def ndcg_table(
    feats: list[F64], rels: list[F64], ideal: F64, weights: F64, k: int = 10
) -> F64:
    """nDCG@k of every query (rows) under every weight vector (columns)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros((len(feats), weights.shape[0]))
    for i, (z, rel) in enumerate(zip(feats, rels, strict=True)):
        if ideal[i] == 0 or z.shape[0] == 0:
            continue
        scores = z @ weights.T  # candidates x configs
        kk = min(k, scores.shape[0])
        top = np.argpartition(-scores, kk - 1, axis=0)[:kk]
        top_scores = np.take_along_axis(scores, top, axis=0)
        top = np.take_along_axis(top, np.argsort(-top_scores, axis=0, kind="stable"), axis=0)
        out[i] = (rel[top] * discount[:kk, None]).sum(axis=0) / ideal[i]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=None,
                    help="semantic candidates re-ranked (default: the fusion's candidate depth)")
    ap.add_argument("--norm", choices=sorted(NORMS), default="zscore",
                    help="how each feature is normalized over the candidates before weighting")
    args = ap.parse_args()
    print("command:", shlex.join(["python", "-m", "bench.enhance", *sys.argv[1:]]))
    snapshot = load_snapshot(args.index)
    keyword = KeywordRanker(snapshot)
    encoder = Encoder.load(EncoderConfig(kind="int8"))
    semantic = SemanticRanker(snapshot, keyword, encoder)
    enhanced = EnhancedRanker(snapshot, keyword)
    queries, qrels = split_queries(args.dataset, args.split)
    qids = [q for q in queries if q in qrels]
    depth = args.depth or semantic.fusion.candidates

    state = {}
    for q in qids:
        plan = keyword.plan(queries[q])
        kw = keyword.run(plan, depth)
        vector = encoder.encode_query(queries[q])
        state[q] = (plan, kw, vector, semantic.fuse(plan, kw, vector, depth))
    raw: dict[str, dict[str, F64]] = {}
    rels: list[F64] = []
    ideal = np.zeros(len(qids))
    discount = 1.0 / np.log2(np.arange(2, 12))
    for i, q in enumerate(qids):
        plan, kw, vector, sem = state[q]
        feats = enhanced.features(plan, kw, vector, sem).features
        raw[q] = {name: np.asarray(v, dtype=np.float64) for name, v in feats.items()}
        judged = qrels[q]
        rels.append(np.array([judged.get(d, 0) for d in snapshot.external_ids(sem.docs)], float))
        gains = sorted(judged.values(), reverse=True)[:10]
        ideal[i] = float(np.dot(gains, discount[: len(gains)]))

    order = np.random.default_rng(args.seed).permutation(len(qids))
    fold_of = np.empty(len(qids), dtype=np.int64)
    fold_of[order] = np.arange(len(qids)) % args.folds
    rows = []
    for names in FEATURE_SETS:
        weights = simplex(len(names), args.step)
        norm = NORMS[args.norm]
        z = [np.stack([norm(raw[q][n]) for n in names], axis=1) for q in qids]
        table = ndcg_table(z, rels, ideal, weights)
        held_out = np.zeros(len(qids))
        for f in range(args.folds):
            train = fold_of != f
            best = int(np.argmax(table[train].mean(axis=0)))
            held_out[~train] = table[~train, best]
        full = int(np.argmax(table.mean(axis=0)))
        fitted = ", ".join(f"{n} {w:.1f}" for n, w in zip(names, weights[full], strict=True))
        full_ndcg = f"{table[:, full].mean():.4f}"
        rows.append([" + ".join(names), f"{held_out.mean():.4f}", fitted, full_ndcg])
    semantic_ndcg = ndcg_table(
        [raw[q]["semantic"][:, None] for q in qids], rels, ideal, np.ones((1, 1))
    ).mean()
    print(f"semantic phase (fused order): nDCG@10 {semantic_ndcg:.4f}")
    print_table(
        rows, ["features (z-scored)", f"nDCG@10 {args.folds}-fold", "weights on all", "nDCG@10 all"]
    )

    settings = EnhanceSettings()
    secs = time_calls(
        lambda q: enhanced.rerank(queries[q], *state[q], 10), qids, warmup=50
    )
    s = summarize(secs * 1e3)
    cands = np.mean([state[q][3].docs.size for q in qids])
    print(
        f"rerank, k=10 with highlights, {cands:.0f} candidates on average, weights "
        f"{settings.weights}: p50 {s['p50']:.3f} ms, p99 {s['p99']:.3f} ms"
    )
    print(f"{len(qids)} queries of split {args.split!r}; {snapshot.n_docs} documents")


if __name__ == "__main__":
    main()
