"""Fusion and re-ranking rules across collections, chosen by leave-one-collection-out.

    python -m bench.fusion_collections \\
        --collection scifact=/tmp/sfp:../shared/data/scifact:train \\
        --collection cacm=/tmp/cacm:../shared/data/cacm:test \\
        --collection demo=/tmp/demo-shipped:/tmp/demo-beir:test

Each query is run once per collection (int8 query encoder, as the service): the keyword top-100
with BM25, the dense top-100 with cosine, both scores for every candidate of their union (as
`SemanticRanker.fuse`), the query's word bar (`rankers.semantic.query_bar`) and the enhanced
features of every candidate; the arrays are cached in ``--cache`` (one npz per collection,
delete it to recompute). Every rule is then pure numpy over the cache.

A rule's free parameters are fitted to the mean nDCG@10 of two collections (each counts the
same, whatever its number of queries) and scored on the third, for each in turn ("held out");
"all" is the fit on every collection, which is what a default is. No parameter is ever fitted
per query or per collection. The bar of the chosen rule is the query's mean word idf itself
(``c = 1`` in "bm25 beyond c*bar", the most an average word gives alone, see
`rankers.evidence`), not a fitted multiple: fitted freely, the SciFact and CACM fold picks
``c = 0`` and the demo catalog fails. The enhanced phase re-ranks the semantic phase's top
100; in the held-out figures both its semantic rule and its weights are fitted on the two
other collections (nested). The last two tables are `evaluate_run` (pytrec_eval) of the defaults in
`rankers` (per collection) and of the nested fits (held out).
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.beir import split_queries
from app.evaluate import METRICS, evaluate_run
from bench.timing import print_table
from index.core.encoder import Encoder, EncoderConfig
from index.snapshot import load_snapshot
from rankers.enhance import DEFAULT_WEIGHTS, SCIFACT_WEIGHTS, EnhancedRanker
from rankers.evidence import DENSE_SCALE, bm25_excess, evidence
from rankers.features import zscore
from rankers.fusion import rrf
from rankers.keyword import KeywordRanker
from rankers.semantic import SemanticRanker, SemanticResult, query_bar

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Arrays = dict[str, npt.NDArray[np.generic]]
DEPTH = 100
PER_CANDIDATE = ("cand", "bm25", "cos", "best", "best1", "top2", "title", "coverage",
                 "kw_rank", "dense_rank", "ext")
DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


@dataclass(frozen=True)
class Spec:
    name: str
    index: Path
    dataset: Path
    split: str

    @classmethod
    def parse(cls, text: str) -> Spec:
        name, _, rest = text.partition("=")
        index, dataset, split = rest.split(":")
        return cls(name, Path(index), Path(dataset), split)


def collect(spec: Spec) -> Arrays:
    """Every query's candidates and their features, as flat arrays with offsets."""
    snapshot = load_snapshot(spec.index)
    keyword = KeywordRanker(snapshot)
    encoder = Encoder.load(EncoderConfig(kind="int8"))
    semantic = SemanticRanker(snapshot, keyword, encoder)
    enhanced = EnhancedRanker(snapshot, keyword)
    view = semantic.view
    queries, _ = split_queries(spec.dataset, spec.split)
    cols: dict[str, list[npt.NDArray[np.generic]]] = {n: [] for n in PER_CANDIDATE}
    sizes, bars = [], []
    for text in queries.values():
        plan = keyword.plan(text)
        kw = keyword.run(plan, DEPTH)
        q = np.asarray(encoder.encode_query(text), dtype=np.float32)
        dense_ids, _ = semantic.dense(q, DEPTH)
        cand = np.unique(np.concatenate([kw.docs[:DEPTH], dense_ids]))
        assert kw.all_scores is not None  # these corpora are scored densely
        bm25 = kw.all_scores[cand].astype(np.float32)
        cos = (view.vectors(cand, q.size) @ q).astype(np.float32)
        unranked = SemanticResult(cand, np.zeros(cand.size, np.float32), np.full(cand.size, -1))
        feats = enhanced.features(plan, kw, q, unranked).features
        row: Arrays = {
            "cand": cand, "bm25": bm25, "cos": cos,
            "kw_rank": _ranks(cand, kw.docs[:DEPTH]), "dense_rank": _ranks(cand, dense_ids),
            "ext": np.asarray(snapshot.external_ids(cand), dtype=np.str_),
        }
        row.update({n: np.asarray(feats[n], np.float32)
                    for n in ("best", "best1", "top2", "title", "coverage")})
        for n in PER_CANDIDATE:
            cols[n].append(row[n])
        sizes.append(cand.size)
        bars.append(query_bar(plan, view))
    out: Arrays = {n: np.concatenate(v) for n, v in cols.items()}
    out["offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out["bar"] = np.asarray(bars, dtype=np.float64)
    out["qids"] = np.asarray(list(queries), dtype=np.str_)
    return out


def _ranks(cand: I64, ranked: I64) -> I64:
    """Each candidate's 0-based position in ``ranked`` (a subset of ``cand``), -1 when absent."""
    out = np.full(cand.size, -1, dtype=np.int64)
    out[np.searchsorted(cand, ranked)] = np.arange(ranked.size)
    return out


@dataclass(frozen=True)
class Query:
    qid: str
    bar: float
    f: dict[str, F64]
    """Per-candidate arrays (candidates in id order)."""
    ext: npt.NDArray[np.str_]
    kw_rank: I64
    dense_rank: I64
    rel: F64
    ideal: float


@dataclass(frozen=True)
class Collection:
    name: str
    queries: list[Query]
    qrels: dict[str, dict[str, int]]


def load(spec: Spec, cache: Path) -> Collection:
    path = cache / f"{spec.name}.npz"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **collect(spec))  # type: ignore[arg-type]
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    _, qrels = split_queries(spec.dataset, spec.split)
    off = data["offsets"]
    queries = []
    for i, qid in enumerate(data["qids"].tolist()):
        s = slice(int(off[i]), int(off[i + 1]))
        judged = qrels[qid]
        ext = data["ext"][s]
        gains = sorted(judged.values(), reverse=True)[:10]
        queries.append(Query(
            qid, float(data["bar"][i]),
            {n: data[n][s].astype(np.float64)
             for n in ("bm25", "cos", "best", "best1", "top2", "title", "coverage")},
            ext, data["kw_rank"][s], data["dense_rank"][s],
            np.array([judged.get(str(e), 0) for e in ext], dtype=np.float64),
            float(np.dot(gains, DISCOUNT[: len(gains)])),
        ))
    return Collection(spec.name, queries, qrels)


