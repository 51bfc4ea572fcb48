"""Deterministic fake embeddings, so tests of vectors need no model: a text's vector is a
pseudo-random unit vector seeded by the text."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.core.types import Document
from index.embedding import document_text, inputs_hash
from index.passages import PassageOptions, layout_passages
from index.snapshot import BuildOptions, write_snapshot
from index.vector_params import VectorOptions
from index.vector_stage import PrecomputedVectors

DIM = 16
FINGERPRINT = "fake-encoder"


def fake_vector(text: str) -> npt.NDArray[np.float32]:
    """Rounded to float16 values, so passage vectors stored as float16 stay exact."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float16).astype(np.float32)


class FakeEncoder:
    """Has what `index.embedding.DocumentEncoder` and the semantic ranker use."""

    def __init__(self) -> None:
        self.encoded = 0

    @property
    def dim(self) -> int:
        return DIM

    @property
    def fingerprint(self) -> str:
        return FINGERPRINT

    def encode_query(self, text: str) -> npt.NDArray[np.float32]:
        return fake_vector(text)

    def encode_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.encoded += len(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([fake_vector(t) for t in texts])


def precomputed(docs: Sequence[Document], options: PassageOptions) -> PrecomputedVectors:
    doc_vectors = np.stack([fake_vector(document_text(d.title, d.text)) for d in docs])
    layout = layout_passages([(d.title, d.text) for d in docs], options)
    passages = np.stack([fake_vector(t) for t in layout.texts])
    return PrecomputedVectors(FINGERPRINT, inputs_hash([d.id for d in docs]), doc_vectors, passages)


def build_with_vectors(docs: Sequence[Document], root: Path,
                       vectors: VectorOptions | None = None) -> Path:
    """A snapshot with (fake) document and passage vectors, built without a model."""
    options = BuildOptions(workers=1, vectors=vectors or VectorOptions())
    assert options.vectors is not None and options.vectors.passages is not None
    return write_snapshot(
        docs, root, options, precomputed=precomputed(docs, options.vectors.passages)
    )
