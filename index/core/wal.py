"""A durable SQLite connection in WAL mode, as every database in an index root opens one, and
the per-thread connections every SQLite file of the project is read through.

``synchronous=FULL``: in WAL mode, NORMAL may lose the last commits on power loss, and an
acknowledged write must survive it. The busy timeout lets writers in other processes wait for
each other. The switch of a fresh file to WAL takes an exclusive lock without calling the busy
handler, so two processes opening one new file at once (two servers on one root) would see
"database is locked": the switch is retried until the busy timeout has passed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BUSY_MS", "ThreadConnections", "connect_wal", "write_transaction"]

BUSY_MS = 30_000


def connect_wal(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    deadline = time.monotonic() + BUSY_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.005)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; IMMEDIATE takes the write lock first, so two writers wait for
    each other instead of failing on a lock upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ThreadConnections:
    """One connection per thread to one database file, opened on first use (SQLite
    connections are not shared between threads): `connect_wal` with `pragmas` run on each
    new one, or what ``connect`` opens (the snapshot's read-only document store)."""

    def __init__(self, path: Path, pragmas: tuple[str, ...] = (),
                 connect: Callable[[Path], sqlite3.Connection] = connect_wal) -> None:
        self.path = path
        self._pragmas = pragmas
        self._connect = connect
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self.path)
            for pragma in self._pragmas:
                conn.execute(pragma)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
