"""Structured fields as typed, columnar arrays: one column per field, one row per document.

A column is what filters, facets and sorting read (the feature-store pattern): built at index
time, memory-mapped at query time, never a database read per query.

- `keyword`: a string or a list of strings, dictionary-encoded: the distinct values sorted
  (`values`), and per document a CSR run of codes into them (`ptr`, `codes`, each run sorted
  and without repeats). A document with no value (an empty run) is null.
- `number`: int64 or float64 values, and `present` (False: null).
- `bool`: values as bool, and `present`.
- `date`: ISO 8601 in the source, stored as int64 epoch seconds (UTC), and `present`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from index.core.types import I32, I64, B

__all__ = [
    "FIELD_TYPES",
    "BoolColumn",
    "Column",
    "DateColumn",
    "FieldSpec",
    "FieldType",
    "KeywordColumn",
    "NumberColumn",
]

FieldType = Literal["keyword", "number", "bool", "date"]
FIELD_TYPES: tuple[FieldType, ...] = ("keyword", "number", "bool", "date")


@dataclass(frozen=True)
class FieldSpec:
    """A structured field of the schema: its type and what queries may do with it."""

    name: str
    type: FieldType
    filterable: bool = True
    facetable: bool = False
    sortable: bool = False
    integer: bool = False
    """For a `number`: all values are integers (stored int64, else float64)."""


@dataclass(frozen=True)
class KeywordColumn:
    values: npt.NDArray[np.str_]
    """The distinct values, sorted."""
    ptr: I64
    """CSR offsets, one more than rows: row r's codes are codes[ptr[r]:ptr[r + 1]]."""
    codes: I32

    @property
    def rows(self) -> int:
        return int(self.ptr.size - 1)

    @property
    def present(self) -> B:
        out: B = self.ptr[1:] > self.ptr[:-1]
        return out


@dataclass(frozen=True)
class NumberColumn:
    values: npt.NDArray[np.int64] | npt.NDArray[np.float64]
    present: B

    @property
    def rows(self) -> int:
        return int(self.present.size)


@dataclass(frozen=True)
class BoolColumn:
    values: B
    present: B

    @property
    def rows(self) -> int:
        return int(self.present.size)


@dataclass(frozen=True)
class DateColumn:
    values: I64
    """Seconds since 1970-01-01T00:00:00Z."""
    present: B

    @property
    def rows(self) -> int:
        return int(self.present.size)


Column = KeywordColumn | NumberColumn | BoolColumn | DateColumn
