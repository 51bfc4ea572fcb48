"""Retrieval quality of each phase on a BEIR dataset, with pytrec_eval.

The phases come from the registry and run in their bare form (`Phase.rank`) on the loaded
index; a phase's `references` (the semantic phase's nearest neighbours alone, `dense`) are
reported next to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytrec_eval

from app.beir import split_queries
from app.engine import Engine
from app.phases import PHASES, BareQuery, Phase

__all__ = ["DEPTH", "METRICS", "evaluate_engine", "evaluate_run", "phase_runs"]

METRICS = ("ndcg@10", "recall@100", "mrr@10")
DEPTH = 100
"""Hits retrieved per query: Recall@100 needs them all."""
Run = dict[str, dict[str, float]]


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


def phase_runs(engine: Engine, queries: Mapping[str, str], phases: Iterable[Phase]
               ) -> dict[str, Run]:
    """Each phase's (and reference's) run over the queries, in phase order."""
    snapshot = engine.rankers.snapshot
    runs: dict[str, Run] = {}
    phases = list(phases)
    for qid, text in queries.items():
        query = BareQuery(engine.rankers, text, DEPTH, engine.encode)
        for phase in phases:
            ranking = phase.rank(query)
            if ranking is None:  # no bare form: nothing to evaluate
                continue
            for name, r in {phase.name: ranking, **phase.references(query)}.items():
                ids = snapshot.external_ids(r.docs)
                # pytrec_eval breaks score ties by doc id; give it strictly decreasing scores.
                runs.setdefault(name, {})[qid] = {d: float(len(ids) - i) for i, d in enumerate(ids)}
    return runs


def evaluate_engine(engine: Engine, dataset: Path, split: str,
                    phases: Iterable[Phase] = PHASES) -> dict[str, dict[str, float]]:
    """The figures of each phase the engine is ready to run (see `ready_phases`)."""
    queries, qrels = split_queries(dataset, split)
    return {name: evaluate_run(run, qrels)
            for name, run in phase_runs(engine, queries, phases).items()}
