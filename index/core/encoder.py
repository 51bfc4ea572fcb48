"""Sentence encoder for queries and documents: all-MiniLM-L6-v2, 384 dimensions, L2-normalized.

Two kinds share one model:

- ``"int8"`` (default, for queries): the ONNX export, dynamically quantized for AVX2.
- ``"fp32"``: full precision, for document embedding; ONNX (default, measured slightly faster
  here than torch for 256-token documents) or torch.

Queries run directly: the tokenizer, then an ONNX Runtime session of the exported model (or
the torch module), then mean pooling and L2 normalization in numpy (:mod:`index.core.onnx_session`).
Loading an ONNX encoder whose export exists imports neither torch, transformers nor
sentence-transformers. Documents go through ``SentenceTransformer.encode``, loaded on the
first :meth:`Encoder.encode_documents` call and truncated to ``max_doc_tokens`` (at most the
model window, 256).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from index.core.errors import ModelError
from index.core.onnx_export import (
    FP32_FILE,
    INT8_FILE,
    MODEL_NAME,
    default_cache_dir,
    exported_model_dir,
    model_source_dir,
    model_version,
    offline,
    optimized_model_file,
)
from index.core.onnx_session import (
    Float32Array,
    Forward,
    IntArray,
    QueryModel,
    load_tokenizer,
    onnx_forward,
    open_session,
)

__all__ = [
    "DIM",
    "MODEL_WINDOW",
    "Encoder",
    "EncoderConfig",
    "default_cache_dir",
    "exported_model_dir",
    "model_source_dir",
]

DIM = 384
MODEL_WINDOW = 256
_MIN_TOKENS = 3  # [CLS], one word piece, [SEP]
_FP32_QUERY_BATCH = 32

Kind = Literal["int8", "fp32"]
Backend = Literal["onnx", "torch"]


@dataclass(frozen=True)
class EncoderConfig:
    """How to load the encoder.

    ``threads`` sets ONNX Runtime's intra-op threads (or, for torch, the process-wide
    ``torch.set_num_threads``); ``spin`` lets idle ONNX Runtime threads busy-wait (see
    :func:`index.core.onnx_session.open_session`). ``cache_dir`` defaults to
    :func:`default_cache_dir`.
    """

    kind: Kind = "int8"
    threads: int = 2
    max_query_tokens: int = 64
    max_doc_tokens: int = MODEL_WINDOW
    cache_dir: Path | None = None
    backend: Backend = "onnx"
    spin: bool = False

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


def _onnx_file(config: EncoderConfig) -> str:
    return INT8_FILE if config.kind == "int8" else FP32_FILE


def _load_onnx_queries(folder: Path, config: EncoderConfig) -> QueryModel:
    path = folder / _onnx_file(config)
    try:
        session = open_session(optimized_model_file(path), config.threads, config.spin)
        tokenizer = load_tokenizer(folder, config.max_query_tokens)
    except ImportError as exc:
        raise ModelError(f"the query encoder needs onnxruntime and tokenizers: {exc}") from exc
    except Exception as exc:  # any loader failure means the same to the caller
        raise ModelError(f"cannot load {path}: {exc}") from exc
    return QueryModel(tokenizer, onnx_forward(session), DIM)


def _load_st_onnx(folder: Path, config: EncoderConfig) -> Any:
    """sentence-transformers over the same ONNX file, for documents (imports torch)."""
    file_name = _onnx_file(config)
    try:
        import onnxruntime as ort
        from sentence_transformers import SentenceTransformer

        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        model = SentenceTransformer(
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
    model.max_seq_length = config.max_doc_tokens
    return model


def _load_st_torch(folder: Path, config: EncoderConfig) -> Any:
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(config.threads)  # process-wide: torch has no per-model setting
        model = SentenceTransformer(str(folder), device="cpu")
    except Exception as exc:  # any loader failure means the same to the caller
        raise ModelError(f"cannot load the {MODEL_NAME} model from {folder}: {exc}") from exc
    model.max_seq_length = config.max_doc_tokens
    return model


def _torch_forward(model: Any) -> Forward:
    """Token states from the sentence-transformers torch module (its pooling is redone in numpy)."""
    import torch

    def forward(ids: IntArray, mask: IntArray) -> Float32Array:
        ids_t = torch.from_numpy(ids)
        features = {
            "input_ids": ids_t,
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(ids_t),
        }
        with torch.inference_mode():
            out = model.forward(features)
        return np.asarray(out["token_embeddings"].numpy(), dtype=np.float32)

    return forward


class Encoder:
    """A loaded encoder; safe to call from several threads at once. Build with :meth:`load`."""

    def __init__(
        self, config: EncoderConfig, folder: Path, queries: QueryModel, documents: Any = None
    ) -> None:
        self._config = config
        self._folder = folder
        self._queries = queries
        self._documents = documents
        # SentenceTransformer.encode re-sets truncation on its shared HF tokenizer on every
        # call, which is not safe concurrently; document batches are serialized instead. The
        # same lock guards loading the document model on first use.
        self._document_lock = threading.Lock()
        self._fingerprint = (
            f"{MODEL_NAME}@{model_version()}:{config.kind}-{config.backend}"
            f":doc{config.max_doc_tokens}"
        )

    @classmethod
    def load(cls, config: EncoderConfig | None = None) -> Encoder:
        """Load the model (exporting it to the cache folder on first use).

        With the ONNX backend and an existing export, this imports no torch.
        """
        config = config or EncoderConfig()
        offline()
        if config.backend == "torch":
            folder = model_source_dir()
            model = _load_st_torch(folder, config)
            tokenizer = load_tokenizer(folder, config.max_query_tokens)
            return cls(config, folder, QueryModel(tokenizer, _torch_forward(model), DIM), model)
        folder = exported_model_dir(config.cache_dir)
        return cls(config, folder, _load_onnx_queries(folder, config))

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
    def folder(self) -> Path:
        """The model folder: the ONNX export, or the packaged model for torch."""
        return self._folder

    @property
    def fingerprint(self) -> str:
        """Model, kind, backend and document window: key cached document vectors by it."""
        return self._fingerprint

    def encode_query(self, text: str) -> Float32Array:
        """One query as a (384,) unit vector, cut to ``max_query_tokens`` word pieces."""
        vector: Float32Array = self._queries.encode([text])[0]
        return vector

    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> Float32Array:
        """Queries as an (n, 384) array of unit vectors, each cut to ``max_query_tokens``.

        By default int8 runs each query alone and gives exactly :meth:`encode_query`'s vector:
        dynamic quantization picks its scales over the whole batch, so in a batch a query's
        vector moves with its batch-mates (cosine 0.96-0.996 to its own vector in the tests:
        as far as int8 is from fp32, or further). fp32 batches 32 queries, padded, with the
        same vectors up to rounding.
        """
        if batch_size is None:
            batch_size = 1 if self._config.kind == "int8" else _FP32_QUERY_BATCH
        return self._queries.encode(texts, batch_size)

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
            if self._documents is None:
                self._documents = _load_st_onnx(self._folder, self._config)
            vectors = self._documents.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        result: Float32Array = np.ascontiguousarray(vectors, dtype=np.float32)
        return result
