"""Index-side work of one index root: embedding written documents, and compaction.

`IndexWork.run` is the body of the ``progsearch.index_work`` task (a Celery worker, or the
server's embedded pool). It is idempotent and takes no arguments: it embeds every document
still waiting for vectors, then compacts the delta into a new snapshot when the log has grown
past `compact_changes`. Any run catches up with everything written before it started, so a
lost or duplicated message costs nothing, and a worker killed in the middle leaves work the
next run finishes (`DeltaLog.put_vectors` stores each (id, content hash) at most once).

Writes faster than embedding never hold compaction back: a pass embeds for at most
`PASS_SECONDS`, then compacts when due, folding every document embedded so far (compaction
stops at the first document still waiting, `index.compact.fold`), and goes on. The delta then
holds the compaction threshold plus the documents waiting for vectors, and the servers refuse
writes with 429 while more than `PROGSEARCH_MAX_PENDING` of those wait (`app.documents`), so it
stays bounded however long writes outpace embedding.

Each batch of vectors stored is told to `embedded(seq)` (the log's last seq then): the server
passes its follow hub's announcement there, a worker a Redis publish on the same channel, so
follows shown by a semantic phase re-rank the moment a document has its vectors.

One pass runs at a time per root, across processes (``ROOT/.embed.lock``). A run that finds
the lock taken returns at once; the holder looks at the log again after releasing it, so a
document written meanwhile is never left behind.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from index.compact import CompactionResult, compact
from index.delta import DeltaLog
from index.filelock import file_lock
from index.ingest import embed_pending, load_document_encoder
from index.manifest import Manifest
from index.snapshot import MANIFEST, read_manifest, resolve_version

if TYPE_CHECKING:
    from index.core.encoder import Encoder

__all__ = ["EMBED_BATCH", "IndexWork", "WorkReport", "prune_versions"]

log = logging.getLogger(__name__)

EMBED_BATCH = 16
"""Documents embedded (and stored) per step: small, so a new document waits little behind
others and a killed worker loses little work."""
PASS_SECONDS = 10.0
"""Embedding time after which a run looks whether compaction is due, before going on."""
LOCK_FILE = ".embed.lock"
KEEP_SECONDS = 300.0
"""Old snapshot versions are kept at least this long after they were written."""


@dataclass(frozen=True)
class WorkReport:
    embedded: int
    compacted: CompactionResult | None


class IndexWork:
    def __init__(self, root: Path, compact_changes: int = 50_000,
                 log_: DeltaLog | None = None,
                 embedded: Callable[[int], None] | None = None) -> None:
        self.root = Path(root)
        self.embedded = embedded
        self.log = log_ or DeltaLog.open(self.root)
        self.compact_changes = compact_changes
        self._encoder: Encoder | None = None
        self._local = threading.Lock()

    def _manifest(self) -> Manifest:
        return read_manifest(resolve_version(self.root))

    def _document_encoder(self, manifest: Manifest) -> Encoder:
        wanted = manifest.encoder_fingerprint
        if self._encoder is None or self._encoder.fingerprint != wanted:
            self._encoder = load_document_encoder(manifest)
        return self._encoder

    def pending(self) -> bool:
        return bool(self.log.pending_embeddings(1))

    def run(self) -> WorkReport:
        """Embed what is waiting, compacting whenever the delta is due; see the module doc."""
        embedded = 0
        idle = 0
        compacted: CompactionResult | None = None
        with self._local:
            manifest = self._manifest()
            while manifest.has_vectors:  # a keyword-only index embeds nothing
                with file_lock(self.root / LOCK_FILE, wait=False) as held:
                    if not held:
                        break
                    stored, finished = self._embed_all(manifest)
                embedded += stored
                if not finished:  # writes outpace embedding: fold what is embedded, go on
                    done = self._compact_if_due(manifest)
                    if done is not None:
                        compacted, manifest = done, self._manifest()
                    continue
                # Look again after releasing the lock: a run that found it taken meanwhile
                # left its documents to this one. Two passes in a row that store nothing
                # end it, whatever the log says.
                idle = 0 if stored else idle + 1
                if idle > 1 or not self.pending():
                    break
            compacted = self._compact_if_due(manifest) or compacted
        if embedded or compacted:
            log.info("index work: %d documents embedded%s", embedded,
                     f", compacted into {compacted.version}" if compacted else "")
        return WorkReport(embedded, compacted)

    def _embed_all(self, manifest: Manifest, budget: float = PASS_SECONDS) -> tuple[int, bool]:
        """Embed until nothing waits (True) or `budget` seconds have passed (False)."""
        encoder = self._document_encoder(manifest)
        options = manifest.passage_options
        total = 0
        deadline = time.monotonic() + budget
        while True:
            stored = embed_pending(self.log, encoder, options, limit=EMBED_BATCH)
            if not stored:
                return total, True
            total += stored
            self._tell(self.log.last_seq())
            if time.monotonic() >= deadline:
                return total, False

    def _tell(self, seq: int) -> None:
        if self.embedded is None:
            return
        try:
            self.embedded(seq)
        except Exception:  # an announcement is a hint: followers poll the log anyway
            log.warning("announcing stored vectors failed", exc_info=True)

    def _compact_if_due(self, manifest: Manifest) -> CompactionResult | None:
        if self.compact_changes <= 0:
            return None
        base = manifest.delta_seq
        if self.log.last_seq() - base < self.compact_changes:
            return None
        result = compact(self.root, self.log)
        if result is not None:
            prune_versions(self.root)
        return result


def prune_versions(root: Path, keep: int = 2, grace: float = KEEP_SECONDS) -> list[str]:
    """Remove old version folders: all but the newest `keep` (the current one among them),
    and only those unchanged for `grace` seconds, so a process still reading the previous
    version has long moved to the current one. Returns the names removed."""
    current = resolve_version(root).name
    versions = sorted(
        (p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()),
        key=lambda p: p.name,
    )
    removed = []
    now = time.time()
    for folder in versions[:-keep] if keep > 0 else versions:
        if folder.name == current or now - folder.stat().st_mtime < grace:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed
