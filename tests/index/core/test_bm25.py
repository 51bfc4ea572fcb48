"""BM25 scores agree with bm25s (Lucene variant) given the same tokens and parameters."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from index.analyzer import Analyzer, AnalyzerSettings
from index.core.bm25 import BM25Params, top_k
from index.snapshot import BuildOptions, load_snapshot, write_snapshot
from index.sources import open_source
from rankers.maxscore import Postings, score_exhaustive
from tests.conftest import make_corpus, write_jsonl

QUERIES = [
    "protein cell",
    "vitamin deficiency diabetes",
    "immune response to virus infection",
    "stem cell regeneration tissue",
    "glucose",
    "clinical trial mortality risk cohort",
]


def _scores(folder: Path, n_docs: int, query: str) -> np.ndarray:
    snap = load_snapshot(folder)
    a = snap.arrays
    terms = Analyzer().terms(query)
    vocab = a["keyword/terms.npy"]
    ids = np.asarray([int(np.searchsorted(vocab, t)) for t in terms], dtype=np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    postings = Postings(
        a["keyword/term_ptr.npy"],
        a["keyword/post_doc.npy"],
        a["keyword/post_imp.npy"],
        a["keyword/term_max.npy"],
    )
    docs, scores = score_exhaustive(
        postings,
        n_docs,
        uniq,
        counts.astype(np.float32),
        n_docs,
    )
    full = np.zeros(n_docs, dtype=np.float32)
    full[docs] = scores
    order = np.argsort([int(snap.external_id(i)[1:]) for i in range(n_docs)])
    return full[order]


@pytest.mark.parametrize(("title_weight", "title_copies"), [(1.0, 1), (2.0, 2), (3.0, 3)])
@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_scores_match_bm25s(
    tmp_path: Path, title_weight: float, title_copies: int, k1: float, b: float
) -> None:
    docs = make_corpus(150, seed=3)
    write_jsonl(tmp_path / "corpus.jsonl", docs)
    options = BuildOptions(
        bm25=BM25Params(k1=k1, b=b, title_weight=title_weight), workers=1, chunk_size=40
    )
    folder = write_snapshot(open_source(tmp_path), tmp_path / "ix", options)

    analyzer = Analyzer(AnalyzerSettings())
    # An integer title weight is the same as repeating the title that many times.
    tokens = [analyzer.terms(d["title"]) * title_copies + analyzer.terms(d["text"]) for d in docs]
    reference = bm25s.BM25(method="lucene", k1=k1, b=b)
    reference.index(tokens, show_progress=False)
    for query in QUERIES:
        expected = reference.get_scores(analyzer.terms(query))
        np.testing.assert_allclose(_scores(folder, len(docs), query), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("scores", "k", "expected"),
    [
        ([0.1, 0.5, 0.3], 2, [1, 2]),
        ([0.1, 0.5, 0.3], 5, [1, 2, 0]),
        ([1.0, 1.0, 1.0], 3, [0, 1, 2]),
        ([], 3, []),
        ([0.2], 0, []),
    ],
)
def test_top_k(scores: list[float], k: int, expected: list[int]) -> None:
    assert top_k(np.asarray(scores, dtype=np.float32), k).tolist() == expected
