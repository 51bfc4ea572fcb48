"""Structured fields at index time: the schema (given or inferred), records checked against it
with their line, and the columns a snapshot stores and memory-maps back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.columns import (
    BoolColumn,
    DateColumn,
    FieldSpec,
    KeywordColumn,
    NumberColumn,
    parse_date,
)
from index.core.errors import SourceError
from index.schema import INFER_SAMPLE, Schema
from index.snapshot import BuildOptions, load_snapshot, write_snapshot
from index.sources import open_source

RECORDS: list[dict[str, Any]] = [
    {"id": "a", "title": "Rain jacket", "text": "Waterproof.", "brand": "Alpa",
     "tags": ["rain", "hiking"], "price": 120, "in_stock": True, "added": "2024-03-01",
     "meta": {"x": 1}},
    {"id": "b", "title": "Down parka", "text": "Warm.", "brand": "Borea", "tags": ["winter"],
     "price": 249.5, "in_stock": False, "added": "2024-03-02T12:00:00Z"},
    {"id": "c", "title": "Trail shoes", "text": "Light.", "tags": [], "price": None},
]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["x", "y"], "keyword"),
        ([["x"], ["y", "z"]], "keyword"),
        ([1, 2], "number"),
        ([1, 2.5], "number"),
        ([True, False], "bool"),
        (["2024-01-01", "2024-01-02T03:04:05Z"], "date"),
        (["2024-01-01", "soon"], "keyword"),
        ([1, "x"], None),
        ([{"a": 1}], None),
        ([None, None], None),
    ],
)
def test_inferred_types(values: list[Any], expected: str | None) -> None:
    schema = Schema.infer({"f": v} for v in values)
    if expected is None:
        assert "f" not in schema.by_name
    else:
        assert schema.by_name["f"].type == expected


def test_inference_leaves_reserved_and_object_fields_out() -> None:
    schema = Schema.infer(RECORDS)
    assert [f.name for f in schema.fields] == ["brand", "tags", "price", "in_stock", "added"]
    assert schema.by_name["price"].sortable and not schema.by_name["brand"].sortable
    assert schema.by_name["added"].type == "date"


def test_schema_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text('[fields.price]\ntype = "number"\nsortable = true\n'
                    '[fields.brand]\ntype = "keyword"\nfacetable = true\n')
    schema = Schema.from_toml(path)
    assert schema.by_name["price"] == FieldSpec("price", "number", sortable=True)
    assert schema.by_name["brand"].facetable
    assert Schema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[fields.price]\ntype = "money"\n', "has type 'money'"),
        ('[fields.title]\ntype = "keyword"\n', "'title' is not allowed"),
        ('[fields.brand]\ntype = "keyword"\nsortable = true\n', "cannot be sortable"),
        ('[fields.brand]\ntype = "keyword"\ncolour = "red"\n', "unknown keys ['colour']"),
        ("[fields\n", "schema"),
    ],
)
def test_bad_schemas_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(toml)
    with pytest.raises(SourceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Schema.from_toml(path)


def test_a_record_contradicting_the_schema_is_reported_with_its_line(tmp_path: Path) -> None:
    records = [*RECORDS, {"id": "d", "title": "Cheap hat", "price": "cheap"}]
    source = open_source(write(tmp_path / "docs.jsonl", records))
    schema = Schema((FieldSpec("price", "number"),))
    write_snapshot(source, tmp_path / "idx", BuildOptions(workers=1, schema=schema))
    assert len(source.problems) == 1
    assert ":4:" in source.problems[0] and "field 'price' must be a number" in source.problems[0]
    snap = load_snapshot(tmp_path / "idx")
    assert snap.n_docs == 3 and snap.docs.lookup("d") is None

    stop = open_source(write(tmp_path / "docs2.jsonl", records), on_error="stop")
    with pytest.raises(SourceError, match=r"docs2.jsonl:4: field .price. must be a number"):
        write_snapshot(stop, tmp_path / "idx2", BuildOptions(workers=1, schema=schema))


def test_inferred_schema_checks_every_record(tmp_path: Path) -> None:
    # The sampled records say `price` is a number: a string after the sample contradicts it.
    records = [{"id": f"r{i}", "title": f"item {i}", "price": i} for i in range(INFER_SAMPLE)]
    records.append({"id": "late", "title": "Hat", "price": "free"})
    source = open_source(write(tmp_path / "docs.jsonl", records))
    write_snapshot(source, tmp_path / "idx", BuildOptions(workers=1))
    assert len(source.problems) == 1 and "'price' must be a number" in source.problems[0]
    assert f":{INFER_SAMPLE + 1}:" in source.problems[0]


def test_columns_are_stored_and_memory_mapped(tmp_path: Path) -> None:
    write_snapshot(open_source(write(tmp_path / "docs.jsonl", RECORDS)), tmp_path / "idx",
                   BuildOptions(workers=1))
    snap = load_snapshot(tmp_path / "idx", verify=True)
    assert snap.manifest.schema is not None
    cols = snap.columns
    tags = cols["tags"]
    assert isinstance(tags, KeywordColumn)
    assert tags.values.tolist() == ["hiking", "rain", "winter"]
    assert tags.ptr.tolist() == [0, 2, 3, 3]
    assert tags.codes.tolist() == [0, 1, 2]
    assert tags.present.tolist() == [True, True, False]
    brand = cols["brand"]
    assert isinstance(brand, KeywordColumn) and brand.present.tolist() == [True, True, False]
    price = cols["price"]
    assert isinstance(price, NumberColumn) and price.values.dtype == np.float64
    assert price.values[:2].tolist() == [120.0, 249.5] and price.present.tolist() == [
        True, True, False]
    stock = cols["in_stock"]
    assert isinstance(stock, BoolColumn) and stock.values[:2].tolist() == [True, False]
    added = cols["added"]
    assert isinstance(added, DateColumn)
    assert added.values[:2].tolist() == [parse_date("2024-03-01"), 1709380800]
    # A view of the file's mapping, not a copy.
    assert isinstance(snap.arrays["fields/f2/values.npy"].base, np.memmap)
    # Stored and returned as written, the unindexed object field too.
    doc = snap.docs.get(0)
    assert doc is not None and doc.fields["meta"] == {"x": 1}


def test_integer_numbers_are_stored_as_int64(tmp_path: Path) -> None:
    records = [{"id": str(i), "title": f"item {i}", "stock": i * 3} for i in range(5)]
    write_snapshot(open_source(write(tmp_path / "d.jsonl", records)), tmp_path / "idx",
                   BuildOptions(workers=1))
    snap = load_snapshot(tmp_path / "idx")
    stock = snap.columns["stock"]
    assert isinstance(stock, NumberColumn) and stock.values.dtype == np.int64
    assert snap.manifest.schema is not None and snap.manifest.schema.by_name["stock"].integer


def test_csv_cells_take_their_types(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,title,price,in_stock,brand\n1,Kettle,19.5,true,Alpa\n2,Lamp,,false,\n")
    write_snapshot(open_source(path), tmp_path / "idx", BuildOptions(workers=1))
    snap = load_snapshot(tmp_path / "idx")
    price, stock = snap.columns["price"], snap.columns["in_stock"]
    assert isinstance(price, NumberColumn) and price.values[0] == 19.5
    assert price.present.tolist() == [True, False]
    assert isinstance(stock, BoolColumn) and stock.values.tolist() == [True, False]


def test_a_snapshot_without_fields_has_no_schema(tmp_path: Path) -> None:
    records = [{"id": "a", "title": "Kettle", "text": "Boils."}]
    write_snapshot(open_source(write(tmp_path / "d.jsonl", records)), tmp_path / "idx",
                   BuildOptions(workers=1))
    snap = load_snapshot(tmp_path / "idx")
    assert snap.manifest.schema is None and snap.columns == {}
    assert "schema" not in json.loads((snap.folder / "manifest.json").read_text())


def test_documents_given_as_an_iterable_are_checked(tmp_path: Path) -> None:
    from index.core.types import Document

    docs = [Document("a", "Kettle", "", {"price": 3}), Document("b", "Lamp", "", {"price": "x"})]
    schema = Schema((FieldSpec("price", "number"),))
    with pytest.raises(SourceError, match="document 'b': field 'price' must be a number"):
        write_snapshot(docs, tmp_path / "idx", BuildOptions(workers=1, schema=schema))