# --- semantic rules: fused scores over the union of candidates --------------------------------

Params = tuple[float, ...]


@dataclass(frozen=True)
class Rule:
    name: str
    score: Callable[[Query, Params], F64]
    grid: Sequence[Params]


def _linear(q: Query, w: float) -> F64:
    return (1 - w) * zscore(q.f["bm25"]) + w * zscore(q.f["cos"])


def _rrf(q: Query, w: float) -> F64:
    lists = [np.argsort(-q.f["bm25"], kind="stable"), np.argsort(-q.f["cos"], kind="stable")]
    ids, scores = rrf(lists, k=60, weights=[1 - w, w])
    out = np.zeros(q.f["bm25"].size)
    out[ids] = scores
    return out


WEIGHTS: list[Params] = [(i / 10,) for i in range(11)]
SCALES: list[Params] = [(s,) for s in (5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 25.0, 30.0, 40.0)]
RULES = [
    Rule("z-score 0.5/0.5 (former)", lambda q, p: _linear(q, 0.5), [()]),
    Rule("z-score, dense weight w", lambda q, p: _linear(q, p[0]), WEIGHTS),
    Rule("rrf k=60, dense weight w", lambda q, p: _rrf(q, p[0]), WEIGHTS),
    Rule("bm25 + s*cos", lambda q, p: evidence(q.f["bm25"], q.f["cos"], 0.0, p[0]), SCALES),
    Rule("bm25 beyond c*bar + s*cos",
         lambda q, p: evidence(q.f["bm25"], q.f["cos"], p[0] * q.bar, p[1]),
         [(c, *s) for c in (0.0, 0.5, 0.75, 1.0, 1.25, 1.5) for s in SCALES]),
    Rule("bm25 beyond bar + s*cos (evidence)",
         lambda q, p: evidence(q.f["bm25"], q.f["cos"], q.bar, p[0]), SCALES),
]
CHOSEN = RULES[-1]


def chosen_at(params: Params) -> Callable[[Query], F64]:
    return lambda q: CHOSEN.score(q, params)


def ndcg10(q: Query, order: npt.NDArray[np.intp]) -> float:
    top = order[:10]
    return float(np.dot(q.rel[top], DISCOUNT[: top.size]) / q.ideal) if q.ideal > 0 else 0.0


def best_first(scores: F64) -> npt.NDArray[np.intp]:
    """Candidates by score; equal scores in id order, as `fuse_candidates` breaks them."""
    return np.argsort(-scores, kind="stable")


