"""Vector index over unit vectors (inner product = cosine), built and stored with FAISS.

Up to ``exact_max`` vectors the index is exact (``IndexFlatIP``); above, it is an HNSW graph
(``IndexHNSWFlat``, inner-product metric). A folder holds:

- ``vectors.npy``: the vectors (float32 or float16), kept for reuse (re-ranking, rebuilding);
- ``hnsw.faiss``: the HNSW graph, only for HNSW. It is memory-mapped on load.

A flat index is rebuilt from ``vectors.npy`` on load (a copy into memory, fast up to the
exact limit), so the vectors are not stored twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from index.errors import QueryError, SnapshotError

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
IndexKind = Literal["flat", "hnsw"]


@dataclass(frozen=True)
class IndexParams:
    """What was built; stored in a manifest via :meth:`to_dict` and read back by :meth:`from_dict`.

    ``hnsw_m``, ``ef_construction`` and ``ef_search`` matter only for ``kind == "hnsw"``.
    """

    kind: IndexKind
    count: int
    dim: int
    metric: str = "inner_product"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        try:
            params = cls(**data)
        except TypeError as exc:
            raise SnapshotError(f"vector index parameters {data!r} are malformed: {exc}") from exc
        if params.kind not in ("flat", "hnsw"):
            raise SnapshotError(f"vector index kind {params.kind!r} is unknown; 'flat' or 'hnsw'")
        return params


def _check_vectors(vectors: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise QueryError(f"vectors must be a 2-D (n, d) array, got shape {vectors.shape}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def build_vector_index(
    vectors: npt.NDArray[Any],
    exact_max: int = 200_000,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 256,
) -> tuple[faiss.Index, IndexParams]:
    """Index ``vectors`` (n, d), expected L2-normalized: flat if n <= exact_max, else HNSW.

    The HNSW defaults come from bench/semantic.py at 1M x 384 (real-like vectors, 2 cores):
    efSearch 256 gave recall@10 0.98 at ~2 ms for k=100; 128 gave 0.96 at ~1.1 ms.
    Construction uses every OpenMP thread (see ``faiss.omp_set_num_threads``) and took ~19 min.
    """
    data = _check_vectors(vectors)
    count, dim = data.shape
    if count <= exact_max:
        flat = faiss.IndexFlatIP(dim)
        flat.add(data)
        return flat, IndexParams(kind="flat", count=count, dim=dim)
    if hnsw_m < 2 or ef_construction < 1 or ef_search < 1:
        raise QueryError(
            f"HNSW needs hnsw_m >= 2, ef_construction >= 1 and ef_search >= 1; got "
            f"{hnsw_m}, {ef_construction}, {ef_search}"
        )
    hnsw = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.hnsw.efSearch = ef_search
    hnsw.add(data)
    params = IndexParams(
        "hnsw", count, dim, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search
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
    return VectorIndex(index, params, threads=threads)


class VectorIndex:
    """A loaded FAISS index answering top-k inner-product searches.

    ``threads`` is applied with ``faiss.omp_set_num_threads``, which is process-wide. One
    thread is usually fastest for single queries (no OpenMP wake-up cost); batches of many
    queries gain from more.
    """

    def __init__(self, index: faiss.Index, params: IndexParams, threads: int = 1) -> None:
        if threads < 1:
            raise QueryError(f"faiss threads must be >= 1, got {threads}")
        faiss.omp_set_num_threads(threads)
        self._index = index
        self._params = params
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
        scores, ids = self._index.search(data, k)
        scores = np.where(ids < 0, np.float32(-np.inf), scores).astype(np.float32)
        return ids.astype(np.int64, copy=False), scores

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
