"""Vector index over unit vectors (inner product = cosine), built and stored with FAISS.

Up to ``exact_max`` vectors the index is exact (``IndexFlatIP``); above, it is an HNSW graph
(inner-product metric) whose nodes hold either the float vectors (``storage="flat"``,
``IndexHNSWFlat``) or 8-bit scalar-quantized codes (``storage="sq8"``, ``IndexHNSWSQ``): a
quarter of the bytes read per visited node, and the graph's candidates are then re-scored
exactly against ``vectors.npy``, so the scores returned are exact cosines. A folder holds:

- ``vectors.npy``: the vectors (float32 or float16), kept for reuse (re-ranking, rebuilding);
- ``hnsw.faiss``: the HNSW graph, only for HNSW. It is memory-mapped on load.

A flat index is rebuilt from ``vectors.npy`` on load (a copy into memory, fast up to the
exact limit), so the vectors are not stored twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from index.core.errors import QueryError, SnapshotError
from index.vector_params import STORAGES, IndexParams, Storage

__all__ = [
    "IndexParams",
    "VectorIndex",
    "build_vector_index",
    "load_vector_index",
    "load_vectors",
    "save_vector_index",
]

VECTORS_FILE = "vectors.npy"
HNSW_FILE = "hnsw.faiss"
def _check_vectors(vectors: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise QueryError(f"vectors must be a 2-D (n, d) array, got shape {vectors.shape}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def build_vector_index(
    vectors: npt.NDArray[Any],
    exact_max: int = 200_000,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 320,
    storage: Storage = "sq8",
    refine: int = 100,
) -> tuple[faiss.Index, IndexParams]:
    """Index ``vectors`` (n, d), expected L2-normalized: flat if n <= exact_max, else HNSW.

    The HNSW defaults come from bench/semantic.py at 1M x 384 (real-like vectors, 2 cores, k=100,
    one query at a time): sq8 nodes with efSearch 320 gave recall@10 0.984 at 1.65 ms, 256 gave
    0.981 at 1.32 ms; float nodes ("flat") 0.981 at 1.97 ms with efSearch 256. ``storage="sq8"``
    trains the quantizer's per-dimension ranges on the vectors first. Construction uses every
    OpenMP thread (see ``faiss.omp_set_num_threads``): 12 minutes for sq8, 17 for flat.
    """
    data = _check_vectors(vectors)
    count, dim = data.shape
    if count <= exact_max:
        flat = faiss.IndexFlatIP(dim)
        flat.add(data)
        return flat, IndexParams(kind="flat", count=count, dim=dim)
    if hnsw_m < 2 or ef_construction < 1 or ef_search < 1 or refine < 1:
        raise QueryError(
            f"HNSW needs hnsw_m >= 2, ef_construction >= 1, ef_search >= 1 and refine >= 1; "
            f"got {hnsw_m}, {ef_construction}, {ef_search}, {refine}"
        )
    if storage not in STORAGES:
        raise QueryError(f"vector storage {storage!r} is unknown; one of {STORAGES}")
    hnsw: faiss.IndexHNSW
    if storage == "sq8":
        hnsw = faiss.IndexHNSWSQ(
            dim, faiss.ScalarQuantizer.QT_8bit, hnsw_m, faiss.METRIC_INNER_PRODUCT  # type: ignore[arg-type]
        )
        hnsw.train(data)
    else:
        hnsw = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.hnsw.efSearch = ef_search
    hnsw.add(data)
    params = IndexParams(
        "hnsw", count, dim, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        storage=storage, refine=refine,
    )
    return hnsw, params


def save_vector_index(
    index: faiss.Index,
    folder: Path,
    vectors: npt.NDArray[Any],
    params: IndexParams,
    vectors_dtype: Literal["float32", "float16"] = "float32",
) -> None:
    """Write ``vectors.npy`` (and ``hnsw.faiss`` for HNSW) into ``folder``."""
    data = _check_vectors(vectors)
    if data.shape != (params.count, params.dim) or index.ntotal != params.count:
        raise QueryError(
            f"vectors {data.shape} and index of {index.ntotal} do not match the parameters "
            f"({params.count}, {params.dim})"
        )
    if vectors_dtype not in ("float32", "float16"):
        raise QueryError(f"vectors_dtype {vectors_dtype!r} is unknown; float32 or float16")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / VECTORS_FILE, data.astype(vectors_dtype, copy=False))
    if params.kind == "hnsw":
        faiss.write_index(index, str(folder / HNSW_FILE))


def load_vectors(folder: Path) -> npt.NDArray[Any]:
    """The stored vectors, memory-mapped read-only."""
    path = folder / VECTORS_FILE
    try:
        vectors: npt.NDArray[Any] = np.load(path, mmap_mode="r")
        return vectors
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read the vectors {path}: {exc}") from exc


def load_vector_index(folder: Path, params: IndexParams, threads: int = 1) -> VectorIndex:
    """Open the index saved in ``folder`` with ``params`` (from the manifest)."""
    vectors = load_vectors(folder)
    if vectors.shape != (params.count, params.dim):
        raise SnapshotError(
            f"{folder / VECTORS_FILE} has shape {vectors.shape}, the manifest says "
            f"({params.count}, {params.dim})"
        )
    if params.kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(params.dim)
        if params.count:
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    else:
        path = folder / HNSW_FILE
        if not path.is_file():
            raise SnapshotError(f"the HNSW index {path} is missing")
        try:
            # MMAP_IFC maps the stored vectors and graph instead of reading them into memory.
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            raise SnapshotError(f"cannot read the HNSW index {path}: {exc}") from exc
        if index.ntotal != params.count or index.d != params.dim:
            raise SnapshotError(
                f"{path} holds {index.ntotal} vectors of {index.d} dims, the manifest says "
                f"{params.count} of {params.dim}"
            )
    return VectorIndex(index, params, threads=threads, vectors=vectors)


def filtered_ef(ef_search: int, share: float) -> int:
    """efSearch for a graph walk that returns only `share` of the vectors: 1 + log10(1 /
    share) / 2 times the unfiltered one (1.15x at 50 %, 1.5x at 10 %, 2x at 1 %). Measured at
    1M vectors (`bench.filtered_semantic`), recall@10 at 10 % went 0.971 -> 0.985 from 1x to
    1.5x, for 1.4x the time; 1/share (the rule before) cost 8x for 0.999."""
    return int(ef_search * (1.0 + 0.5 * math.log10(1.0 / min(1.0, max(share, 1e-9)))))


class VectorIndex:
    """A loaded FAISS index answering top-k inner-product searches.

    ``threads`` is applied with ``faiss.omp_set_num_threads``, which is process-wide. One
    thread is usually fastest for single queries (no OpenMP wake-up cost); batches of many
    queries gain from more.
    """

    def __init__(self, index: faiss.Index, params: IndexParams, threads: int = 1,
                 vectors: npt.NDArray[Any] | None = None) -> None:
        if threads < 1:
            raise QueryError(f"faiss threads must be >= 1, got {threads}")
        if params.kind == "hnsw" and params.storage == "sq8" and vectors is None:
            raise QueryError("an sq8 HNSW index needs the float vectors to re-score against")
        faiss.omp_set_num_threads(threads)
        self._index = index
        self._params = params
        self._vectors = vectors if params.kind == "hnsw" and params.storage == "sq8" else None
        if isinstance(index, faiss.IndexHNSW):
            # Set once here, never per query: searches share the index across threads.
            index.hnsw.efSearch = params.ef_search

    @property
    def params(self) -> IndexParams:
        return self._params

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search_many(
        self, queries: npt.NDArray[Any], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top ``k`` of each query of an (n, d) array: (n, k') ids and scores, k' = min(k, size).

        HNSW may find fewer than k' neighbours: those slots hold id -1 and score -inf.
        """
        if k < 1:
            raise QueryError(f"k must be >= 1, got {k}")
        data = np.ascontiguousarray(queries, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self._params.dim:
            raise QueryError(
                f"queries must have shape (n, {self._params.dim}), got {queries.shape}"
            )
        k = min(k, len(self))
        if k == 0 or data.shape[0] == 0:
            empty = (data.shape[0], 0)
            return np.empty(empty, dtype=np.int64), np.empty(empty, dtype=np.float32)
        if self._vectors is not None:
            _, candidates = self._index.search(data, min(max(k, self._params.refine), len(self)))
            return _rescore(self._vectors, data, candidates, k)
        scores, ids = self._index.search(data, k)
        scores = np.where(ids < 0, np.float32(-np.inf), scores).astype(np.float32)
        return ids.astype(np.int64, copy=False), scores

    def search_within(
        self, query: npt.NDArray[Any], k: int, allow: npt.NDArray[np.bool_], share: float
    ) -> npt.NDArray[np.int64]:
        """Ids of the top ``k`` of one query among the flagged vectors (`share` of them are),
        best first: the graph is searched with FAISS's bitmap selector, so it is walked
        through every vector but only flagged ones are returned. The walk already goes on
        until it has efSearch flagged results, so efSearch is raised only gently as the share
        falls (`filtered_ef`); below about 1 % of a large index, exact search over the flagged
        rows is cheaper for the same recall (`rankers.snapshot_segment.nearest_within`)."""
        data = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        k = min(k, len(self))
        if k < 1:
            return np.empty(0, dtype=np.int64)
        flags = np.ascontiguousarray(allow, dtype=np.bool_).view(np.uint8)  # no copy
        bitmap = np.packbits(flags, bitorder="little")
        selector = faiss.IDSelectorBitmap(allow.size, faiss.swig_ptr(bitmap))
        depth = k if self._vectors is None else min(max(k, self._params.refine), len(self))
        if isinstance(self._index, faiss.IndexHNSW):
            ef = max(depth, filtered_ef(self._params.ef_search, share))
            params: Any = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)  # type: ignore[attr-defined]
        else:
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        _, ids = self._index.search(data, depth, params=params)
        if self._vectors is not None:
            ids, _ = _rescore(self._vectors, data, ids, k)
        found = ids[0]
        out: npt.NDArray[np.int64] = found[found >= 0].astype(np.int64)[:k]
        return out

    def search(
        self, query: npt.NDArray[Any], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top ``k`` of one query, shape (d,) or (1, d): ids and scores, best first, no -1."""
        data = np.asarray(query)
        if data.ndim == 1:
            data = data[None, :]
        if data.shape[0] != 1:
            raise QueryError(f"search takes one query; use search_many for shape {query.shape}")
        ids, scores = self.search_many(data, k)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]


def _rescore(
    vectors: npt.NDArray[Any], queries: npt.NDArray[np.float32], ids: npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The top ``k`` of each row of candidate ``ids`` (-1: none) by exact inner product with
    its query, from the stored ``vectors``: (n, k) ids and scores, missing slots -1 / -inf."""
    n, width = ids.shape
    safe = np.where(ids < 0, 0, ids)
    rows = np.asarray(vectors[safe.ravel()], dtype=np.float32).reshape(n, width, -1)
    scores = np.einsum("nwd,nd->nw", rows, queries, dtype=np.float32)
    scores[ids < 0] = -np.inf
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # a few hundred per row at most
    out_ids = np.take_along_axis(ids, best, axis=1).astype(np.int64, copy=False)
    out_scores = np.take_along_axis(scores, best, axis=1).astype(np.float32, copy=False)
    out_ids[~np.isfinite(out_scores)] = -1
    return out_ids, out_scores