def rule_table(rule: Rule, colls: Sequence[Collection]) -> dict[str, F64]:
    """Mean nDCG@10 of each collection under each parameter of the rule's grid."""
    return {c.name: np.array([np.mean([ndcg10(q, best_first(rule.score(q, p)))
                                       for q in c.queries]) for p in rule.grid])
            for c in colls}


def pick(table: dict[str, F64], train: Sequence[str]) -> int:
    """The grid position of the best mean nDCG@10 over ``train`` (each collection alike)."""
    return int(np.argmax(np.mean([table[n] for n in train], axis=0)))


def folds(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    return [(h, [n for n in names if n != h]) for h in names]


# --- the enhanced phase: z-scored features of the semantic top 100 ----------------------------

FEATURE_SETS: list[tuple[str, ...]] = [
    ("bm25", "dense", "best", "coverage"),
    ("semantic", "best", "top2"),
    ("bm25_excess", "dense", "best"),
    ("bm25_excess", "dense", "best", "top2"),
    ("bm25_excess", "dense", "best", "top2", "coverage"),
    ("bm25_excess", "dense", "top2", "title"),
    ("bm25_excess", "dense", "top2"),
]


def simplex(m: int, step: float = 0.1) -> F64:
    n = round(1 / step)
    rows = [c for c in itertools.product(range(n + 1), repeat=m) if sum(c) == n]
    return np.asarray(rows, dtype=np.float64) / n


def feature(q: Query, name: str, fused: F64) -> F64:
    if name == "semantic":
        return fused
    if name == "dense":
        return q.f["cos"]
    if name == "bm25_excess":
        return bm25_excess(q.f["bm25"], q.bar)
    return q.f[name]


def enhanced_table(coll: Collection, params: Params, names: tuple[str, ...], weights: F64) -> F64:
    """Mean nDCG@10 of the re-ranked semantic top 100 under every weight vector (rows)."""
    total = np.zeros(weights.shape[0])
    for q in coll.queries:
        if q.ideal == 0:
            continue
        fused = CHOSEN.score(q, params)
        top = best_first(fused)[:DEPTH]
        z = np.stack([zscore(feature(q, n, fused)[top]) for n in names], axis=1)
        scores = z @ weights.T
        k = min(10, top.size)
        best = np.argsort(-scores, axis=0, kind="stable")[:k]  # ties: semantic order
        total += (q.rel[top][best] * DISCOUNT[:k, None]).sum(axis=0) / q.ideal
    out: F64 = total / len(coll.queries)
    return out


def enhanced_order(q: Query, fused: F64, weights: dict[str, float]) -> npt.NDArray[np.intp]:
    """The semantic top 100 (by ``fused``) re-ranked as `EnhancedRanker.rerank` does."""
    top = best_first(fused)[:DEPTH]
    total = sum((w * zscore(feature(q, n, fused)[top]) for n, w in weights.items() if w),
                np.zeros(top.size))
    return top[np.lexsort((np.arange(top.size), -total))]


# --- reporting --------------------------------------------------------------------------------

def run_of(coll: Collection, orders: Sequence[npt.NDArray[np.intp]]) -> dict[str, float]:
    run = {}
    for q, order in zip(coll.queries, orders, strict=True):
        ids = q.ext[order[:DEPTH]].tolist()
        run[q.qid] = {str(d): float(len(ids) - i) for i, d in enumerate(ids)}
    return evaluate_run(run, coll.qrels)


def by_rank(ranks: I64) -> npt.NDArray[np.intp]:
    listed = np.flatnonzero(ranks >= 0)
    return listed[np.argsort(ranks[listed])]


def phase_metrics(coll: Collection, fuse: Callable[[Query], F64], weights: dict[str, float]
                  ) -> dict[str, dict[str, float]]:
    qs = coll.queries
    fused = [fuse(q) for q in qs]
    return {
        "keyword": run_of(coll, [by_rank(q.kw_rank) for q in qs]),
        "dense": run_of(coll, [by_rank(q.dense_rank) for q in qs]),
        "semantic": run_of(coll, [best_first(f) for f in fused]),
        "enhanced": run_of(coll, [enhanced_order(q, f, weights)
                                  for q, f in zip(qs, fused, strict=True)]),
    }


def fmt(params: Params) -> str:
    return "(" + ", ".join(f"{p:g}" for p in params) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--collection", action="append", type=Spec.parse, required=True,
                    help="NAME=INDEX:DATASET:SPLIT (at least three)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fusion-cache"))
    args = ap.parse_args()
    print("command:", shlex.join(["python", "-m", "bench.fusion_collections", *sys.argv[1:]]))
    colls = [load(spec, args.cache) for spec in args.collection]
    names = [c.name for c in colls]
    print(", ".join(f"{c.name}: {len(c.queries)} queries" for c in colls))

    print("\nSemantic phase rules, nDCG@10 (held out: parameters fitted on the other two)")
    rows, tables = [], {}
    for rule in RULES:
        table = tables[rule.name] = rule_table(rule, colls)
        held = [(h, pick(table, train)) for h, train in folds(names)]
        full = pick(table, names)
        rows.append([rule.name,
                     *(f"{table[h][i]:.4f} {fmt(rule.grid[i])}" for h, i in held),
                     f"{np.mean([table[h][i] for h, i in held]):.4f}",
                     fmt(rule.grid[full]), *(f"{table[n][full]:.4f}" for n in names)])
    print_table(rows, ["rule", *(f"{n} held out" for n in names), "mean held out",
                       "fit on all", *(f"{n} all" for n in names)])

    chosen = tables[CHOSEN.name]
    scale_of = {h: CHOSEN.grid[pick(chosen, train)] for h, train in folds(names)}
    scale_all = CHOSEN.grid[pick(chosen, names)]
    print(f"\nEnhanced phase (z-scored features of the top {DEPTH} of '{CHOSEN.name}'; held out: "
          f"scale {', '.join(f'{h} {fmt(p)}' for h, p in scale_of.items())} and weights "
          "fitted on the other two), nDCG@10")
    rows = []
    fitted: dict[tuple[str, ...], dict[str, dict[str, float]]] = {}
    for feats in FEATURE_SETS:
        weights = simplex(len(feats))
        tables_at: dict[tuple[str, Params], F64] = {}

        def table_at(name: str, p: Params, feats: tuple[str, ...] = feats, weights: F64 = weights,
                     tables_at: dict[tuple[str, Params], F64] = tables_at) -> F64:
            if (name, p) not in tables_at:
                coll = colls[names.index(name)]
                tables_at[(name, p)] = enhanced_table(coll, p, feats, weights)
            return tables_at[(name, p)]

        cells, held_scores, fitted[feats] = [], [], {}
        for h, train in folds(names):
            p = scale_of[h]
            i = int(np.argmax(np.mean([table_at(n, p) for n in train], axis=0)))
            fitted[feats][h] = dict(zip(feats, weights[i].tolist(), strict=True))
            held_scores.append(float(table_at(h, p)[i]))
            cells.append(f"{held_scores[-1]:.4f} {fmt(tuple(weights[i]))}")
        i = int(np.argmax(np.mean([table_at(n, scale_all) for n in names], axis=0)))
        rows.append([" + ".join(feats), *cells, f"{np.mean(held_scores):.4f}",
                     fmt(tuple(weights[i])), *(f"{table_at(n, scale_all)[i]:.4f}" for n in names)])
    print_table(rows, ["features", *(f"{n} held out" for n in names), "mean held out",
                       "fit on all", *(f"{n} all" for n in names)])

    print(f"\nDefaults in rankers: evidence fusion, dense_scale {DENSE_SCALE:g} (fit on all: "
          f"{fmt(scale_all)}); enhanced weights {DEFAULT_WEIGHTS}")
    rows = []
    for c in colls:
        default = phase_metrics(c, chosen_at((DENSE_SCALE,)), DEFAULT_WEIGHTS)
        former = phase_metrics(c, lambda q: _linear(q, 0.5), SCIFACT_WEIGHTS)
        default["semantic (former)"] = former["semantic"]
        default["enhanced (former)"] = former["enhanced"]
        for phase, m in default.items():
            rows.append([c.name, phase, *(f"{m[k]:.4f}" for k in METRICS)])
    print_table(rows, ["collection", "phase", *METRICS])

    feats = tuple(DEFAULT_WEIGHTS)
    if feats not in fitted:
        print(f"(the default enhanced features {feats} are not among FEATURE_SETS)")
        return
    print("\nHeld out (nested: scale and enhanced weights fitted on the other two collections)")
    rows = []
    for c in colls:
        w, p = fitted[feats][c.name], scale_of[c.name]
        note = {"semantic": f"scale {fmt(p)}", "enhanced": fmt(tuple(w.values()))}
        for phase, m in phase_metrics(c, chosen_at(p), w).items():
            rows.append([c.name, phase, *(f"{m[k]:.4f}" for k in METRICS), note.get(phase, "")])
    print_table(rows, ["held out", "phase", *METRICS, "fitted"])
    print(f"former: z-score 0.5/0.5 fusion, enhanced weights {SCIFACT_WEIGHTS} (SciFact alone)")


if __name__ == "__main__":
    main()
