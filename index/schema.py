"""The schema of structured fields: which fields a document has beyond id, title and text, of
which type, and what queries may do with each.

It comes from a TOML file (``progsearch index --schema schema.toml``)::

    [fields.price]
    type = "number"          # keyword | number | bool | date
    filterable = true        # default true
    facetable = true         # default false
    sortable = true          # default false

or is inferred from the data: the first `INFER_SAMPLE` records give each field a type (a
string or a list of strings is a keyword, unless every string is an ISO 8601 date; an integer
or a float a number; true/false a bool), and every record is then checked against it, so a
record that contradicts it is reported with its line, as other bad lines are. Inferred fields
are filterable and facetable; numbers and dates also sortable. Fields absent from the schema
are stored and returned, never indexed. The schema is recorded in the manifest.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.columns import FIELD_TYPES, FieldSpec, FieldType, parse_date
from index.core.errors import SourceError

__all__ = ["INFER_SAMPLE", "RESERVED", "Schema", "check_value"]

INFER_SAMPLE = 1000
RESERVED = frozenset({"id", "_id", "title", "text"})
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_date(value)
    except ValueError:
        return False
    return True


def _type_of(value: object) -> FieldType | None:
    """The type a value suggests (None: null, an empty list, or no type fits)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "date" if _is_date(value) else "keyword"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "keyword"
    return None


@dataclass(frozen=True)
class Schema:
    fields: tuple[FieldSpec, ...] = ()

    def __post_init__(self) -> None:
        for spec in self.fields:
            if not NAME.match(spec.name) or spec.name in RESERVED:
                raise SourceError(f"schema: field name {spec.name!r} is not allowed")
            if spec.type not in FIELD_TYPES:
                raise SourceError(
                    f"schema: field {spec.name!r} has type {spec.type!r}; use one of "
                    f"{', '.join(FIELD_TYPES)}"
                )
            if spec.sortable and spec.type == "keyword":
                raise SourceError(f"schema: keyword field {spec.name!r} cannot be sortable")

    @property
    def by_name(self) -> Mapping[str, FieldSpec]:
        return {f.name: f for f in self.fields}

    def __bool__(self) -> bool:
        return bool(self.fields)

    # -- reading and writing ------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: Path) -> Schema:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"schema {path}: {exc}") from None
        table = data.get("fields", {})
        if not isinstance(table, dict):
            raise SourceError(f"schema {path}: [fields] must be a table")
        return cls.from_json({"fields": [{"name": k, **v} if isinstance(v, dict) else
                                          {"name": k, "type": v} for k, v in table.items()]})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schema:
        specs = []
        for entry in data.get("fields", []):
            if not isinstance(entry, dict) or "type" not in entry or "name" not in entry:
                raise SourceError(f"schema: field entry {entry!r} needs a name and a type")
            known = {"name", "type", "filterable", "facetable", "sortable", "integer"}
            unknown = sorted(set(entry) - known)
            if unknown:
                raise SourceError(f"schema: field {entry['name']!r} has unknown keys {unknown}")
            for key in ("filterable", "facetable", "sortable", "integer"):
                if key in entry and not isinstance(entry[key], bool):
                    raise SourceError(f"schema: {entry['name']!r}.{key} must be true or false")
            specs.append(FieldSpec(**entry))
        return cls(tuple(specs))

    def to_json(self) -> dict[str, Any]:
        return {"fields": [
            {"name": f.name, "type": f.type, "filterable": f.filterable,
             "facetable": f.facetable, "sortable": f.sortable, "integer": f.integer}
            for f in self.fields
        ]}

    # -- inference ------------------------------------------------------------------------
    @classmethod
    def infer(cls, records: Iterable[Mapping[str, Any]]) -> Schema:
        """Types from sample records (their fields beyond id, title and text); a field whose
        values disagree, or that holds objects, is left out of the schema (stored only)."""
        seen: dict[str, set[FieldType]] = {}
        integer: dict[str, bool] = {}
        order: list[str] = []
        for record in records:
            for name, value in record.items():
                if name in RESERVED or not NAME.match(name):
                    continue
                if name not in seen:
                    seen[name] = set()
                    order.append(name)
                    integer[name] = True
                kind = _type_of(value)
                if kind is None and value is not None and value != []:
                    seen[name].add("keyword")  # an object or a mixed list: fits no type
                    seen[name].add("number")
                if kind is not None:
                    seen[name].add(kind)
                if kind == "number" and not float(value).is_integer():
                    integer[name] = False
        specs = []
        for name in order:
            kinds = seen[name]
            if kinds == {"date", "keyword"}:
                kinds = {"keyword"}  # some strings are dates, not all
            if len(kinds) != 1:
                continue
            chosen = next(iter(kinds))
            specs.append(FieldSpec(
                name, chosen, filterable=True, facetable=True,
                sortable=chosen in ("number", "date"),
                integer=chosen == "number" and integer[name],
            ))
        return cls(tuple(specs))

    # -- text sources (CSV): every cell is a string --------------------------------------
    @staticmethod
    def text_values(fields: Mapping[str, Any]) -> dict[str, Any]:
        """CSV cells as the values they spell (numbers, true/false; an empty cell is null),
        for inference."""
        return {k: _from_text(v) if isinstance(v, str) else v for k, v in fields.items()}

    def from_text(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """CSV cells of schema fields converted to their type where they spell one (a cell
        that does not is left as it is, and `check` reports it)."""
        out = dict(fields)
        for spec in self.fields:
            cell = out.get(spec.name)
            if not isinstance(cell, str):
                continue
            if not cell.strip():
                out[spec.name] = None
            elif spec.type in ("number", "bool"):
                value = _from_text(cell)
                number = spec.type == "number" and type(value) in (int, float)
                if number or (spec.type == "bool" and isinstance(value, bool)):
                    out[spec.name] = value
        return out

    # -- checking -----------------------------------------------------------------------
    def check(self, fields: Mapping[str, Any]) -> None:
        """`ValueError` naming the first field that does not fit its type (null fits any)."""
        for spec in self.fields:
            value = fields.get(spec.name)
            if value is not None:
                check_value(spec, value)


def _from_text(cell: str) -> Any:
    text = cell.strip()
    if not text:
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            value = convert(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return cell
        return value
    return cell


def check_value(spec: FieldSpec, value: Any) -> None:
    """`ValueError` naming the field when the value does not fit its type."""
    kind = spec.type
    if kind == "keyword":
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise ValueError(f"field {spec.name!r} must be a string or a list of strings, "
                             f"got {value!r:.60}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"field {spec.name!r} must be a number, got {value!r:.60}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"field {spec.name!r} must be a finite number, got {value!r}")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError(f"field {spec.name!r} is out of the 64-bit range")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"field {spec.name!r} must be true or false, got {value!r:.60}")
    elif kind == "date":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"field {spec.name!r} must be an ISO 8601 date, got {value!r:.60}")
        if isinstance(value, str):
            try:
                parse_date(value)
            except ValueError:
                raise ValueError(f"field {spec.name!r} must be an ISO 8601 date, got "
                                 f"{value!r:.60}") from None
