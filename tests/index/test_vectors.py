"""Vector index: exact search, HNSW recall, save/load round trips and parameter errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
import pytest

from index.compact import build_options
from index.core.errors import ModelError, QueryError, SnapshotError
from index.core.types import Document
from index.embedding import document_text, embed_corpus
from index.snapshot import load_snapshot
from index.vector_params import IndexParams, VectorOptions
from index.vectors import (
    HNSW_FILE,
    VECTORS_FILE,
    VectorIndex,
    build_vector_index,
    filtered_ef,
    load_vector_index,
    save_vector_index,
)
from rankers.keyword import KeywordRanker
from rankers.semantic import SemanticRanker
from rankers.snapshot_segment import EXACT_FILTERED, nearest_within
from tests.fake_vectors import FakeEncoder as FakeQueryEncoder
from tests.fake_vectors import build_with_vectors, fake_vector

DIM = 384


def unit_vectors(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((count, dim)).astype(np.float32)
    unit: np.ndarray = data / np.linalg.norm(data, axis=1, keepdims=True)
    return unit


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ data.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def hnsw_case() -> tuple[np.ndarray, faiss.Index, IndexParams]:
    data = unit_vectors(5_000, seed=1)
    index, params = build_vector_index(data, exact_max=1_000, storage="flat")
    return data, index, params


def test_flat_search_equals_numpy_exact_top_k() -> None:
    data, queries = unit_vectors(2_000, seed=2), unit_vectors(20, seed=3)
    index, params = build_vector_index(data)
    assert params.kind == "flat"
    vectors = VectorIndex(index, params)
    want = exact_top_k(data, queries, 10)
    for row, query in enumerate(queries):
        ids, scores = vectors.search(query, 10)
        np.testing.assert_array_equal(ids, want[row])
        np.testing.assert_allclose(scores, data[want[row]] @ query, rtol=1e-5, atol=1e-6)
        assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_hnsw_recall_at_10(hnsw_case: tuple[np.ndarray, faiss.Index, IndexParams]) -> None:
    data, index, params = hnsw_case
    assert params.kind == "hnsw" and isinstance(index, faiss.IndexHNSWFlat)
    queries = unit_vectors(200, seed=4)
    got, _ = VectorIndex(index, params).search_many(queries, 10)
    want = exact_top_k(data, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95


def test_hnsw_round_trip_is_memory_mapped_and_identical(
    hnsw_case: tuple[np.ndarray, faiss.Index, IndexParams], tmp_path: Path
) -> None:
    data, index, params = hnsw_case
    save_vector_index(index, tmp_path, data, params)
    assert (tmp_path / HNSW_FILE).is_file()
    loaded = load_vector_index(tmp_path, IndexParams.from_dict(params.to_dict()))
    assert loaded.params == params and len(loaded) == len(data)
    queries = unit_vectors(30, seed=5)
    original = VectorIndex(index, params).search_many(queries, 20)
    again = loaded.search_many(queries, 20)
    np.testing.assert_array_equal(again[0], original[0])
    np.testing.assert_array_equal(again[1], original[1])
    assert isinstance(np.load(tmp_path / VECTORS_FILE, mmap_mode="r"), np.memmap)


def test_sq8_hnsw_rescores_exactly_after_a_round_trip(tmp_path: Path) -> None:
    data = unit_vectors(5_000, seed=1)
    index, params = build_vector_index(data, exact_max=1_000, storage="sq8", refine=50)
    assert params.storage == "sq8" and isinstance(index, faiss.IndexHNSWSQ)
    with pytest.raises(QueryError, match="float vectors"):
        VectorIndex(index, params)
    save_vector_index(index, tmp_path, data, params)
    loaded = load_vector_index(tmp_path, IndexParams.from_dict(params.to_dict()))
    assert loaded.params == params
    queries = unit_vectors(200, seed=4)
    ids, scores = loaded.search_many(queries, 10)
    # The scores are exact cosines from the float vectors, best first.
    np.testing.assert_allclose(scores, np.einsum("nkd,nd->nk", data[ids], queries), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    want = exact_top_k(data, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(ids, want, strict=True)])
    assert recall >= 0.95
    with pytest.raises(SnapshotError, match="storage"):
        IndexParams.from_dict({**params.to_dict(), "storage": "pq"})


def test_sq8_rescoring_keeps_missing_neighbours_missing() -> None:
    data = unit_vectors(4, seed=11)
    params = IndexParams(kind="hnsw", count=4, dim=DIM, storage="sq8", refine=4)
    vectors = VectorIndex(cast(faiss.Index, HolesIndex()), params, vectors=data)
    ids, scores = vectors.search_many(data[:1], 4)
    assert sorted(ids[0][:2].tolist()) == [0, 2] and ids[0][2:].tolist() == [-1, -1]
    assert np.isinf(scores[0][2:]).all() and scores[0][0] == pytest.approx(
        max(data[0] @ data[0], data[2] @ data[0]))
    ids, _ = vectors.search(data[0], 4)
    assert sorted(ids.tolist()) == [0, 2]


def test_snapshot_with_sq8_hnsw_answers_like_exact_search(tmp_path: Path) -> None:
    docs = [Document(f"d{i}", f"title {i}", f"body text number {i} about topic {i % 7}")
            for i in range(300)]
    options = VectorOptions(exact_max=50, hnsw_storage="sq8")
    snapshot = load_snapshot(build_with_vectors(docs, tmp_path, options))
    ranker = SemanticRanker(snapshot, KeywordRanker(snapshot), FakeQueryEncoder())
    assert ranker.index.params.kind == "hnsw" and ranker.index.params.storage == "sq8"
    stored = np.asarray(snapshot.arrays["vectors/vectors.npy"], dtype=np.float32)
    for i in range(0, 300, 37):
        query = fake_vector(f"topic {i % 7} number {i}")
        ids, scores = ranker.dense(query, 10)
        np.testing.assert_array_equal(ids, exact_top_k(stored, query[None, :], 10)[0])
        np.testing.assert_allclose(scores, stored[ids] @ query, atol=1e-5)
    rebuilt = build_options(snapshot.manifest).vectors
    assert rebuilt is not None and rebuilt.hnsw_storage == "sq8"  # compaction keeps it


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_flat_round_trip(tmp_path: Path, dtype: Any) -> None:
    data, queries = unit_vectors(500, seed=6), unit_vectors(5, seed=7)
    index, params = build_vector_index(data)
    save_vector_index(index, tmp_path, data, params, vectors_dtype=dtype)
    assert not (tmp_path / HNSW_FILE).exists()
    assert np.load(tmp_path / VECTORS_FILE, mmap_mode="r").dtype == np.dtype(dtype)
    loaded = load_vector_index(tmp_path, params)
    ids, scores = loaded.search_many(queries, 5)
    np.testing.assert_array_equal(ids, exact_top_k(data, queries, 5))
    tolerance = 1e-6 if dtype == "float32" else 2e-3
    np.testing.assert_allclose(
        scores, np.sort(queries @ data.T, axis=1)[:, ::-1][:, :5], atol=tolerance
    )


def test_k_is_clamped_to_the_index_size() -> None:
    data = unit_vectors(3, seed=8)
    index, params = build_vector_index(data)
    ids, scores = VectorIndex(index, params).search(data[0], 10)
    assert sorted(ids.tolist()) == [0, 1, 2] and ids[0] == 0
    assert scores.shape == (3,)


class HolesIndex:
    """Answers like an HNSW graph that found fewer neighbours than asked."""

    ntotal = 4

    def search(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array([[2, 0, -1, -1]] * len(data), dtype=np.int64)[:, :k]
        scores = np.array([[0.9, 0.5, -3e38, -3e38]] * len(data), dtype=np.float32)[:, :k]
        return scores, ids


def test_missing_neighbours_are_dropped_or_marked() -> None:
    vectors = VectorIndex(cast(faiss.Index, HolesIndex()), IndexParams(kind="hnsw", count=4, dim=2))
    ids, scores = vectors.search(np.ones(2), 4)
    np.testing.assert_array_equal(ids, [2, 0])
    np.testing.assert_allclose(scores, [0.9, 0.5])
    many_ids, many_scores = vectors.search_many(np.ones((2, 2)), 4)
    np.testing.assert_array_equal(many_ids[:, 2:], -1)
    assert np.all(np.isneginf(many_scores[:, 2:]))


def test_bad_queries_raise() -> None:
    index, params = build_vector_index(unit_vectors(10, seed=9))
    vectors = VectorIndex(index, params)
    with pytest.raises(QueryError, match="k must be >= 1"):
        vectors.search(np.ones(DIM), 0)
    with pytest.raises(QueryError, match=r"shape \(n, 384\)"):
        vectors.search(np.ones(12), 3)
    with pytest.raises(QueryError, match="search_many"):
        vectors.search(np.ones((2, DIM)), 3)


def test_loading_a_mismatched_or_missing_folder_raises(tmp_path: Path) -> None:
    data = unit_vectors(50, seed=10)
    index, params = build_vector_index(data)
    with pytest.raises(SnapshotError, match="vectors"):
        load_vector_index(tmp_path, params)
    save_vector_index(index, tmp_path, data, params)
    with pytest.raises(SnapshotError, match="manifest says"):
        load_vector_index(tmp_path, IndexParams(kind="flat", count=49, dim=DIM))
    with pytest.raises(SnapshotError, match="HNSW index"):
        load_vector_index(tmp_path, IndexParams(kind="hnsw", count=50, dim=DIM))
    with pytest.raises(SnapshotError, match="unknown"):
        IndexParams.from_dict({**params.to_dict(), "kind": "ivf"})


# --- resumable corpus embedding (index.embedding), with a fake encoder --------------------


class InterruptedJobError(RuntimeError):
    pass


class FakeEncoder:
    """Deterministic vectors from the text; can fail after some calls like a killed job."""

    dim = 8
    fingerprint = "fake-v1"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.seen: list[str] = []
        self.calls = 0

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise InterruptedJobError("killed")
        self.calls += 1
        self.seen.extend(texts)
        rows = [np.random.default_rng(list(t.encode())).standard_normal(self.dim) for t in texts]
        return np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)


CORPUS = [f"document {i} " + "word " * (i % 7) for i in range(23)]


def test_interrupted_embedding_resumes_and_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = np.array(embed_corpus(CORPUS, FakeEncoder(), tmp_path / "ref.npy", 5, False))
    out = tmp_path / "vectors.npy"
    first = FakeEncoder(fail_after=2)
    with pytest.raises(InterruptedJobError):
        embed_corpus(CORPUS, first, out, batch_size=5, progress=False)
    assert not out.exists()
    state = json.loads((tmp_path / "vectors.npy.partial" / "progress.json").read_text())
    assert state["chunks_done"] == 2 and state["fingerprint"] == "fake-v1"

    second = FakeEncoder()
    vectors = embed_corpus(CORPUS, second, out, batch_size=5, progress=False)
    assert second.calls == 3  # 23 texts in chunks of 5: 2 done, 3 left
    assert sorted(first.seen + second.seen) == sorted(CORPUS)
    np.testing.assert_array_equal(vectors, reference)
    assert not (tmp_path / "vectors.npy.partial").exists()


def test_finished_embedding_is_returned_without_encoding(tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    done = np.array(embed_corpus(CORPUS, FakeEncoder(), out, batch_size=4, progress=False))
    again = embed_corpus(CORPUS, FakeEncoder(fail_after=0), out, batch_size=4, progress=False)
    np.testing.assert_array_equal(again, done)


def test_a_different_job_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    with pytest.raises(InterruptedJobError):
        embed_corpus(CORPUS, FakeEncoder(fail_after=1), out, batch_size=5, progress=False)
    other = [text.upper() for text in CORPUS]
    encoder = FakeEncoder()
    vectors = embed_corpus(other, encoder, out, batch_size=5, progress=False)
    assert sorted(encoder.seen) == sorted(other)
    reference = embed_corpus(other, FakeEncoder(), tmp_path / "r.npy", 5, progress=False)
    np.testing.assert_array_equal(vectors, reference)
    # A finished file for other texts is not reused either.
    encoder = FakeEncoder()
    embed_corpus(CORPUS, encoder, out, batch_size=5, progress=False)
    assert sorted(encoder.seen) == sorted(CORPUS)


def test_embedding_rejects_a_wrong_shape_and_handles_no_texts(tmp_path: Path) -> None:
    class Short(FakeEncoder):
        def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
            return super().encode_documents(texts)[:-1]

    with pytest.raises(ModelError, match="expected"):
        embed_corpus(CORPUS, Short(), tmp_path / "v.npy", progress=False)
    empty = embed_corpus([], FakeEncoder(), tmp_path / "e.npy", progress=False)
    assert empty.shape == (0, 8) and empty.dtype == np.float32


@pytest.mark.parametrize(
    ("title", "text", "want"),
    [
        ("Aspirin and stroke", "We studied...", "Aspirin and stroke. We studied..."),
        ("Does aspirin help?", "We studied...", "Does aspirin help? We studied..."),
        ("", "Only a body.", "Only a body."),
        ("  Only a title ", "", "Only a title"),
    ],
)
def test_document_text(title: str, text: str, want: str) -> None:
    assert document_text(title, text) == want


@pytest.mark.parametrize(
    ("share", "want"), [(1.0, 320), (0.5, 368), (0.1, 480), (0.01, 640), (0.0, 320 * 5.5)]
)
def test_filtered_ef_grows_with_the_log_of_the_selectivity(share: float, want: float) -> None:
    assert filtered_ef(320, share) == int(want)


def test_nearest_within_keeps_to_the_filter_by_graph_and_by_exact_search() -> None:
    """Both ways of `nearest_within` (the graph with a selector above EXACT_FILTERED allowed
    rows, exact search below) return only allowed rows, best first, with recall@10 against
    exact filtered search."""
    data = unit_vectors(30_000, seed=4, dim=32)
    queries = unit_vectors(30, seed=5, dim=32)
    index, params = build_vector_index(data, exact_max=0, hnsw_m=16, ef_construction=80)
    ann = VectorIndex(index, params, vectors=data)
    rng = np.random.default_rng(6)
    for share in (0.5, 0.2):  # 15,000 and 6,000 rows: the graph, then exact search
        allowed = rng.random(data.shape[0]) < share
        assert (int(allowed.sum()) > EXACT_FILTERED) == (share == 0.5)
        rows = np.flatnonzero(allowed)
        found = 0
        for q in queries:
            got = nearest_within(ann, data, allowed, q, 100)
            assert got.size == 100 and bool(allowed[got].all())
            sims = data[got] @ q
            assert bool(np.all(np.diff(sims) <= 1e-5))  # best first
            want = rows[np.argsort(-(data[rows] @ q))[:10]]
            found += len(set(got[:10].tolist()) & set(want.tolist()))
        assert found / (10 * len(queries)) >= 0.95, share
