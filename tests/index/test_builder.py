"""Placing postings: the C loop against numpy's BM25 impacts, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index import builder
from index.builder import KeywordBuilder
from index.core.bm25 import BM25Params, impacts
from index.snapshot import BuildOptions, load_snapshot, write_snapshot
from index.sources import open_source
from tests.conftest import make_corpus, write_jsonl

place = pytest.importorskip("index._wordcount").place


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0)])
def test_place_matches_numpy_impacts(k1: float, b: float) -> None:
    rng = np.random.default_rng(7)
    n_docs, n_runs = 500, 60
    doc_len = rng.integers(1, 400, n_docs).astype(np.float32) * np.float32(1.3)
    run_len = rng.integers(1, 40, n_runs).astype(np.int32)
    n = int(run_len.sum())
    doc = rng.integers(0, n_docs, n).astype(np.int32)
    tf = (rng.integers(1, 9, n) + 0.3 * rng.integers(0, 3, n)).astype(np.float32)
    run_idf = rng.random(n_runs).astype(np.float32) * 5
    # Runs land in a shuffled order, with gaps, as a chunk's runs do in the CSR arrays.
    order = rng.permutation(n_runs)
    starts = np.zeros(n_runs, dtype=np.int64)
    starts[order] = np.cumsum(run_len[order] + 3) - run_len[order]
    out_doc = np.full(int(starts.max()) + 50, -1, dtype=np.int32)
    out_imp = np.zeros(out_doc.size, dtype=np.float32)
    avg = float(doc_len.mean())
    norm = KeywordBuilder(BM25Params(k1=k1, b=b))._doc_norm(doc_len, avg)
    place(out_doc, out_imp, starts, run_len, run_idf, doc, tf, norm)

    first = np.cumsum(run_len) - run_len
    slot = np.repeat(starts - first, run_len) + np.arange(n)
    expected = impacts(tf, doc_len[doc], avg, np.repeat(run_idf, run_len), k1, b)
    assert np.array_equal(out_doc[slot], doc)
    assert out_imp[slot].tobytes() == expected.tobytes()
    untouched = np.ones(out_doc.size, dtype=bool)
    untouched[slot] = False
    assert (out_doc[untouched] == -1).all()


def test_place_refuses_out_of_range_input() -> None:
    out_doc, out_imp = np.zeros(10, np.int32), np.zeros(10, np.float32)
    one = (np.ones(1, np.float32), np.zeros(3, np.int32), np.ones(3, np.float32))
    dl = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="outside"):
        place(out_doc, out_imp, np.array([8]), np.array([3], np.int32), *one, dl)
    with pytest.raises(ValueError, match="out of range"):
        bad = np.array([0, 1, 7], np.int32)
        place(out_doc, out_imp, np.array([0]), np.array([3], np.int32), one[0], bad, one[2], dl)
    with pytest.raises(ValueError, match="add up"):
        place(out_doc, out_imp, np.array([0]), np.array([2], np.int32), *one, dl)


def test_numpy_placement_builds_the_same_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", make_corpus(200, seed=8))
    native = load_snapshot(write_snapshot(open_source(tmp_path), tmp_path / "a", BuildOptions()))
    monkeypatch.setattr(builder, "_native_place", None)
    numpy = load_snapshot(write_snapshot(open_source(tmp_path), tmp_path / "b", BuildOptions()))
    assert native.manifest.arrays == numpy.manifest.arrays
