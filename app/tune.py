"""`progsearch tune`: fit the enhanced phase's ranking to a BEIR folder's judgements.

Each judged query is run as the enhanced phase runs it (`query_features`: the candidates and
`EnhancedRanker.features` as `Engine.enhanced_payload` computes them), so a model is fitted on
exactly what it scores at query time. Queries are split into K folds (seeded); for each fold
a model is fitted on the others and scored on it (nDCG@10, judgements graded as pytrec_eval
does: gain = grade, ideal from every judged document). The model fitted on all queries is
installed only when its mean held-out nDCG@10 beats the default weights' on the same folds
(`beats`, the install rule that training from clicks, `app.click_train`, applies too).

- ``linear``: every weight vector of step 0.1 on the simplex over `LINEAR_FEATURES`, z-scored
  as the default (which is on the grid); the best on the training folds.
- ``lambdamart``: LightGBM's ``LGBMRanker(objective="lambdarank")`` over
  `rankers.learned.feature_matrix`, its hyperparameters chosen by nested cross-validation:
  within each training fold, every setting of `LGBM_GRID` is fitted on `INNER_FOLDS` - 1
  inner folds and scored on the other (`select_params`), so the outer held-out fold never
  takes part in the choice. The number of trees is chosen among `TREES` from one fit of
  the most, scored after each count (the first n trees of a fit are a fit of n trees).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.engine import Engine, Rankers
from index.core.errors import ProgsearchError
from rankers.enhance import EnhanceSettings, score_candidates
from rankers.features import FEATURES, combine, zscore
from rankers.learned import (
    COLUMNS,
    LinearModel,
    RankModel,
    TreeModel,
    columns_of,
    feature_matrix,
)

__all__ = ["DISCOUNT", "INNER_FOLDS", "LGBM_GRID", "LINEAR_FEATURES", "MODELS", "TREES", "Judged",
           "TuneReport", "beats", "check_folds", "check_ids", "check_options", "collect",
           "default_score", "discounts", "external_ids", "fit_lambdamart", "fit_lambdarank",
           "folds_of", "linear_table", "needs_root", "param_grid", "query_features",
           "select_params", "simplex", "tree_columns", "tune", "weights_of"]

F64 = npt.NDArray[np.float64]
MODELS = ("linear", "lambdamart")
LINEAR_FEATURES = ("bm25_excess", "dense", "top2", "best", "coverage", "prf")
"""The linear model's features: the default's three and three more (3,003 weight vectors)."""
DISCOUNT = 1.0 / np.log2(np.arange(2, 12))
LGBM_PARAMS: dict[str, Any] = {"n_estimators": 300, "learning_rate": 0.03, "num_leaves": 15,
               "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1,
               "colsample_bytree": 0.8, "n_jobs": 1, "verbose": -1}
"""LightGBM's settings; `LGBM_GRID` and `TREES` replace their own by nested selection. One
thread: the nested selection fits many small models, and on a busy two-core machine two
threads spin-waiting on each other made a fit of SciFact's size 18 times slower."""
LGBM_GRID: dict[str, tuple[Any, ...]] = {"num_leaves": (7, 15, 31),
                                         "min_child_samples": (20, 50)}
TREES = (50, 100, 200, 400)
"""The numbers of trees (at the learning rate of `LGBM_PARAMS`) the selection chooses among."""
INNER_FOLDS = 3


@dataclass(frozen=True)
class Judged:
    """One judged query's candidates (in the semantic phase's order) and their grades."""

    qid: str
    features: dict[str, npt.NDArray[np.float32]]
    ids: tuple[str, ...]
    """The candidates' external ids."""
    grades: F64
    ideal: float
    """DCG@10 of the ideal ranking of every judged document (0: nothing relevant)."""

    def ndcg(self, scores: F64) -> float:
        """nDCG@10 of the candidates ordered by ``scores`` (ties: the semantic order)."""
        if self.ideal <= 0 or self.grades.size == 0:
            return 0.0
        top = np.argsort(-scores, kind="stable")[:10]
        return float(np.dot(self.grades[top], DISCOUNT[: top.size]) / self.ideal)

    def mrr(self, scores: F64) -> float:
        """MRR@10: 1 / the rank of the first relevant candidate in the first 10, else 0."""
        if self.grades.size == 0:
            return 0.0
        hits = np.flatnonzero(self.grades[np.argsort(-scores, kind="stable")[:10]] > 0)
        return 1.0 / (1 + int(hits[0])) if hits.size else 0.0


