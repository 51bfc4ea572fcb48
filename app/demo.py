"""The built-in demo index: the generated catalog, indexed on first use.

The catalog's document and passage vectors are computed by progsearch's own indexer and shipped
in `app/catalog/vectors/` (int8 with one scale per row, a quarter of float32; `make
demo-vectors` rebuilds them), so the first `make demo` indexes in seconds instead of embedding
5,000 products and 30,000 passages. They are only used when they were
computed for exactly this catalog text and this encoder: the embedding stage checks the
fingerprint and a hash of the inputs, and embeds anything else itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from app.catalog import DEFAULT_N, DEFAULT_SEED, write_catalog
from app.catalog.files import SCHEMA
from index.core.errors import ProgsearchError
from index.embedding import document_text, inputs_hash
from index.passages import PassageOptions, layout_passages
from index.schema import Schema
from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source
from index.vector_params import VectorOptions

__all__ = [
    "SHIPPED", "default_demo_dir", "ensure_demo_index", "export_vectors", "stale_shipped_vectors",
]

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "catalog" / "vectors"
STAMP = "catalog.sha256"


def default_demo_dir() -> Path:
    base = os.environ.get("PROGSEARCH_DEMO_DIR")
    if base:
        return Path(base)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "progsearch" / "demo-index"


def pack(vectors: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric int8 per row: cosines move by well under 0.01, ranks hardly at all."""
    scale = np.abs(vectors).max(axis=1).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    return np.round(vectors / scale[:, None]).astype(np.int8), scale


def unpack(codes: npt.NDArray[np.int8], scale: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    vectors = codes.astype(np.float32) * scale[:, None]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _seed_work(work: Path) -> None:
    """Put the shipped vectors where the embedding stage looks for finished work."""
    work.mkdir(parents=True, exist_ok=True)
    for marker in sorted(SHIPPED.glob("*.json")):
        stem = marker.name.removesuffix(".json")
        codes, scale = SHIPPED / f"{stem}.i8.npy", SHIPPED / f"{stem}.scale.npy"
        target = work / f"{stem}.npy"
        if not codes.is_file() or not scale.is_file() or target.is_file():
            continue
        np.save(target, unpack(np.load(codes), np.load(scale)))
        shutil.copyfile(marker, work / f"{stem}.npy.json")


def stale_shipped_vectors(source: Path) -> list[str]:
    """Names of the shipped vector files that were not computed from this catalog's texts
    (empty when every one matches): the embedding stage would redo those."""
    records = [orjson.loads(line) for line in source.read_bytes().splitlines() if line.strip()]
    fields = [(str(r.get("title", "")), str(r.get("text", ""))) for r in records]
    expected = {
        "doc_vectors": inputs_hash([document_text(t, x) for t, x in fields]),
        "passage_vectors": inputs_hash(layout_passages(fields, PassageOptions()).texts),
    }
    stale = []
    for stem, digest in expected.items():
        marker = SHIPPED / f"{stem}.json"
        info = json.loads(marker.read_text()) if marker.is_file() else {}
        if info.get("inputs_sha256") != digest or info.get("rows") != (
            len(fields) if stem == "doc_vectors" else info.get("rows")
        ):
            stale.append(stem)
    return stale


def ensure_demo_index(root: Path | None = None, *, progress: bool = True,
                      use_shipped: bool = True, require_shipped: bool = False) -> Path:
    """The demo index folder, built or rebuilt when the catalog changed. `require_shipped`
    refuses to embed anything (for tests: stale shipped vectors must fail fast)."""
    root = root or default_demo_dir()
    work = root / ".work"
    work.mkdir(parents=True, exist_ok=True)
    source = work / "catalog.jsonl"
    write_catalog(source, n=DEFAULT_N, seed=DEFAULT_SEED)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stamp = root / STAMP
    if (root / "CURRENT").is_file() and stamp.is_file() and stamp.read_text() == digest:
        return root
    if require_shipped and (stale := stale_shipped_vectors(source)):
        raise ProgsearchError(
            f"the shipped demo vectors {stale} do not match the catalog; run `make demo-vectors`"
        )
    if use_shipped:
        _seed_work(work)
    log.info("building the demo index in %s", root)
    write_snapshot(open_source(source), root,
                   BuildOptions(workers=1, progress=progress, vectors=VectorOptions(),
                                schema=Schema.from_toml(SCHEMA)))
    stamp.write_text(digest)
    return root


def export_vectors(root: Path) -> list[Path]:
    """Copy a demo index's finished embedding work into `SHIPPED`, packed as int8."""
    SHIPPED.mkdir(parents=True, exist_ok=True)
    for old in SHIPPED.iterdir():
        old.unlink()
    written = []
    for marker in sorted((root / ".work").glob("*.npy.json")):
        stem = marker.name.removesuffix(".npy.json")
        codes, scale = pack(np.load(root / ".work" / f"{stem}.npy"))
        target = SHIPPED / f"{stem}.i8.npy"
        np.save(target, codes)
        np.save(SHIPPED / f"{stem}.scale.npy", scale)
        info = json.loads(marker.read_text())
        (SHIPPED / f"{stem}.json").write_text(json.dumps(info, indent=2) + "\n")
        written.append(target)
    return written


def main() -> int:
    """`python -m app.demo`: rebuild the demo index from scratch and ship its vectors."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m app.demo", description=main.__doc__)
    parser.add_argument("--export-vectors", action="store_true",
                        help="embed the catalog without the shipped vectors, then replace them")
    args = parser.parse_args()
    if not args.export_vectors:
        print(ensure_demo_index())
        return 0
    with tempfile.TemporaryDirectory(prefix="progsearch-demo-") as tmp:
        root = ensure_demo_index(Path(tmp), use_shipped=False)
        for path in export_vectors(root):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
