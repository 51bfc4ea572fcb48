"""What each server process keeps: the current `LiveIndex` of an index root, caught up.

`LiveSource.current()` is called before each query. It polls the log's last seq (about 15 us;
at most every `max_age` seconds) and applies what it has not seen, so every process sees every
write that returned before the query began. Every `check_every` seconds it also reads
``CURRENT``: after a compaction it loads the new version and a new `LiveIndex` on it. Until then
the old snapshot with the applied changes answers exactly the same, so the check can be lazy; a
process that fell behind a compaction's truncation gets `DeltaTruncatedError` from the log and
reloads at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from index.delta import DeltaLog, DeltaTruncatedError
from index.snapshot import Snapshot, load_snapshot, resolve_version
from rankers.live import LiveIndex

__all__ = ["LiveSource"]


class LiveSource:
    def __init__(
        self,
        root: Path,
        log: DeltaLog | None = None,
        *,
        max_age: float = 0.0,
        check_every: float = 0.05,
        load: Callable[[Path], Snapshot] = load_snapshot,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.root = Path(root)
        self.log = log or DeltaLog.open(self.root)
        self.max_age = max_age
        self.check_every = check_every
        self._load = load
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._live = LiveIndex.open(snapshot or load(self.root), self.log)

    def stale(self) -> bool:
        """Whether `current` has work to do (a new version to load, or changes to apply):
        about 15 us, so a caller can run `current` on a thread only when it must."""
        live = self._live
        due = time.monotonic() - self._checked >= self.check_every
        if due and resolve_version(self.root).name != live.snapshot.version:
            return True
        return self.log.last_seq() > live.seq

    def current(self) -> LiveIndex:
        """The live index, with every change logged so far applied. Compare its `snapshot`
        with the one your rankers were built on to know when to rebuild them."""
        live = self._live
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            self._checked = now
            if resolve_version(self.root).name != live.snapshot.version:
                live = self._reload(live)
        try:
            live.refresh(self.log, self.max_age)
        except DeltaTruncatedError:
            live = self._reload(live)
        return live

    def _reload(self, seen: LiveIndex) -> LiveIndex:
        with self._lock:
            if self._live is seen:  # else another thread reloaded meanwhile
                self._live = LiveIndex.open(self._load(self.root), self.log)
            return self._live
