"""Snapshots: a folder of `.npy` arrays, a SQLite document store and a manifest.

Layout of an index root::

    ROOT/CURRENT                 name of the live version (replaced atomically)
    ROOT/<version>/manifest.json format version, analyzer, BM25 parameters, counts, checksums
    ROOT/<version>/keyword/      CSR postings with BM25 impacts, per-term stats, document lengths
    ROOT/<version>/vocab/        surface forms with their frequency and index term
    ROOT/<version>/docs/         external ids (blob + offsets) and the SQLite store
    ROOT/<version>/vectors/      document vectors (and an HNSW graph when large), optional
    ROOT/<version>/passages/     passages (CSR per document, text spans, vectors), optional
    ROOT/.work/                  resumable embedding work of an interrupted build

A version is built in a temporary folder, synced, renamed into place, and only then named by
CURRENT, so a reader sees the old snapshot or the new one, whole. Loading memory-maps the arrays
and checks names, dtypes and shapes against the manifest; checking the checksums reads every
byte, so it is optional (`verify=True`, or `progsearch verify`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from index.analysis_pool import Batch, analyzed_batches
from index.analyzer import AnalyzerSettings
from index.builder import KeywordBuilder
from index.columns import Column, build_columns, load_columns, save_columns
from index.core.bm25 import BM25Params
from index.core.errors import SnapshotError, SourceError
from index.core.types import Document
from index.docstore import DocStore, DocStoreWriter
from index.manifest import ArrayEntry, BuildSeconds, Counts, FileEntry, Manifest, VectorsEntry
from index.schema import INFER_SAMPLE, Schema
from index.sources import BLOCK_BYTES, SourceReader

if TYPE_CHECKING:
    # The vector stage pulls in FAISS: imported only by a build that embeds, so loading a
    # snapshot to serve it stays quick.
    from index.vector_params import VectorOptions
    from index.vector_stage import PrecomputedVectors

__all__ = [
    "FORMAT_VERSION",
    "BuildOptions",
    "Snapshot",
    "load_snapshot",
    "read_manifest",
    "sweep_staging",
    "write_snapshot",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
WORK = ".work"
STAGING = ".tmp-"
"""Prefix of the folder a version is built in, before its rename (`ROOT/.tmp-<uuid>`)."""
KEEP_VERSIONS = 2


@dataclass(frozen=True)
class BuildOptions:
    analyzer: AnalyzerSettings = field(default_factory=AnalyzerSettings)
    bm25: BM25Params = field(default_factory=BM25Params)
    workers: int = 2
    chunk_size: int = 20_000
    """Documents per chunk, for sources read as documents (CSV, or any iterable)."""
    block_bytes: int = BLOCK_BYTES
    """Bytes per block, for JSON Lines sources (parsed in the worker processes)."""
    progress: bool = False
    vectors: VectorOptions | None = None
    """Embed the documents and index the vectors (`None`: a keyword-only snapshot)."""
    schema: Schema | None = None
    """The structured fields (`index.schema`); None: inferred from the data when
    `infer_schema`, else none."""
    infer_schema: bool = True


def _sha256(path: Path, *, sync: bool = False) -> str:
    """The file's checksum; `sync`: also flush it to disk (it is read anyway)."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if sync:
            os.fsync(fh.fileno())
    return digest


