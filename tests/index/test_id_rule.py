"""The index builder's sources follow the id rule of writes (`index.sources.check_id`): an id
with a control character is a bad line, reported with its file and line like the others,
whichever way the file is read (issue "Hardening", item 3)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import orjson
import pytest

from index.core.errors import SourceError
from index.sources import check_id, open_source

IDS = ["good-1", "line\nbreak", "good-2", "tab\tinside", "caf\u00e9/é 100%", "c1\x85inside"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("plain", "plain"),
    ("  padded  ", "padded"),
    ("dir/file 100% é 🙂", "dir/file 100% é 🙂"),
    ("no\u00a0break\u200djoiner", "no\u00a0break\u200djoiner"),
    ("x" * 512, "x" * 512),
])
def test_check_id_accepts(raw: str, expected: str) -> None:
    assert check_id(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("", "field 'id' is empty"),
    ("   ", "field 'id' is empty"),
    ("x" * 513, "field 'id' is longer than 512 characters"),
    ("line\nbreak", "field 'id' holds the control character U+000A"),
    ("a\x00", "field 'id' holds the control character U+0000"),
    ("a\x7fb", "field 'id' holds the control character U+007F"),
    ("a\x9fb", "field 'id' holds the control character U+009F"),
])
def test_check_id_refuses(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_id(raw)


def write_jsonl(path: Path) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps({"id": i, "title": "T", "text": "body"})
                                for i in IDS) + b"\n")
    return path


def write_csv(path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "title", "text"])
        for i in IDS:
            out.writerow([i, "T", "body"])
    return path


@pytest.mark.parametrize("write", [write_jsonl, write_csv])
def test_newline_id_is_a_bad_line_of_the_source(tmp_path: Path, write: object) -> None:
    assert callable(write)
    src = write(tmp_path / ("docs.jsonl" if write is write_jsonl else "docs.csv"))
    reader = open_source(src)
    assert [d.id for d in reader] == ["good-1", "good-2", "caf\u00e9/é 100%"]
    assert len(reader.problems) == 3
    assert all("control character" in p for p in reader.problems), reader.problems
    with pytest.raises(SourceError, match=re.escape("control character U+000A")):
        list(open_source(src, on_error="stop"))


def test_newline_id_is_a_bad_line_in_blocks(tmp_path: Path) -> None:
    """JSON Lines are parsed in blocks by worker processes: the same rule, the same lines."""
    src = write_jsonl(tmp_path / "docs.jsonl")
    reader = open_source(src)
    plan = reader.blocks(40)
    assert plan is not None
    parse, blocks = plan
    ids = []
    for block in blocks:
        records = parse(block.read())
        ids += [d.id for d in records.documents(reader.accept(records))]
    assert ids == ["good-1", "good-2", "caf\u00e9/é 100%"]
    assert [p.split(":")[1] for p in reader.problems] == ["2", "4", "6"]
