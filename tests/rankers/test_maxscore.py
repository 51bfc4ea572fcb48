"""MaxScore-pruned scoring returns the same top-k as scoring every document."""

from __future__ import annotations

import numpy as np
import pytest

from rankers import maxscore
from rankers.maxscore import (
    Postings,
    score_dense,
    score_docs,
    score_exhaustive,
    score_maxscore,
    score_terms,
)


def _random_index(rng: np.random.Generator, n_docs: int, n_terms: int):  # type: ignore[no-untyped-def]
    dfs = np.minimum(n_docs, (rng.pareto(0.8, n_terms) * 5 + 1).astype(np.int64))
    ptr = np.concatenate([[0], np.cumsum(dfs)]).astype(np.int64)
    docs = np.concatenate([np.sort(rng.choice(n_docs, d, replace=False)) for d in dfs])
    imps = rng.gamma(2.0, 1.0, ptr[-1]).astype(np.float32)
    term_max = np.asarray([imps[ptr[t] : ptr[t + 1]].max() for t in range(n_terms)], np.float32)
    return ptr, docs.astype(np.int32), imps, term_max


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("n_docs", [2_000, 100_000])
@pytest.mark.parametrize("compiled", [True, False])
def test_same_as_exhaustive(seed: int, k: int, n_docs: int, compiled: bool) -> None:
    if compiled and maxscore.compiled_top_k is None:
        pytest.fail("rankers._maxscore is not built (pip install -e . builds it)")
    rng = np.random.default_rng(seed)
    ptr, docs, imps, term_max = _random_index(rng, n_docs, 300)
    acc = np.zeros(n_docs, dtype=np.float32)
    for _ in range(20):
        terms = rng.choice(300, rng.integers(1, 9), replace=False).astype(np.int64)
        weights = rng.uniform(0.2, 2.0, terms.size).astype(np.float32)
        postings = Postings(ptr, docs, imps, term_max)
        ref_docs, ref_scores = score_exhaustive(postings, n_docs, terms, weights, k)
        pruned = score_maxscore(postings, terms, weights, k, acc, compiled=compiled)
        assert not acc.any(), "the scratch accumulator must be handed back zeroed"
        dense = score_dense(postings, terms, weights, k, n_docs)
        for got_docs, got_scores in (pruned, dense):
            np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-5)
            # Equal scores at the cut may be chosen differently; everything above must match.
            above = ref_scores > ref_scores[-1] * (1 + 1e-5)
            assert set(ref_docs[above].tolist()) <= set(got_docs.tolist())


def test_compiled_top_k_orders_ties_by_document_and_checks_its_input() -> None:
    # Three terms; documents 1, 4 and 6 tie on 2.0, document 3 scores 3.0.
    ptr = np.array([0, 3, 5, 7], np.int64)
    docs = np.array([1, 3, 4, 3, 6, 0, 6], np.int32)
    imps = np.array([2.0, 1.0, 2.0, 2.0, 1.0, 0.5, 1.0], np.float32)
    term_max = np.array([2.0, 2.0, 1.0], np.float32)
    postings = Postings(ptr, docs, imps, term_max)
    acc = np.zeros(8, np.float32)
    got_docs, got_scores = score_maxscore(
        postings, np.array([0, 1, 2], np.int64), np.ones(3, np.float32), 3, acc
    )
    assert got_docs.tolist() == [3, 1, 4] and got_scores.tolist() == [3.0, 2.0, 2.0]
    assert maxscore.compiled_top_k is not None
    out_doc, out_score = np.empty(2, np.int64), np.empty(2, np.float32)
    rest = np.array([3.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="n_docs"):
        maxscore.compiled_top_k(ptr, docs, imps, np.array([0, 1], np.int64), np.ones(2, np.float32),
                            rest, 4, out_doc, out_score)
    with pytest.raises(ValueError, match="outside the arrays"):
        maxscore.compiled_top_k(ptr, docs, imps, np.array([0, 3], np.int64), np.ones(2, np.float32),
                            rest, 8, out_doc, out_score)
    with pytest.raises(ValueError, match="lengths"):
        maxscore.compiled_top_k(ptr, docs, imps, np.array([0, 1], np.int64), np.ones(3, np.float32),
                            rest, 8, out_doc, out_score)


def test_more_terms_than_the_compiled_loop_takes_fall_back_to_numpy() -> None:
    rng = np.random.default_rng(3)
    n_terms = maxscore.COMPILED_MAX_TERMS + 10
    ptr, docs, imps, term_max = _random_index(rng, 70_000, n_terms)
    postings = Postings(ptr, docs, imps, term_max)
    terms = np.arange(n_terms, dtype=np.int64)
    weights = np.ones(n_terms, np.float32)
    got_docs, got_scores = score_maxscore(postings, terms, weights, 10,
                                          np.zeros(70_000, np.float32))
    ref_docs, ref_scores = score_exhaustive(postings, 70_000, terms, weights, 10)
    np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-5)
    above = ref_scores > ref_scores[-1] * (1 + 1e-5)
    assert set(ref_docs[above].tolist()) <= set(got_docs.tolist())


