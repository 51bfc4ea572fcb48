"""`progsearch tune`: cross-validation, the install rule, bad input, and the installed model's
use by the engine, `eval` and the cache keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.cache import MemoryCache
from app.cli import main
from app.engine import Engine
from app.jobs import EmbeddedJobs
from app.metrics import Metrics
from app.params import search_params
from app.phases import ENHANCED, KEYWORD, PHASES
from app.phases.bare import open_engine
from app.search import Searcher
from app.settings import Settings
from app.tune import (
    LGBM_GRID,
    TREES,
    Judged,
    collect,
    folds_of,
    param_grid,
    select_params,
    tree_columns,
    tune,
)
from rankers.enhance import EnhanceSettings, score_candidates
from rankers.learned import LinearModel
from rankers.model_store import MODELS, POINTER, install_model, load_model

QUERIES = {
    "q1": "waterproof jacket for rain", "q2": "warm winter coat", "q3": "hiking boots",
    "q4": "running shoes for the road", "q5": "camping tent", "q6": "coffee maker",
    "q7": "headphones for music", "q8": "a backpack for travel",
}


def write_beir(folder: Path, qrels: dict[str, dict[str, int]],
               queries: dict[str, str] = QUERIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels").mkdir(exist_ok=True)
    rows = [f"{q}\t{d}\t{g}" for q, docs in qrels.items() for d, g in docs.items()]
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def judged(sample_root: Path) -> list[Judged]:
    """The sample's candidates and features for the queries (every grade 0)."""
    engine = open_engine(sample_root, PHASES)
    return collect(engine, QUERIES, {})


def qrels_by(judged: list[Judged], feature: str) -> dict[str, dict[str, int]]:
    """One relevant document per query: the candidate ranked first by ``feature`` (the
    default's own score for "default")."""
    out = {}
    for q in judged:
        scores = (score_candidates(q.features, EnhanceSettings()) if feature == "default"
                  else np.asarray(q.features[feature], dtype=np.float64))
        out[q.qid] = {q.ids[int(np.argmax(scores))]: 1}
    return out


