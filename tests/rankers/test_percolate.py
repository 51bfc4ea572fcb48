"""The percolator: which open follows a write can change, and the k-th score gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.core.types import Document
from index.delta import DeltaLog
from index.snapshot import BuildOptions, load_snapshot, write_snapshot
from index.sources import document_from_record
from rankers.delta_segment import live_view
from rankers.keyword import KeywordRanker
from rankers.live import LiveIndex
from rankers.percolate import (
    Percolator,
    QueryVectors,
    QueryWeights,
    can_enter,
    query_score,
    term_scores,
)
from tests.conftest import make_corpus


def test_only_follows_sharing_a_term_or_showing_an_id_are_candidates() -> None:
    p: Percolator[str] = Percolator()
    p.add("coffee", {"coffe", "grinder"})
    p.add("tent", {"tent"})
    p.add("browse", set(), every=True)
    p.show("tent", {"p05"})
    by_term, by_id = p.candidates({"grinder", "burr"}, {"n1"})
    assert by_term == {"coffee", "browse"} and by_id == set()
    by_term, by_id = p.candidates(set(), {"p05"})
    assert by_term == {"browse"} and by_id == {"tent"}


def test_removed_and_reshown_follows_leave_the_reverse_maps() -> None:
    p: Percolator[int] = Percolator()
    p.add(1, {"a", "b"})
    p.show(1, {"x"})
    p.show(1, {"y"})
    assert p.candidates(set(), {"x"}) == (set(), set())
    assert p.candidates(set(), {"y"}) == (set(), {1})
    p.remove(1)
    assert p.candidates({"a", "b"}, {"y"}) == (set(), set())
    assert len(p) == 0
    p.show(1, {"z"})  # a follow that is gone shows nothing
    assert p.candidates(set(), {"z"}) == (set(), set())


@pytest.mark.parametrize(("best", "kth", "ties", "enters"), [
    (0.0, None, False, False),   # no shared term in the document's text
    (0.1, None, False, True),    # fewer than k hits: anything matching enters
    (2.0, 1.5, False, True),
    (1.5, 1.5, False, False),    # a tie goes to the older (lower-numbered) document
    (1.5, 1.5, True, True),
    (1.0, 1.5, False, False),
])
def test_can_enter(best: float, kth: float | None, ties: bool, enters: bool) -> None:
    assert can_enter(best, kth, ties) is enters


def test_a_writes_score_for_each_query_is_the_keyword_phases_score(tmp_path: Path) -> None:
    """The gate scores written documents from their terms' contributions; it must give the
    score the keyword phase gives them, or it would skip updates (or re-run for nothing)."""
    docs = [document_from_record(r, id_field="_id") for r in make_corpus(120, seed=5)]
    snap = load_snapshot(write_snapshot(docs[:100], tmp_path, BuildOptions(workers=1)))
    log = DeltaLog.open(tmp_path)
    live = LiveIndex(snap)
    rewritten = Document(docs[105].id, docs[3].title, docs[3].text)
    for batch in (docs[100:110], docs[110:120], [rewritten]):  # three postings blocks
        log.append(batch)
        live.refresh(log)
    keyword = KeywordRanker(snap)
    view = live_view(live, keyword)
    assert view is not None
    numbers = [live.lookup(d.id) for d in docs[100:120]]
    written = np.asarray([n for n in numbers if n is not None], dtype=np.int64)[::-1]
    assert written.size == 20
    analyzer = keyword.analyzer
    terms = {t for d in [*docs[100:], rewritten] for t in analyzer.terms(f"{d.title} {d.text}")}
    scores = term_scores(view, terms, written)
    for query in ["vitamin deficiency", "brain memory sleep", "cancer tumor therapy dose"]:
        plan = keyword.plan(query, view=view)
        got = query_score(plan.words, scores, written.size)
        result = keyword.run(plan, 1000, view)
        by_doc = dict(zip(result.docs.tolist(), result.scores.tolist(), strict=True))
        want = np.asarray([by_doc.get(d, 0.0) for d in written.tolist()], dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_query_vectors_find_the_follows_a_document_is_nearer_than_their_bar() -> None:
    qv: QueryVectors[str] = QueryVectors()
    eye = np.eye(3, dtype=np.float32)
    for name, row in zip("abc", eye, strict=True):
        qv.add(name, row, bar=0.5)
    doc = np.asarray([[0.9, 0.1, 0.0]], dtype=np.float32)
    assert qv.near(doc) == {"a"}
    qv.set_bar("b", 0.05)  # b shows a document at cosine 0.05: this one is nearer
    assert qv.near(doc) == {"a", "b"}
    qv.remove("a")  # c takes a's row
    assert qv.near(doc) == {"b"} and len(qv) == 2
    assert qv.near(np.asarray([[0.0, 0.0, 1.0]], dtype=np.float32)) == {"c"}
    for i in range(40):  # grows past its first rows
        qv.add(f"x{i}", eye[0], bar=0.99)
    assert qv.near(doc) == {"b"}
    with pytest.raises(ValueError, match="dimensions"):
        qv.add("bad", np.ones(4, dtype=np.float32))


def test_query_weights_return_the_follows_a_document_beats_the_kth_score_of() -> None:
    qw: QueryWeights[str] = QueryWeights()
    qw.weigh("full", [("cell", 1.0), ("gene", 1.0)], kth=2.0)
    qw.weigh("short", [("gene", 1.0)], kth=None)  # fewer than k hits: any match enters
    qw.weigh("other", [("sleep", 1.0)], kth=0.1)
    scores = {"cell": np.asarray([1.5, 0.0], np.float32),
              "gene": np.asarray([0.4, 0.3], np.float32)}
    assert qw.entering(scores, 2) == {"short"}  # 1.9 does not beat 2.0
    scores["cell"] = np.asarray([1.7, 0.0], np.float32)
    assert qw.entering(scores, 2) == {"full", "short"}
    qw.weigh("full", [("cell", 1.0)], kth=1.8)  # ranked again: its words and bar replaced
    assert qw.entering(scores, 2) == {"short"}
    qw.remove("short")
    qw.weigh("new", [("gene", 2.0)], kth=0.5)  # takes the freed row
    assert qw.entering(scores, 2) == {"new"} and len(qw) == 3
    assert qw.entering({"sleep": np.asarray([0.1, 0.2], np.float32)}, 2) == {"other"}
