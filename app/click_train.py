"""Fit the enhanced phase's ranking to what users clicked: `progsearch learn-clicks` and the
periodic training (`app.click_schedule`).

Every logged search (`app.click_log`) is run again as the enhanced phase runs it now, with its
filter (`app.tune.query_features`, what `progsearch tune` fits on), once per distinct query.
A click on a document shown at rank r weighs 1 / p(r) (`rankers.propensity`, position-based
model, exponent ``eta``). A ranking of the candidates scores a search by the IPS-weighted
DCG@10 of the new order: the sum over its clicks of weight / log2(1 + new rank), divided by
its query's mean ideal (the best its searches' clicks allow, averaged over them); a set of
searches scores the mean of that. Two choices depart from the obvious:

- The new rank of a click is its rank among the documents that search showed, not among every
  candidate. A document the search did not show could not be clicked, whatever its
  relevance: counted as a miss, it would credit any ranking for keeping the shown ones on
  top, that is, for being the ranking that logged the clicks (with one deterministic top 10,
  that ranking always wins). Among the shown documents the weighted clicks are unbiased.
- The normaliser is the query's, not each search's own ideal: a search with one click would
  divide that click's weight by itself, and the correction would be lost for most searches.

The distinct queries are cut into `FOLDS` folds (seeded, `app.tune.folds_of`); for each, the
models are fitted on the other folds' searches and scored on its searches:

- ``linear``: tune's simplex search (step 0.1 over `app.tune.LINEAR_FEATURES`), the weight
  vector with the best mean over the training searches;
- ``lambdamart``: tune's LambdaMART on each query's shown documents, with integer labels: the
  IPS-weighted click rate (weights summed over the searches that showed the document, divided
  by their number) times `LEVELS`, rounded, at most `LEVELS`. The log holds only searches that
  received an event, so a rate is high in absolute terms; within a query, which is all
  lambdarank compares, the order is what the clicks say.

What ranks now (the installed model, or the default weights) is scored on the same folds. The
kind with the better held-out mean is fitted on every query and installed through
`rankers.model_store` only when it beats what ranks now (`app.tune.beats`, tune's rule);
else nothing changes and the report says why. Choosing the better of two kinds on the
held-out folds favours it slightly; with two candidates that is small next to the noise of
the folds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.click_log import ClickLog, Session
from app.engine import Engine
from app.tune import (
    DISCOUNT,
    LINEAR_FEATURES,
    beats,
    discounts,
    fit_lambdarank,
    folds_of,
    query_features,
    simplex,
    weights_of,
)
from index.core.errors import QueryError
from rankers.enhance import EnhanceSettings, score_candidates
from rankers.learned import LinearModel, RankModel, TreeModel, feature_matrix
from rankers.model_store import install_model, load_model
from rankers.propensity import RANK_CAP, ideal_dcg, ips_weights

__all__ = ["FOLDS", "KINDS", "LEVELS", "MIN_QUERIES", "ClickQuery", "ClickReport",
           "click_queries", "learn_from_clicks"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
Scorer = Callable[[Mapping[str, npt.ArrayLike]], F64]
FOLDS = 5
"""Folds of the distinct queries (fewer with fewer queries)."""
MIN_QUERIES = 4
"""Fewer distinct clicked queries than this: nothing is fitted."""
LEVELS = 4
"""Highest relevance label LambdaMART is given."""
KINDS = ("linear", "lambdamart")


@dataclass(frozen=True)
class ShownGroup:
    """The searches of one query that showed the same candidates, and their clicks."""

    among: npt.NDArray[np.intp]
    """The shown documents that are candidates now (their positions in the candidates)."""
    weights: F64
    """One row per search, one column per document of ``among``: its click's IPS weight."""
    ideal: F64
    """Per search: the IPS-weighted DCG@10 of its clicked documents ranked first."""

    def dcg(self, scores: F64) -> F64:
        """Each search's IPS-weighted DCG@10, its shown documents ordered by ``scores``."""
        top = np.argsort(-scores[self.among], kind="stable")[:10]
        out: F64 = self.weights[:, top] @ DISCOUNT[: top.size]
        return out


