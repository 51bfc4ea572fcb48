"""The enhanced phase's rank, length and position features: the pure functions by table, and
their values over a snapshot with written documents, against a fresh build of the same corpus."""

from __future__ import annotations

import numpy as np
import pytest

from index.delta import DeltaLog
from index.ingest import embed_pending
from index.passages import SENTENCE, TITLE
from index.snapshot import Snapshot, load_snapshot
from rankers.delta_segment import live_view
from rankers.enhance import DEFAULT_WEIGHTS, EnhancedRanker, EnhanceSettings, score_candidates
from rankers.features import FEATURES, combine, pair_sims, passage_scores, reciprocal_ranks
from rankers.keyword import KeywordRanker
from rankers.live import LiveIndex
from rankers.semantic import SemanticRanker
from tests.fake_vectors import FakeEncoder, build_with_vectors, fake_vector
from tests.rankers.test_live import NEW_D5, corpus, final_documents, write_delta


@pytest.mark.parametrize(("ranks", "expected"), [
    ([0, 1, 3, -1], [1.0, 0.5, 0.25, 0.0]),
    ([-1, -1], [0.0, 0.0]),
    ([], []),
])
def test_reciprocal_ranks(ranks: list[int], expected: list[float]) -> None:
    got = reciprocal_ranks(np.asarray(ranks, dtype=np.int64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected)


def test_best_at_is_where_the_best_single_passage_is() -> None:
    # Four documents: best in the middle of three; one passage; none; a tie (the first wins).
    runs = [[0.1, 0.9, 0.3], [0.7], [], [0.2, 0.2, 0.5, 0.5]]
    sims = np.asarray([s for run in runs for s in run], dtype=np.float32)
    offsets = np.cumsum([0] + [len(r) for r in runs]).astype(np.int64)
    kinds = np.full(sims.size, SENTENCE, dtype=np.uint8)
    kinds[offsets[:-1][[0, 1, 3]]] = TITLE
    got = passage_scores(sims, pair_sims(sims, np.zeros(sims.size, np.float32)), offsets, kinds)
    np.testing.assert_allclose(got.best_at, [0.5, 0.0, 0.0, 2 / 3], rtol=1e-6)


def test_the_default_reads_only_its_three_features() -> None:
    rng = np.random.default_rng(0)
    feats = {n: rng.normal(size=40).astype(np.float32) for n in FEATURES}
    own = {n: feats[n] for n in DEFAULT_WEIGHTS}
    np.testing.assert_array_equal(score_candidates(feats, EnhanceSettings()),
                                  combine(dict(own), dict(DEFAULT_WEIGHTS)))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Snapshot, LiveIndex]:
    """(a snapshot with documents written and embedded since, a fresh build of the final
    corpus, the live index over the first)."""
    tmp = tmp_path_factory.mktemp("features")
    base, added = corpus()
    snap = load_snapshot(build_with_vectors(base, tmp / "a"))
    log = DeltaLog.open(tmp / "a")
    write_delta(log, added)
    embed_pending(log, FakeEncoder(), snap.manifest.passage_options, limit=1000)
    fresh = load_snapshot(build_with_vectors(final_documents(base, added), tmp / "b"))
    return snap, fresh, LiveIndex.open(snap, log)


def test_rank_length_and_position_features_over_written_documents(
    written: tuple[Snapshot, Snapshot, LiveIndex],
) -> None:
    snap, fresh, live = written
    keyword = KeywordRanker(snap)
    semantic = SemanticRanker(snap, keyword, FakeEncoder())
    enhanced = EnhancedRanker(snap, keyword)
    view = live_view(live, keyword, semantic, enhanced)
    assert view is not None and len(view.segments) == 2
    query = "vitamin sleep brain"
    plan = keyword.plan(query, view=view)
    kw = keyword.run(plan, 300, view)
    vector = fake_vector(NEW_D5.text.split(". ")[1])
    sem = semantic.fuse(plan, kw, vector, 300, view)
    c = enhanced.features(plan, kw, vector, sem, view)
    f = c.features
    assert set(f) == set(FEATURES)
    assert all(v.shape == c.docs.shape for v in f.values())
    ids = [d.id for d in live.documents(c.docs.tolist())]  # type: ignore[union-attr]
    assert "d5" in ids and any(d < snap.n_docs for d in c.docs)  # both segments take part

    kw_pos = {int(d): i for i, d in enumerate(kw.docs)}
    want_kw = [1 / (1 + kw_pos[int(d)]) if int(d) in kw_pos else 0.0 for d in c.docs]
    np.testing.assert_allclose(f["keyword_rr"], want_kw, rtol=1e-6)
    assert 0.0 in f["keyword_rr"].tolist()  # a document the keyword list does not hold
    sem_pos = {int(d): i for i, d in enumerate(sem.docs)}
    np.testing.assert_allclose(f["semantic_rr"], [1 / (1 + sem_pos[int(d)]) for d in c.docs],
                               rtol=1e-6)
    assert f["query_words"].tolist() == [float(len(plan.words))] * c.docs.size

    # Lengths and passages of snapshot rows and of written documents alike: a fresh build's.
    rows = np.asarray([fresh.docs.lookup(i) for i in ids], dtype=np.int64)
    np.testing.assert_allclose(f["doc_len"], np.log1p(fresh.arrays["keyword/doc_len.npy"][rows]),
                               rtol=1e-6)
    ptr = fresh.arrays["passages/ptr.npy"]
    np.testing.assert_allclose(f["passages"], np.log1p(ptr[rows + 1] - ptr[rows]), rtol=1e-6)
    ref = EnhancedRanker(fresh, KeywordRanker(fresh)).view
    ref_layout = ref.passages(rows, np.asarray(vector, dtype=np.float32))
    ref_ps = passage_scores(ref_layout.sims, ref_layout.pairs, ref_layout.offsets,
                            ref_layout.kinds)
    np.testing.assert_allclose(f["best_at"], ref_ps.best_at, atol=1e-6)
    assert f["best_at"].min() >= 0.0 and f["best_at"].max() <= 1.0
    assert f["best_at"].max() > 0.0  # some best passage is not the first


def test_written_documents_read_their_lengths_from_the_delta(
    written: tuple[Snapshot, Snapshot, LiveIndex],
) -> None:
    snap, fresh, live = written
    keyword = KeywordRanker(snap)
    view = live_view(live, keyword, always=True)
    assert view is not None
    delta = view.segments[1]
    row = next(i for i, d in enumerate(live.view().docs) if d is not None and d.id == "d5")
    fresh_row = fresh.docs.lookup("d5")
    assert fresh_row is not None
    assert delta.lengths(np.asarray([row]))[0] == fresh.arrays["keyword/doc_len.npy"][fresh_row]
