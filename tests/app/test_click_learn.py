"""Learning the enhanced ranking from clicks: the training and its install rule, the periodic
task's retention, threshold and lock, the embedded schedule and `progsearch learn-clicks`."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from app.cli import main
from app.click_log import ClickLog, Shown
from app.click_schedule import (
    LOCK,
    MARKER,
    ClickSchedule,
    Marker,
    clicks_since,
    read_marker,
    tick,
)
from app.click_train import MIN_QUERIES, click_queries, learn_from_clicks
from app.engine import Engine
from app.server import create_app
from app.settings import Settings
from app.tune import query_features
from index.filelock import file_lock
from rankers.enhance import EnhanceSettings, score_candidates
from rankers.learned import LinearModel
from rankers.model_store import load_model
from rankers.propensity import ideal_dcg, ips_dcg, ips_weights

QUERIES = ("waterproof jacket for rain", "warm winter coat", "hiking boots",
           "running shoes for the road", "camping tent", "coffee maker",
           "headphones for music", "a backpack for travel")
Pick = Callable[[dict[str, np.ndarray], tuple[str, ...]], int]


@pytest.fixture()
def engine(root: Path) -> Engine:
    engine = Engine.open(root)  # live, as a server opens a root
    engine.load_encoder()
    return engine


def top10(engine: Engine, query: str) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The default's top 10 of a query (what the enhanced phase shows) and their features."""
    found = query_features(engine, query)
    assert found is not None
    feats, ids = found
    order = np.argsort(-score_candidates(feats, EnhanceSettings()), kind="stable")[:10]
    return tuple(ids[i] for i in order), {n: np.asarray(v)[order] for n, v in feats.items()}


def by_feature(name: str) -> Pick:
    """The shown document that ``name`` scores highest."""
    return lambda feats, shown: int(np.argmax(feats[name]))


def add_clicks(engine: Engine, root: Path, queries: tuple[str, ...], pick: Pick,
               searches: int = 6, at: float | None = None) -> dict[str, str]:
    """``searches`` searches of each query, each with one click on the document ``pick``
    chooses among the shown ones; the clicked id of each query."""
    log = ClickLog.open(root)
    start = time.time() if at is None else at
    chosen = {}
    for qi, query in enumerate(queries):
        shown, feats = top10(engine, query)
        doc = shown[pick(feats, shown)]
        chosen[query] = doc
        for n in range(searches):
            s = Shown(f"s{qi}-{n}", query, "", shown, "default", start + n)
            log.add(s, doc, at=start + n + 1)
    log.close()
    return chosen


def rank_under(model: LinearModel, engine: Engine, query: str, doc: str) -> int:
    found = query_features(engine, query)
    assert found is not None
    feats, ids = found
    order = np.argsort(-model.score(feats), kind="stable")
    return [ids[i] for i in order].index(doc) + 1


# -- the training ---------------------------------------------------------------------------

def test_the_gain_of_a_search_is_its_ips_weighted_dcg_over_the_query_ideal(
        engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES[:1], by_feature("prf"), searches=3)
    log = ClickLog.open(root)
    [query], counts = click_queries(engine, log.sessions(), eta=1.0)
    assert counts.searches == counts.used == 3 and counts.clicks == 3
    [rank] = log.sessions()[0].clicked().values()
    weight = ips_weights([rank])
    # The default ranks the shown documents as they were shown: the click stays at its rank.
    expected = ips_dcg([rank], weight) / ideal_dcg(weight)
    np.testing.assert_allclose(query.gains(score_candidates(query.features, EnhanceSettings())),
                               [expected] * 3)
    # Ranked by the feature the users followed, the clicked document comes first.
    np.testing.assert_allclose(query.gains(query.features["prf"]), 1.0)


def test_searches_of_one_query_that_showed_different_lists_are_grouped_by_list(
        engine: Engine, root: Path) -> None:
    """An explored search shows a deeper candidate in the top 10 (`rankers.explore`): it is
    grouped apart from the plain searches of its query, and a click on that candidate at
    rank r weighs 1 / p(r), as any click at r does."""
    query = QUERIES[0]
    found = query_features(engine, query)
    assert found is not None
    feats, ids = found
    ranked = [ids[i] for i in np.argsort(-score_candidates(feats, EnhanceSettings()),
                                         kind="stable")]
    assert len(ranked) > 15
    plain = tuple(ranked[:10])
    explored = (*ranked[:2], ranked[14], *ranked[2:9])  # rank 15 shown at rank 3
    log = ClickLog.open(root)
    start = time.time()
    for n in range(4):
        log.add(Shown(f"p{n}", query, "", plain, "default", start + n), plain[0], at=start + n)
    for n in range(2):
        s = Shown(f"x{n}", query, "", explored, "default", start + 10 + n)
        log.add(s, ranked[14], at=start + 11 + n)
    [q], counts = click_queries(engine, log.sessions(), eta=1.0)
    log.close()
    assert counts.used == 6 and len(q.shown) == 2
    by_size = {g.weights.shape[0]: g for g in q.shown}
    column = {d: i for i, d in enumerate(ids)}
    shown_plain, shown_explored = by_size[4], by_size[2]
    assert [ids[i] for i in shown_plain.among] == list(plain)
    assert [ids[i] for i in shown_explored.among] == list(explored)
    # the explored click: rank 3 of what was shown, weight 1 / p(3) = 3 with eta 1
    where = list(shown_explored.among).index(column[ranked[14]])
    np.testing.assert_allclose(shown_explored.weights[:, where], ips_weights([3, 3]))
    assert np.count_nonzero(shown_explored.weights) == 2
    np.testing.assert_allclose(shown_plain.weights[:, 0], ips_weights([1] * 4))
    # a ranking that puts the explored candidate first gets its whole weight for those searches
    scores = score_candidates(feats, EnhanceSettings()).astype(np.float64)
    up = scores.copy()
    up[column[ranked[14]]] = scores.max() + 1
    assert np.all(shown_explored.dcg(up) > shown_explored.dcg(scores))
    np.testing.assert_allclose(shown_explored.dcg(up), ips_weights([3, 3]))  # / log2(2)
    np.testing.assert_allclose(shown_plain.dcg(up), shown_plain.dcg(scores))


