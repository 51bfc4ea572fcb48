"""The word tables of the demo catalog: TOML files in `app/catalog/data/`, checked on load.

One file per category plus `common.toml` (model names, sentence templates). Files are read in
sorted name order and TOML keeps the order of keys and arrays, so the tables, and everything
generated from them, never depend on directory listing or hash order.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from app.catalog.types import AttributeValue, Category, Concept, Tables, Templates
from index.core.errors import SourceError

__all__ = ["load_tables"]

COMMON = "common.toml"
MIN_WORDINGS = {"names": 2, "uses": 3, "features": 3, "materials": 1, "ask": 1}


def _strings(data: dict[str, Any], key: str, where: str, minimum: int = 1) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SourceError(f"{key!r} must be a list of non-empty strings", path=where)
    if len(value) < minimum:
        raise SourceError(f"{key!r} needs at least {minimum} entries, has {len(value)}", path=where)
    if len(set(value)) != len(value):
        raise SourceError(f"{key!r} repeats an entry", path=where)
    return tuple(value)


def _attributes(data: Any, where: str) -> dict[str, tuple[AttributeValue, ...]]:
    if not isinstance(data, dict):
        raise SourceError("'attributes' must be a table of lists", path=where)
    out: dict[str, tuple[AttributeValue, ...]] = {}
    for name, values in data.items():
        if not isinstance(values, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in values
        ):
            raise SourceError(f"attribute {name!r} must be a list of values", path=where)
        out[name] = tuple(values)
    return out


def _concept(data: dict[str, Any], category: dict[str, Any], where: str) -> Concept:
    key = data.get("key")
    if not isinstance(key, str) or not key:
        raise SourceError("a concept has no 'key'", path=where)
    where = f"{where} [{key}]"
    price = data.get("price")
    if (
        not isinstance(price, list)
        or len(price) != 2
        or not all(isinstance(p, int | float) for p in price)
        or not 0 < price[0] < price[1]
    ):
        raise SourceError("'price' must be [low, high] with 0 < low < high", path=where)
    # A concept's attribute overrides the category's of the same name; an empty list drops it.
    attributes = _attributes(category.get("attributes", {}), where)
    attributes.update(_attributes(data.get("attributes", {}), where))
    title_attrs = data.get("title_attrs", category.get("title_attrs", []))
    if not isinstance(title_attrs, list) or not all(isinstance(a, str) for a in title_attrs):
        raise SourceError("'title_attrs' must be a list of attribute names", path=where)
    materials = data.get("materials", category.get("materials"))
    wordings = {
        name: _strings({**data, "materials": materials}, name, where, minimum)
        for name, minimum in MIN_WORDINGS.items()
    }
    return Concept(
        key=key,
        category=str(category["name"]),
        names=wordings["names"],
        uses=wordings["uses"],
        features=wordings["features"],
        materials=wordings["materials"],
        price=(float(price[0]), float(price[1])),
        asks=wordings["ask"],
        attributes=tuple((k, v) for k, v in attributes.items() if v),
        title_attrs=tuple(title_attrs),
    )


def _category(data: dict[str, Any], where: str) -> Category:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SourceError("a category file needs a 'name'", path=where)
    concepts = data.get("concepts")
    if not isinstance(concepts, list) or not concepts:
        raise SourceError("a category file needs [[concepts]]", path=where)
    return Category(
        name=name,
        brands=_strings(data, "brands", where, 2),
        concepts=tuple(_concept(c, data, where) for c in concepts),
    )


def _templates(data: dict[str, Any], where: str) -> Templates:
    # Suffixes repeat on purpose ("" several times: most models have none), so no _strings.
    suffixes = data.get("model_suffixes")
    if not isinstance(suffixes, list) or not all(isinstance(s, str) for s in suffixes):
        raise SourceError("'model_suffixes' must be a list of strings", path=where)
    return Templates(
        models=_strings(data, "models", where),
        model_suffixes=tuple(suffixes),
        openers=_strings(data, "openers", where),
        features=_strings(data, "features", where),
        materials=_strings(data, "materials", where),
        uses=_strings(data, "uses", where),
    )


def load_tables(folder: Traversable | None = None) -> Tables:
    """Read and check every table; `SourceError` names the file and concept at fault."""
    folder = folder if folder is not None else resources.files("app.catalog") / "data"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
    common = next((f for f in files if f.name == COMMON), None)
    if common is None:
        raise SourceError(f"no {COMMON}", path=str(folder))
    categories = []
    for file in files:
        if file.name == COMMON:
            continue
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SourceError(f"malformed TOML: {exc}", path=str(file)) from exc
        categories.append(_category(data, str(file)))
    if not categories:
        raise SourceError("no category files", path=str(folder))
    keys = Counter(c.key for category in categories for c in category.concepts)
    duplicates = sorted(k for k, count in keys.items() if count > 1)
    if duplicates:
        raise SourceError(f"concept keys used twice: {', '.join(duplicates)}", path=str(folder))
    templates = _templates(tomllib.loads(common.read_text(encoding="utf-8")), str(common))
    return Tables(tuple(categories), templates)
