"""The errors progsearch raises.

    ProgsearchError
    ├── SourceError          a document source is malformed (file, line and field named)
    ├── SnapshotError        a snapshot folder is missing, corrupt or of an unknown version
    ├── QueryError           a query or its parameters are not acceptable
    └── ModelError           an encoder model is missing or cannot be loaded

The HTTP layer maps each class to a status code in one place.
"""

from __future__ import annotations

__all__ = ["ModelError", "ProgsearchError", "QueryError", "SnapshotError", "SourceError"]


class ProgsearchError(Exception):
    """Base class of every error progsearch raises on purpose."""


class SourceError(ProgsearchError):
    """A document source is malformed."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        where = path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line


class SnapshotError(ProgsearchError):
    """A snapshot is missing, corrupt, or written by an unknown format version."""


class QueryError(ProgsearchError):
    """A query or one of its parameters is not acceptable."""


class ModelError(ProgsearchError):
    """An encoder model is missing or cannot be loaded."""