def test_clicks_that_favour_some_documents_install_a_model_that_ranks_them_higher(
        engine: Engine, root: Path) -> None:
    chosen = add_clicks(engine, root, QUERIES, by_feature("prf"))
    report = learn_from_clicks(root, engine, kinds=("linear",))
    assert report.installed is not None, report.lines()
    installed = load_model(root)
    assert installed is not None and installed.version == report.installed
    assert isinstance(installed.model, LinearModel)
    assert np.mean(report.after["linear"]) > np.mean(report.before)
    default = LinearModel(dict(EnhanceSettings().weights))
    before = [rank_under(default, engine, q, d) for q, d in chosen.items()]
    after = [rank_under(installed.model, engine, q, d) for q, d in chosen.items()]
    assert sum(after) < sum(before) and all(a <= b for a, b in zip(after, before, strict=True))
    assert f"installed {report.installed}" in "\n".join(report.lines())


def test_no_gain_over_the_ranking_now_installs_nothing(engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES, lambda feats, shown: 0)  # users take the first result
    report = learn_from_clicks(root, engine)
    assert report.installed is None and load_model(root) is None
    assert np.mean(report.before) == pytest.approx(1.0)
    assert "does not beat default" in report.reason and "default stays" in report.reason


def test_too_few_queries_install_nothing(engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES[: MIN_QUERIES - 1], by_feature("prf"))
    report = learn_from_clicks(root, engine)
    assert report.installed is None and load_model(root) is None
    assert f"at least {MIN_QUERIES} are needed" in report.reason
    assert report.lines()[-1].startswith("not installed:")


def test_a_search_is_run_again_with_its_filter(engine: Engine, root: Path) -> None:
    found = query_features(engine, "warm jacket", "category = outdoor")
    unfiltered = query_features(engine, "warm jacket")
    assert found is not None and unfiltered is not None
    ids = found[1]
    assert ids and len(ids) < len(unfiltered[1])
    categories = {d.id: d.fields.get("category") for d in
                  (engine.document(i) for i in ids) if d is not None}
    assert set(categories) == set(ids) and set(categories.values()) == {"outdoor"}


def test_a_search_whose_filter_the_index_cannot_apply_is_skipped(
        engine: Engine, root: Path) -> None:
    shown, _ = top10(engine, QUERIES[0])
    log = ClickLog.open(root)
    log.add(Shown("f1", QUERIES[0], "nosuchfield = 1", shown, "default", time.time()), shown[0])
    _, counts = click_queries(engine, log.sessions(), eta=1.0)
    assert counts.used == 0 and counts.skipped == {"no candidates now": 1}


def test_the_baseline_is_the_installed_model(engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES, by_feature("prf"))
    first = learn_from_clicks(root, engine, kinds=("linear",))
    assert first.installed is not None
    again = learn_from_clicks(root, engine, kinds=("linear",))
    assert again.baseline == first.installed
    assert again.installed is None and "stays" in again.reason  # it cannot beat itself


# -- the periodic task ----------------------------------------------------------------------

def test_retention_removes_old_searches_and_the_oldest_past_the_count(
        engine: Engine, root: Path) -> None:
    now = time.time()
    add_clicks(engine, root, QUERIES[:1], by_feature("prf"), searches=2, at=now - 40 * 86400)
    add_clicks(engine, root, QUERIES[1:4], by_feature("prf"), searches=1, at=now)
    schedule = ClickSchedule(min_clicks=10**6, max_age_s=30 * 86400.0, max_searches=2)
    assert tick(root, engine, schedule) is None  # below the threshold: retention only
    log = ClickLog.open(root)
    assert [s.shown.query for s in log.sessions()] == list(QUERIES[2:4])
    assert log.count() == 2