@dataclass(frozen=True)
class ClickQuery:
    """One distinct query (text and filter): its candidates now and its searches' clicks."""

    key: str
    features: dict[str, npt.NDArray[np.float32]]
    ids: tuple[str, ...]
    shown: tuple[ShownGroup, ...]

    @property
    def n_searches(self) -> int:
        return sum(g.weights.shape[0] for g in self.shown)

    @property
    def norm(self) -> float:
        """The mean over the query's searches of their ideal IPS-weighted DCG@10."""
        return float(np.concatenate([g.ideal for g in self.shown]).mean())

    def gains(self, scores: npt.ArrayLike) -> F64:
        """Each search's IPS-weighted DCG@10 under the order of ``scores`` (its shown
        documents ranked among themselves), divided by the query's `norm`."""
        s = np.asarray(scores, dtype=np.float64)
        return np.concatenate([g.dcg(s) for g in self.shown]) / self.norm

    def linear_gains(self, grid: F64) -> F64:
        """The sum of `gains` over the searches, for every weight vector of ``grid``."""
        total = sum(((g.weights @ discounts(self.features, grid, g.among)).sum(axis=0)
                     for g in self.shown), np.zeros(grid.shape[0]))
        return total / self.norm

    def labels(self) -> tuple[npt.NDArray[np.intp], F64]:
        """The shown candidates and their integer labels for LambdaMART: the IPS-weighted
        click rate over the searches that showed each, times `LEVELS`, rounded."""
        docs = np.unique(np.concatenate([g.among for g in self.shown]))
        clicked, seen = np.zeros(len(self.ids)), np.zeros(len(self.ids))
        for g in self.shown:
            clicked[g.among] += g.weights.sum(axis=0)
            seen[g.among] += g.weights.shape[0]
        rate = clicked[docs] / seen[docs]
        return docs, np.minimum(np.rint(rate * LEVELS), LEVELS)


@dataclass(frozen=True)
class Counts:
    searches: int = 0
    """Searches in the log."""
    clicks: int = 0
    used: int = 0
    """Searches with a click on a document that is still a candidate of their query."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Searches left out, by reason."""


def _key(query: str, filter_text: str) -> str:
    return " ".join(query.casefold().split()) + ("\x00" + filter_text if filter_text else "")


def _shown_groups(group: list[Session], ids: tuple[str, ...], eta: float, cap: int
                  ) -> tuple[list[ShownGroup], int]:
    """The searches of one query by what they showed; how many had no click on a candidate."""
    column = {d: i for i, d in enumerate(ids)}
    by_shown: dict[tuple[str, ...], list[Session]] = {}
    for s in group:
        by_shown.setdefault(s.shown.shown, []).append(s)
    out, lost = [], 0
    for shown, sessions in by_shown.items():
        docs = [d for d in shown if d in column]
        place = {d: i for i, d in enumerate(docs)}
        rows, ideals = [], []
        for s in sessions:
            hit = [(place[d], r) for d, r in s.clicked().items() if d in place]
            if not hit:
                lost += 1
                continue
            row = np.zeros(len(docs))
            cols, ranks = zip(*hit, strict=True)
            row[list(cols)] = ips_weights(ranks, eta, cap)
            rows.append(row)
            ideals.append(ideal_dcg(row[row > 0]))
        if rows:
            among = np.array([column[d] for d in docs], dtype=np.intp)
            out.append(ShownGroup(among, np.stack(rows), np.asarray(ideals)))
    return out, lost


def click_queries(engine: Engine, sessions: Sequence[Session], eta: float,
                  cap: int = RANK_CAP) -> tuple[list[ClickQuery], Counts]:
    """The searches grouped by query, each query's candidates computed once."""
    groups: dict[str, list[Session]] = {}
    skipped: dict[str, int] = {}
    clicks = 0
    for s in sessions:
        n = len(s.clicked())
        clicks += n
        if n == 0:
            skipped["no click"] = skipped.get("no click", 0) + 1
            continue
        groups.setdefault(_key(s.shown.query, s.shown.filter), []).append(s)
    out = []
    for key, group in groups.items():
        first = group[0].shown
        try:
            found = query_features(engine, first.query, first.filter)
        except QueryError:  # the filter names a field the index no longer has
            found = None
        if found is None or not found[1]:
            skipped["no candidates now"] = skipped.get("no candidates now", 0) + len(group)
            continue
        feats, ids = found
        shown, lost = _shown_groups(group, ids, eta, cap)
        if lost:
            skipped["clicks not candidates now"] = \
                skipped.get("clicks not candidates now", 0) + lost
        if shown:
            out.append(ClickQuery(key, feats, ids, tuple(shown)))
    used = sum(q.n_searches for q in out)
    return out, Counts(len(sessions), clicks, used, skipped)


def mean_gain(queries: Sequence[ClickQuery], score: Scorer) -> float:
    """Mean over every search of the queries (each search counts once)."""
    gains = [q.gains(score(q.features)) for q in queries]
    return float(np.concatenate(gains).mean()) if gains else 0.0


def linear_table(queries: Sequence[ClickQuery], grid: F64) -> F64:
    """Per query (rows), the sum of its searches' gains under each weight vector (columns)."""
    return np.stack([q.linear_gains(grid) for q in queries])


def fit_trees(queries: Sequence[ClickQuery], seed: int) -> TreeModel:
    """Tune's LambdaMART on each query's shown candidates, labelled by their click rates."""
    x, y = [], []
    for q in queries:
        docs, labels = q.labels()
        x.append(feature_matrix(q.features)[docs])  # z-scored over every candidate
        y.append(labels)
    return fit_lambdarank(x, y, seed)


