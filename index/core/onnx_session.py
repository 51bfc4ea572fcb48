"""The query path: word pieces, the transformer, mean pooling and L2 normalization.

Queries skip ``SentenceTransformer.encode``: its per-call work (torch tensors, feature dicts,
sorting) costs more than the int8 model itself for a 20-token query. A :class:`QueryModel`
holds a ``tokenizers.Tokenizer`` and a forward function over numpy arrays, usually an
``onnxruntime.InferenceSession`` (:func:`onnx_forward`). This module imports neither torch nor
transformers, so a server can load its query encoder in about half a second (it took
0.5-0.9 s from a fresh interpreter on a busy machine here; ``import torch`` alone took 15 s
at the same time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Forward",
    "QueryModel",
    "load_tokenizer",
    "mean_pool",
    "normalize",
    "onnx_forward",
    "open_session",
]

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Forward = Callable[[IntArray, IntArray], Float32Array]
"""(input ids, attention mask), both (n, tokens) int64 -> token states (n, tokens, dim)."""


def mean_pool(hidden: Float32Array, mask: IntArray) -> Float32Array:
    """The model's pooling: mean over real tokens, then L2 normalization."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return normalize(summed / np.maximum(weights.sum(axis=1), 1e-9))


def normalize(vectors: Float32Array) -> Float32Array:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def load_tokenizer(folder: Path, max_tokens: int) -> Any:
    """The model's tokenizer, cutting texts to ``max_tokens`` word pieces, never padding.

    The file asks for padding to 128; batches are padded here instead, to their longest text.
    The tokenizer is configured once here and only read afterwards: changing its settings
    while another thread encodes is what is unsafe.
    """
    from tokenizers import Tokenizer  # type: ignore[import-untyped, unused-ignore]

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def open_session(path: Path, threads: int, spin: bool) -> Any:
    """An ONNX Runtime CPU session tuned for one short query at a time.

    ``spin`` keeps idle intra-op threads busy-waiting between operators. It saves their wake-up
    time, but on cores shared with other work the spinning threads steal the CPU the busy ones
    need (measured here: two spinning threads took twice as long as one thread), so it is off
    unless asked for. One operator runs at a time: the graph is a chain.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_forward(session: Any) -> Forward:
    """Token states from a session; ORT sessions may be run from several threads at once."""
    inputs = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name

    def forward(ids: IntArray, mask: IntArray) -> Float32Array:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run([output], {k: v for k, v in feeds.items() if k in inputs})[0]
        return np.asarray(hidden, dtype=np.float32)

    return forward


class QueryModel:
    """A tokenizer and a forward function; safe to call from several threads at once."""

    def __init__(self, tokenizer: Any, forward: Forward, dim: int) -> None:
        self._tokenizer = tokenizer
        self._forward = forward
        self._dim = dim

    def encode(self, texts: Sequence[str], batch_size: int = 1) -> Float32Array:
        """(n, dim) unit vectors; texts are run ``batch_size`` at a time, padded to the longest.

        Batches are formed after sorting by length, so little padding is run.
        """
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if batch_size <= 1:
            for row, text in enumerate(texts):
                ids = np.array([self._tokenizer.encode(text).ids], dtype=np.int64)
                mask = np.ones_like(ids)
                out[row] = mean_pool(self._forward(ids, mask), mask)[0]
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, i in enumerate(rows):
                pieces = encodings[i].ids
                ids[k, : len(pieces)] = pieces
                mask[k, : len(pieces)] = 1
            out[rows] = mean_pool(self._forward(ids, mask), mask)
        return out
