"""The delta log: documents written since the current snapshot, durable in SQLite.

One log per index root, at ``ROOT/delta.sqlite``, outside the version folders so that a new
snapshot does not move it. SQLite runs in WAL mode with ``synchronous=FULL``: a batch is on disk
when :meth:`DeltaLog.append` returns, and readers in other processes never block the writer.

Tables:

- ``log``: one row per change, numbered by ``seq`` (``AUTOINCREMENT``, so a number is never
  reused, even after the rows before it are truncated). ``op`` is ``upsert`` (the whole
  document), ``delete`` (the id), or ``vectors``: the vectors of (id, hash) were stored. That
  third kind is not a change of the documents, but it changes the semantic and enhanced
  phases' answers, so it takes a number too and every answer is keyed by one sequence.
- ``vectors``: a document vector and its passages' vectors for (id, content hash), with the
  ``seq`` of the upsert they were computed for and the encoder's fingerprint.
- ``meta``: ``truncated_through``, the last seq removed by a compaction.

The content hash covers the title and the text, the only inputs of the analyzer and the
encoder: an update of other fields keeps its vectors.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index.core.errors import SnapshotError
from index.core.types import Document
from index.core.wal import ThreadConnections, write_transaction

__all__ = [
    "DELTA_FILE",
    "Change",
    "DeltaLog",
    "DeltaTruncatedError",
    "StoredVectors",
    "content_hash",
]

DELTA_FILE = "delta.sqlite"
Op = Literal["upsert", "delete", "vectors"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    op     TEXT NOT NULL CHECK (op IN ('upsert', 'delete', 'vectors')),
    id     TEXT NOT NULL,
    title  TEXT,
    text   TEXT,
    fields TEXT,
    hash   TEXT
);
CREATE INDEX IF NOT EXISTS log_id ON log (id, seq);
CREATE TABLE IF NOT EXISTS vectors (
    id         TEXT NOT NULL,
    hash       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    encoder    TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    doc        BLOB NOT NULL,
    passages   BLOB NOT NULL,
    n_passages INTEGER NOT NULL,
    texts      TEXT NOT NULL,
    PRIMARY KEY (id, hash)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_KEYS_PER_QUERY = 400
"""(id, hash) pairs per SELECT: two bound parameters each, well under SQLite's limit."""


class DeltaTruncatedError(SnapshotError):
    """The changes asked for were folded into a newer snapshot and removed from the log: load
    the current snapshot, then read the changes after its ``delta_seq``."""


def content_hash(title: str, text: str) -> str:
    """SHA-256 of the title and text, length-prefixed (what the analyzer and encoder read)."""
    digest = hashlib.sha256()
    for part in (title, text):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Change:
    seq: int
    op: Op
    id: str
    hash: str = ""
    document: Document | None = None
    """The whole document, for an upsert."""


@dataclass(frozen=True)
class StoredVectors:
    id: str
    hash: str
    seq: int
    """The seq of the upsert they were computed for."""
    encoder: str
    document: npt.NDArray[np.float32]
    """(dim,) unit vector of the document."""
    passages: npt.NDArray[np.float32]
    """(n_passages, dim) unit vectors of its passages, in `index.passages` layout order."""
    passage_texts: tuple[str, ...]


def _change(row: tuple[Any, ...]) -> Change:
    seq, op, doc_id, title, text, fields, digest = row
    document = None
    if op == "upsert":
        document = Document(doc_id, title, text, json.loads(fields) if fields != "{}" else {})
    return Change(int(seq), op, doc_id, digest or "", document)


def _vectors(row: tuple[Any, ...]) -> StoredVectors:
    doc_id, digest, seq, encoder, dim, doc, passages, n, texts = row
    return StoredVectors(
        doc_id,
        digest,
        int(seq),
        encoder,
        np.frombuffer(doc, dtype=np.float32).copy(),
        np.frombuffer(passages, dtype=np.float32).reshape(int(n), int(dim)).copy(),
        tuple(json.loads(texts)),
    )