def _claim_staging(root: Path) -> tuple[Path, int]:
    """A new `ROOT/.tmp-*` folder and an open descriptor holding its lock (`flock` on the
    folder itself) while the build writes it; closing the descriptor, or the owner's death
    however it dies, releases it. `sweep_staging` removes only unlocked folders, and a folder
    it took between our mkdir and flock is noticed (it is gone) and replaced."""
    while True:
        folder = root / f"{STAGING}{uuid.uuid4().hex}"
        folder.mkdir()
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(folder).st_ino == os.fstat(fd).st_ino:
                return folder, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def sweep_staging(root: Path) -> list[Path]:
    """Remove the `ROOT/.tmp-*` folders whose build died (a killed compaction or `progsearch
    index`), never one a live build holds; returns those removed. Each is removed while its
    lock is held, and only if the path still names the folder locked (a build that finished
    meanwhile renamed it into a version)."""
    removed = []
    for folder in sorted(Path(root).glob(f"{STAGING}*")):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # gone already, or not a folder
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(folder).st_ino == os.fstat(fd).st_ino:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:  # locked by a live build (BlockingIOError), or renamed meanwhile
            pass
        finally:
            os.close(fd)
    return removed


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _array_entries(folder: Path, known: dict[str, str]) -> dict[str, ArrayEntry]:
    """Dtype, shape and checksum of every array (`known`: checksums taken already, by name);
    files are checksummed (and synced) two at a time, since hashing releases the GIL."""
    paths = sorted(folder.rglob("*.npy"))
    names = [path.relative_to(folder).as_posix() for path in paths]
    todo = [path for path, name in zip(paths, names, strict=True) if name not in known]
    with ThreadPoolExecutor(2) as pool:
        sums = dict(zip(todo, pool.map(partial(_sha256, sync=True), todo), strict=True))
    entries: dict[str, ArrayEntry] = {}
    for path, name in zip(paths, names, strict=True):
        digest = known[name] if name in known else sums[path]
        arr = np.load(path, mmap_mode="r")
        entries[name] = ArrayEntry(arr.dtype.str, tuple(arr.shape), digest)
    return entries


class _IdWriter:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.lengths: list[int] = []

    def add(self, ids: list[str]) -> None:
        blobs = list(map(str.encode, ids))
        self.blobs.extend(blobs)
        self.lengths.extend(map(len, blobs))

    def save(self, folder: Path) -> None:
        ptr = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(np.asarray(self.lengths, dtype=np.int64), out=ptr[1:])
        np.save(folder / "id_ptr.npy", ptr)
        np.save(folder / "id_blob.npy", np.frombuffer(b"".join(self.blobs), dtype=np.uint8))


