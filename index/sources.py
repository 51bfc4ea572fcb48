"""Document sources: BEIR folders, JSONL/NDJSON files and CSV files.

Every record is checked where it enters. A bad record is reported with its file and line; the
reader either skips it (and keeps the problem in `problems`) or raises `SourceError`, as
`on_error` chooses. A skipped line never reaches the index.

JSON Lines sources are read in blocks of whole lines (`SourceReader.blocks`) so that parsing and
checking can run in worker processes (`RecordParser`, a pure function of the block's bytes).
Only what needs the whole file stays with the reader (`SourceReader.accept`): numbering lines,
finding duplicate ids, and reporting problems in line order.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from index.core.errors import SourceError
from index.core.types import Document
from index.schema import INFER_SAMPLE, Schema

__all__ = [
    "MAX_ID_CHARS",
    "Block",
    "RecordParser",
    "Records",
    "SourceReader",
    "check_id",
    "document_from_record",
    "open_source",
]

log = logging.getLogger(__name__)

MAX_ID_CHARS = 512
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_WARNINGS = 20
BLOCK_BYTES = 16 << 20
"""Default block size: small enough that a worker's per-block buffers stay under glibc's largest
mmap threshold (32 MiB) and get reused rather than mapped and faulted in afresh each time."""
FORMATS = ("auto", "beir", "jsonl", "csv")
OnError = Literal["skip", "stop"]


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict")
    return open(path, encoding="utf-8", errors="strict", newline="")


def _resolve(path: Path, fmt: str) -> tuple[Path, str]:
    if fmt not in FORMATS:
        raise SourceError(f"unknown source format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise SourceError("no such file or folder", path=str(path))
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).exists():
                return path / name, "beir"
        raise SourceError("folder holds no corpus.jsonl or corpus.jsonl.gz", path=str(path))
    if fmt != "auto":
        return path, fmt
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return path, "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return path, "jsonl"
    raise SourceError("cannot tell the format from the name; pass --format", path=str(path))


def _as_text(record: dict[str, Any], name: str) -> str:
    value = record.get(name, "")
    if type(value) is str:  # the common case, first
        return value
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def check_id(raw: str, field: str = "id") -> str:
    """The id `raw` stands for, by the one rule for ids (README, "Document ids"): surrounding
    whitespace removed, 1 to `MAX_ID_CHARS` characters, no control character (U+0000-U+001F,
    U+007F-U+009F: a URL path cannot address them, so such a document could be written and
    never read or deleted). `ValueError` names the field."""
    doc_id = raw.strip()
    if not doc_id:
        raise ValueError(f"field {field!r} is empty")
    if len(doc_id) > MAX_ID_CHARS:
        raise ValueError(f"field {field!r} is longer than {MAX_ID_CHARS} characters")
    # isprintable (C, quick) passes nearly every id; it also fails on a few characters ids may
    # hold (no-break spaces, format characters), so only then are control characters looked for.
    if not doc_id.isprintable() and (bad := _CONTROL.search(doc_id)) is not None:
        raise ValueError(f"field {field!r} holds the control character U+{ord(bad.group()):04X}; "
                         "an id is printable text")
    return doc_id


def _record_fields(
    record: Any, id_field: str, title_field: str, text_field: str
) -> tuple[str, str, str, dict[str, Any]]:
    """Check one record: its id, title, text and other fields; `ValueError` names the bad field.

    Called once per document of a build, so the common case is kept to a few cheap tests."""
    if not isinstance(record, dict):
        raise ValueError(f"a document must be a JSON object, got {type(record).__name__}")
    raw_id = record.get(id_field)
    if not isinstance(raw_id, str) and (not isinstance(raw_id, int) or isinstance(raw_id, bool)):
        raise ValueError(f"field {id_field!r} is missing or not a string")
    doc_id = check_id(str(raw_id), id_field)
    title = _as_text(record, title_field)
    text = _as_text(record, text_field)
    # `not x.strip()`, without copying the text: strip and isspace share one definition.
    if (not title or title.isspace()) and (not text or text.isspace()):
        raise ValueError(f"fields {title_field!r} and {text_field!r} are both empty")
    distinct = id_field != title_field != text_field != id_field
    if len(record) == 3 and distinct and title_field in record and text_field in record:
        return doc_id, title, text, {}  # nothing else in the record
    extra = {
        k: v for k, v in record.items() if k != id_field and k != title_field and k != text_field
    }
    return doc_id, title, text, extra


def document_from_record(
    record: Any, *, id_field: str = "id", title_field: str = "title", text_field: str = "text"
) -> Document:
    """Check one record and turn it into a `Document`; `ValueError` names the bad field."""
    return Document(*_record_fields(record, id_field, title_field, text_field))


@dataclass(frozen=True)
class Block:
    """Whole lines of a JSON Lines file, read where they are parsed.

    For a plain file, the lines that start in bytes [start, end); a compressed file is
    decompressed by the reader and its lines travel in `data`.
    """

    path: str
    start: int = 0
    end: int = 0
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            with open(self.path, "rb") as fh:
                if self.start > 0:
                    fh.seek(self.start - 1)
                    fh.readline()  # a line that began before `start` belongs to the block before
                pos = fh.tell()
                if pos >= self.end:
                    return b""
                # Find where the line running over `end` stops, then read once (appending to a
                # large bytes object would copy it).
                fh.seek(self.end - 1)
                stop = self.end - 1 + len(fh.readline())
                fh.seek(pos)
                return fh.read(stop - pos)
        except OSError as exc:
            raise SourceError(f"cannot read: {exc}", path=self.path) from exc


@dataclass
class Records:
    """The records of one block, as columns. Lines are numbered from 1 within the block."""

    n_lines: int
    lines: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    """The other fields of each record as JSON text, as the document store keeps them."""
    problems: list[tuple[int, str]] = field(default_factory=list)

    def documents(self, keep: list[int] | None = None) -> Iterator[Document]:
        for i in range(len(self.ids)) if keep is None else keep:
            extra = self.fields[i]
            fields = {} if extra == "{}" else json.loads(extra)
            yield Document(self.ids[i], self.titles[i], self.texts[i], fields)


@dataclass(frozen=True)
class RecordParser:
    """Parses and checks the lines of a block; a pure function, run in worker processes."""

    fmt: str
    id_field: str | None
    title_field: str
    text_field: str
    schema: Schema | None = None
    """Structured fields every record's values are checked against."""

    def __call__(self, data: bytes) -> Records:
        out = Records(0)
        loads, dumps = orjson.loads, json.dumps
        fixed_id = self.id_field or ("_id" if self.fmt == "beir" else None)
        title_field, text_field = self.title_field, self.text_field
        # Lines stay bytes: orjson parses UTF-8 directly, and a line that is not valid UTF-8
        # is reported on its own instead of failing the whole file.
        n = 0
        for n, line in enumerate(io.BytesIO(data), start=1):
            if line.isspace():
                continue
            try:
                record = loads(line)
            except orjson.JSONDecodeError as exc:
                out.problems.append((n, f"malformed JSON or UTF-8: {exc}"))
                continue
            id_field = fixed_id or _default_id_field(record)
            try:
                doc_id, title, text, extra = _record_fields(
                    record, id_field, title_field, text_field
                )
                if self.schema is not None and extra:
                    self.schema.check(extra)
            except ValueError as exc:
                out.problems.append((n, str(exc)))
                continue
            out.lines.append(n)
            out.ids.append(doc_id)
            out.titles.append(title)
            out.texts.append(text)
            out.fields.append(dumps(extra) if extra else "{}")
        out.n_lines = n
        return out


