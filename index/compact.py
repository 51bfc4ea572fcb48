"""Compaction: fold the delta log into a new snapshot version, in the background.

The new version holds the current snapshot's stored documents, minus those replaced or deleted
since, plus the delta's current upserts; their vectors are reused (the snapshot's rows and the
delta's stored vectors), never recomputed. The steps, each durable before the next:

1. take ``ROOT/.compact.lock`` (one compaction at a time, across processes), and remove the
   ``ROOT/.tmp-*`` folders of builds that died (`sweep_staging`: never a live build's);
2. choose ``through``: the last seq such that every document current at that point has its
   vectors (all changes, for a snapshot without vectors); a document still being embedded
   holds back only the changes from its own upsert on;
3. `write_snapshot` builds the version in a temporary folder, renames it into place and
   replaces ``CURRENT``; its manifest records ``delta_seq = through``;
4. `DeltaLog.truncate_through(through)`.

A crash before step 3 replaces ``CURRENT`` leaves the old version current and the log whole. A
crash between 3 and 4 leaves the new version current with the changes it holds still in the log:
readers start after its ``delta_seq``, so they are never applied twice, and the next compaction
truncates them first.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.errors import SnapshotError
from index.core.types import Document
from index.delta import Change, DeltaLog, StoredVectors
from index.embedding import inputs_hash
from index.filelock import file_lock
from index.manifest import Manifest
from index.passages import SPLITTER_VERSION, PassageOptions, layout_passages
from index.snapshot import (
    WORK,
    BuildOptions,
    Snapshot,
    load_snapshot,
    sweep_staging,
    write_snapshot,
)
from index.vector_stage import PrecomputedVectors

__all__ = ["CompactionResult", "build_options", "compact", "fold"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".compact.lock"
_ROWS = 8192
"""Stored documents (and vector rows) read per step."""


@dataclass(frozen=True)
class CompactionResult:
    version: str
    folder: Path
    through: int
    """The last seq folded in (the manifest's `delta_seq`)."""
    n_docs: int
    upserts: int
    removed: int
    """Snapshot rows dropped (replaced or deleted)."""
    seconds: float


def build_options(manifest: Manifest, workers: int = 1) -> BuildOptions:
    """The options a snapshot was built with, from its manifest."""
    return BuildOptions(
        analyzer=manifest.analyzer,
        bm25=manifest.bm25,
        workers=workers,
        vectors=manifest.vector_options,
        schema=manifest.schema,
        infer_schema=False,
    )


def fold(changes: list[Change], embedded: set[tuple[str, str]] | None) -> tuple[int, list[Change]]:
    """The seq to compact through and the state of the documents written up to it: for each
    id written, its last upsert (a `Change`) or its delete, in seq order.

    With `embedded` (the (id, hash) pairs that have vectors), `through` is the last seq at
    which every current upsert is embedded; None means vectors are not needed."""
    current: dict[str, Change] = {}
    lacking: set[str] = set()
    through = 0
    for ch in changes:
        if ch.op != "vectors":
            current.pop(ch.id, None)  # re-inserted: the dict keeps the last write's order
            current[ch.id] = ch
            if embedded is not None and ch.op == "upsert" and (ch.id, ch.hash) not in embedded:
                lacking.add(ch.id)
            else:
                lacking.discard(ch.id)
        if not lacking:
            through = ch.seq
    state: dict[str, Change] = {}
    for ch in changes:
        if ch.seq > through:
            break
        if ch.op != "vectors":
            state.pop(ch.id, None)
            state[ch.id] = ch
    return through, list(state.values())


def compact(
    root: Path, log: DeltaLog | None = None, *, wait: bool = False, workers: int = 1
) -> CompactionResult | None:
    """Fold the delta into a new current version; None when there is nothing to fold (or,
    without `wait`, when another compaction holds the lock)."""
    root = Path(root)
    log = log or DeltaLog.open(root)
    with file_lock(root / LOCK_FILE, wait) as held:
        if not held:
            return None
        for folder in sweep_staging(root):
            logger.info("removed %s, left by a build that died", folder)
        return _compact(root, log, workers)


def _compact(root: Path, log: DeltaLog, workers: int) -> CompactionResult | None:
    started = time.perf_counter()
    snapshot = load_snapshot(root)
    base = snapshot.manifest.delta_seq
    if log.truncated_through() < base:
        log.truncate_through(base)  # a crash came between publishing and truncating
    changes = log.changes_since(base)
    encoder = snapshot.manifest.encoder_fingerprint
    stored: dict[tuple[str, str], StoredVectors] = {}
    if snapshot.has_vectors:
        keys = [(c.id, c.hash) for c in changes if c.op == "upsert"]
        stored = {k: v for k, v in log.get_vectors(keys).items() if v.encoder == encoder}
    through, state = fold(changes, set(stored) if snapshot.has_vectors else None)
    if through <= base:
        return None
    upserts = [c.document for c in state if c.op == "upsert" and c.document is not None]
    hidden = [snapshot.docs.lookup(c.id) for c in state]
    keep = np.ones(snapshot.n_docs, dtype=bool)
    keep[[row for row in hidden if row is not None]] = False
    kept = np.flatnonzero(keep)
    options = build_options(snapshot.manifest, workers)
    work = root / WORK / f"compact-{uuid.uuid4().hex}"
    for old in (root / WORK).glob("compact-*"):  # left by a killed compaction (we hold the lock)
        shutil.rmtree(old, ignore_errors=True)
    try:
        precomputed = None
        if options.vectors is not None:
            work.mkdir(parents=True)
            precomputed = _vectors(snapshot, kept, upserts, state, stored, options, work, encoder)
        folder = write_snapshot(
            _documents(snapshot, kept, upserts),
            root,
            options,
            precomputed=precomputed,
            delta_seq=through,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.truncate_through(through)
    return CompactionResult(
        folder.name,
        folder,
        through,
        int(kept.size) + len(upserts),
        len(upserts),
        snapshot.n_docs - int(kept.size),
        time.perf_counter() - started,
    )


def _documents(snapshot: Snapshot, kept: npt.NDArray[np.intp], upserts: list[Document]
               ) -> Iterator[Document]:  # fmt: skip
    for lo in range(0, kept.size, _ROWS):
        for doc in snapshot.docs.get_many(kept[lo : lo + _ROWS].tolist()):
            if doc is None:
                raise SnapshotError(f"{snapshot.docs.path}: a stored document is missing")
            yield doc
    yield from upserts


def _ids(snapshot: Snapshot, kept: npt.NDArray[np.intp]) -> list[str]:
    ptr = snapshot.arrays["docs/id_ptr.npy"]
    blob = snapshot.arrays["docs/id_blob.npy"].tobytes()
    starts, ends = ptr[kept].tolist(), ptr[kept + 1].tolist()
    return [blob[a:b].decode("utf-8") for a, b in zip(starts, ends, strict=True)]


def _vectors(
    snapshot: Snapshot,
    kept: npt.NDArray[np.intp],
    upserts: list[Document],
    state: list[Change],
    stored: dict[tuple[str, str], StoredVectors],
    options: BuildOptions,
    work: Path,
    encoder: str,
) -> PrecomputedVectors:
    """The new version's vectors, in its document order, in memory-mapped files in `work`:
    the snapshot's rows that stay, then the delta's."""
    assert options.vectors is not None
    delta = [stored[c.id, c.hash] for c in state if c.op == "upsert"]
    source = snapshot.arrays["vectors/vectors.npy"]
    docs = np.lib.format.open_memmap(
        work / "documents.npy", "w+", np.float32, (kept.size + len(delta), source.shape[1])
    )
    for lo in range(0, kept.size, _ROWS):
        part = kept[lo : lo + _ROWS]
        docs[lo : lo + part.size] = source[part]
    for i, v in enumerate(delta):
        docs[kept.size + i] = v.document
    passages = None
    popts = options.vectors.passages
    if popts is not None:
        entry = snapshot.manifest.passages
        if entry is None or entry.splitter != SPLITTER_VERSION:
            raise SnapshotError(
                "the snapshot's passages were split by another splitter version; "
                "rebuild the index with `progsearch index` instead of compacting"
            )
        passages = _passages(snapshot, kept, upserts, delta, popts, work)
    ids = _ids(snapshot, kept) + [d.id for d in upserts]
    return PrecomputedVectors(encoder, inputs_hash(ids), docs, passages)


def _passages(
    snapshot: Snapshot,
    kept: npt.NDArray[np.intp],
    upserts: list[Document],
    delta: list[StoredVectors],
    options: PassageOptions,
    work: Path,
) -> npt.NDArray[Any]:
    ptr = snapshot.arrays["passages/ptr.npy"]
    source = snapshot.arrays["passages/vectors.npy"]
    counts = ptr[kept + 1] - ptr[kept]
    n_kept = int(counts.sum())
    for doc, v in zip(upserts, delta, strict=True):
        expected = len(layout_passages([(doc.title, doc.text)], options).texts)
        if v.passages.shape[0] != expected:
            raise SnapshotError(
                f"document {doc.id!r}: {v.passages.shape[0]} stored passage vectors for "
                f"{expected} passages"
            )
    total = n_kept + sum(v.passages.shape[0] for v in delta)
    out = np.lib.format.open_memmap(
        work / "passages.npy", "w+", source.dtype, (total, source.shape[1])
    )
    at = 0
    for lo in range(0, kept.size, _ROWS):
        part = kept[lo : lo + _ROWS]
        starts, lengths = ptr[part], ptr[part + 1] - ptr[part]
        n = int(lengths.sum())
        offsets = np.cumsum(lengths) - lengths
        rows = np.arange(n, dtype=np.int64) + np.repeat(starts - offsets, lengths)
        out[at : at + n] = source[rows]
        at += n
    for v in delta:
        out[at : at + v.passages.shape[0]] = v.passages
        at += v.passages.shape[0]
    out.flush()
    return out
