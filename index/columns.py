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

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index.core.types import I32, I64, B

__all__ = [
    "FIELDS_DIR",
    "FIELD_TYPES",
    "BoolColumn",
    "Column",
    "DateColumn",
    "FieldSpec",
    "FieldType",
    "KeywordColumn",
    "NumberColumn",
    "build_columns",
    "column_arrays",
    "load_columns",
    "parse_date",
    "save_columns",
]

FIELDS_DIR = "fields"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$")


def parse_date(value: str) -> int:
    """Epoch seconds (UTC) of an ISO 8601 date or date-time; a date-time without a zone is
    taken as UTC. `ValueError` when it is not one."""
    if not _ISO_DATE.match(value):
        raise ValueError(f"{value!r} is not an ISO 8601 date")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


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

    @functools.cached_property
    def present(self) -> B:
        out: B = self.ptr[1:] > self.ptr[:-1]
        return out

    @functools.cached_property
    def row_code(self) -> I32 | None:
        """Each row's one code (-1: null) when no row has several, else None."""
        lengths = np.diff(self.ptr)
        if lengths.size and int(lengths.max()) > 1:
            return None
        out = np.full(self.rows, -1, dtype=np.int32)
        out[lengths == 1] = self.codes
        return out

    @functools.cached_property
    def code_rows(self) -> I64:
        """The row of each code (the CSR expanded), computed once per loaded column."""
        return np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(self.ptr))


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


# -- building, saving and loading -------------------------------------------------------------


def _keyword(values: Sequence[Any]) -> KeywordColumn:
    runs = [sorted({v} if isinstance(v, str) else set(v or ())) for v in values]
    dictionary = sorted({v for run in runs for v in run})
    code = {v: i for i, v in enumerate(dictionary)}
    lengths = np.fromiter((len(r) for r in runs), dtype=np.int64, count=len(runs))
    ptr = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    codes = np.fromiter((code[v] for run in runs for v in run), dtype=np.int32, count=int(ptr[-1]))
    return KeywordColumn(np.asarray(dictionary, dtype=str) if dictionary
                         else np.empty(0, dtype="U1"), ptr, codes)


def _scalar(values: Sequence[Any], convert: Any, dtype: Any) -> tuple[Any, B]:
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    out = np.zeros(len(values), dtype=dtype)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = convert(v)
    return out, present


def _date(v: Any) -> int:
    return int(v) if isinstance(v, int) else parse_date(v)


def build_columns(
    specs: Sequence[FieldSpec], rows: Iterable[Mapping[str, Any]]
) -> tuple[tuple[FieldSpec, ...], dict[str, Column]]:
    """The columns of checked documents' fields, in row order, and the specs with `integer`
    set from the data (a number field is int64 when every value is an integer)."""
    values: dict[str, list[Any]] = {s.name: [] for s in specs}
    for row in rows:
        for s in specs:
            values[s.name].append(row.get(s.name))
    columns: dict[str, Column] = {}
    out_specs = []
    for s in specs:
        vs = values[s.name]
        if s.type == "keyword":
            columns[s.name] = _keyword(vs)
        elif s.type == "number":
            integer = all(v is None or isinstance(v, int) or float(v).is_integer() for v in vs)
            data, present = _scalar(vs, int if integer else float,
                                    np.int64 if integer else np.float64)
            columns[s.name] = NumberColumn(data, present)
            s = replace(s, integer=integer)
        elif s.type == "bool":
            data, present = _scalar(vs, bool, bool)
            columns[s.name] = BoolColumn(data, present)
        else:
            data, present = _scalar(vs, _date, np.int64)
            columns[s.name] = DateColumn(data, present)
        out_specs.append(s)
    return tuple(out_specs), columns


def column_arrays(specs: Sequence[FieldSpec], columns: Mapping[str, Column]
                  ) -> dict[str, npt.NDArray[Any]]:
    """The arrays to save, by path inside a version folder (``fields/f{i}/...``)."""
    out: dict[str, npt.NDArray[Any]] = {}
    for i, s in enumerate(specs):
        col, base = columns[s.name], f"{FIELDS_DIR}/f{i}"
        if isinstance(col, KeywordColumn):
            out[f"{base}/values.npy"] = col.values
            out[f"{base}/ptr.npy"] = col.ptr
            out[f"{base}/codes.npy"] = col.codes
        else:
            out[f"{base}/values.npy"] = col.values
            out[f"{base}/present.npy"] = col.present
    return out


def save_columns(folder: Path, specs: Sequence[FieldSpec], columns: Mapping[str, Column]) -> None:
    for name, array in column_arrays(specs, columns).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)


def load_columns(specs: Sequence[FieldSpec], arrays: Mapping[str, npt.NDArray[Any]]
                 ) -> dict[str, Column]:
    """The columns of a snapshot from its memory-mapped arrays."""
    out: dict[str, Column] = {}
    for i, s in enumerate(specs):
        base = f"{FIELDS_DIR}/f{i}"
        if s.type == "keyword":
            out[s.name] = KeywordColumn(arrays[f"{base}/values.npy"], arrays[f"{base}/ptr.npy"],
                                        arrays[f"{base}/codes.npy"])
            continue
        values, present = arrays[f"{base}/values.npy"], arrays[f"{base}/present.npy"]
        if s.type == "number":
            out[s.name] = NumberColumn(values, present)
        elif s.type == "bool":
            out[s.name] = BoolColumn(values, present)
        else:
            out[s.name] = DateColumn(values, present)
    return out