def _default_id_field(record: Any) -> str:
    """`_id` when a record has it and no `id`, else `id`."""
    if isinstance(record, dict) and "id" not in record and "_id" in record:
        return "_id"
    return "id"


@dataclass
class SourceReader:
    """Iterates the valid documents of a source, once."""

    path: Path
    fmt: str = "auto"
    id_field: str | None = None
    title_field: str = "title"
    text_field: str = "text"
    on_error: OnError = "skip"
    problems: list[str] = field(default_factory=list)
    schema: Schema | None = None
    """Structured fields every record is checked against (see `index.schema`)."""

    _seen: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _lines_before: int = field(default=0, init=False, repr=False)
    _file: str = field(default="", init=False, repr=False)

    def __iter__(self) -> Iterator[Document]:
        plan = self.blocks()
        if plan is not None:
            parse, blocks = plan
            for block in blocks:
                records = parse(block.read())
                yield from records.documents(self.accept(records))
            return
        file, _ = _resolve(Path(self.path), self.fmt)
        seen: dict[str, int] = {}
        for line_no, record in self._csv_records(file):
            try:
                if isinstance(record, Exception):
                    raise ValueError(str(record))
                doc = document_from_record(
                    record,
                    id_field=self.id_field or _default_id_field(record),
                    title_field=self.title_field,
                    text_field=self.text_field,
                )
                if self.schema is not None and doc.fields:
                    doc = replace(doc, fields=self.schema.from_text(doc.fields))
                    self.schema.check(doc.fields)
                if doc.id in seen:
                    raise ValueError(f"duplicate id {doc.id!r} (first seen on line {seen[doc.id]})")
            except ValueError as exc:
                self._problem(str(exc), str(file), line_no)
                continue
            seen[doc.id] = line_no
            yield doc

    def infer_schema(self, sample: int = INFER_SAMPLE) -> Schema:
        """The schema the first `sample` valid records suggest (`index.schema`)."""
        probe = replace(self, problems=[], on_error="skip", schema=None)
        records = (d.fields for d in itertools.islice(iter(probe), sample))
        if _resolve(Path(self.path), self.fmt)[1] == "csv":
            return Schema.infer(Schema.text_values(f) for f in records)
        return Schema.infer(records)

    def blocks(self, size: int = BLOCK_BYTES) -> tuple[RecordParser, Iterator[Block]] | None:
        """For a JSON Lines source: the parser and the blocks of about `size` bytes to give it,
        whose records then go through `accept` in order. None for a CSV source."""
        file, fmt = _resolve(Path(self.path), self.fmt)
        if fmt == "csv":
            return None
        self._seen, self._lines_before, self._file = {}, 0, str(file)
        parser = RecordParser(fmt, self.id_field, self.title_field, self.text_field, self.schema)
        return parser, self._blocks(file, max(1, size))

    @staticmethod
    def _blocks(file: Path, size: int) -> Iterator[Block]:
        if file.suffix != ".gz":
            total = file.stat().st_size
            for start in range(0, total, size):
                yield Block(str(file), start, min(start + size, total))
            return
        try:
            with gzip.open(file, "rb") as fh:
                while data := fh.read(size):
                    if not data.endswith(b"\n"):
                        data += fh.readline()
                    yield Block(str(file), data=data)
        except (OSError, EOFError) as exc:
            raise SourceError(f"cannot read: {exc}", path=str(file)) from exc

    def accept(self, records: Records) -> list[int] | None:
        """Number the block's lines after the blocks before it, report its problems and its
        duplicate ids in line order; the positions of the records to keep (None: all)."""
        before = self._lines_before
        self._lines_before += records.n_lines
        seen = self._seen
        if not records.problems:
            fresh = dict(zip(records.ids, [before + n for n in records.lines], strict=True))
            if len(fresh) == len(records.ids) and seen.keys().isdisjoint(fresh):
                seen.update(fresh)
                return None
        problems = iter(records.problems)
        problem = next(problems, None)
        keep: list[int] = []
        for i, (doc_id, n) in enumerate(zip(records.ids, records.lines, strict=True)):
            while problem is not None and problem[0] < n:
                self._problem(problem[1], self._file, before + problem[0])
                problem = next(problems, None)
            first = seen.setdefault(doc_id, before + n)
            if first != before + n:
                message = f"duplicate id {doc_id!r} (first seen on line {first})"
                self._problem(message, self._file, before + n)
                continue
            keep.append(i)
        while problem is not None:
            self._problem(problem[1], self._file, before + problem[0])
            problem = next(problems, None)
        return None if len(keep) == len(records.ids) else keep

    def _problem(self, message: str, path: str, line: int) -> None:
        error = SourceError(message, path=path, line=line)
        if self.on_error == "stop":
            raise error
        self.problems.append(str(error))
        if len(self.problems) <= MAX_WARNINGS:
            log.warning("skipped %s", error)
        if len(self.problems) == MAX_WARNINGS:
            log.warning("further bad lines are counted but not shown")

    def _csv_records(self, file: Path) -> Iterator[tuple[int, Any]]:
        try:
            with _open_text(file) as fh:
                reader = csv.DictReader(fh)
                for row in reader:
                    if None in row:
                        yield reader.line_num, ValueError("more cells than header columns")
                        continue
                    yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise SourceError(f"not UTF-8 text ({exc.reason})", path=str(file)) from exc
        except (OSError, EOFError) as exc:
            raise SourceError(f"cannot read: {exc}", path=str(file)) from exc


def open_source(path: str | Path, **options: Any) -> SourceReader:
    return SourceReader(Path(path), **options)