def test_no_terms() -> None:
    z = np.zeros(1, dtype=np.float32)
    empty = Postings(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), z)
    docs, scores, full = score_terms(
        empty,
        np.zeros(0, np.int64),
        np.zeros(0, np.float32),
        10,
        z,
    )
    assert docs.size == 0 and scores.size == 0 and full is None


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batched", [True, False])
def test_score_docs_matches_exhaustive(
    seed: int, batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not batched:
        monkeypatch.setattr(maxscore, "_BATCHED_POSTINGS", 0)
    rng = np.random.default_rng(seed)
    n_docs = 500
    ptr, docs, imps, _ = _random_index(rng, n_docs, 50)
    terms = rng.choice(50, 5, replace=False).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    postings = Postings(ptr, docs, imps, imps[:0])
    all_docs, all_scores = score_exhaustive(postings, n_docs, terms, weights, n_docs)
    full = np.zeros(n_docs, dtype=np.float32)
    full[all_docs] = all_scores
    some = rng.choice(n_docs, 40, replace=False).astype(np.int64)
    np.testing.assert_allclose(score_docs(postings, terms, weights, some), full[some], rtol=1e-6)


def _allowed_reference(postings: Postings, terms: np.ndarray, weights: np.ndarray,
                       allow: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive scores of the flagged documents (0 elsewhere) and their top k, ties by
    document."""
    ptr, docs, imps, _ = postings
    scores = np.zeros(allow.size, dtype=np.float32)
    for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
        scores[docs[ptr[t] : ptr[t + 1]]] += imps[ptr[t] : ptr[t + 1]] * np.float32(w)
    scores[~allow] = 0
    ref = np.flatnonzero(scores > 0)
    return scores, ref[np.lexsort((ref, -scores[ref]))][:k]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("share", [0.5, 0.1, 0.01, 0.0005])
@pytest.mark.parametrize("n_docs", [2_000, 300_000])
@pytest.mark.parametrize("compiled", [True, False])
def test_filtered_search_is_exhaustive_search_of_the_allowed(
    seed: int, share: float, n_docs: int, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `allow`, every path (dense, direct scoring, compiled or numpy MaxScore) returns the
    top k of the flagged documents alone."""
    if not compiled:
        monkeypatch.setattr(maxscore, "compiled_top_k", None)
    rng = np.random.default_rng(seed)
    ptr, docs, imps, term_max = _random_index(rng, n_docs, 300)
    postings = Postings(ptr, docs, imps, term_max)
    acc = np.zeros(n_docs, dtype=np.float32)
    allow = rng.random(n_docs) < share
    for _ in range(10):
        terms = rng.choice(300, rng.integers(1, 6), replace=False).astype(np.int64)
        weights = rng.uniform(0.2, 2.0, terms.size).astype(np.float32)
        scores, ref = _allowed_reference(postings, terms, weights, allow, 10)
        got_docs, got_scores, full = score_terms(postings, terms, weights, 10, acc, allow)
        assert not acc.any()
        assert allow[got_docs].all()
        np.testing.assert_allclose(got_scores, scores[ref], rtol=1e-5)
        if ref.size:
            above = scores[ref] > scores[ref][-1] * (1 + 1e-5)
            assert set(ref[above].tolist()) <= set(got_docs.tolist())
        if full is not None:
            assert not full[~allow].any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("share", [0.3, 0.01, 0.0005])
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("k", [10, 2_000])
def test_maxscore_under_a_sparse_filter_skips_to_flagged_documents(
    seed: int, share: float, compiled: bool, k: int
) -> None:
    """MaxScore itself, at shares where the numpy path would score directly instead, returns
    the top k of the flagged documents: the compiled walk jumps from a filtered-out document
    to the next flagged one, and must not skip a flagged one on the way."""
    rng = np.random.default_rng(100 + seed)
    n_docs = 200_000
    ptr, docs, imps, term_max = _random_index(rng, n_docs, 300)
    postings = Postings(ptr, docs, imps, term_max)
    acc = np.zeros(n_docs, dtype=np.float32)
    allow = rng.random(n_docs) < share
    allow[-1] = True  # the last document flagged: the jump's bound
    for _ in range(10):
        terms = rng.choice(300, rng.integers(1, 7), replace=False).astype(np.int64)
        weights = rng.uniform(0.2, 2.0, terms.size).astype(np.float32)
        scores, ref = _allowed_reference(postings, terms, weights, allow, k)
        got_docs, got_scores = score_maxscore(postings, terms, weights, k, acc,
                                              compiled=compiled, allow=allow)
        acc.fill(0.0)
        keep = got_scores > 0
        got_docs, got_scores = got_docs[keep], got_scores[keep]
        assert allow[got_docs].all()
        np.testing.assert_allclose(got_scores, scores[ref], rtol=1e-5)
        if ref.size:
            above = scores[ref] > scores[ref][-1] * (1 + 1e-5)
            assert set(ref[above].tolist()) <= set(got_docs.tolist())
