"""The live index: the snapshot plus the delta log, against fresh builds of the same documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from index.core.types import Document
from index.delta import DeltaLog
from index.ingest import embed_pending
from index.snapshot import BuildOptions, Snapshot, load_snapshot, write_snapshot
from index.sources import document_from_record
from rankers.delta_postings import add_segment, merge_all, merge_top_k, segment, term_postings
from rankers.enhance import EnhancedRanker, EnhanceSettings
from rankers.keyword import KeywordRanker
from rankers.live import LiveIndex
from rankers.live_source import LiveSource
from rankers.semantic import FusionSettings, SemanticRanker
from tests.conftest import make_corpus
from tests.fake_vectors import FakeEncoder, build_with_vectors, fake_vector
from tests.live_search import LiveSearch

QUERIES = ["vitamin deficiency", "brain memory sleep", "cancer tumor therapy", "insulin glucose"]
NEW_D5 = Document("d5", "vitamin sleep", "Brain memory and diet. Sleep helps the brain.")


def corpus() -> tuple[list[Document], list[Document]]:
    docs = [document_from_record(r, id_field="_id") for r in make_corpus(240, seed=3)]
    return docs[:200], docs[200:]


def final_documents(base: list[Document], added: list[Document]) -> list[Document]:
    """What the live corpus holds after `write_delta`, in the order compaction writes it."""
    return [d for d in base if d.id not in ("d5", "d7")] + added + [NEW_D5]


def write_delta(log: DeltaLog, added: list[Document]) -> None:
    log.append(added[:25])
    log.append([*added[25:], NEW_D5])
    log.delete(["d7", "no-such-id"])


@pytest.fixture(scope="module")
def keyword_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Snapshot, LiveIndex]:
    """(snapshot of the base, fresh build of the final corpus, live index over the first)."""
    tmp = tmp_path_factory.mktemp("live")
    base, added = corpus()
    snap = load_snapshot(write_snapshot(base, tmp / "a", BuildOptions(workers=1)))
    log = DeltaLog.open(tmp / "a")
    write_delta(log, added)
    fresh = load_snapshot(
        write_snapshot(final_documents(base, added), tmp / "b", BuildOptions(workers=1))
    )
    return snap, fresh, LiveIndex.open(snap, log)


def test_delta_documents_score_as_in_a_fresh_build(
    keyword_only: tuple[Snapshot, Snapshot, LiveIndex],
) -> None:
    snap, fresh, live = keyword_only
    search, reference = LiveSearch(live, KeywordRanker(snap)), KeywordRanker(fresh)
    worst_snapshot_error = 0.0
    overlap = []
    for query in QUERIES:
        got = search.search(query, 1000)
        want = reference.search(query, 1000)
        assert want.all_scores is not None
        ids = [d.id for d in live.documents(got.docs.tolist())]  # type: ignore[union-attr]
        assert sorted(ids) == sorted(fresh.external_ids(want.docs))  # the same matches
        for doc, score, doc_id in zip(got.docs, got.scores, ids, strict=True):
            expected = want.all_scores[fresh.docs.lookup(doc_id)]
            if doc >= snap.n_docs:  # delta documents: exactly the fresh build's BM25
                assert score == pytest.approx(expected, rel=1e-5)
            else:  # snapshot documents keep the snapshot's idf and average length
                worst_snapshot_error = max(worst_snapshot_error, abs(score / expected - 1))
        top = set(ids[:10]) & set(fresh.external_ids(want.docs[:10]))
        overlap.append(len(top))
    # Measured: with a sixth of the corpus written since the snapshot, snapshot documents'
    # scores are off by at most 6.6% (idf and average length of 200 documents instead of
    # 239), and the top 10 share 9 or 10 documents with the fresh build's.
    assert worst_snapshot_error < 0.08
    assert min(overlap) >= 8


def test_deleted_and_replaced_documents_never_show(
    keyword_only: tuple[Snapshot, Snapshot, LiveIndex],
) -> None:
    snap, _, live = keyword_only
    search = LiveSearch(live, KeywordRanker(snap))
    old_d5, d7 = snap.docs.get(snap.docs.lookup("d5")), snap.docs.get(snap.docs.lookup("d7"))  # type: ignore[arg-type]
    assert old_d5 is not None and d7 is not None
    for text in (old_d5.title, old_d5.text, d7.title, d7.text, *QUERIES):
        hits = live.documents(search.search(text, 1000).docs.tolist())
        assert all(h is not None and h.id != "d7" for h in hits)
        assert [h for h in hits if h is not None and h.id == "d5"] in ([], [NEW_D5])
    assert live.documents([live.lookup("d5")]) == [NEW_D5]  # type: ignore[list-item]
    assert live.lookup("d7") is None and live.lookup("no-such-id") is None
    assert live.lookup("d8") == snap.docs.lookup("d8")
    view = live.view()
    assert view.n_tomb == 2 and view.n_docs == 239


def test_a_word_only_the_delta_knows_is_not_corrected(tmp_path: Path) -> None:
    base, _ = corpus()
    snap = load_snapshot(write_snapshot(base, tmp_path, BuildOptions(workers=1)))
    search = LiveSearch(LiveIndex(snap), KeywordRanker(snap))
    assert [c.corrected for c in search.plan("insulix").corrections] == ["insulin"]
    log = DeltaLog.open(tmp_path)
    log.append([Document("new", "Insulix", "a new insulix pump")])
    search.live.refresh(log)
    plan = search.plan("insulix")
    assert plan.corrections == () and plan.unknown == ()
    result = search.run(plan, 5)
    assert result.docs.tolist() == [snap.n_docs]  # only the new document


@pytest.mark.parametrize(
    ("a", "b", "k", "expected"),
    [
        (([0, 1], [3.0, 1.0]), ([10], [2.0]), 3, [0, 10, 1]),
        (([0, 1], [3.0, 1.0]), ([10], [2.0]), 2, [0, 10]),
        (([4], [2.0]), ([10], [2.0]), 2, [4, 10]),  # ties: snapshot rows first
        (([], []), ([11, 10], [1.0, 1.0]), 5, [10, 11]),
        (([0], [1.0]), ([], []), 0, []),
    ],
)
def test_merge_top_k(
    a: tuple[list[int], list[float]], b: tuple[list[int], list[float]], k: int, expected: list[int]
) -> None:
    def arrays(x: tuple[list[int], list[float]]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        return np.asarray(x[0], np.int64), np.asarray(x[1], np.float32)

    docs, scores = merge_top_k(*arrays(a), *arrays(b), k)
    assert docs.tolist() == expected
    assert np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize(("seed", "limit"), [(0, None), (1, None), (2, 100), (3, 10**6)])
def test_segments_keep_every_live_posting(seed: int, limit: int | None) -> None:
    rng = np.random.default_rng(seed)
    segments: tuple = ()  # type: ignore[type-arg]
    alive = np.zeros(0, dtype=bool)
    postings: list[tuple[int, int, float]] = []
    slot = 0
    for _ in range(12):
        n = int(rng.integers(1, 30))
        alive = np.concatenate([alive, np.ones(n, bool)])
        alive[rng.choice(alive.size, size=2)] = False
        term = rng.integers(0, 8, size=4 * n)
        slots = np.sort(rng.integers(slot, slot + n, size=4 * n))
        tf = rng.random(4 * n).astype(np.float32)
        postings += zip(term.tolist(), slots.tolist(), tf.tolist(), strict=True)
        segments = add_segment(segments, segment(term, slots, tf), alive, limit)
        slot += n
    assert len(segments) <= (6 if limit is None or limit > 1000 else 12)
    if limit is not None and limit < 1000:
        segments = (merge_all(segments, alive),)
    for t in range(8):
        got_slots, got_tf = term_postings(segments, t)
        live = alive[got_slots]
        want = [(s, f) for term, s, f in postings if term == t and alive[s]]
        got = list(zip(got_slots[live].tolist(), got_tf[live].tolist(), strict=True))
        np.testing.assert_allclose(np.array(sorted(got)), np.array(sorted(want)), rtol=1e-6)


def test_background_merges_keep_the_results(tmp_path: Path) -> None:
    base, added = corpus()
    snap = load_snapshot(write_snapshot(base, tmp_path, BuildOptions(workers=1)))
    live = LiveIndex(snap, sync_merge=200)  # larger merges go to the background
    search = LiveSearch(live, KeywordRanker(snap))
    log = DeltaLog.open(tmp_path)
    most = 0
    for i, doc in enumerate(added * 3):  # one document per batch: many small segments
        log.append([Document(f"{doc.id}-{i}", doc.title, doc.text)])
        live.refresh(log)
        most = max(most, len(live.view().blocks))
        live.wait_for_merge()
    assert most > 8 and len(live.view().blocks) <= 8
    before = [search.search(q, 20) for q in QUERIES]
    live.apply([], through=live.seq)  # nothing new: the view is the same
    fresh = LiveIndex(snap)
    fresh.apply(log.changes_since(0))
    for q, got in zip(QUERIES, before, strict=True):
        want = LiveSearch(fresh, KeywordRanker(snap)).search(q, 20)
        assert got.docs.tolist() == want.docs.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)


def test_version_changes_with_every_write(tmp_path: Path) -> None:
    base, added = corpus()
    snap = load_snapshot(build_with_vectors(base, tmp_path))
    log = DeltaLog.open(tmp_path)
    source = LiveSource(tmp_path, DeltaLog.open(tmp_path))  # its own connection: "a process"
    assert source.current().version == snap.version
    seq = log.append(added[:1])
    assert source.current().version == f"{snap.version}+{seq}"
    embed_pending(log, FakeEncoder(), snap.manifest.passage_options)
    assert source.current().version == f"{snap.version}+{seq + 1}"
    assert source.current().view().embedded.tolist() == [True]
    log.delete([added[0].id])
    assert source.stale()  # a change is waiting: `current` has work to do
    assert source.current().version == f"{snap.version}+{seq + 2}"
    assert not source.stale()
    assert source.current().view().empty is False  # an empty slot is still a change


@pytest.fixture(scope="module")
def with_vectors(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Snapshot, Snapshot, DeltaLog, LiveIndex]:
    tmp = tmp_path_factory.mktemp("vectors")
    base, added = corpus()
    snap = load_snapshot(build_with_vectors(base, tmp / "a"))
    log = DeltaLog.open(tmp / "a")
    write_delta(log, added)
    fresh = load_snapshot(build_with_vectors(final_documents(base, added), tmp / "b"))
    return snap, fresh, log, LiveIndex.open(snap, log)


def test_semantic_phase_sees_delta_documents_once_embedded(
    with_vectors: tuple[Snapshot, Snapshot, DeltaLog, LiveIndex],
) -> None:
    snap, fresh, log, live = with_vectors
    encoder = FakeEncoder()
    # Dense scores only, every document a candidate: the fused order is the exact cosine
    # order over the live corpus, which the fresh build gives too.
    fusion = FusionSettings(method="linear", dense_weight=1.0, candidates=1000)
    keyword = KeywordRanker(snap)
    semantic, search = SemanticRanker(snap, keyword, encoder, fusion), LiveSearch(live, keyword)
    reference = SemanticRanker(fresh, KeywordRanker(fresh), encoder, fusion)
    target = NEW_D5.title + ". " + NEW_D5.text
    query_vector = fake_vector(target)
    plan = search.plan("vitamin sleep")
    before = search.fuse(semantic, plan, search.run(plan, 1000), query_vector, 10)
    assert all(d < snap.n_docs for d in before.docs)  # nothing embedded yet
    assert embed_pending(log, encoder, snap.manifest.passage_options, limit=1000) == 41
    live.refresh(log)
    got = search.fuse(semantic, plan, search.run(plan, 1000), query_vector, 10)
    ref_plan = reference.keyword.plan("vitamin sleep")
    want = reference.fuse(ref_plan, reference.keyword.run(ref_plan, 1000), query_vector, 10)
    ids = [d.id for d in live.documents(got.docs.tolist())]  # type: ignore[union-attr]
    assert ids[0] == "d5"
    assert ids == fresh.external_ids(want.docs)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)

    # The enhanced phase, on the best passage alone, equals the fresh build's too.
    settings = EnhanceSettings(weights={"best": 1.0})
    enhanced = EnhancedRanker(snap, keyword, settings)
    ref_enhanced = EnhancedRanker(fresh, reference.keyword, settings)
    query_vector = fake_vector(NEW_D5.text.split(". ")[1])  # d5's second sentence
    candidates = search.fuse(semantic, plan, search.run(plan, 1000), query_vector, 1000)
    got_e = search.rerank(enhanced, plan, search.run(plan, 1000), query_vector, candidates, 10)
    ref_kw = reference.keyword.run(ref_plan, 1000)
    ref_candidates = reference.fuse(ref_plan, ref_kw, query_vector, 1000)
    want_e = ref_enhanced.rerank("", ref_plan, ref_kw, query_vector, ref_candidates, 10)
    ids = [d.id for d in live.documents(got_e.docs.tolist())]  # type: ignore[union-attr]
    assert ids == fresh.external_ids(want_e.docs) and ids[0] == "d5"
    assert got_e.highlights == want_e.highlights
    assert got_e.highlights[0] == "<mark>Sleep</mark> helps the brain."
    assert got_e.passages[0] == -1  # a delta document has no row in the snapshot's passages
    np.testing.assert_allclose(got_e.scores, want_e.scores, rtol=1e-5, atol=1e-6)


def test_writes_landing_during_a_refresh_are_applied_once(tmp_path: Path) -> None:
    """Regression: the view's seq is the last change applied, even when the log grew between
    reading its last seq and reading the changes."""
    base, added = corpus()
    snap = load_snapshot(write_snapshot(base, tmp_path, BuildOptions(workers=1)))
    log = DeltaLog.open(tmp_path)
    log.append(added[:1])

    class Racing(DeltaLog):
        def last_seq(self) -> int:
            seen = super().last_seq()
            log.append(added[1:2])  # lands after the poll, before the read
            return seen

    live = LiveIndex(snap)
    assert live.refresh(Racing(log.path))
    assert live.seq == 2 and live.view().n_slots == 2
    live.refresh(log)
    assert live.view().n_slots == 2 and live.view().n_docs == 202


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delta_document_frequencies_follow_every_write(tmp_path: Path, seed: int) -> None:
    """The view's df, kept as changes apply, is the count of live slots holding each term
    in its postings, after upserts, rewrites (in one batch too), deletes and merges."""
    base, added = corpus()
    snap = load_snapshot(write_snapshot(base[:50], tmp_path, BuildOptions(workers=1)))
    log = DeltaLog.open(tmp_path)
    live = LiveIndex(snap, sync_merge=64)
    rng = np.random.default_rng(seed)
    pool = added + base[50:120]
    for _ in range(12):
        picked = [pool[int(i)] for i in rng.integers(0, len(pool), size=int(rng.integers(1, 9)))]
        rewritten = [Document(d.id, d.title, d.text[: len(d.text) // 2]) for d in picked[:2]]
        log.append([*picked, *rewritten])  # an id twice in a batch: the later one wins
        if rng.random() < 0.5:
            log.delete([pool[int(i)].id for i in rng.integers(0, len(pool), size=3)])
        live.refresh(log)
        view = live.view()
        for tid in range(len(live.terms)):
            slots, _ = term_postings(view.blocks, tid)
            want = int(np.count_nonzero(view.alive[slots]))
            got = int(view.df[tid]) if tid < view.df.size else 0
            assert got == want, live.terms[tid]
