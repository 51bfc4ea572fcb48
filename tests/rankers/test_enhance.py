"""The enhanced phase: best-passage math against naive loops, highlights, and the ranker."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.cli import main
from index.analyzer import Analyzer
from index.core.errors import QueryError
from index.passages import SENTENCE, TITLE, quantize
from index.snapshot import BuildOptions, Snapshot, load_snapshot, write_snapshot
from index.sources import open_source
from index.vector_params import VectorOptions
from rankers.enhance import DEFAULT_WEIGHTS, SCIFACT_WEIGHTS, EnhancedRanker, EnhanceSettings
from rankers.features import (
    combine,
    gather_segments,
    pair_sims,
    passage_scores,
    segment_max,
    zscore,
)
from rankers.highlight import highlight_rows, mark_terms
from rankers.keyword import KeywordRanker
from rankers.snapshot_segment import PassageVectors
from tests.conftest import make_corpus, write_jsonl

F32 = npt.NDArray[np.float32]


def _random_layout(rng: np.random.Generator, n_docs: int) -> tuple[npt.NDArray[np.int64], F32]:
    lengths = rng.integers(0, 6, size=n_docs)  # some documents have no passage at all
    ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    vectors = rng.normal(size=(int(ptr[-1]), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ptr, vectors


@pytest.mark.parametrize("seed", range(5))
def test_gather_segments_matches_a_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ptr, _ = _random_layout(rng, 40)
    docs = rng.choice(40, size=15, replace=False).astype(np.int64)
    rows, offsets = gather_segments(ptr, docs)
    expected = [np.arange(ptr[d], ptr[d + 1]) for d in docs]
    assert rows.tolist() == np.concatenate(expected).tolist()
    assert np.diff(offsets).tolist() == [len(e) for e in expected]


@pytest.mark.parametrize("seed", range(5))
def test_passage_scores_match_a_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ptr, vectors = _random_layout(rng, 30)
    kinds = np.full(len(vectors), SENTENCE, dtype=np.uint8)
    kinds[ptr[:-1][np.diff(ptr) > 0][::2]] = TITLE  # every other document starts with a title
    norms = np.zeros(len(vectors), dtype=np.float32)
    for d in range(30):
        for j in range(int(ptr[d]), int(ptr[d + 1]) - 1):
            if kinds[j] == SENTENCE and kinds[j + 1] == SENTENCE:
                norms[j] = np.linalg.norm(vectors[j] + vectors[j + 1])
    q = rng.normal(size=16).astype(np.float32)
    q /= np.linalg.norm(q)
    docs = rng.permutation(30).astype(np.int64)

    rows, offsets = gather_segments(ptr, docs)
    sims = (vectors[rows] @ q).astype(np.float32)
    pairs = pair_sims(sims, norms[rows])
    got = passage_scores(sims, pairs, offsets, kinds[rows])
    got_max = segment_max(sims, offsets)
    for i, d in enumerate(docs):
        lo, hi = int(ptr[d]), int(ptr[d + 1])
        own = [float(vectors[j] @ q) for j in range(lo, hi)]
        windows = [
            float((vectors[j] + vectors[j + 1]) @ q / np.linalg.norm(vectors[j] + vectors[j + 1]))
            for j in range(lo, hi - 1)
            if kinds[j] == SENTENCE and kinds[j + 1] == SENTENCE
        ]
        if not own:
            assert got_max[i] == 0.0 and got.best[i] == 0.0 and got.top2[i] == 0.0
            continue
        assert got_max[i] == pytest.approx(max(own), abs=1e-6)
        assert got.best[i] == pytest.approx(max(own + windows), abs=1e-5)
        top = sorted(own, reverse=True)
        assert got.top2[i] == pytest.approx((top[0] + top[min(1, len(top) - 1)]) / 2, abs=1e-6)
        titles = [s for j, s in zip(range(lo, hi), own, strict=True) if kinds[j] == TITLE]
        assert got.title[i] == pytest.approx(titles[0] if titles else got.best[i], abs=1e-6)


def test_highlight_prefers_the_body_and_takes_a_pair_when_it_wins() -> None:
    # One document: title (best cosine), then three sentences; the pair (1, 2) beats each one.
    sims = np.array([0.9, 0.5, 0.6, 0.1], dtype=np.float32)
    pairs = np.array([-np.inf, 0.7, 0.4, -np.inf], dtype=np.float32)
    kinds = np.array([TITLE, SENTENCE, SENTENCE, SENTENCE], dtype=np.uint8)
    offsets = np.array([0, 4, 4], dtype=np.int64)  # and a second document with no passage
    first, size = highlight_rows(sims, pairs, offsets, kinds, np.array([0, 1]))
    assert first.tolist() == [1, -1] and size.tolist() == [2, 0]
    no_pairs = np.full(4, -np.inf, np.float32)
    first, size = highlight_rows(sims, no_pairs, offsets, kinds, np.array([0]))
    assert first.tolist() == [2] and size.tolist() == [1]


def test_zscore_and_combine() -> None:
    np.testing.assert_allclose(zscore([1.0, 2.0, 3.0]), [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert zscore([2.0, 2.0]).tolist() == [0.0, 0.0]
    feats = {"bm25": np.array([0.0, 10.0]), "best": np.array([0.9, 0.1])}
    assert combine(feats, {"bm25": 1.0, "best": 2.0}).tolist() == [1.0, -1.0]
    assert combine(feats, {"bm25": 0.0}).tolist() == [0.0, 0.0]


def test_unknown_feature_is_refused() -> None:
    with pytest.raises(QueryError, match="unknown enhanced features"):
        EnhanceSettings(weights={"pagerank": 1.0})


def test_default_and_former_weights_are_settings() -> None:
    assert EnhanceSettings().weights == DEFAULT_WEIGHTS
    assert EnhanceSettings(weights=SCIFACT_WEIGHTS).weights == SCIFACT_WEIGHTS
    for weights in (DEFAULT_WEIGHTS, SCIFACT_WEIGHTS):
        assert sum(weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "query", "expected"),
    [
        ("Running shoes for runners", "run", "<mark>Running</mark> shoes for runners"),
        (  # a possessive and a plural match their stem; tags in the text are escaped
            "Insulin's role <b>in</b> patients",
            "patient insulin",
            "<mark>Insulin&#x27;s</mark> role &lt;b&gt;in&lt;/b&gt; <mark>patients</mark>",
        ),
        ("Patients & doctors", "patient", "<mark>Patients</mark> &amp; doctors"),
        (
            'a <script>alert("x")</script>',
            "alerts",
            "a &lt;script&gt;<mark>alert</mark>(&quot;x&quot;)&lt;/script&gt;",
        ),
        ("The ÉCOLE and école", "ecole école", "The <mark>ÉCOLE</mark> and <mark>école</mark>"),
        ("the and of", "the", "the and of"),  # stopwords are no query terms
        ("nothing to see", "absent", "nothing to see"),
    ],
)
def test_mark_terms(text: str, query: str, expected: str) -> None:
    analyzer = Analyzer()
    assert mark_terms(text, frozenset(analyzer.terms(query)), analyzer) == expected


# -- with the model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(sample_root: Path) -> Snapshot:
    return load_snapshot(sample_root, verify=True)


@pytest.mark.model
def test_catalog_has_passages(catalog: Snapshot) -> None:
    assert catalog.has_passages
    entry = catalog.manifest.passages
    ptr = catalog.arrays["passages/ptr.npy"]
    assert entry is not None and ptr.shape == (21,) and int(ptr[-1]) == entry.count
    assert catalog.arrays["passages/vectors.npy"].dtype == np.float16
    assert "passages/pair_norm.npy" in catalog.manifest.arrays


@pytest.mark.model
def test_rerank_returns_docs_scores_moves_and_marked_highlights(catalog: Snapshot) -> None:
    from index.core.encoder import Encoder, EncoderConfig
    from rankers.semantic import SemanticRanker, query_bar

    keyword = KeywordRanker(catalog)
    encoder = Encoder.load(EncoderConfig(kind="int8"))
    semantic = SemanticRanker(catalog, keyword, encoder)
    enhanced = EnhancedRanker(catalog, keyword)
    query = "waterproof jacket for rainy hikes"
    plan = keyword.plan(query)
    kw = keyword.run(plan, 100)
    vector = encoder.encode_query(query)
    sem = semantic.fuse(plan, kw, vector, 100)
    res = enhanced.rerank(query, plan, kw, vector, sem, 5)
    assert len(res.docs) == len(res.scores) == len(res.previous) == len(res.highlights) == 5
    assert np.all(np.diff(res.scores) <= 0)
    assert set(res.docs.tolist()) <= set(sem.docs.tolist())
    assert catalog.external_id(int(res.docs[0])) == "p01"
    assert res.previous[0] >= 0
    assert "<mark>jacket</mark>" in res.highlights[0]
    stored = catalog.docs.get(int(res.docs[0]))
    assert stored is not None
    plain = res.highlights[0].replace("<mark>", "").replace("</mark>", "")
    assert plain in stored.text  # a span of the body, read from the blob
    empty = enhanced.rerank("", plan, kw, vector, semantic.fuse(plan, kw, vector, 0), 5)
    assert empty.docs.size == 0 and empty.highlights == ()
    # The keyword evidence feature is BM25 beyond the query's word bar, as in the fusion.
    feats = enhanced.features(plan, kw, vector, sem).features
    bar = query_bar(plan, enhanced.view)
    assert bar > 0
    np.testing.assert_allclose(feats["bm25_excess"], np.maximum(feats["bm25"] - bar, 0),
                               rtol=1e-6, atol=1e-6)


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    docs = make_corpus(24, seed=5)
    write_jsonl(folder / "corpus.jsonl", docs)
    write_jsonl(folder / "queries.jsonl", [{"_id": "q0", "text": docs[0]["title"]}])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    return folder


@pytest.mark.model
def test_cli_builds_passages_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "data")
    for flags, has in (([], True), (["--no-passages"], False)):
        out = tmp_path / f"ix{len(flags)}"
        assert main(["index", str(data), "--out", str(out), "--quiet", *flags]) == 0
        snap = load_snapshot(out)
        assert snap.has_vectors and snap.has_passages is has
        assert (snap.folder / "passages").is_dir() is has
        capsys.readouterr()
        assert main(["eval", str(out), "--dataset", str(data), "--split", "test", "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert ("enhanced" in metrics) is has
        if not has:
            with pytest.raises(QueryError, match="no passages"):
                EnhancedRanker(snap, KeywordRanker(snap))


@pytest.mark.model
def test_snapshot_round_trip_with_passages(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", make_corpus(12, seed=2))
    options = BuildOptions(workers=1, vectors=VectorOptions(batch_size=8))
    write_snapshot(open_source(tmp_path / "c.jsonl"), tmp_path / "ix", options)
    snap = load_snapshot(tmp_path / "ix", verify=True)
    ptr = snap.arrays["passages/ptr.npy"]
    spans = snap.arrays["passages/span.npy"]
    blob = snap.arrays["passages/text.npy"]
    kinds = snap.arrays["passages/kind.npy"]
    assert isinstance(ptr.base, np.memmap)
    for d in range(snap.n_docs):
        doc = snap.docs.get(d)
        assert doc is not None
        texts = [bytes(blob[s:e]).decode() for s, e in spans[ptr[d] : ptr[d + 1]]]
        assert texts[0] == doc.title and kinds[ptr[d]] == TITLE
        assert all(t in doc.text for t in texts[1:])
    vectors = snap.arrays["passages/vectors.npy"].astype(np.float32)
    vectors *= snap.arrays["passages/scale.npy"][:, None]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)


def test_mark_terms_fast_path_equals_a_full_scan() -> None:
    """ASCII passages only analyze words that start like a query term; the result must be the
    same as analyzing every word."""
    analyzer = Analyzer()
    texts = [
        "Studies of the study studied: studying happiness makes people happy; generally agreed.",
        "The patients' and patient's relatives (n = 17) agreed to 2.5 mg doses vs. placebo_arm.",
        "Vitamin D deficiency, insulin-resistance & obesity in Mice <i>in vivo</i>.",
    ]
    queries = ["study happy agree", "patients dose placebo", "vitamin insulin resistant mouse"]
    for text in texts:
        for query in queries:
            terms = frozenset(analyzer.terms(query))
            full = []
            pos = 0
            for m in re.finditer(r"[\w'\u2019]+", text):
                if any(t in terms for t in analyzer.terms(m.group())):
                    full.append(html.escape(text[pos : m.start()]))
                    full.append(f"<mark>{html.escape(m.group())}</mark>")
                    pos = m.end()
            full.append(html.escape(text[pos:]))
            assert mark_terms(text, terms, analyzer) == "".join(full), (text, query)


def test_passage_vectors_read_as_float_rows() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stored, scale = quantize(vectors, "int8")
    view = PassageVectors(stored, scale)
    rows = np.array([4, 0, 29], dtype=np.int64)
    np.testing.assert_allclose(view[rows], vectors[rows], atol=5e-3)
    np.testing.assert_allclose(view.sims(rows, vectors[0]), vectors[rows] @ vectors[0], atol=5e-3)
    assert view.shape == (30, 16) and len(view) == 30


def test_feedback_scores_are_cosines_to_the_centroid_of_the_top_rows() -> None:
    from rankers.features import feedback_scores

    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = v[:3].sum(axis=0)
    c /= np.linalg.norm(c)
    np.testing.assert_allclose(feedback_scores(v, 3), v @ c, rtol=1e-5, atol=1e-6)
    assert feedback_scores(v[:0], 3).shape == (0,)
    opposite = np.stack([v[0], -v[0]])
    np.testing.assert_array_equal(feedback_scores(opposite, 2), np.zeros(2, np.float32))