@pytest.fixture()
def root(sample_root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "index"
    shutil.copytree(sample_root, dest, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return dest


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the pure parts -----------------------------------------------------------------------

def test_folds_cover_every_query_once_and_follow_the_seed() -> None:
    folds = folds_of(11, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(11))
    assert [f.size for f in folds] == [4, 4, 3]
    assert [f.tolist() for f in folds_of(11, 3, seed=1)] != [f.tolist() for f in folds]


def synthetic(rng: np.random.Generator, relevant_by: str, n: int = 12) -> list[Judged]:
    out = []
    for i in range(n):
        feats = {name: rng.normal(size=30).astype(np.float32)
                 for name in ("bm25", "bm25_excess", "dense", "semantic", "best", "best1",
                              "top2", "title", "coverage", "prf")}
        grades = np.zeros(30)
        score = (score_candidates(feats, EnhanceSettings()) if relevant_by == "default"
                 else feats[relevant_by])
        grades[int(np.argmax(score))] = 1
        out.append(Judged(f"q{i}", feats, tuple(f"d{j}" for j in range(30)), grades, 1.0))
    return out


def test_a_linear_fit_beats_the_default_when_relevance_follows_another_feature() -> None:
    report = tune(synthetic(np.random.default_rng(0), "prf"), "linear", 3, seed=0)
    assert report.better
    assert np.mean(report.fitted) == pytest.approx(1.0)
    assert isinstance(report.model, LinearModel) and report.model.weights == {"prf": 1.0}


def test_the_default_wins_when_relevance_follows_it() -> None:
    report = tune(synthetic(np.random.default_rng(0), "default"), "linear", 3, seed=0)
    assert report.default == [1.0, 1.0, 1.0]
    assert not report.better  # a tie does not install


def test_lambdamart_learns_a_feature_the_default_ignores() -> None:
    report = tune(synthetic(np.random.default_rng(0), "prf", n=40), "lambdamart", 2, seed=0)
    assert np.mean(report.fitted) > np.mean(report.default) + 0.2
    assert report.better


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_in_the_first_ten() -> None:
    q = Judged("q", {}, ("a", "b", "c"), np.array([0.0, 2.0, 1.0]), 1.0)
    assert q.mrr(np.array([3.0, 2.0, 1.0])) == 0.5
    assert q.mrr(np.array([1.0, 2.0, 3.0])) == 1.0
    late = Judged("q", {}, tuple("abcdefghijkl"), np.eye(12)[11], 1.0)
    assert late.mrr(-np.arange(12.0)) == 0.0  # the relevant one is 12th
    assert Judged("q", {}, (), np.zeros(0), 1.0).mrr(np.zeros(0)) == 0.0


def test_the_grid_holds_every_setting_once() -> None:
    grid = param_grid()
    assert len(grid) == int(np.prod([len(v) for v in LGBM_GRID.values()]))
    assert len({tuple(sorted(g.items())) for g in grid}) == len(grid)


def test_nested_selection_chooses_from_the_grid_on_the_training_queries_only() -> None:
    judged = synthetic(np.random.default_rng(2), "prf", n=24)
    columns = tree_columns(judged)
    params, mean = select_params(judged, 0, columns)
    assert {k: params[k] for k in LGBM_GRID} in param_grid()
    assert params["n_estimators"] in TREES and 0.0 < mean <= 1.0
    report = tune(judged, "lambdamart", 2, seed=0)
    assert report.chosen and all("trees" in n for n in report.notes)
    assert len(report.fitted_mrr) == len(report.default_mrr) == 2
    # Another relevant document in every query of the first fold: that fold's choice and
    # model, made without its queries, stay; only its held-out figure, scored on them, moves.
    first = set(folds_of(len(judged), 2, 0)[0].tolist())
    moved = [Judged(q.qid, q.features, q.ids, np.roll(q.grades, 1), q.ideal) if j in first
             else q for j, q in enumerate(judged)]
    again = tune(moved, "lambdamart", 2, seed=0)
    assert again.notes[0] == report.notes[0]
    assert again.fitted[0] != report.fitted[0]


# -- storage --------------------------------------------------------------------------------

def test_a_model_round_trips_through_the_root_and_moves_the_pointer(tmp_path: Path) -> None:
    assert load_model(tmp_path) is None
    first = install_model(tmp_path, LinearModel({"dense": 1.0}))
    second = install_model(tmp_path, LinearModel({"top2": 0.5, "dense": 0.5}))
    assert first != second and second.startswith("enhanced-")
    assert (tmp_path / MODELS / POINTER).read_text().strip() == second + ".json"
    loaded = load_model(tmp_path)
    assert loaded is not None and loaded.version == second
    assert isinstance(loaded.model, LinearModel)
    assert loaded.model.weights == {"top2": 0.5, "dense": 0.5}
    assert not list((tmp_path / MODELS).glob(".tmp-*"))


def test_a_tree_model_round_trips_with_the_same_scores(tmp_path: Path) -> None:
    judged = synthetic(np.random.default_rng(1), "prf", n=20)
    model = tune(judged, "lambdamart", 2, seed=0).model
    version = install_model(tmp_path, model)
    assert (tmp_path / MODELS / f"{version}.txt").is_file()
    loaded = load_model(tmp_path)
    assert loaded is not None
    np.testing.assert_allclose(loaded.model.score(judged[0].features),
                               model.score(judged[0].features))


# -- the command ----------------------------------------------------------------------------

def test_tune_installs_a_model_that_beats_the_default(
        judged: list[Judged], root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_beir(tmp_path / "beir", qrels_by(judged, "prf"))
    code, out, err = run(capsys, "tune", str(root), "--dataset", str(data), "--folds", "2")
    assert code == 0, err
    assert "installed enhanced-" in out
    loaded = load_model(root)
    assert loaded is not None and loaded.version in out
    lines = [ln for ln in out.splitlines() if ln[:1] in "12"]
    assert len(lines) == 2  # one row per fold


def test_tune_leaves_the_default_when_it_wins(
        judged: list[Judged], root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_beir(tmp_path / "beir", qrels_by(judged, "default"))
    code, out, _ = run(capsys, "tune", str(root), "--dataset", str(data), "--folds", "2")
    assert code == 0
    assert "not installed" in out and "the default stays" in out
    assert load_model(root) is None


def test_tune_with_lambdamart_runs_end_to_end(
        judged: list[Judged], root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_beir(tmp_path / "beir", qrels_by(judged, "prf"))
    code, out, err = run(capsys, "tune", str(root), "--dataset", str(data), "--folds", "2",
                         "--model", "lambdamart", "--dry-run")
    assert code == 0, err
    assert "lambdamart" in out and "mean" in out
    assert load_model(root) is None  # a dry run installs nothing


@pytest.mark.parametrize(("case", "message"), [
    ("foreign ids", "none of the 8 judged document ids"),
    ("few queries", "3 judged queries are too few for 2 folds"),
    ("unknown model", "--model 'forest': use one of linear, lambdamart"),
    ("one fold", "--folds 1: at least 2 folds"),
    ("no passages", "this index has no passages"),
])
def test_tune_refuses_bad_input_in_one_line(
        case: str, message: str, root: Path, snapshot_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    qrels = {q: {"p01": 1} for q in QUERIES}
    argv = ["--folds", "2"]
    index = root
    if case == "foreign ids":
        qrels = {q: {f"x{i}": 1} for i, q in enumerate(QUERIES)}
    elif case == "few queries":
        qrels = {q: {"p01": 1} for q in list(QUERIES)[:3]}
    elif case == "unknown model":
        argv += ["--model", "forest"]
    elif case == "one fold":
        argv = ["--folds", "1"]
    else:
        index = snapshot_root
        argv += ["--dry-run"]
    data = write_beir(tmp_path / "beir", qrels)
    code, _, err = run(capsys, "tune", str(index), "--dataset", str(data), *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- the installed model in use -------------------------------------------------------------

def test_eval_reports_the_installed_model_and_the_default(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_beir(tmp_path / "beir", {q: {"p01": 1, "p03": 1} for q in QUERIES})
    code, before, _ = run(capsys, "eval", str(root), "--dataset", str(data), "--split", "train")
    assert code == 0 and "enhanced (default)" not in before
    version = install_model(root, LinearModel({"title": 1.0}))
    code, after, _ = run(capsys, "eval", str(root), "--dataset", str(data), "--split", "train")
    assert code == 0
    rows = {ln.rsplit(None, 3)[0].strip(): ln.split()[-3:] for ln in after.splitlines()[1:]
            if ln.split()[-1][:1].isdigit()}
    assert "enhanced" in rows and "enhanced (default)" in rows
    assert rows["enhanced (default)"] == next(ln.split()[-3:] for ln in before.splitlines()
                                              if ln.startswith("enhanced "))
    assert version in after


def test_the_enhanced_ranker_scores_with_the_installed_model(root: Path) -> None:
    version = install_model(root, LinearModel({"title": 1.0}))
    engine = open_engine(root, PHASES)
    assert engine.model_version == version
    enhanced = engine.rankers.enhanced
    assert enhanced is not None and enhanced.version == version
    assert isinstance(enhanced.settings.model, LinearModel)
    assert enhanced.settings.model.weights == {"title": 1.0}


def test_the_cache_key_of_the_enhanced_phase_changes_with_the_model(root: Path) -> None:
    engine = Engine.open(root, live=False)
    searcher = Searcher(engine, MemoryCache(size=10, ttl=60), Metrics(), Settings(),
                        EmbeddedJobs(engine))
    params = search_params({"q": "rain jacket", "k": "10"}, Settings())
    before = {p: searcher.key(p, params) for p in (KEYWORD.name, ENHANCED.name)}
    install_model(root, LinearModel({"title": 1.0}))
    engine = Engine.open(root, live=False)
    searcher = Searcher(engine, MemoryCache(size=10, ttl=60), Metrics(), Settings(),
                        EmbeddedJobs(engine))
    after = {p: searcher.key(p, params) for p in (KEYWORD.name, ENHANCED.name)}
    assert after[KEYWORD.name] == before[KEYWORD.name]
    assert after[ENHANCED.name] != before[ENHANCED.name]
    assert engine.model_version in after[ENHANCED.name]


def test_a_running_engine_picks_up_a_newly_installed_model(root: Path) -> None:
    engine = Engine.open(root)  # live, as a server or a worker opens it
    assert engine.source is not None
    engine.load_encoder()
    engine.model_poll = 0.0
    assert engine.refresh().enhanced is not None
    assert engine.refresh().enhanced.version == "default"  # type: ignore[union-attr]
    version = install_model(root, LinearModel({"title": 1.0}))
    enhanced = engine.refresh().enhanced
    assert enhanced is not None and enhanced.version == version
    assert engine.model_version == version
    params = search_params({"q": "rain jacket", "k": "5"}, Settings())
    payload = engine.enhanced_payload(params, engine.encode("rain jacket"))
    assert payload["hits"]  # ranked by the new model over the same loaded arrays


@pytest.mark.anyio
async def test_refresh_async_picks_up_a_new_model_on_a_thread(root: Path) -> None:
    engine = Engine.open(root)
    engine.load_encoder()
    engine.model_poll = 0.0
    version = install_model(root, LinearModel({"dense": 1.0}))
    rankers = await engine.refresh_async()
    assert rankers.enhanced is not None and rankers.enhanced.version == version


def test_a_broken_new_model_keeps_the_loaded_one(root: Path) -> None:
    version = install_model(root, LinearModel({"title": 1.0}))
    engine = Engine.open(root)
    engine.model_poll = 0.0
    (root / MODELS / POINTER).write_text("enhanced-missing.json\n")
    engine.refresh()
    assert engine.model_version == version
