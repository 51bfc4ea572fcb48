"""How the command line shows structured fields, for `progsearch search` and `progsearch
query` alike: a hit's `fields` on one line, the keyword phase's facet counts, its filter and
sort. Pure functions from the payloads' JSON objects to text."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["facet_lines", "fields_text", "structured_text", "value_text"]

# A keyword value is shown bare unless it could be misread in `name=value name=value`.
_BARE = re.compile(r"[^\s=,\"'\[\]]+")


def value_text(value: object) -> str:
    """One value as it would be written in a filter: true/false, numbers without a needless
    `.0`, strings bare when they can be, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def fields_text(fields: Mapping[str, object]) -> str:
    """`category=outdoor price=120 in_stock=true`, in the payload's order."""
    return " ".join(f"{name}={value_text(v)}" for name, v in fields.items())


def structured_text(payload: Mapping[str, Any]) -> str | None:
    """The keyword phase's filter and sort in their canonical forms (None: neither)."""
    parts = [f"{name}: {payload[name]}" for name in ("filter", "sort") if payload.get(name)]
    return "; ".join(parts) or None


def facet_lines(facets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per field: how many matching documents have a value, then the most frequent
    values with their counts, or the min and max of a number or date (dates in epoch
    seconds, as the payload gives them)."""
    lines = []
    for name, facet in facets.items():
        counts = ", ".join(f"{value_text(v)} {c}" for v, c in facet["values"])
        if facet.get("min") is not None:
            span = f"min {value_text(facet['min'])}, max {value_text(facet['max'])}"
            counts = f"{counts}; {span}" if counts else span
        lines.append(f"{name} ({facet['matched']} matched): {counts or '-'}")
    return lines
