"""What a build's vectors are made with and what its vector index is: plain dataclasses,
read from the manifest when a snapshot loads, so loading does not import FAISS or the encoder
(`index.vectors` and `index.vector_stage` use them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from index.core.errors import SnapshotError
from index.passages import PassageOptions

__all__ = ["STORAGES", "IndexKind", "IndexParams", "Storage", "VectorOptions"]

IndexKind = Literal["flat", "hnsw"]
Storage = Literal["flat", "sq8"]
STORAGES: tuple[Storage, ...] = get_args(Storage)


@dataclass(frozen=True)
class IndexParams:
    """What was built; stored in a manifest via :meth:`to_dict` and read back by :meth:`from_dict`.

    ``hnsw_m``, ``ef_construction``, ``ef_search``, ``storage`` and ``refine`` matter only for
    ``kind == "hnsw"``. With ``storage == "sq8"`` a search re-scores at least ``refine`` of the
    graph's candidates exactly (more when more are asked for).
    """

    kind: IndexKind
    count: int
    dim: int
    metric: str = "inner_product"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    storage: Storage = "flat"
    refine: int = 100

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
        if params.storage not in STORAGES:
            raise SnapshotError(f"vector storage {params.storage!r} is unknown; one of {STORAGES}")
        return params



@dataclass(frozen=True)
class VectorOptions:
    kind: Literal["int8", "fp32"] = "fp32"
    """Document vectors are made once, so the more faithful fp32 model is the default."""
    batch_size: int = 32
    threads: int = 2
    exact_max: int = 200_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 320
    hnsw_storage: Storage = "sq8"
    """What HNSW nodes hold (see `index.vectors`). The HNSW defaults are bench/semantic.py's at
    1M x 384: sq8 with efSearch 320 found recall@10 0.984 in 1.65 ms (k=100); float nodes took
    1.97 ms for 0.981 at efSearch 256, and their graph file is 2.8 times as large."""
    cache_dir: Path | None = None
    passages: PassageOptions | None = field(default_factory=PassageOptions)
    """Also embed the passages of every document (`None`: no enhanced phase)."""
    passage_batch_size: int = 128
    """Passages (sentences) are short: more of them fit the same work per batch."""
