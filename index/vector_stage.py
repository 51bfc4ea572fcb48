"""The vector stage of a snapshot build: embed every document, then index the vectors; then
split every document into passages and embed those (for the enhanced phase).

Runs after the keyword stage, inside the same temporary version folder, so a snapshot is
published with its vectors or not at all. Embedding is the slow part (minutes for thousands of
documents on a CPU): it writes into `ROOT/.work/`, outside the temporary folder, and an
interrupted build resumes there when run again on the same documents.

A build can also be given the vectors already (`PrecomputedVectors`, from a compaction that
folds stored snapshot vectors and the delta's into a new version): nothing is embedded then.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.errors import SnapshotError
from index.docstore import DocStore
from index.embedding import DocumentEncoder, document_text, embed_corpus, inputs_hash
from index.passages import PASSAGES_DIR, PassageOptions, layout_passages, save_passages
from index.vector_params import IndexParams, VectorOptions
from index.vectors import build_vector_index, save_vector_index

__all__ = ["PrecomputedVectors", "VectorOptions", "build_passages", "build_vectors"]


@dataclass(frozen=True)
class PrecomputedVectors:
    """Vectors of the documents of a build, computed before it, in document order."""

    encoder: str
    """Fingerprint of the encoder that made them."""
    ids_sha256: str
    """`inputs_hash` of the documents' ids, in order: checked against the build's, so a row
    can never land on another document."""
    documents: npt.NDArray[Any]
    """(n_docs, dim) unit vectors."""
    passages: npt.NDArray[Any] | None = None
    """(n_passages, dim) unit vectors in `index.passages` layout order (None: no passages)."""


def _stored_ids(docs: Path) -> list[str]:
    ptr = np.load(docs / "id_ptr.npy")
    blob = np.load(docs / "id_blob.npy").tobytes()
    return [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(ptr.tolist())]


def _index_vectors(folder: Path, vectors: npt.NDArray[Any], options: VectorOptions) -> IndexParams:
    """Build the FAISS index of `vectors` (flat or HNSW, by size) and save it in `folder`."""
    index, params = build_vector_index(
        vectors,
        exact_max=options.exact_max,
        hnsw_m=options.hnsw_m,
        ef_construction=options.ef_construction,
        ef_search=options.ef_search,
        storage=options.hnsw_storage,
    )
    save_vector_index(index, folder / "vectors", vectors, params)
    return params


def build_vectors(
    folder: Path,
    work: Path,
    options: VectorOptions,
    progress: bool,
    precomputed: PrecomputedVectors | None = None,
) -> dict[str, Any]:
    """Write `folder/vectors/`; returns the manifest entry."""
    store = DocStore(folder / "docs" / "store.sqlite")
    if precomputed is not None:
        return _from_precomputed(folder, store, options, precomputed)
    from index.core.encoder import Encoder, EncoderConfig

    texts = [document_text(title, text) for title, text in store.iter_fields()]
    encoder = Encoder.load(
        EncoderConfig(kind=options.kind, threads=options.threads, cache_dir=options.cache_dir)
    )
    work.mkdir(parents=True, exist_ok=True)
    vectors = embed_corpus(
        texts,
        encoder,
        work / "doc_vectors.npy",
        batch_size=options.batch_size,
        progress=progress,
        desc="embedding documents",
    )
    params = _index_vectors(folder, vectors, options)
    del vectors, texts
    entry = _entry(encoder.fingerprint, params.to_dict(), options)
    if options.passages is not None:
        entry["passages"] = build_passages(
            store.iter_fields(),
            folder,
            work,
            encoder,
            options.passages,
            options.passage_batch_size,
            progress,
        )
    return entry


def build_passages(
    fields: Iterable[tuple[str, str]],
    folder: Path,
    work: Path,
    encoder: DocumentEncoder,
    options: PassageOptions,
    batch_size: int,
    progress: bool,
) -> dict[str, Any]:
    """Split, embed (resumably, in `work`) and write `folder/passages/`; returns the manifest
    entry."""
    layout = layout_passages(fields, options)
    vectors = embed_corpus(
        layout.texts,
        encoder,
        work / "passage_vectors.npy",
        batch_size=batch_size,
        progress=progress,
        desc="embedding passages",
    )
    save_passages(folder / PASSAGES_DIR, layout, vectors, options)
    return _passages_entry(len(layout.texts), encoder.fingerprint, options, batch_size)


def _entry(fingerprint: str, index: dict[str, Any], options: VectorOptions) -> dict[str, Any]:
    return {
        "encoder": fingerprint,
        "document_text": "title. body, cut to the model window",
        "index": index,
        "build": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }


def _passages_entry(
    count: int, fingerprint: str, options: PassageOptions, batch_size: int
) -> dict[str, Any]:
    return {
        "count": count,
        "encoder": fingerprint,
        "options": options.to_json(),
        "batch_size": batch_size,
    }


def _from_precomputed(
    folder: Path, store: DocStore, options: VectorOptions, pre: PrecomputedVectors
) -> dict[str, Any]:
    """The vector stage from vectors given in `pre`: checked against the build's documents,
    indexed and saved, nothing embedded."""
    if inputs_hash(_stored_ids(folder / "docs")) != pre.ids_sha256:
        raise SnapshotError("precomputed vectors are for other documents (ids differ)")
    vectors = pre.documents
    params = _index_vectors(folder, vectors, options)
    entry = _entry(pre.encoder, params.to_dict(), options)
    if options.passages is not None:
        if pre.passages is None:
            raise SnapshotError("precomputed vectors lack the passages this build wants")
        layout = layout_passages(store.iter_fields(), options.passages)
        if pre.passages.shape[0] != len(layout.texts):
            raise SnapshotError(
                f"{pre.passages.shape[0]} precomputed passage vectors for "
                f"{len(layout.texts)} passages"
            )
        save_passages(folder / PASSAGES_DIR, layout, pre.passages, options.passages)
        entry["passages"] = _passages_entry(
            len(layout.texts), pre.encoder, options.passages, options.passage_batch_size
        )
    return entry
