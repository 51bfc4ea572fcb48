"""Shared vocabulary of the index package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DocIds", "Document", "Scores"]

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
