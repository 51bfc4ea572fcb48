from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from index.core.errors import SourceError
from index.sources import document_from_record, open_source

GOOD = '{"id": "a", "title": "T", "text": "body"}\n'


def test_jsonl_reports_bad_lines_with_numbers(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(
        GOOD
        + "{not json\n"
        + '{"title": "no id", "text": "x"}\n'
        + '{"id": "a", "text": "duplicate"}\n'
        + "\n"
        + '["a", "list"]\n'
        + '{"id": "b", "title": "", "text": ""}\n'
        + '{"id": "c", "text": 5}\n'
        + '{"id": "d", "text": "fine", "brand": "Acme"}\n'
    )
    reader = open_source(src)
    docs = list(reader)
    assert [d.id for d in docs] == ["a", "d"]
    assert docs[1].fields == {"brand": "Acme"}
    lines = [p.split(":")[1] for p in reader.problems]
    assert lines == ["2", "3", "4", "6", "7", "8"]
    assert "duplicate id 'a' (first seen on line 1)" in reader.problems[2]
    assert "field 'id' is missing" in reader.problems[1]
    assert "field 'text' must be a string" in reader.problems[5]


def test_stop_on_first_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "docs.ndjson"
    src.write_text(GOOD + "{broken\n" + GOOD)
    with pytest.raises(SourceError, match=r"docs.ndjson:2: malformed JSON"):
        list(open_source(src, on_error="stop"))


def test_beir_folder_gzip_and_custom_fields(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as fh:
        fh.write('{"_id": 7, "title": "Seven", "text": "number"}\n')
    docs = list(open_source(tmp_path))
    assert docs[0].id == "7" and docs[0].title == "Seven"

    src = tmp_path / "products.jsonl"
    src.write_text('{"sku": "x1", "name": "Rain jacket", "description": "Waterproof"}\n')
    doc = next(iter(open_source(src, id_field="sku", title_field="name", text_field="description")))
    assert (doc.id, doc.title, doc.text) == ("x1", "Rain jacket", "Waterproof")


def test_csv_source(tmp_path: Path) -> None:
    src = tmp_path / "docs.csv"
    src.write_text('id,title,text\n1,First,"has, a comma"\n,Missing id,x\n2,Second,ok,extra\n')
    reader = open_source(src)
    docs = list(reader)
    assert [(d.id, d.text) for d in docs] == [("1", "has, a comma")]
    assert [p.split(":")[1] for p in reader.problems] == ["3", "4"]


def test_not_utf8_and_unknown_format(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"id": "a", "text": "\xff\xfe"}\n')
    reader = open_source(src)
    assert list(reader) == [] and "bad.jsonl:1: malformed JSON or UTF-8" in reader.problems[0]
    csv_src = tmp_path / "bad.csv"
    csv_src.write_bytes(b"id,title,text\n1,\xff,x\n")
    with pytest.raises(SourceError, match="not UTF-8"):
        list(open_source(csv_src))
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(SourceError, match="cannot tell the format"):
        list(open_source(tmp_path / "x.bin"))
    with pytest.raises(SourceError, match="unknown source format"):
        list(open_source(src, fmt="xml"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "", "text": "x"}, "is empty"),
        ({"id": True, "text": "x"}, "missing or not a string"),
        ({"id": "x" * 600, "text": "x"}, "longer than 512"),
        ("text", "must be a JSON object"),
    ],
)
def test_record_validation(record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        document_from_record(record)


def test_id_field_defaults_to_id_or_underscore_id(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"_id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n')
    assert [d.id for d in open_source(src)] == ["x", "y"]


def test_many_bad_lines_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("{bad\n" * 100 + GOOD)
    reader = open_source(src)
    assert len(list(reader)) == 1 and len(reader.problems) == 100
    assert len(caplog.records) == 21


def read_in_blocks(src: Path, size: int) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    reader = open_source(src)
    plan = reader.blocks(size)
    assert plan is not None
    parse, blocks = plan
    docs = []
    for block in blocks:
        records = parse(block.read())
        docs += [
            (d.id, d.title, d.text, repr(d.fields))
            for d in records.documents(reader.accept(records))
        ]
    return docs, reader.problems


@pytest.mark.parametrize("gz", [False, True])
def test_blocks_of_any_size_read_the_same(tmp_path: Path, gz: bool) -> None:
    lines = [
        GOOD.strip(),
        "{broken",
        "",
        "   ",
        '{"id": "b", "title": "crlf", "text": "line"}\r',
        '{"id": "a", "text": "duplicate of line 1"}',
        '{"id": "c", "text": "caf\\u00e9 \\u2019", "brand": "Acme", "n": [1, 2.5, null]}',
        '{"id": "d", "text": "bad utf-8 \xff"}',
        '{"id": "e", "title": "T", "text": "last line, no newline"}',
    ]
    data = "\n".join(lines).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff")
    src = tmp_path / ("docs.jsonl.gz" if gz else "docs.jsonl")
    if gz:
        with gzip.open(src, "wb") as fh:
            fh.write(data)
    else:
        src.write_bytes(data)
    whole = read_in_blocks(src, 1 << 20)
    assert [d[0] for d in whole[0]] == ["a", "b", "c", "e"]
    assert whole[0][2][3] == repr({"brand": "Acme", "n": [1, 2.5, None]})
    assert [p.split(":")[1] for p in whole[1]] == ["2", "6", "8"]
    reader = open_source(src)
    iterated = [(d.id, d.title, d.text, repr(d.fields)) for d in reader]
    assert (iterated, reader.problems) == whole
    for size in (1, 2, 7, 30, 64, 100):
        assert read_in_blocks(src, size) == whole, size


def test_stop_in_a_later_block(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(GOOD * 3 + "{broken\n")
    reader = open_source(src, on_error="stop")
    plan = reader.blocks(20)
    assert plan is not None
    parse, blocks = plan
    with pytest.raises(SourceError, match=r"docs.jsonl:2: duplicate id 'a'"):
        for block in blocks:
            reader.accept(parse(block.read()))
