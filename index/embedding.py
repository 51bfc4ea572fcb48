"""Resumable corpus embedding into a ``.npy`` file, and the text fed to the encoder per document.

While running, :func:`embed_corpus` keeps a work folder ``<out>.partial/`` beside the output:

- ``vectors.npy``: the float32 rows, memory-mapped, filled chunk by chunk;
- ``progress.json``: how many chunks are done, with the encoder fingerprint and a hash of
  the inputs, so a later run resumes only the very same job (else it starts over).

Chunks go longest text first, so each chunk holds texts of similar length (less padding) and
the time estimate starts pessimistic. When done, ``vectors.npy`` moves to ``out_path`` and a
small ``<out>.json`` records what it holds: a repeated call returns it without encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from index.core.errors import ModelError, QueryError

__all__ = ["DocumentEncoder", "document_text", "embed_corpus", "inputs_hash"]

_FORMAT = 1


class DocumentEncoder(Protocol):
    """What :func:`embed_corpus` needs from an encoder (``index.core.encoder.Encoder`` has it)."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


def document_text(title: str, text: str) -> str:
    """The text embedded for a document: its title, then its body.

    "Title. Body" (the title as a first sentence) lets the model weigh the title like any
    sentence of the body; no period is added after a title that already ends a sentence. The
    tokenizer later cuts the result to the model window (256 tokens), so a long body loses its
    end, never its title.
    """
    title, text = title.strip(), text.strip()
    if not title:
        return text
    if not text:
        return title
    separator = " " if title[-1] in ".!?:;" else ". "
    return f"{title}{separator}{text}"


def inputs_hash(texts: Sequence[str]) -> str:
    """A SHA-256 over the texts, in order; each is length-prefixed so boundaries count."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def embed_corpus(
    texts: Sequence[str],
    encoder: DocumentEncoder,
    out_path: Path,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "embedding",
) -> npt.NDArray[np.float32]:
    """Encode ``texts`` into ``out_path`` (an (n, dim) float32 ``.npy``); returns it mmapped.

    ``batch_size`` texts are encoded per chunk, and progress is saved after each chunk: after an
    interruption, calling again with the same texts and encoder continues where it stopped.
    """
    if batch_size < 1:
        raise QueryError(f"batch_size must be >= 1, got {batch_size}")
    job = {
        "format": _FORMAT,
        "fingerprint": encoder.fingerprint,
        "inputs_sha256": inputs_hash(texts),
        "rows": len(texts),
        "dim": encoder.dim,
        "batch_size": batch_size,
    }
    done_marker = out_path.with_name(out_path.name + ".json")
    if out_path.is_file() and _read_json(done_marker) == job:
        return _open(out_path)

    if not texts:
        done_marker.unlink(missing_ok=True)
        np.save(out_path, np.empty((0, encoder.dim), dtype=np.float32))
        _write_json(done_marker, job)
        return _open(out_path)
    work = out_path.with_name(out_path.name + ".partial")
    progress_file, vectors_file = work / "progress.json", work / "vectors.npy"
    state = _read_json(progress_file)
    if state is not None and vectors_file.is_file() and _same_job(state, job):
        vectors = np.lib.format.open_memmap(vectors_file, mode="r+")
        chunks_done = int(state["chunks_done"])
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        vectors = np.lib.format.open_memmap(
            vectors_file, mode="w+", dtype=np.float32, shape=(len(texts), encoder.dim)
        )
        chunks_done = 0
        _write_json(progress_file, {**job, "chunks_done": 0})

    # Longest first (stable, so the order is the same on every run of the same job).
    order = np.argsort(-np.fromiter((len(t) for t in texts), np.int64, len(texts)), kind="stable")
    with tqdm(
        total=len(texts),
        initial=min(chunks_done * batch_size, len(texts)),
        unit="text",
        desc=desc,
        disable=not progress,
    ) as bar:
        for start in range(chunks_done * batch_size, len(texts), batch_size):
            rows = order[start : start + batch_size]
            encoded = np.asarray(encoder.encode_documents([texts[i] for i in rows]))
            if encoded.shape != (len(rows), encoder.dim):
                raise ModelError(
                    f"the encoder returned shape {encoded.shape} for {len(rows)} texts; "
                    f"expected ({len(rows)}, {encoder.dim})"
                )
            vectors[rows] = encoded
            vectors.flush()  # rows reach the disk before the progress file counts them
            chunks_done += 1
            _write_json(progress_file, {**job, "chunks_done": chunks_done})
            bar.update(len(rows))
    del vectors
    done_marker.unlink(missing_ok=True)  # never let an old marker describe the new file
    os.replace(vectors_file, out_path)
    _write_json(done_marker, job)
    shutil.rmtree(work, ignore_errors=True)
    return _open(out_path)


def _same_job(state: dict[str, Any], job: dict[str, Any]) -> bool:
    return {key: value for key, value in state.items() if key != "chunks_done"} == job


def _open(path: Path) -> npt.NDArray[np.float32]:
    vectors: npt.NDArray[np.float32] = np.load(path, mmap_mode="r")
    return vectors