def write_snapshot(
    docs: Iterable[Document],
    root: Path,
    options: BuildOptions,
    *,
    precomputed: PrecomputedVectors | None = None,
    delta_seq: int = 0,
) -> Path:
    """Build a new version under `root` and make it current; returns its folder.

    `precomputed` gives the vectors instead of embedding (with `options.vectors` set);
    `delta_seq` is the last change of the delta log a compaction folds in."""
    if precomputed is not None and options.vectors is None:
        raise SnapshotError("precomputed vectors given to a build without vectors")
    docs, schema = _with_schema(docs, options)
    root.mkdir(parents=True, exist_ok=True)
    tmp, owner = _claim_staging(root)
    store: DocStoreWriter | None = None
    try:
        (tmp / "docs").mkdir()
        writer = store = DocStoreWriter(tmp / "docs" / "store.sqlite")
        ids = _IdWriter()
        bar = tqdm(desc="indexing", unit="docs", disable=not options.progress, smoothing=0.1)

        def on_batch(batch: Batch) -> None:
            if batch.block is not None:
                writer.add_block(batch.block, batch.block_docs, batch.keep)
            else:
                writer.add_columns(batch.ids, batch.titles, batch.texts, batch.fields)
            ids.add(batch.ids)
            bar.update(len(batch))

        started = time.perf_counter()
        (tmp / "blocks").mkdir()
        batches = analyzed_batches(
            docs,
            options.analyzer,
            options.bm25.title_weight,
            tmp / "blocks",
            workers=options.workers,
            chunk_size=options.chunk_size,
            block_bytes=options.block_bytes,
        )
        builder = KeywordBuilder(options.bm25)
        # Closing the batches on any failure stops the workers before the folder is removed.
        with contextlib.closing(batches):
            for batch, chunk in batches:
                builder.add(chunk, len(batch))
                on_batch(batch)
        bar.close()
        store = None
        writer.close()
        (tmp / "blocks").rmdir()
        if builder.n_docs == 0:
            raise SourceError("the source holds no valid document; nothing was indexed")
        if schema is not None:
            schema = _write_columns(tmp, schema)
        with ThreadPoolExecutor(2) as background:
            # Checksum and sync each large file as soon as it is complete (the store now, the
            # postings as they are written), while the rest of the index is computed.
            sums = {
                "docs/store.sqlite": background.submit(
                    _sha256, tmp / "docs" / "store.sqlite", sync=True
                )
            }

            def on_saved(path: Path) -> None:
                sums[path.relative_to(tmp).as_posix()] = background.submit(_sha256, path, sync=True)

            stats = builder.finish(tmp, on_saved=on_saved)
            ids.save(tmp / "docs")
            checksums = {name: fut.result() for name, fut in sums.items()}
        keyword_seconds = time.perf_counter() - started
        vectors = None
        if options.vectors is not None:
            from index.vector_stage import build_vectors

            vectors = build_vectors(
                tmp, root / WORK, options.vectors, options.progress, precomputed
            )
        arrays = _array_entries(tmp, checksums)
        files = {
            name: FileEntry(checksums.get(name) or _sha256(tmp / name))
            for name in ("docs/store.sqlite", "vectors/hnsw.faiss")
            if (tmp / name).exists()
        }
        every = {k: v.sha256 for k, v in arrays.items()}
        every.update((k, v.sha256) for k, v in files.items())
        digest = hashlib.sha256(json.dumps(every, sort_keys=True).encode()).hexdigest()
        version = _new_version_name(root, digest)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            version=version,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            build_seconds=BuildSeconds(
                round(keyword_seconds, 3), round(time.perf_counter() - started, 3)
            ),
            analyzer=options.analyzer,
            bm25=options.bm25,
            counts=Counts(stats.n_docs, stats.n_terms, stats.n_surfaces, stats.n_postings),
            avg_doc_len=stats.avg_doc_len,
            # The vector stage returns its entry as JSON; parsing it here checks it as a
            # reader will.
            vectors=VectorsEntry.from_json(vectors) if vectors is not None else None,
            arrays=arrays,
            files=files,
            checksum=digest,
            delta_seq=delta_seq,
            schema=schema,
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2))
        _fsync_tree(tmp)
        final = root / version
        os.rename(tmp, final)
    except BaseException:
        if store is not None:
            store.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(owner)  # the folder is renamed or removed: its lock goes with the descriptor
    _set_current(root, version)
    _drop_old_versions(root, keep=version)
    return final


def _with_schema(
    docs: Iterable[Document], options: BuildOptions
) -> tuple[Iterable[Document], Schema | None]:
    """The documents, checked against the schema (given, or inferred from the first
    records), and the schema (None when there are no structured fields)."""
    schema = options.schema
    if isinstance(docs, SourceReader):
        if schema is None and options.infer_schema:
            schema = docs.infer_schema()
        docs.schema = schema or None
        return docs, docs.schema
    it = iter(docs)
    head = list(itertools.islice(it, INFER_SAMPLE))
    if schema is None and options.infer_schema:
        schema = Schema.infer(d.fields for d in head)
    if not schema:
        return itertools.chain(head, it), None
    checked = schema

    def check(stream: Iterable[Document]) -> Iterator[Document]:
        for doc in stream:
            if doc.fields:
                try:
                    checked.check(doc.fields)
                except ValueError as exc:
                    raise SourceError(f"document {doc.id!r}: {exc}") from None
            yield doc

    return check(itertools.chain(head, it)), schema


def _write_columns(tmp: Path, schema: Schema) -> Schema:
    """The structured fields' columns, from the store just written, in ``fields/``; the
    schema with each number field's integer flag taken from the data."""
    store = DocStore(tmp / "docs" / "store.sqlite")
    try:
        specs, columns = build_columns(schema.fields, store.iter_extra())
    finally:
        store.close()
    save_columns(tmp, specs, columns)
    return Schema(specs)