class DeltaLog:
    """The delta log of one index root; safe to share between threads (a connection each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = ThreadConnections(path)
        self._conn().executescript(_SCHEMA)  # its own transaction; IF NOT EXISTS throughout

    @classmethod
    def open(cls, root: Path) -> DeltaLog:
        root.mkdir(parents=True, exist_ok=True)
        return cls(Path(root) / DELTA_FILE)

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (`write_transaction`)."""
        return write_transaction(self._conn())

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._connections.close()

    @staticmethod
    def _last(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'log'").fetchone()
        return int(row[0]) if row else 0

    # -- writes -------------------------------------------------------------------------
    def append(self, docs: Sequence[Document]) -> int:
        """Store a batch of upserts in one transaction; the seq of the last (the log's last
        seq when `docs` is empty). Documents must be valid (`index.sources`): checked at the
        edge, not here."""
        rows = [
            (
                d.id,
                d.title,
                d.text,
                json.dumps(d.fields, ensure_ascii=False) if d.fields else "{}",
                content_hash(d.title, d.text),
            )
            for d in docs
        ]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO log (op, id, title, text, fields, hash)"
                " VALUES ('upsert', ?, ?, ?, ?, ?)",
                rows,
            )
            return self._last(conn)

    def delete(self, ids: Sequence[str]) -> int:
        """Store deletions (of ids that may or may not exist) in one transaction."""
        with self._write() as conn:
            conn.executemany("INSERT INTO log (op, id) VALUES ('delete', ?)", [(i,) for i in ids])
            return self._last(conn)

    def put_vectors(
        self,
        doc_id: str,
        digest: str,
        document: npt.ArrayLike,
        passages: npt.ArrayLike,
        passage_texts: Sequence[str],
        encoder: str = "",
    ) -> int | None:
        """Store the vectors of (id, content hash) and log a ``vectors`` change; its seq.

        Idempotent: when vectors for (id, hash) are stored already, or when no upsert of
        (id, hash) is left in the log (compacted, or never written), nothing is written and
        the result is None."""
        doc = np.ascontiguousarray(document, dtype=np.float32).reshape(-1)
        pas = np.ascontiguousarray(passages, dtype=np.float32).reshape(-1, doc.size)
        if pas.shape[0] != len(passage_texts):
            raise ValueError(f"{pas.shape[0]} passage vectors for {len(passage_texts)} texts")
        with self._write() as conn:
            row = conn.execute(
                "SELECT max(seq) FROM log WHERE id = ? AND op = 'upsert' AND hash = ?",
                (doc_id, digest),
            ).fetchone()
            if row[0] is None:
                return None
            cur = conn.execute(
                "INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    digest,
                    int(row[0]),
                    encoder,
                    doc.size,
                    doc.tobytes(),
                    pas.tobytes(),
                    pas.shape[0],
                    json.dumps(list(passage_texts), ensure_ascii=False),
                ),
            )
            if cur.rowcount != 1:
                return None
            conn.execute(
                "INSERT INTO log (op, id, hash) VALUES ('vectors', ?, ?)", (doc_id, digest)
            )
            return self._last(conn)

    def truncate_through(self, seq: int) -> None:
        """Remove the changes up to `seq` (folded into a published snapshot) and the vectors
        that no remaining upsert needs. Removing them again, or less, is harmless."""
        with self._write() as conn:
            done = self._truncated(conn)
            if seq <= done:
                return
            conn.execute("DELETE FROM log WHERE seq <= ?", (seq,))
            conn.execute(
                "DELETE FROM vectors WHERE NOT EXISTS (SELECT 1 FROM log WHERE log.op = 'upsert'"
                " AND log.id = vectors.id AND log.hash = vectors.hash)"
            )
            conn.execute(
                "INSERT INTO meta VALUES ('truncated_through', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (seq,),
            )

    # -- reads --------------------------------------------------------------------------
    def last_seq(self) -> int:
        """The seq of the last change ever logged (0 for none); cheap enough to poll."""
        return self._last(self._conn())

    @staticmethod
    def _truncated(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'truncated_through'").fetchone()
        return int(row[0]) if row else 0

    def truncated_through(self) -> int:
        return self._truncated(self._conn())

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]:
        """Changes after `seq`, in order. Raises :class:`DeltaTruncatedError` when some of
        them were already removed by a compaction."""
        conn = self._conn()
        conn.execute("BEGIN")  # one read snapshot for both statements
        try:
            done = self._truncated(conn)
            if seq < done:
                raise DeltaTruncatedError(
                    f"{self.path}: changes after {seq} were compacted through {done}; "
                    "load the current snapshot"
                )
            rows = conn.execute(
                "SELECT seq, op, id, title, text, fields, hash FROM log WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (seq, -1 if limit is None else limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return [_change(r) for r in rows]

    def latest(self, doc_id: str) -> Change | None:
        """The last upsert or delete of an id still in the log."""
        row = (
            self._conn()
            .execute(
                "SELECT seq, op, id, title, text, fields, hash FROM log"
                " WHERE id = ? AND op != 'vectors' ORDER BY seq DESC LIMIT 1",
                (doc_id,),
            )
            .fetchone()
        )
        return _change(row) if row else None

    def pending_embeddings(self, limit: int = 64) -> list[Change]:
        """Upserts still current (not replaced or deleted since) whose (id, hash) has no
        vectors yet, oldest first: what the embedding task has left to do."""
        rows = (
            self._conn()
            .execute(
                "SELECT seq, op, id, title, text, fields, hash FROM log AS l"
                " WHERE op = 'upsert'"
                " AND seq = (SELECT max(seq) FROM log AS m WHERE m.id = l.id AND m.op != 'vectors')"
                " AND NOT EXISTS (SELECT 1 FROM vectors AS v WHERE v.id = l.id AND v.hash = l.hash)"
                " ORDER BY seq LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [_change(r) for r in rows]

    def has_vectors(self, doc_id: str, digest: str) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM vectors WHERE id = ? AND hash = ?", (doc_id, digest))
            .fetchone()
        )
        return row is not None

    def get_vectors(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredVectors]:
        """The stored vectors of those (id, hash) pairs that have some."""
        wanted = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], StoredVectors] = {}
        conn = self._conn()
        for lo in range(0, len(wanted), _KEYS_PER_QUERY):
            part = wanted[lo : lo + _KEYS_PER_QUERY]
            marks = ",".join(["(?, ?)"] * len(part))
            rows = conn.execute(
                "SELECT id, hash, seq, encoder, dim, doc, passages, n_passages, texts"
                f" FROM vectors WHERE (id, hash) IN (VALUES {marks})",
                [x for key in part for x in key],
            ).fetchall()
            for row in rows:
                v = _vectors(row)
                found[v.id, v.hash] = v
        return found
