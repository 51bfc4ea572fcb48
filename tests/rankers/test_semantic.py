"""The semantic phase on a small product catalog, with the real encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.core.encoder import Encoder, EncoderConfig
from index.core.errors import QueryError
from index.snapshot import BuildOptions, Snapshot, load_snapshot, write_snapshot
from index.sources import open_source
from index.vector_params import VectorOptions
from rankers.evidence import DENSE_SCALE
from rankers.keyword import KeywordRanker
from rankers.semantic import FusionSettings, SemanticRanker, query_bar

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "data" / "sample.jsonl"
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    root = tmp_path_factory.mktemp("catalog")
    options = BuildOptions(workers=1, vectors=VectorOptions(batch_size=8))
    write_snapshot(open_source(SAMPLE), root, options)
    return load_snapshot(root, verify=True)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load(EncoderConfig(kind="int8"))


@pytest.fixture(scope="module")
def semantic(catalog: Snapshot, encoder: Encoder) -> SemanticRanker:
    return SemanticRanker(catalog, KeywordRanker(catalog), encoder)


def _search(semantic: SemanticRanker, query: str, k: int = 5) -> tuple[list[str], list[int]]:
    plan = semantic.keyword.plan(query)
    kw = semantic.keyword.run(plan, 100)
    res = semantic.fuse(plan, kw, semantic.encoder.encode_query(query), k)
    return semantic.snapshot.external_ids(res.docs), res.previous.tolist()


def test_manifest_records_the_vectors(catalog: Snapshot) -> None:
    params = catalog.manifest.index_params
    assert params is not None and params.kind == "flat" and params.count == 20
    assert "fp32" in catalog.manifest.encoder_fingerprint
    vectors = catalog.arrays["vectors/vectors.npy"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_meaning_finds_what_words_miss(semantic: SemanticRanker) -> None:
    query = "footwear for jogging"
    assert semantic.keyword.search(query, 5).docs.size == 0
    ids, previous = _search(semantic, query)
    assert ids[0] in {"p04", "p03"} and "p04" in ids[:2]
    assert all(p == -1 for p in previous)


def test_fusion_keeps_keyword_matches_and_reports_moves(semantic: SemanticRanker) -> None:
    ids, previous = _search(semantic, "waterproof jacket for rainy hikes")
    assert ids[0] == "p01"
    assert previous[0] >= 0  # it was already in the keyword results


@pytest.mark.parametrize("method", ["evidence", "linear", "rrf"])
def test_every_fusion_ranks_the_obvious_answer_first(
    catalog: Snapshot, encoder: Encoder, method: str
) -> None:
    ranker = SemanticRanker(catalog, KeywordRanker(catalog), encoder, FusionSettings(method))
    ids, _ = _search(ranker, "espresso machine for lattes")
    assert ids[0] == "p09"


def test_keyword_only_snapshot_has_no_semantic_phase(tmp_path: Path, encoder: Encoder) -> None:
    write_snapshot(open_source(SAMPLE), tmp_path, BuildOptions(workers=1))
    snap = load_snapshot(tmp_path)
    assert not snap.has_vectors
    with pytest.raises(QueryError, match="no vectors"):
        SemanticRanker(snap, KeywordRanker(snap), encoder)


def test_bad_fusion_settings_are_refused() -> None:
    with pytest.raises(QueryError, match="unknown"):
        FusionSettings(method="borda")
    with pytest.raises(QueryError, match="dense_weight"):
        FusionSettings(dense_weight=1.5)
    for scale in (0.0, -1.0, float("inf")):
        with pytest.raises(QueryError, match="dense_scale"):
            FusionSettings(dense_scale=scale)
    assert FusionSettings().method == "evidence"


def test_query_bar_is_the_mean_idf_of_the_query_words(semantic: SemanticRanker) -> None:
    keyword, view = semantic.keyword, semantic.view
    plan = keyword.plan("waterproof jacket")
    words = [w for w, _ in plan.words]
    assert len(words) == 2
    assert query_bar(plan, view) == pytest.approx(float(np.mean(view.idf(words))), rel=1e-6)
    # A word typed twice weighs twice in BM25, but is still one word.
    twice = keyword.plan("jacket jacket")
    assert query_bar(twice, view) == pytest.approx(query_bar(keyword.plan("jacket"), view))
    assert query_bar(keyword.plan("zzzzqqq"), view) == 0.0  # no known word, no bar


def test_fused_scores_are_bm25_beyond_the_bar_plus_the_scaled_cosine(
    semantic: SemanticRanker,
) -> None:
    query = "waterproof jacket for rainy hikes"
    plan = semantic.keyword.plan(query)
    kw = semantic.keyword.run(plan, 100)
    q = semantic.encoder.encode_query(query)
    res = semantic.fuse(plan, kw, q, 20)
    assert kw.all_scores is not None
    bm25 = kw.all_scores[res.docs]
    cos = semantic.vectors[res.docs] @ q
    want = np.maximum(bm25 - query_bar(plan, semantic.view), 0) + DENSE_SCALE * cos
    np.testing.assert_allclose(res.scores, want, rtol=1e-5, atol=1e-5)


def test_eval_reports_every_phase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
            for d in open_source(SAMPLE)
        )
    )
    queries = {"q1": "footwear for jogging", "q2": "keep my tea hot", "q3": "coffee at home"}
    (data / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    (data / "qrels").mkdir()
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tp04\t1\nq2\tp20\t1\nq3\tp09\t1\nq3\tp10\t1\n"
    )
    assert main(["index", str(data), "--out", str(tmp_path / "ix"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "ix"), "--dataset", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"keyword", "semantic", "dense", "enhanced"}
    # q1 shares no word with its answer: only the phases that use meaning can find it.
    assert metrics["dense"]["recall@100"] == 1.0
    assert metrics["semantic"]["ndcg@10"] > metrics["keyword"]["ndcg@10"]


@pytest.mark.parametrize("query", ["", "   ", "?!.,;", "\u2603\u2603"])
def test_queries_without_words_get_no_hits(semantic: SemanticRanker, query: str) -> None:
    assert semantic.search(query, 5).docs.size == 0


def test_a_huge_query_is_cut_not_refused(semantic: SemanticRanker) -> None:
    query = "waterproof jacket " * 600  # 10,800 characters
    result = semantic.search(query, 3)
    assert semantic.snapshot.external_ids(result.docs)[0] == "p01"


def test_search_equals_the_steps(semantic: SemanticRanker) -> None:
    ids, _ = _search(semantic, "insulated bottle for cold drinks")
    got = semantic.search("insulated bottle for cold drinks", 5)
    assert semantic.snapshot.external_ids(got.docs) == ids


def test_cli_search_prints_both_phases(
    catalog: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from app.cli import main

    assert (
        main(["search", str(catalog.folder), "footwear for jogging", "--semantic", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["keyword"]["hits"] == []
    first = out["semantic"]["hits"][0]
    assert first["id"] in {"p03", "p04"} and first["previous_rank"] is None


def test_candidate_bm25_from_dense_scores_equals_binary_search(semantic: SemanticRanker) -> None:
    import dataclasses

    query = "warm jacket for winter hiking"
    plan = semantic.keyword.plan(query)
    kw = semantic.keyword.run(plan, 100)
    assert kw.all_scores is not None  # a small corpus is scored densely
    vector = semantic.encoder.encode_query(query)
    dense_path = semantic.fuse(plan, kw, vector, 10)
    search_path = semantic.fuse(plan, dataclasses.replace(kw, all_scores=None), vector, 10)
    assert dense_path.docs.tolist() == search_path.docs.tolist()
    np.testing.assert_allclose(dense_path.scores, search_path.scores, rtol=1e-5)
