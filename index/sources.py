"""Document sources: BEIR folders, JSONL/NDJSON files and CSV files.

Every record is checked where it enters. A bad record is reported with its file and line; the
reader either skips it (and keeps the problem in `problems`) or raises `SourceError`, as
`on_error` chooses. A skipped line never reaches the index.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from index.errors import SourceError
from index.types import Document

__all__ = ["MAX_ID_CHARS", "SourceReader", "document_from_record", "open_source"]

log = logging.getLogger(__name__)

MAX_ID_CHARS = 512
MAX_WARNINGS = 20
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
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def document_from_record(
    record: Any, *, id_field: str = "id", title_field: str = "title", text_field: str = "text"
) -> Document:
    """Check one record and turn it into a `Document`; `ValueError` names the bad field."""
    if not isinstance(record, dict):
        raise ValueError(f"a document must be a JSON object, got {type(record).__name__}")
    raw_id = record.get(id_field)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ValueError(f"field {id_field!r} is missing or not a string")
    doc_id = str(raw_id).strip()
    if not doc_id:
        raise ValueError(f"field {id_field!r} is empty")
    if len(doc_id) > MAX_ID_CHARS:
        raise ValueError(f"field {id_field!r} is longer than {MAX_ID_CHARS} characters")
    title = _as_text(record, title_field)
    text = _as_text(record, text_field)
    if not title.strip() and not text.strip():
        raise ValueError(f"fields {title_field!r} and {text_field!r} are both empty")
    skip = {id_field, title_field, text_field}
    extra = {k: v for k, v in record.items() if k not in skip}
    return Document(doc_id, title, text, extra)


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

    def __iter__(self) -> Iterator[Document]:
        file, fmt = _resolve(Path(self.path), self.fmt)
        seen: dict[str, int] = {}
        for line_no, record in self._records(file, fmt):
            try:
                if isinstance(record, Exception):
                    raise ValueError(str(record))
                doc = document_from_record(
                    record,
                    id_field=self._id_field(fmt, record),
                    title_field=self.title_field,
                    text_field=self.text_field,
                )
                if doc.id in seen:
                    raise ValueError(f"duplicate id {doc.id!r} (first seen on line {seen[doc.id]})")
            except ValueError as exc:
                self._problem(str(exc), str(file), line_no)
                continue
            seen[doc.id] = line_no
            yield doc

    def _id_field(self, fmt: str, record: Any) -> str:
        """The configured id field; by default `_id` (BEIR) or `id`, whichever the record has."""
        if self.id_field:
            return self.id_field
        if fmt == "beir" or (isinstance(record, dict) and "id" not in record and "_id" in record):
            return "_id"
        return "id"

    def _problem(self, message: str, path: str, line: int) -> None:
        error = SourceError(message, path=path, line=line)
        if self.on_error == "stop":
            raise error
        self.problems.append(str(error))
        if len(self.problems) <= MAX_WARNINGS:
            log.warning("skipped %s", error)
        if len(self.problems) == MAX_WARNINGS:
            log.warning("further bad lines are counted but not shown")

    def _records(self, file: Path, fmt: str) -> Iterator[tuple[int, Any]]:
        try:
            if fmt == "csv":
                with _open_text(file) as fh:
                    yield from self._csv_records(fh)
            else:
                opener = gzip.open if file.suffix == ".gz" else open
                with opener(file, "rb") as raw:
                    yield from self._json_records(raw)
        except UnicodeDecodeError as exc:
            raise SourceError(f"not UTF-8 text ({exc.reason})", path=str(file)) from exc
        except (OSError, EOFError) as exc:
            raise SourceError(f"cannot read: {exc}", path=str(file)) from exc

    @staticmethod
    def _json_records(fh: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
        # Lines stay bytes: orjson parses UTF-8 directly, and a line that is not valid UTF-8
        # is reported on its own instead of failing the whole file.
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield line_no, ValueError(f"malformed JSON or UTF-8: {exc}")

    @staticmethod
    def _csv_records(fh: io.TextIOBase) -> Iterator[tuple[int, Any]]:
        reader = csv.DictReader(fh)
        for row in reader:
            if None in row:
                yield reader.line_num, ValueError("more cells than header columns")
                continue
            yield reader.line_num, row


def open_source(path: str | Path, **options: Any) -> SourceReader:
    return SourceReader(Path(path), **options)
