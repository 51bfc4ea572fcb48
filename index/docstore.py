"""The document store: stored fields of every document, in SQLite.

Row `idx` is the document's number in the snapshot arrays. The store is written once, while a
snapshot is built in its temporary folder, and read-only afterwards.

Worker processes write the documents of each block they parse into a block file of their own
(`write_block`); the writer copies it into the store with one INSERT ... SELECT, inside SQLite,
so the documents' text never passes through the main process.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from index.core.errors import SnapshotError
from index.core.types import Document
from index.core.wal import ThreadConnections

__all__ = ["DocStore", "DocStoreWriter", "read_block", "write_block"]

_SCHEMA = """
CREATE TABLE docs (
    idx    INTEGER PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    title  TEXT NOT NULL,
    text   TEXT NOT NULL,
    fields TEXT NOT NULL
);
"""
# A block file has no unique index: ids are checked across blocks by the reader.
_BLOCK_SCHEMA = _SCHEMA.replace("NOT NULL UNIQUE", "NOT NULL")


def _bulk_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # Large pages: a document (~1.5 KB) no longer leaves most of a 4 KB page empty, and the
    # bulk load takes about half the time.
    conn.execute("PRAGMA page_size=65536")
    # The file lives in a temporary folder until the snapshot is complete and synced, so
    # SQLite's own journal would only slow the bulk load down.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    return conn


def write_block(
    path: Path, ids: list[str], titles: list[str], texts: list[str], fields: list[str]
) -> None:
    """Documents of one block, numbered from 0, in a file for `DocStoreWriter.add_block`."""
    conn = _bulk_connection(path)
    try:
        conn.executescript(_BLOCK_SCHEMA)
        conn.execute("BEGIN")
        rows = zip(range(len(ids)), ids, titles, texts, fields, strict=True)
        conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def read_block(path: Path, keep: list[int]) -> tuple[list[str], list[str]]:
    """Titles and texts of the documents of a block file at positions `keep`."""
    conn = sqlite3.connect(path)
    try:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT idx, title, text FROM docs")}
    finally:
        conn.close()
    return [rows[i][0] for i in keep], [rows[i][1] for i in keep]


class DocStoreWriter:
    """Bulk loader. Inserts run on a thread of their own (SQLite releases the GIL while it
    works), so storing documents overlaps with analysing them."""

    def __init__(self, path: Path) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docstore")
        self._conn: sqlite3.Connection | None = None
        self._pending: Future[None] | None = None
        self._fd = -1
        self._next = 0
        self._pool.submit(self._open, path).result()

    def _open(self, path: Path) -> None:
        conn = _bulk_connection(path)
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        self._conn = conn
        self._fd = os.open(path, os.O_RDONLY)

    def _insert(self, rows: Iterable[tuple[int, str, str, str, str]]) -> None:
        assert self._conn is not None
        self._conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)

    def _copy(self, block: Path, start: int, keep: list[int] | None) -> None:
        assert self._conn is not None
        conn = self._conn
        conn.execute("COMMIT")  # ATTACH is refused inside a transaction
        conn.execute("ATTACH DATABASE ? AS block", (str(block),))
        conn.execute("BEGIN")
        if keep is None:
            conn.execute(
                "INSERT INTO docs SELECT idx + ?, id, title, text, fields FROM block.docs"
                " ORDER BY idx",
                (start,),
            )
        else:
            conn.executemany(
                "INSERT INTO docs SELECT ?, id, title, text, fields FROM block.docs WHERE idx = ?",
                enumerate(keep, start),
            )
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE block")
        conn.execute("BEGIN")
        os.remove(block)
        # Write the store out as it grows: syncing it all at the end would keep the disk busy
        # for seconds after the work is done.
        os.fsync(self._fd)

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._pending is not None:
            self._pending.result()  # one batch in flight bounds memory; errors surface here
        self._pending = self._pool.submit(fn, *args)

    def add(self, docs: Iterable[Document]) -> None:
        docs = list(docs)
        self.add_columns(
            [d.id for d in docs],
            [d.title for d in docs],
            [d.text for d in docs],
            [json.dumps(d.fields) for d in docs],
        )

    def add_columns(
        self, ids: list[str], titles: list[str], texts: list[str], fields: list[str]
    ) -> None:
        """Append documents given as columns; `fields` holds each one's other fields as JSON."""
        start = self._next
        self._next += len(ids)
        self._submit(
            self._insert, zip(range(start, self._next), ids, titles, texts, fields, strict=True)
        )

    def add_block(self, block: Path, n_docs: int, keep: list[int] | None = None) -> None:
        """Append the documents of a block file (`write_block`), all of its `n_docs` or those
        at positions `keep`; the file is removed once copied."""
        start = self._next
        self._next += n_docs if keep is None else len(keep)
        self._submit(self._copy, block, start, keep)

    def _close(self) -> None:
        assert self._conn is not None
        self._conn.execute("COMMIT")
        self._conn.close()
        os.close(self._fd)

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
            self._pool.submit(self._close).result()
        finally:
            self._pool.shutdown()

    def abort(self) -> None:
        """Stop after a failed build; the caller removes the file."""
        self._pool.submit(self._abort)
        self._pool.shutdown(wait=True)

    def _abort(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._fd >= 0:
            os.close(self._fd)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection to a finished document store: read-only and immutable (no locking)."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


class DocStore:
    """Read-only access, safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise SnapshotError(f"{path}: document store is missing")
        self.path = path
        self._connections = ThreadConnections(path, connect=_read_only)

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def close(self) -> None:
        """Close this thread's connection (the others close with their threads)."""
        self._connections.close()

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise SnapshotError(f"{self.path}: document store unreadable: {exc}") from exc

    @staticmethod
    def _doc(row: tuple[Any, ...]) -> Document:
        return Document(row[0], row[1], row[2], json.loads(row[3]))

    def get(self, idx: int) -> Document | None:
        rows = self._rows("SELECT id, title, text, fields FROM docs WHERE idx = ?", (idx,))
        return self._doc(rows[0]) if rows else None

    def get_many(self, idxs: Sequence[int]) -> list[Document | None]:
        if not idxs:
            return []
        marks = ",".join("?" * len(idxs))
        rows = self._rows(
            f"SELECT idx, id, title, text, fields FROM docs WHERE idx IN ({marks})", list(idxs)
        )
        found = {r[0]: self._doc(r[1:]) for r in rows}
        return [found.get(i) for i in idxs]

    def get_display(self, idxs: Sequence[int], text_chars: int = 400) -> list[Document | None]:
        """What a result list shows: id, title and the start of the text, without the other
        stored fields (their JSON is not parsed)."""
        if not idxs:
            return []
        marks = ",".join("?" * len(idxs))
        rows = self._rows(
            f"SELECT idx, id, title, substr(text, 1, ?) FROM docs WHERE idx IN ({marks})",
            [text_chars, *idxs],
        )
        found = {r[0]: Document(r[1], r[2], r[3]) for r in rows}
        return [found.get(i) for i in idxs]

    def lookup(self, doc_id: str) -> int | None:
        rows = self._rows("SELECT idx FROM docs WHERE id = ?", (doc_id,))
        return int(rows[0][0]) if rows else None

    def iter_fields(self, batch: int = 10_000) -> Iterator[tuple[str, str]]:
        """(title, text) of every document, in row order."""
        start = 0
        while True:
            rows = self._rows(
                "SELECT title, text FROM docs WHERE idx >= ? ORDER BY idx LIMIT ?", (start, batch)
            )
            yield from ((r[0], r[1]) for r in rows)
            if len(rows) < batch:
                return
            start += batch

    def iter_extra(self, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """The other fields of every document (as stored), in row order."""
        start = 0
        while True:
            rows = self._rows(
                "SELECT fields FROM docs WHERE idx >= ? ORDER BY idx LIMIT ?", (start, batch)
            )
            yield from ({} if r[0] in ("{}", None) else json.loads(r[0]) for r in rows)
            if len(rows) < batch:
                return
            start += batch

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM docs", ())[0][0])