def _new_version_name(root: Path, digest: str) -> str:
    """Sortable by build time, and unique even for two builds of the same content."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + digest[:10]
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _set_current(root: Path, version: str) -> None:
    pointer = root / f".{CURRENT}.{uuid.uuid4().hex}"
    pointer.write_text(version + "\n")
    with open(pointer, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(pointer, root / CURRENT)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_old_versions(root: Path, keep: str) -> None:
    versions = sorted(
        p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).exists() and p.name != keep
    )
    for old in versions[: max(0, len(versions) - (KEEP_VERSIONS - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_version(path: Path) -> Path:
    """A version folder, given either it or an index root."""
    if (path / MANIFEST).is_file():
        return path
    pointer = path / CURRENT
    if not pointer.is_file():
        raise SnapshotError(f"{path}: not a progsearch index (no {CURRENT} or {MANIFEST})")
    name = pointer.read_text().strip()
    folder = path / name
    if not name or "/" in name or not (folder / MANIFEST).is_file():
        raise SnapshotError(f"{pointer}: names version {name!r}, which is missing")
    return folder


@dataclass
class Snapshot:
    """A loaded, read-only snapshot; its arrays are memory-mapped. Its properties are the
    manifest's, named here because nearly every caller asks for them."""

    folder: Path
    manifest: Manifest
    arrays: dict[str, npt.NDArray[Any]]
    docs: DocStore

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def analyzer(self) -> AnalyzerSettings:
        return self.manifest.analyzer

    @property
    def bm25(self) -> BM25Params:
        return self.manifest.bm25

    @property
    def has_vectors(self) -> bool:
        return self.manifest.has_vectors

    @property
    def has_passages(self) -> bool:
        return self.manifest.has_passages

    @property
    def n_docs(self) -> int:
        return self.manifest.n_docs

    @functools.cached_property
    def columns(self) -> Mapping[str, Column]:
        """The structured fields' columns, memory-mapped, by field name (empty: none)."""
        schema = self.manifest.schema
        return load_columns(schema.fields, self.arrays) if schema is not None else {}

    def external_id(self, idx: int) -> str:
        ptr = self.arrays["docs/id_ptr.npy"]
        blob = self.arrays["docs/id_blob.npy"]
        return bytes(blob[int(ptr[idx]) : int(ptr[idx + 1])]).decode("utf-8")

    def external_ids(self, idxs: Iterable[int]) -> list[str]:
        return [self.external_id(int(i)) for i in idxs]


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a version folder, parsed and checked."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise SnapshotError(f"{path}: manifest is not a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path}: unknown format version {version!r}; this progsearch reads version "
            f"{FORMAT_VERSION}, rebuild the index with `progsearch index`"
        )
    try:
        return Manifest.from_json(data)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc


def load_snapshot(path: Path, *, verify: bool = False) -> Snapshot:
    folder = resolve_version(Path(path))
    manifest = read_manifest(folder)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, entry in manifest.arrays.items():
        file = folder / name
        if verify and _sha256(file) != entry.sha256:
            raise SnapshotError(f"{file}: checksum mismatch, the file is corrupt")
        try:
            arr = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"{file}: cannot load array: {exc}") from exc
        if arr.dtype.str != entry.dtype or arr.shape != entry.shape:
            raise SnapshotError(
                f"{file}: holds {arr.dtype.str}{list(arr.shape)}, manifest says "
                f"{entry.dtype}{list(entry.shape)}; the file is corrupt"
            )
        # A plain ndarray view of the same mapping: np.memmap's subclass hooks cost microseconds
        # on every slice, and the query path slices a lot.
        arrays[name] = arr.view(np.ndarray)
    store_path = folder / "docs" / "store.sqlite"
    if verify:
        for name, file_entry in manifest.files.items():
            if _sha256(folder / name) != file_entry.sha256:
                raise SnapshotError(f"{folder / name}: checksum mismatch, the file is corrupt")
    return Snapshot(folder, manifest, arrays, DocStore(store_path))
