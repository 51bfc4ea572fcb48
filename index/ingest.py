"""What the write path calls: request bodies to documents, and the embedding task's body.

- `parse_documents`: a ``POST /documents`` body (one JSON object, a JSON array, or NDJSON) to
  checked documents, each through `index.sources.document_from_record`; a bad record raises
  `SourceError` naming its line (NDJSON) or position (array), and nothing of the batch is
  written.
- `embed_document`: the body of the embedding task for one (id, content hash). Idempotent: it
  does nothing when the document was replaced or deleted since, or already has its vectors, and
  `DeltaLog.put_vectors` writes the vectors and their log entry in one transaction, at most
  once. A worker killed at any point leaves either nothing or everything; the task run again
  (Celery ``acks_late`` redelivers it) stores the vectors exactly once.
- `embed_pending`: the same for every document still waiting (after a restart, or when a task
  message was lost).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from index.core.errors import ModelError, SourceError
from index.core.types import Document
from index.delta import Change, DeltaLog
from index.embedding import DocumentEncoder, document_text
from index.passages import PassageOptions, layout_passages
from index.schema import Schema
from index.sources import document_from_record

if TYPE_CHECKING:
    from index.core.encoder import Encoder
    from index.manifest import Manifest

__all__ = [
    "embed_document",
    "embed_pending",
    "load_document_encoder",
    "parse_documents",
]


def _records(body: bytes, ndjson: bool | None) -> list[tuple[str, Any]]:
    if not ndjson:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if ndjson is False or body.strip().count(b"\n") == 0:
                raise SourceError(f"malformed JSON: {exc}") from exc
        else:
            items = data if isinstance(data, list) else [data]
            return [(f"item {i}", r) for i, r in enumerate(items)]
    records = []
    for n, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                records.append((f"line {n}", orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                raise SourceError(f"line {n}: malformed JSON: {exc}") from exc
    return records


def parse_documents(
    body: bytes, *, ndjson: bool | None = None, schema: Schema | None = None
) -> list[Document]:
    """Documents of a request body: NDJSON (one object per line) when `ndjson`, one JSON
    object or an array of them when not; None tries JSON first, then NDJSON (the HTTP layer
    passes what the content type says). With a `schema`, their structured fields are checked
    against it (a `SourceError` names the line or item and the field)."""
    docs = []
    for where, record in _records(body, ndjson):
        try:
            # "id", or BEIR's "_id"; a record with neither is told about "id".
            beir = isinstance(record, dict) and "id" not in record and "_id" in record
            id_field = "_id" if beir else "id"
            doc = document_from_record(record, id_field=id_field)
            if schema is not None and doc.fields:
                schema.check(doc.fields)
            docs.append(doc)
        except ValueError as exc:
            raise SourceError(f"{where}: {exc}") from exc
    if not docs:
        raise SourceError("the body holds no document")
    return docs


def load_document_encoder(manifest: Manifest) -> Encoder:
    """The encoder a snapshot's document vectors were made with, for its delta's: vectors of
    another encoder are not comparable, so the live index ignores them and compaction waits
    for the right ones. Loads the query model only; the document model loads on first use."""
    from index.core.encoder import Encoder, EncoderConfig

    options = manifest.vector_options
    if options is None:
        raise ModelError("this snapshot has no vectors: its documents are not embedded")
    encoder = Encoder.load(
        EncoderConfig(kind=options.kind, threads=options.threads, cache_dir=options.cache_dir)
    )
    if encoder.fingerprint != manifest.encoder_fingerprint:
        raise ModelError(
            f"the snapshot was embedded by {manifest.encoder_fingerprint!r}; "
            f"this encoder is {encoder.fingerprint!r}"
        )
    return encoder


def _embed(
    docs: Sequence[Document], encoder: DocumentEncoder, options: PassageOptions | None
) -> tuple[npt.NDArray[np.float32], list[list[str]], list[npt.NDArray[np.float32]]]:
    vectors = encoder.encode_documents([document_text(d.title, d.text) for d in docs])
    texts = [
        layout_passages([(d.title, d.text)], options).texts if options is not None else []
        for d in docs
    ]
    flat = [t for group in texts for t in group]
    encoded = encoder.encode_documents(flat) if flat else np.empty((0, encoder.dim), np.float32)
    bounds = np.cumsum([0, *map(len, texts)])
    passages = [encoded[a:b] for a, b in itertools.pairwise(bounds.tolist())]
    return vectors, texts, passages


def _store(
    log: DeltaLog,
    todo: Sequence[Change],
    encoder: DocumentEncoder,
    options: PassageOptions | None,
) -> int:
    docs = [c.document for c in todo if c.document is not None]
    vectors, texts, passages = _embed(docs, encoder, options)
    stored = 0
    for ch, vec, group, pas in zip(todo, vectors, texts, passages, strict=True):
        if log.put_vectors(ch.id, ch.hash, vec, pas, group, encoder.fingerprint) is not None:
            stored += 1
    return stored


def embed_document(
    log: DeltaLog,
    encoder: DocumentEncoder,
    doc_id: str,
    digest: str,
    options: PassageOptions | None,
) -> bool:
    """Embed one written document, keyed by (id, content hash); whether vectors were stored
    by this call."""
    latest = log.latest(doc_id)
    if latest is None or latest.op != "upsert" or latest.hash != digest:
        return False  # replaced or deleted since: the later write has its own task
    if log.has_vectors(doc_id, digest):
        return False
    return _store(log, [latest], encoder, options) == 1


def embed_pending(
    log: DeltaLog, encoder: DocumentEncoder, options: PassageOptions | None, limit: int = 64
) -> int:
    """Embed up to `limit` documents still waiting for vectors, oldest first; how many were
    stored."""
    todo = log.pending_embeddings(limit)
    return _store(log, todo, encoder, options) if todo else 0