def _ideal(judgements: Mapping[str, int]) -> float:
    gains = sorted((g for g in judgements.values() if g > 0), reverse=True)[:10]
    return float(np.dot(gains, DISCOUNT[: len(gains)]))


def check_ids(engine: Engine, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Refuse judgements of another collection: none of their documents is in the index."""
    docs = engine.snapshot.docs
    judged = {d for q in qrels.values() for d in q}
    found = sum(docs.lookup(d) is not None for d in judged)
    if judged and found == 0:
        example = ", ".join(sorted(judged)[:3])
        raise ProgsearchError(f"none of the {len(judged)} judged document ids ({example}, ...) "
                              "is in this index: the dataset and the index do not match")


def query_features(engine: Engine, text: str, filter_text: str = ""
                   ) -> tuple[dict[str, npt.NDArray[np.float32]], tuple[str, ...]] | None:
    """The enhanced phase's candidates of one query (their features and external ids, in the
    semantic phase's order), computed as `Engine.enhanced_payload` computes them: the keyword
    candidates limited by ``filter_text``, fused with the query vector, over the segments the
    engine searches now. None: the query has no word. The query is read as complete (no
    completion of its last word), as `progsearch eval` reads it. A filter the index cannot
    apply is a `QueryError`."""
    from app.params import SearchParams

    rankers = engine.refresh()
    semantic, enhanced = rankers.semantic, rankers.enhanced
    assert semantic is not None and enhanced is not None  # the caller checked the phase is ready
    if not semantic.keyword.analyzer.words(text):
        return None
    depth = semantic.fusion.candidates
    params = SearchParams(text, depth, False, filter_text)
    state = engine.keyword_state(params, depth, rankers)
    vector = engine.encode(params.text)
    fused = semantic.fuse(state.plan, state.result, vector, depth, state.view)
    c = enhanced.features(state.plan, state.result, vector, fused, state.view)
    return dict(c.features), external_ids(rankers, c.docs)


def external_ids(rankers: Rankers, docs: npt.NDArray[np.int64]) -> tuple[str, ...]:
    """The ids of document numbers: the snapshot's, then the documents written since."""
    n = rankers.snapshot.n_docs
    ids = iter(rankers.snapshot.external_ids([int(d) for d in docs if d < n]))
    written = rankers.live.view().docs if rankers.live is not None else ()
    return tuple(str(next(ids)) if d < n else written[int(d) - n].id for d in docs)


def collect(engine: Engine, queries: Mapping[str, str],
            qrels: Mapping[str, Mapping[str, int]]) -> list[Judged]:
    """Every query's enhanced candidates and features, as the phase computes them."""
    out = []
    for qid, text in queries.items():
        found = query_features(engine, text)
        judged = qrels.get(qid, {})
        if found is None:
            feats: dict[str, npt.NDArray[np.float32]] = {}
            ids: tuple[str, ...] = ()
            grades = np.zeros(0)
        else:
            feats, ids = found
            grades = np.array([max(judged.get(d, 0), 0) for d in ids], dtype=np.float64)
        out.append(Judged(qid, feats, ids, grades, _ideal(judged)))
    return out


def enhanced_depth(engine: Engine) -> int:
    semantic = engine.rankers.semantic
    assert semantic is not None
    return semantic.fusion.candidates


def folds_of(n: int, k: int, seed: int) -> list[npt.NDArray[np.intp]]:
    """The query positions of each of ``k`` folds, a seeded shuffle cut in equal parts."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(order, k)]


def simplex(m: int, step: float = 0.1) -> F64:
    n = round(1 / step)
    rows = [c for c in itertools.product(range(n + 1), repeat=m) if sum(c) == n]
    return np.asarray(rows, dtype=np.float64) / n


def discounts(features: Mapping[str, npt.ArrayLike], grid: F64,
              among: npt.NDArray[np.intp] | None = None) -> F64:
    """The DCG discount of every candidate (rows) under every weight vector of ``grid``
    (columns) of the linear model: 1 / log2(1 + rank) in the first 10, else 0. ``among``:
    only these candidates (rows in that order), ranked among themselves; the features are
    z-scored over every candidate all the same, as at query time."""
    z = np.stack([zscore(features[n]) for n in LINEAR_FEATURES], axis=1)
    scores = z @ grid.T
    if among is not None:
        scores = scores[among]
    best = np.argsort(-scores, axis=0, kind="stable")[:10]
    out = np.zeros(scores.shape)
    np.put_along_axis(out, best, DISCOUNT[: best.shape[0], None], axis=0)
    return out


def linear_table(judged: list[Judged], grid: F64) -> F64:
    """nDCG@10 of every query (rows) under every weight vector of ``grid`` (columns)."""
    table = np.zeros((len(judged), grid.shape[0]))
    for i, q in enumerate(judged):
        if q.ideal <= 0 or q.grades.size == 0:
            continue
        table[i] = q.grades @ discounts(q.features, grid) / q.ideal
    return table


def tree_columns(judged: Sequence[Judged]) -> tuple[str, ...]:
    """The columns LambdaMART is fitted on: `feature_matrix`'s over every feature that all
    the queries with candidates have (all of `FEATURES` for queries `collect` ran)."""
    names = [n for n in FEATURES if all(n in q.features for q in judged if q.grades.size)]
    return columns_of(names)


def param_grid() -> list[dict[str, Any]]:
    """Every setting of `LGBM_GRID`, in a fixed order."""
    keys = sorted(LGBM_GRID)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(LGBM_GRID[k] for k in keys))]


def fit_lambdamart(judged: list[Judged], seed: int, params: Mapping[str, Any] | None = None,
                   columns: Sequence[str] | None = None) -> TreeModel:
    """LambdaMART on the queries with candidates, with `LGBM_PARAMS` updated by ``params``."""
    train = [q for q in judged if q.grades.size > 0]
    cols = tuple(columns) if columns is not None else tree_columns(train)
    return fit_lambdarank([feature_matrix(q.features, cols) for q in train],
                          [q.grades for q in train], seed, params, cols)


def fit_lambdarank(x: Sequence[F64], y: Sequence[F64], seed: int,
                   params: Mapping[str, Any] | None = None,
                   columns: Sequence[str] | None = None) -> TreeModel:
    """LambdaMART over one `feature_matrix` and one array of integer labels per query
    (``columns``: the matrices' column names, `rankers.learned.COLUMNS` by default)."""
    import lightgbm

    settings = {**LGBM_PARAMS, **(params or {})}
    ranker = lightgbm.LGBMRanker(objective="lambdarank", random_state=seed, **settings)
    ranker.fit(np.concatenate(x), np.concatenate(y).astype(np.int64),
               group=[len(g) for g in y], feature_name=list(columns or COLUMNS))
    return TreeModel(ranker.booster_)


def select_params(judged: Sequence[Judged], seed: int, columns: Sequence[str],
                  inner: int = INNER_FOLDS) -> tuple[dict[str, Any], float]:
    """The setting of `param_grid` and `TREES` with the best mean nDCG@10 over ``inner``
    folds of ``judged`` (the training queries only), and that mean."""
    train = [q for q in judged if q.grades.size > 0]
    x = [feature_matrix(q.features, columns) for q in train]
    grid = param_grid()
    total = np.zeros((len(grid), len(TREES)))
    for i, fold in enumerate(folds_of(len(train), inner, seed)):
        held = set(fold.tolist())
        rest = [j for j in range(len(train)) if j not in held]
        for g, params in enumerate(grid):
            model = fit_lambdarank([x[j] for j in rest], [train[j].grades for j in rest],
                                   seed + i, {**params, "n_estimators": max(TREES)}, columns)
            for t, trees in enumerate(TREES):
                total[g, t] += sum(train[j].ndcg(np.asarray(
                    model.booster.predict(x[j], num_iteration=trees), dtype=np.float64))
                    for j in held)
    best_g, best_t = (int(i) for i in np.unravel_index(int(np.argmax(total)), total.shape))
    return ({**grid[best_g], "n_estimators": TREES[best_t]},
            float(total[best_g, best_t]) / len(train))


def _describe(params: Mapping[str, Any]) -> str:
    return (f"{params['n_estimators']} trees, {params['num_leaves']} leaves, "
            f"min {params['min_child_samples']} per leaf")


@dataclass(frozen=True)
class TuneReport:
    kind: str
    default: list[float]
    """Held-out mean nDCG@10 of the default weights, per fold."""
    fitted: list[float]
    """Held-out mean nDCG@10 of the fitted model, per fold."""
    notes: list[str]
    """What each fold's model is (the linear weights; the number of trees)."""
    model: RankModel
    """The model fitted on every query."""
    chosen: str = ""
    """The hyperparameters selected on every query for that model (LambdaMART)."""
    default_mrr: list[float] = field(default_factory=list)
    """Held-out mean MRR@10 of the default weights, per fold."""
    fitted_mrr: list[float] = field(default_factory=list)
    """Held-out mean MRR@10 of each fold's model (the one its nDCG@10 is of), per fold."""

    @property
    def better(self) -> bool:
        return beats(self.fitted, self.default)


def beats(fitted: Sequence[float], baseline: Sequence[float]) -> bool:
    """The install rule: a fitted model replaces what ranks now only when its mean held-out
    figure is above the baseline's; a tie keeps the baseline."""
    return float(np.mean(fitted)) > float(np.mean(baseline))


def weights_of(row: F64) -> dict[str, float]:
    """A weight vector of the simplex as the linear model's weights (the zeros left out)."""
    return {n: round(float(w), 2) for n, w in zip(LINEAR_FEATURES, row, strict=True) if w > 0}


def tune(judged: list[Judged], kind: str, n_folds: int, seed: int,
         columns: Sequence[str] | None = None) -> TuneReport:
    """Cross-validate ``kind`` against the default by query and fit it on every query
    (``columns``: LambdaMART's, `tree_columns` by default)."""
    folds = folds_of(len(judged), n_folds, seed)
    default_scores = np.array([q.ndcg(score_candidates(q.features, EnhanceSettings()))
                               if q.grades.size else 0.0 for q in judged])
    default = [float(default_scores[f].mean()) for f in folds]
    default_mrr = [_held_out(judged, f, default_score, "mrr") for f in folds]
    fitted, notes, fitted_mrr = [], [], []
    model: RankModel
    if kind == "linear":
        grid = simplex(len(LINEAR_FEATURES))
        table = linear_table(judged, grid)
        for f in folds:
            train = np.setdiff1d(np.arange(len(judged)), f)
            best = int(np.argmax(table[train].mean(axis=0)))
            fitted.append(float(table[f, best].mean()))
            notes.append(str(weights_of(grid[best])))
            fitted_mrr.append(_held_out(judged, f, LinearModel(weights_of(grid[best])).score,
                                        "mrr"))
        model = LinearModel(weights_of(grid[int(np.argmax(table.mean(axis=0)))]))
    else:
        cols = tuple(columns) if columns is not None else tree_columns(judged)
        for i, f in enumerate(folds):
            held = set(f.tolist())
            train_q = [q for j, q in enumerate(judged) if j not in held]
            params, _ = select_params(train_q, seed + i, cols)
            fold_model = fit_lambdamart(train_q, seed + i, params, cols)
            fitted.append(_held_out(judged, f, fold_model.score))
            fitted_mrr.append(_held_out(judged, f, fold_model.score, "mrr"))
            notes.append(_describe(params))
        params, _ = select_params(judged, seed, cols)
        model = fit_lambdamart(judged, seed, params, cols)
        return TuneReport(kind, default, fitted, notes, model, _describe(params), default_mrr,
                          fitted_mrr)
    return TuneReport(kind, default, fitted, notes, model, "", default_mrr, fitted_mrr)


def default_score(features: Mapping[str, npt.ArrayLike]) -> F64:
    """The default weights' score of one query's candidates."""
    return combine(dict(features), EnhanceSettings().weights)


def _held_out(judged: list[Judged], fold: npt.NDArray[np.intp],
              score: Callable[[Mapping[str, npt.ArrayLike]], F64], metric: str = "ndcg"
              ) -> float:
    """Mean nDCG@10 (or ``metric`` "mrr": MRR@10) of the queries ``fold`` ranked by ``score``."""
    def one(q: Judged) -> float:
        scores = score(q.features)
        return q.mrr(scores) if metric == "mrr" else q.ndcg(scores)

    return float(np.mean([one(judged[j]) if judged[j].grades.size else 0.0
                          for j in fold.tolist()]))


def check_options(kind: str, n_folds: int) -> None:
    if kind not in MODELS:
        raise ProgsearchError(f"--model {kind!r}: use one of {', '.join(MODELS)}")
    if n_folds < 2:
        raise ProgsearchError(f"--folds {n_folds}: at least 2 folds are needed")


def check_folds(n_folds: int, n_queries: int) -> None:
    """At least two queries with a relevant judgement in every fold."""
    if n_queries < 2 * n_folds:
        raise ProgsearchError(f"{n_queries} judged queries are too few for {n_folds} folds "
                              f"(at least 2 per fold: {2 * n_folds})")


def needs_root(index: Path) -> None:
    from index.snapshot import CURRENT

    if not (index / CURRENT).is_file():
        raise ProgsearchError(f"{index} is not an index root (no {CURRENT}): a model is "
                              "installed in the root; use --dry-run to only cross-validate")

