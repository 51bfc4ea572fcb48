"""The demo index: shipped vectors must match the catalog, and pack/unpack keeps cosines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.catalog import write_catalog
from app.demo import pack, stale_shipped_vectors, unpack


def test_shipped_vectors_match_the_catalog(tmp_path: Path) -> None:
    # Stale shipped vectors would make the first `make demo` embed 30,000 passages: regenerate
    # them with `make demo-vectors` whenever the catalog or the passage splitting changes.
    source = tmp_path / "catalog.jsonl"
    write_catalog(source)
    assert stale_shipped_vectors(source) == []


def test_int8_packing_keeps_unit_vectors_and_cosines() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[3] = 0.0  # an all-zero row survives
    codes, scale = pack(vectors)
    assert codes.dtype == np.int8 and scale.shape == (500,)
    back = unpack(codes, scale)
    cos = np.sum(back * vectors, axis=1)
    assert np.all(np.delete(cos, 3) > 0.999)
    assert np.allclose(np.linalg.norm(np.delete(back, 3, axis=0), axis=1), 1.0, atol=1e-5)
    assert not np.any(back[3])
