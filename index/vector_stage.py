"""The vector stage of a snapshot build: embed every document, then index the vectors; then
split every document into passages and embed those (for the enhanced phase).

Runs after the keyword stage, inside the same temporary version folder, so a snapshot is
published with its vectors or not at all. Embedding is the slow part (minutes for thousands of
documents on a CPU): it writes into `ROOT/.work/`, outside the temporary folder, and an
interrupted build resumes there when run again on the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from index.docstore import DocStore
from index.embedding import DocumentEncoder, document_text, embed_corpus
from index.passages import PASSAGES_DIR, PassageOptions, layout_passages, save_passages
from index.vectors import build_vector_index, save_vector_index

__all__ = ["VectorOptions", "build_passages", "build_vectors"]


@dataclass(frozen=True)
class VectorOptions:
    kind: Literal["int8", "fp32"] = "fp32"
    """Document vectors are made once, so the more faithful fp32 model is the default."""
    batch_size: int = 32
    threads: int = 2
    exact_max: int = 200_000
    hnsw_m: int = 48
    ef_construction: int = 200
    ef_search: int = 192
    cache_dir: Path | None = None
    passages: PassageOptions | None = field(default_factory=PassageOptions)
    """Also embed the passages of every document (`None`: no enhanced phase)."""
    passage_batch_size: int = 128
    """Passages (sentences) are short: more of them fit the same work per batch."""


def build_vectors(
    folder: Path, work: Path, options: VectorOptions, progress: bool
) -> dict[str, Any]:
    """Write `folder/vectors/`; returns the manifest entry."""
    from rankers.encoder import Encoder, EncoderConfig

    store = DocStore(folder / "docs" / "store.sqlite")
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
    index, params = build_vector_index(
        vectors,
        exact_max=options.exact_max,
        hnsw_m=options.hnsw_m,
        ef_construction=options.ef_construction,
        ef_search=options.ef_search,
    )
    save_vector_index(index, folder / "vectors", vectors, params)
    del vectors, texts
    entry: dict[str, Any] = {
        "encoder": encoder.fingerprint,
        "document_text": "title. body, cut to the model window",
        "index": params.to_dict(),
        "build": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }
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
    return {
        "count": len(layout.texts),
        "encoder": encoder.fingerprint,
        "options": options.to_json(),
        "batch_size": batch_size,
    }
