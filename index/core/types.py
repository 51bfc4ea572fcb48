"""Shared vocabulary of the index package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["F32", "F64", "I32", "I64", "U8", "B", "DocIds", "Document", "Scores"]

# Array aliases every layer uses.
B = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

DocIds = npt.NDArray[np.int32]
"""Internal document numbers: rows of the snapshot, 0..n_docs-1."""
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Document:
    """A document as stored: an external id, the two searchable fields, and any other fields."""

    id: str
    title: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