def test_training_waits_for_enough_new_clicks(engine: Engine, root: Path) -> None:
    schedule = ClickSchedule(min_clicks=30)
    add_clicks(engine, root, QUERIES[:4], by_feature("prf"))  # 24 clicks
    assert tick(root, engine, schedule) is None
    assert not (root / MARKER).exists()
    add_clicks(engine, root, QUERIES[4:], by_feature("prf"))  # 48
    report = tick(root, engine, schedule)
    assert report is not None and report.counts.clicks == 48
    marker = read_marker(root)
    assert marker.seq == ClickLog.open(root).last_seq() and marker.at > 0
    assert json.loads((root / MARKER).read_text())["installed"] == report.installed
    assert tick(root, engine, schedule) is None  # nothing new since


def test_a_new_log_counts_every_click_as_new(engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES[:2], by_feature("prf"), searches=2)
    log = ClickLog.open(root)
    assert clicks_since(log, Marker(seq=10_000, at=time.time() + 60), 1) == 4
    assert clicks_since(log, Marker(seq=log.last_seq(), at=time.time()), 1) == 0


def test_only_one_process_trains_at_a_time(engine: Engine, root: Path) -> None:
    add_clicks(engine, root, QUERIES, by_feature("prf"))
    schedule = ClickSchedule(min_clicks=1)
    with file_lock(root / LOCK, wait=True) as held:  # another process training
        assert held
        assert tick(root, engine, schedule) is None
    assert not (root / MARKER).exists()
    assert tick(root, engine, schedule) is not None


def test_the_server_trains_in_the_background_once_clicks_arrive(
        engine: Engine, root: Path) -> None:
    settings = Settings(index=root, click_train_seconds=0.1, click_train_min=1)
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/healthz").status_code == 200
        add_clicks(engine, root, QUERIES, by_feature("prf"))
        deadline = time.monotonic() + 60
        # A training may run while the clicks are still being added (too few queries: its
        # marker is written, nothing installed); the next one, on every click, installs.
        while load_model(root) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/healthz").status_code == 200  # the loop kept serving
    assert (root / MARKER).exists()
    assert load_model(root) is not None


@pytest.mark.parametrize(("env", "message"), [
    ({"PROGSEARCH_CLICK_TRAIN_MIN": "0"}, "PROGSEARCH_CLICK_TRAIN_MIN=0"),
    ({"PROGSEARCH_CLICK_ETA": "-1"}, "PROGSEARCH_CLICK_ETA=-1.0"),
    ({"PROGSEARCH_CLICK_TRAIN_SECONDS": "soon"}, "PROGSEARCH_CLICK_TRAIN_SECONDS='soon'"),
])
def test_bad_click_settings_are_refused_at_start(env: dict[str, str], message: str) -> None:
    from app.settings import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_schedule_reads_its_settings() -> None:
    schedule = ClickSchedule.of(Settings.from_env({
        "PROGSEARCH_CLICK_TRAIN_SECONDS": "60", "PROGSEARCH_CLICK_TRAIN_MIN": "5",
        "PROGSEARCH_CLICK_MAX_AGE_DAYS": "2", "PROGSEARCH_CLICK_MAX_SEARCHES": "9",
        "PROGSEARCH_CLICK_ETA": "0.5"}))
    assert schedule == ClickSchedule(60.0, 5, 2 * 86400.0, 9, 0.5)


def test_celery_beat_sends_the_training_with_the_index_work() -> None:
    from app.celery_app import INDEX_QUEUE, LEARN_CLICKS, make_celery

    assert not make_celery("memory://").conf.beat_schedule
    entry = make_celery("memory://", learn_every=600.0).conf.beat_schedule[LEARN_CLICKS]
    assert entry["task"] == LEARN_CLICKS and entry["schedule"] == 600.0
    assert entry["options"]["queue"] == INDEX_QUEUE


# -- the command ----------------------------------------------------------------------------

def test_learn_clicks_prints_the_report_and_installs(
        engine: Engine, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_clicks(engine, root, QUERIES, by_feature("prf"))
    assert main(["learn-clicks", str(root), "--model", "linear", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "48 searches with 48 clicks" in out and "a dry run installs nothing" in out
    assert load_model(root) is None
    assert main(["learn-clicks", str(root), "--model", "linear"]) == 0
    out = capsys.readouterr().out
    installed = load_model(root)
    assert installed is not None and f"installed {installed.version}" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "forest"], "--model 'forest': use one of linear, lambdamart, both"),
    (["--eta", "9"], "--eta 9: use a value from 0 to 4"),
    (["--version-folder"], "is not an index root (no CURRENT)"),
    (["--no-passages"], "the enhanced phase is unavailable"),
])
def test_learn_clicks_refuses_bad_input_in_one_line(
        argv: list[str], message: str, root: Path, snapshot_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    index = root
    if argv == ["--version-folder"]:
        index, argv = next(p for p in root.iterdir() if (p / "manifest.json").is_file()), []
    elif argv == ["--no-passages"]:  # a copy: the command opens the root live
        index, argv = tmp_path / "bare", []
        shutil.copytree(snapshot_root, index, ignore=shutil.ignore_patterns("delta.sqlite*"))
    assert main(["learn-clicks", str(index), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