class Fitter:
    """Fits one kind on a subset of the queries (the linear table is computed once)."""

    def __init__(self, queries: Sequence[ClickQuery], seed: int) -> None:
        self.queries = list(queries)
        self.seed = seed
        self.grid = simplex(len(LINEAR_FEATURES))
        self._table: F64 | None = None

    def fit(self, kind: str, rows: npt.NDArray[np.intp]) -> RankModel:
        if kind == "linear":
            if self._table is None:
                self._table = linear_table(self.queries, self.grid)
            best = int(np.argmax(self._table[rows].sum(axis=0)))
            return LinearModel(weights_of(self.grid[best]))
        return fit_trees([self.queries[i] for i in rows.tolist()], self.seed)


def _note(model: RankModel) -> str:
    if isinstance(model, LinearModel):
        return str(model.weights)
    return f"{model.booster.num_trees()} trees" if isinstance(model, TreeModel) else ""


@dataclass(frozen=True)
class ClickReport:
    counts: Counts
    eta: float
    queries: int = 0
    """Distinct queries, cut into `folds`."""
    folds: int = 0
    baseline: str = "default"
    """What ranked when training ran: ``default`` or the installed model's version."""
    before: list[float] = field(default_factory=list)
    """The baseline's held-out mean gain, per fold."""
    after: dict[str, list[float]] = field(default_factory=dict)
    """Each fitted kind's held-out mean gain, per fold."""
    notes: dict[str, str] = field(default_factory=dict)
    """Each kind's model fitted on every query (its weights, its number of trees)."""
    chosen: str = ""
    installed: str | None = None
    """The version installed, None when nothing was."""
    reason: str = ""
    model: RankModel | None = None
    """The chosen kind fitted on every query (also when not installed)."""

    def lines(self) -> list[str]:
        c = self.counts
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(c.skipped.items())) or "none"
        out = [f"{c.searches} searches with {c.clicks} clicks in the log; {c.used} used "
               f"(skipped: {skipped}); eta {self.eta:g}"]
        if self.after:
            out.append(f"{self.queries} distinct queries in {self.folds} folds; held-out "
                       "IPS-weighted DCG@10 per search over its query's ideal, mean of folds:")
            out.append(f"  {self.baseline:<28}{np.mean(self.before):.4f}  (ranking now)")
            for kind, values in self.after.items():
                won = sum(a > b for a, b in zip(values, self.before, strict=True))
                out.append(f"  {kind:<28}{np.mean(values):.4f}  better in {won} of "
                           f"{self.folds} folds; {self.notes.get(kind, '')}")
        out.append(f"installed {self.installed} ({self.chosen})" if self.installed else
                   f"not installed: {self.reason}")
        return out


def _baseline(root: Path) -> tuple[str, Scorer]:
    installed = load_model(root)
    if installed is None:
        return "default", lambda f: np.asarray(score_candidates(dict(f), EnhanceSettings()),
                                               dtype=np.float64)
    return installed.version, installed.model.score


def learn_from_clicks(root: Path, engine: Engine, *, eta: float = 1.0, seed: int = 0,
                      kinds: Sequence[str] = KINDS, install: bool = True,
                      clicks: ClickLog | None = None) -> ClickReport:
    """One training from the click log of ``root``; ``engine`` serves that root (its enhanced
    phase ready). ``install`` False: report, install nothing."""
    opened = clicks or ClickLog.open(root)
    try:
        sessions = opened.sessions()
    finally:
        if clicks is None:
            opened.close()
    queries, counts = click_queries(engine, sessions, eta)
    if len(queries) < MIN_QUERIES:
        return ClickReport(counts, eta, len(queries), reason=f"{len(queries)} distinct queries "
                           f"with usable clicks, at least {MIN_QUERIES} are needed")
    n_folds = min(FOLDS, len(queries))
    folds = folds_of(len(queries), n_folds, seed)
    every = np.arange(len(queries))
    baseline, score_now = _baseline(root)
    fitter = Fitter(queries, seed)
    before = [mean_gain([queries[i] for i in f.tolist()], score_now) for f in folds]
    after: dict[str, list[float]] = {}
    for kind in kinds:
        after[kind] = [mean_gain([queries[i] for i in f.tolist()],
                                 fitter.fit(kind, np.setdiff1d(every, f)).score) for f in folds]
    chosen = max(after, key=lambda k: float(np.mean(after[k])))
    models = {kind: fitter.fit(kind, every) for kind in kinds}
    notes = {kind: _note(m) for kind, m in models.items()}
    report = ClickReport(counts, eta, len(queries), n_folds, baseline, before, after, notes,
                         chosen, model=models[chosen])
    mean_after, mean_before = float(np.mean(after[chosen])), float(np.mean(before))
    if not beats(after[chosen], before):
        return replace(report, reason=f"{chosen} ({mean_after:.4f}) does not beat {baseline} "
                       f"({mean_before:.4f}) on the held-out queries; {baseline} stays")
    if not install:
        return replace(report, reason=f"{chosen} beats {baseline} by "
                       f"{mean_after - mean_before:+.4f}; a dry run installs nothing")
    version = install_model(root, models[chosen])
    log.info("installed %s, fitted on %d clicked searches", version, counts.used)
    return replace(report, installed=version)
