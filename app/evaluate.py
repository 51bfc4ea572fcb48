"""Retrieval quality of each phase on a BEIR dataset, with pytrec_eval."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytrec_eval

from app.beir import split_queries
from index.snapshot import Snapshot
from rankers.keyword import KeywordRanker
from rankers.semantic import FusionSettings, SemanticRanker

__all__ = ["METRICS", "evaluate_run", "evaluate_snapshot", "phase_retrievers"]

METRICS = ("ndcg@10", "recall@100", "mrr@10")
Run = dict[str, dict[str, float]]
Retrieve = Callable[[str, int], tuple[list[str], list[float]]]


def _top(run: Run, k: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:k]) for q, docs in run.items()}


def evaluate_run(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over the judged queries (a query with no results
    counts as zero)."""
    qrels = {q: dict(d) for q, d in qrels.items()}
    full = {q: run.get(q, {}) for q in qrels}
    deep = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    shallow = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    a = deep.evaluate(_top(full, 100))
    b = shallow.evaluate(_top(full, 10))
    n = len(qrels)

    def mean(res: dict[str, dict[str, float]], key: str) -> float:
        return sum(res.get(q, {}).get(key, 0.0) for q in qrels) / n

    return {
        "ndcg@10": round(mean(a, "ndcg_cut_10"), 4),
        "recall@100": round(mean(a, "recall_100"), 4),
        "mrr@10": round(mean(b, "recip_rank"), 4),
    }


def evaluate_snapshot(
    snapshot: Snapshot, dataset: Path, split: str, phases: Mapping[str, Retrieve]
) -> dict[str, dict[str, float]]:
    queries, qrels = split_queries(dataset, split)
    results: dict[str, dict[str, float]] = {}
    for name, retrieve in phases.items():
        run: Run = {}
        for qid, text in queries.items():
            ids, scores = retrieve(text, 100)
            # pytrec_eval breaks score ties by doc id; give it strictly decreasing scores.
            run[qid] = {d: float(len(ids) - i) for i, d in enumerate(ids)}
            del scores
        results[name] = evaluate_run(run, qrels)
    return results


def phase_retrievers(
    snapshot: Snapshot, *, encoder_kind: str = "int8", fusion: FusionSettings | None = None
) -> dict[str, Retrieve]:
    """The phases this snapshot can serve, as retrieval functions for `evaluate_snapshot`:
    `keyword` always; `semantic` (fused) and `dense` (nearest neighbours only) with vectors;
    `enhanced` (the semantic top 100 re-ranked by passages) with passages."""
    keyword = KeywordRanker(snapshot)

    def run_keyword(query: str, k: int) -> tuple[list[str], list[float]]:
        res = keyword.search(query, k)
        return snapshot.external_ids(res.docs), res.scores.tolist()

    phases: dict[str, Retrieve] = {"keyword": run_keyword}
    if not snapshot.has_vectors:
        return phases
    from index.core.encoder import Encoder, EncoderConfig

    encoder = Encoder.load(EncoderConfig(kind=encoder_kind))  # type: ignore[arg-type]
    semantic = SemanticRanker(snapshot, keyword, encoder, fusion)

    def run_semantic(query: str, k: int) -> tuple[list[str], list[float]]:
        plan = keyword.plan(query)
        kw = keyword.run(plan, semantic.fusion.candidates)
        res = semantic.fuse(plan, kw, encoder.encode_query(query), k)
        return snapshot.external_ids(res.docs), res.scores.tolist()

    def run_dense(query: str, k: int) -> tuple[list[str], list[float]]:
        docs, scores = semantic.dense(encoder.encode_query(query), k)
        return snapshot.external_ids(docs), scores.tolist()

    phases["semantic"] = run_semantic
    phases["dense"] = run_dense
    if not snapshot.has_passages:
        return phases
    from rankers.enhance import EnhancedRanker

    enhanced = EnhancedRanker(snapshot, keyword)

    def run_enhanced(query: str, k: int) -> tuple[list[str], list[float]]:
        plan = keyword.plan(query)
        kw = keyword.run(plan, semantic.fusion.candidates)
        vector = encoder.encode_query(query)
        sem = semantic.fuse(plan, kw, vector, semantic.fusion.candidates)
        res = enhanced.rerank(query, plan, kw, vector, sem, k)
        return snapshot.external_ids(res.docs), res.scores.tolist()

    phases["enhanced"] = run_enhanced
    return phases
