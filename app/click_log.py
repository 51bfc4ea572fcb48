"""The click log: what users opened among the results they were shown, durable in SQLite.

One log per index root, at ``ROOT/clicks.sqlite`` (WAL, ``synchronous=FULL``, as the delta
log), outside the version folders so that a new snapshot does not move it.

Tables:

- ``searches``: a search that received at least one event: its ``search_id``, the query, the
  filter, the ids in the order they were last shown, the ranking that produced that order
  (``model``: ``default`` or an installed model's version) and when it was served. A search is
  written with its first event, never before: searches nobody clicks cost nothing here.
- ``events``: one row per event, numbered by ``seq``: the search, the document, its 1-based
  rank in the shown order, the kind (``click``, or ``dwell`` with milliseconds) and when.
  A click is stored once per search and document: a repeat says nothing new.

Retention (`ClickLog.prune`) removes searches older than a maximum age, then the oldest
searches past a maximum count, with their events.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from index.core.wal import ThreadConnections, write_transaction

__all__ = ["CLICKS_FILE", "ClickLog", "Event", "EventKind", "Session", "Shown"]

CLICKS_FILE = "clicks.sqlite"
EventKind = Literal["click", "dwell"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    search_id TEXT PRIMARY KEY,
    query     TEXT NOT NULL,
    filter    TEXT NOT NULL,
    shown     TEXT NOT NULL,
    model     TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS searches_at ON searches (at);
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    search_id TEXT NOT NULL REFERENCES searches (search_id) ON DELETE CASCADE,
    doc_id    TEXT NOT NULL,
    rank      INTEGER NOT NULL CHECK (rank >= 1),
    kind      TEXT NOT NULL CHECK (kind IN ('click', 'dwell')),
    dwell_ms  INTEGER,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_search ON events (search_id);
"""


@dataclass(frozen=True)
class Shown:
    """One search as it was served: what a click on it is evidence about."""

    search_id: str
    query: str
    filter: str
    """The filter expression as given ("" for none): training re-runs the query with it."""
    shown: tuple[str, ...]
    """External ids in the order last shown (the final phase's)."""
    model: str
    """``default``, or the installed model's version, that ordered ``shown``."""
    at: float

    def rank_of(self, doc_id: str) -> int | None:
        """1-based rank of ``doc_id`` in the shown order, None when it was not shown."""
        try:
            return self.shown.index(doc_id) + 1
        except ValueError:
            return None


@dataclass(frozen=True)
class Event:
    search_id: str
    doc_id: str
    rank: int
    kind: EventKind
    dwell_ms: int | None
    at: float


@dataclass(frozen=True)
class Session:
    """A search with the events it received (in arrival order)."""

    shown: Shown
    events: tuple[Event, ...]

    def clicked(self) -> dict[str, int]:
        """The clicked ids and the rank each was clicked at."""
        return {e.doc_id: e.rank for e in self.events if e.kind == "click"}


class ClickLog:
    """The click log of one index root; safe to share between threads (a connection each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = ThreadConnections(path, ("PRAGMA foreign_keys=ON",))
        self._conn().executescript(_SCHEMA)

    @classmethod
    def open(cls, root: Path) -> ClickLog:
        root.mkdir(parents=True, exist_ok=True)
        return cls(Path(root) / CLICKS_FILE)

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def add(self, shown: Shown, doc_id: str, kind: EventKind = "click",
            dwell_ms: int | None = None, at: float | None = None) -> Event:
        """Store one event on ``shown`` (stored with its first event). ``doc_id`` must be one
        of the shown ids: the caller checks, and this raises ValueError otherwise. A click
        repeated on the same search and document is not stored again (see `add_once`)."""
        event = self.add_once(shown, doc_id, kind, dwell_ms, at)
        if event is not None:
            return event
        return self._event(shown, doc_id, kind, dwell_ms, at)

    def add_once(self, shown: Shown, doc_id: str, kind: EventKind = "click",
                 dwell_ms: int | None = None, at: float | None = None) -> Event | None:
        """As `add`; None when the event is a click already stored for that search and
        document (a double click, a page sending again), which is then not stored. Dwells are
        all kept: each is one more look at the document."""
        return self.add_all([(shown, doc_id, kind, dwell_ms)], at)[0]

    def add_all(self, items: Sequence[tuple[Shown, str, EventKind, int | None]],
                at: float | None = None) -> list[Event | None]:
        """`add_once` for each (search, document, kind, dwell) in turn, in one transaction:
        all are stored or none."""
        events = [self._event(shown, doc_id, kind, dwell_ms, at)
                  for shown, doc_id, kind, dwell_ms in items]
        out: list[Event | None] = []
        with write_transaction(self._conn()) as conn:
            for (shown, _, kind, _), event in zip(items, events, strict=True):
                if kind == "click" and conn.execute(
                        "SELECT 1 FROM events WHERE search_id = ? AND doc_id = ? "
                        "AND kind = 'click'", (event.search_id, event.doc_id)).fetchone():
                    out.append(None)
                    continue
                conn.execute(
                    "INSERT OR IGNORE INTO searches VALUES (?, ?, ?, ?, ?, ?)",
                    (shown.search_id, shown.query, shown.filter, json.dumps(list(shown.shown)),
                     shown.model, shown.at),
                )
                conn.execute(
                    "INSERT INTO events (search_id, doc_id, rank, kind, dwell_ms, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (event.search_id, event.doc_id, event.rank, event.kind, event.dwell_ms,
                     event.at),
                )
                out.append(event)
        return out

    @staticmethod
    def _event(shown: Shown, doc_id: str, kind: EventKind, dwell_ms: int | None,
               at: float | None) -> Event:
        rank = shown.rank_of(doc_id)
        if rank is None:
            raise ValueError(f"{doc_id!r} was not shown by search {shown.search_id!r}")
        return Event(shown.search_id, doc_id, rank, kind, dwell_ms,
                     time.time() if at is None else at)

    def last_seq(self) -> int:
        """The number of the newest event (0: none yet); numbers are never reused."""
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        found = row.fetchone()
        return int(found[0]) if found else 0

    def count(self, kind: EventKind = "click") -> int:
        row = self._conn().execute("SELECT count(*) FROM events WHERE kind = ?", (kind,))
        return int(row.fetchone()[0])

    def sessions(self, since: float = 0.0) -> list[Session]:
        """Every stored search served at or after ``since`` with its events, oldest first."""
        conn = self._conn()
        searches = conn.execute(
            "SELECT search_id, query, filter, shown, model, at FROM searches "
            "WHERE at >= ? ORDER BY at, search_id", (since,)).fetchall()
        events: dict[str, list[Event]] = {}
        for sid, doc, rank, kind, dwell, at in conn.execute(
                "SELECT e.search_id, e.doc_id, e.rank, e.kind, e.dwell_ms, e.at FROM events e "
                "JOIN searches s USING (search_id) WHERE s.at >= ? ORDER BY e.seq", (since,)):
            events.setdefault(sid, []).append(Event(sid, doc, int(rank), kind, dwell, at))
        return [Session(Shown(sid, query, flt, tuple(json.loads(shown)), model, at),
                        tuple(events.get(sid, ())))
                for sid, query, flt, shown, model, at in searches]

    def prune(self, max_age_s: float, max_searches: int, now: float | None = None) -> int:
        """Apply the retention limits; the number of searches removed (events go with them)."""
        cutoff = (time.time() if now is None else now) - max_age_s
        with write_transaction(self._conn()) as conn:
            old = conn.execute("DELETE FROM searches WHERE at < ?", (cutoff,)).rowcount
            over = conn.execute(
                "DELETE FROM searches WHERE search_id IN (SELECT search_id FROM searches "
                "ORDER BY at DESC, search_id DESC LIMIT -1 OFFSET ?)", (max_searches,)).rowcount
        return int(old) + int(over)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._connections.close()

