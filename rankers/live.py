"""The live index a query process keeps: its snapshot plus the delta log, applied in memory.

`LiveIndex.refresh` reads the changes after the last one it applied (`DeltaLog.changes_since`)
and applies them incrementally: the new documents are analyzed into a postings segment (see
:mod:`rankers.delta_postings`), the snapshot rows of replaced or deleted ids are hidden by a
tombstone mask, the document frequencies of the hidden rows are subtracted, and the vectors of
embedded documents are attached. Each refresh publishes an immutable `DeltaView`; a query takes
the current view once and reads nothing else, so a refresh on another thread never shows it
half a change. Arrays that change are replaced, never written in place, except rows of
append-only buffers that no published view can see yet.

Delta documents are numbered after the snapshot's rows: slot i is document `n_snapshot + i`,
so results of both kinds live in one id space and the existing rankers' arrays need no change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from index.analyzer import Analyzer
from index.chunk import AnalyzedChunk, ChunkAnalyzer
from index.columns import Column, FieldSpec, build_columns
from index.core.types import F32, I64, B, Document
from index.delta import Change, DeltaLog, StoredVectors
from index.passages import layout_passages, pair_norms
from index.snapshot import Snapshot
from rankers.delta_postings import PostingsBlock, add_segment, merge_all, segment

__all__ = ["DeltaView", "LiveIndex", "SlotPassages"]

SYNC_MERGE_POSTINGS = 1 << 18
"""Merges up to this size run while applying changes (a few milliseconds); larger ones run on
a background thread, so a query that catches up never waits for one."""
MAX_SEGMENTS = 8
"""More segments than this start a background merge of them all."""


@dataclass(frozen=True)
class SlotPassages:
    """The passages of one embedded delta document, laid out as `index.passages` does."""

    vectors: F32
    kinds: npt.NDArray[np.uint8]
    pair_norm: F32
    spans: I64
    blob: bytes


@dataclass(frozen=True)
class DeltaView:
    """An immutable picture of the delta, as one query reads it."""

    seq: int
    version: str
    n_snapshot: int
    n_slots: int
    blocks: tuple[PostingsBlock, ...]
    alive: B
    """Slots that are current documents (not replaced or deleted since)."""
    doc_len: F32
    tomb: B | None
    """Snapshot rows hidden by a later upsert or delete of their id (None: none are)."""
    n_tomb: int
    n_docs: int
    """Documents of the live corpus: snapshot rows not hidden, plus live slots."""
    total_len: float
    tomb_df: Mapping[str, int]
    """Per index term, how many hidden snapshot rows contain it."""
    embedded: B
    """Live slots that have their vectors."""
    vectors: F32 | None
    passages: Sequence[SlotPassages | None]
    docs: Sequence[Document]
    df: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    """Per delta term id, how many live slots contain it (kept as changes apply, so a query's
    statistics never walk the postings; ids past its end are terms no slot of this view has)."""
    _columns: dict[tuple[FieldSpec, ...], Mapping[str, Column]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def columns(self, specs: tuple[FieldSpec, ...]) -> Mapping[str, Column]:
        """The structured fields of the slots as columns (dead slots included), built once
        per view: a view is immutable, and replaced by the next write."""
        found = self._columns.get(specs)
        if found is None:
            rows = (self.docs[slot].fields for slot in range(self.n_slots))
            found = build_columns(specs, rows)[1]
            self._columns[specs] = found
        return found

    @property
    def empty(self) -> bool:
        """Nothing written since the snapshot that changes an answer."""
        return self.n_slots == 0 and self.n_tomb == 0

    @property
    def n_waiting(self) -> int:
        """Current written documents still waiting for their vectors."""
        return int(np.count_nonzero(self.alive)) - int(np.count_nonzero(self.embedded))

    @property
    def avg_len(self) -> float:
        return self.total_len / self.n_docs if self.n_docs else 0.0

    def live(self, docs: I64) -> B:
        """Which documents (snapshot rows or `n_snapshot + slot`) are current in this view."""
        out = np.zeros(docs.size, dtype=bool)
        snap = docs < self.n_snapshot
        rows = docs[snap]
        out[snap] = True if self.tomb is None else ~self.tomb[rows]
        slots = docs[~snap] - self.n_snapshot
        ok = slots < self.n_slots
        out[np.flatnonzero(~snap)[ok]] = self.alive[slots[ok]]
        return out


def _grow(buffer: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """`buffer`, or a copy with room for at least `size` rows (published views keep theirs)."""
    if size <= buffer.shape[0]:
        return buffer
    grown = np.zeros((max(size, 2 * buffer.shape[0], 64), *buffer.shape[1:]), buffer.dtype)
    grown[: buffer.shape[0]] = buffer
    return grown


def _terms_by_slot(term: I64, slot: I64, n: int) -> list[I64]:
    """The distinct terms of each of `n` slots, from postings (one per term and slot)."""
    order = np.argsort(slot, kind="stable")
    bounds = np.cumsum(np.bincount(slot, minlength=n))[:-1]
    return np.split(term[order], bounds)


def _counted(df: I64, n_terms: int, born: Sequence[I64], died: Sequence[I64]) -> I64:
    """`df` (a published view's, so copied) grown to `n_terms`, with the terms of the slots
    born counted in and those of the slots that died counted out."""
    if not born and not died:
        return df
    out = np.zeros(n_terms, np.int64)
    out[: df.size] = df
    if born:
        out += np.bincount(np.concatenate(born), minlength=n_terms)
    if died:
        out -= np.bincount(np.concatenate(died), minlength=n_terms)
    return out


class LiveIndex:
    """The snapshot plus the applied delta. `refresh` and `apply` serialize on a lock; `view`
    never waits."""

    def __init__(
        self,
        snapshot: Snapshot,
        analyzer: Analyzer | None = None,
        *,
        base_seq: int | None = None,
        sync_merge: int = SYNC_MERGE_POSTINGS,
    ) -> None:
        self.snapshot = snapshot
        self.analyzer = analyzer or Analyzer(snapshot.analyzer)
        self.params = snapshot.bm25
        self.base_seq = snapshot.manifest.delta_seq if base_seq is None else base_seq
        self.encoder: str = snapshot.manifest.encoder_fingerprint
        """Fingerprint of the snapshot's encoder; delta vectors by another are ignored."""
        self.passage_options = snapshot.manifest.passage_options
        self.terms: list[str] = []
        self.term_ids: dict[str, int] = {}
        self._chunks = ChunkAnalyzer(snapshot.analyzer, self.params.title_weight)
        self._lock = threading.Lock()
        self._polled = 0.0
        self._merging: threading.Thread | None = None
        self._sync_merge = sync_merge
        self._snap_len = float(np.sum(snapshot.arrays["keyword/doc_len.npy"], dtype=np.float64))
        self._slot_of: dict[str, int] = {}
        self._slot_hash: list[str] = []
        self._slot_terms: list[I64] = []
        """Each slot's distinct delta term ids, subtracted from the view's df when it dies."""
        self._snap_row: dict[str, int | None] = {}
        self._docs: list[Document] = []
        self._passages: list[SlotPassages | None] = []
        self._doc_len = np.zeros(0, dtype=np.float32)
        self._vectors: F32 | None = None
        self._live_len = 0.0
        """Sum of the lengths of the live slots; `_hidden_len`, of the hidden snapshot rows."""
        self._hidden_len = 0.0
        n = snapshot.n_docs
        self._view = DeltaView(
            self.base_seq, snapshot.version, n, 0, (), np.zeros(0, bool), self._doc_len, None, 0,
            n, self._snap_len, {}, np.zeros(0, bool), None, self._passages, self._docs,
        )  # fmt: skip

    @classmethod
    def open(cls, snapshot: Snapshot, log: DeltaLog) -> LiveIndex:
        """The snapshot with every change after the one it was compacted through."""
        live = cls(snapshot)
        live.refresh(log)
        return live

    @property
    def seq(self) -> int:
        return self._view.seq

    @property
    def version(self) -> str:
        """`{snapshot version}+{seq}` once anything was logged since the snapshot; cache
        keys and ETags use it, so every write (and every embedding) changes it."""
        return self._view.version

    def view(self) -> DeltaView:
        return self._view

    # -- catching up ---------------------------------------------------------------------
    def refresh(self, log: DeltaLog, max_age: float = 0.0) -> bool:
        """Apply the log's changes after `seq`; whether any were. Polls the log's last seq
        (about 15 us) unless it did so less than `max_age` seconds ago. Raises
        `index.delta.DeltaTruncatedError` when a compaction removed changes this snapshot
        lacks: load the current snapshot and open a new LiveIndex on it."""
        now = time.monotonic()
        if max_age > 0 and now - self._polled < max_age:
            return False
        with self._lock:
            self._polled = now
            last = log.last_seq()
            if last <= self._view.seq:
                return False
            changes = log.changes_since(self._view.seq)
            keys = [(c.id, c.hash) for c in changes if c.op != "delete"]
            vectors = log.get_vectors(keys) if self.encoder and keys else {}
            # Writes may have landed since `last` was read: the view's seq is the last change
            # applied, never less, or the next refresh would apply those again.
            self._apply(changes, vectors, max([last, *(c.seq for c in changes[-1:])]))
            return True

    def apply(
        self,
        changes: Sequence[Change],
        vectors: Mapping[tuple[str, str], StoredVectors] | None = None,
        through: int | None = None,
    ) -> None:
        """Apply changes (in seq order; those at or before `seq` are skipped) and the vectors
        they may need, then publish a new view at seq `through` (default: the last change)."""
        with self._lock:
            last = max([self._view.seq, *(c.seq for c in changes)])
            self._apply(changes, vectors or {}, max(last, through or 0))

    def _apply(
        self,
        changes: Sequence[Change],
        vectors: Mapping[tuple[str, str], StoredVectors],
        through: int,
    ) -> None:
        old = self._view
        first_slot = old.n_slots
        new_docs: list[Document] = []
        dead: list[int] = []
        hide: list[int] = []
        attach: dict[int, StoredVectors] = {}
        for ch in changes:
            if ch.seq <= old.seq:
                continue
            if ch.op == "vectors":
                slot = self._slot_of.get(ch.id)
                found = vectors.get((ch.id, ch.hash))
                if slot is not None and found is not None and self._slot_hash[slot] == ch.hash:
                    attach[slot] = found
                continue
            prior = self._slot_of.pop(ch.id, None)
            if prior is not None:
                dead.append(prior)
            if ch.id not in self._snap_row:
                row = self.snapshot.docs.lookup(ch.id)
                self._snap_row[ch.id] = row
                if row is not None:
                    hide.append(row)
            if ch.op == "upsert" and ch.document is not None:
                slot = first_slot + len(new_docs)
                new_docs.append(ch.document)
                self._slot_of[ch.id] = slot
                self._slot_hash.append(ch.hash)
                found = vectors.get((ch.id, ch.hash))
                if found is not None:
                    attach[slot] = found
        n_slots = first_slot + len(new_docs)
        alive = np.concatenate([old.alive, np.ones(len(new_docs), dtype=bool)])
        alive[dead] = False
        for slot in dead:
            attach.pop(slot, None)
        segments = old.blocks
        if new_docs:
            chunk = self._analyze([d.title for d in new_docs], [d.text for d in new_docs])
            self._docs.extend(new_docs)
            self._passages.extend([None] * len(new_docs))
            self._doc_len = _grow(self._doc_len, n_slots)
            self._doc_len[first_slot:n_slots] = chunk.doc_len
            self._live_len += float(np.sum(chunk.doc_len, dtype=np.float64))
            term = np.repeat(chunk.run_term.astype(np.int64), chunk.run_len)
            slots = chunk.post_doc.astype(np.int64) + first_slot
            new = segment(term, slots, chunk.post_tf)
            segments = add_segment(segments, new, alive, self._sync_merge)
            self._slot_terms.extend(_terms_by_slot(term, slots - first_slot, len(new_docs)))
        df = _counted(
            old.df,
            len(self.terms),
            self._slot_terms[first_slot:n_slots],
            [self._slot_terms[s] for s in dead],
        )
        self._live_len -= float(np.sum(self._doc_len[dead], dtype=np.float64))
        tomb, tomb_df, n_tomb = old.tomb, old.tomb_df, old.n_tomb
        if hide:
            tomb, tomb_df = self._hide(hide, old)
            n_tomb += len(hide)
            doc_len = self.snapshot.arrays["keyword/doc_len.npy"]
            self._hidden_len += float(np.sum(doc_len[hide], dtype=np.float64))
        embedded = np.concatenate([old.embedded, np.zeros(len(new_docs), dtype=bool)])
        embedded &= alive
        for slot, stored in attach.items():
            if self._attach(slot, stored):
                embedded[slot] = True
        n_docs = self.snapshot.n_docs - n_tomb + int(alive.sum())
        version = self.snapshot.version if through <= self.base_seq else (
            f"{self.snapshot.version}+{through}"
        )  # fmt: skip
        self._view = DeltaView(
            through, version, self.snapshot.n_docs, n_slots, segments, alive,
            self._doc_len[:n_slots], tomb, n_tomb, n_docs,
            self._snap_len - self._hidden_len + self._live_len, tomb_df,
            embedded, self._vectors, self._passages, self._docs, df,
        )  # fmt: skip
        if len(segments) > MAX_SEGMENTS and self._merging is None:
            self._merging = threading.Thread(target=self._merge, name="delta-merge", daemon=True)
            self._merging.start()

    def _merge(self) -> None:
        """Merge the segments of the current view into one, outside the lock, then swap it in
        for them (segments added meanwhile stay after it)."""
        try:
            view = self._view
            merged = merge_all(view.blocks, view.alive)
            with self._lock:
                now = self._view
                n = len(view.blocks)
                if len(now.blocks) >= n and all(
                    a is b for a, b in zip(now.blocks, view.blocks, strict=False)
                ):
                    self._view = replace(now, blocks=(merged, *now.blocks[n:]))
        finally:
            self._merging = None

    def wait_for_merge(self, timeout: float | None = None) -> None:
        """Wait for a background merge (tests, benchmarks, shutdown)."""
        thread = self._merging
        if thread is not None:
            thread.join(timeout)

    def _analyze(self, titles: list[str], texts: list[str]) -> AnalyzedChunk:
        chunk = self._chunks.analyze(titles, texts)
        for term in chunk.new_terms:
            self.term_ids[term] = len(self.terms)
            self.terms.append(term)
        return chunk

    def _hide(self, rows: list[int], old: DeltaView) -> tuple[B, dict[str, int]]:
        tomb = np.zeros(self.snapshot.n_docs, bool) if old.tomb is None else old.tomb.copy()
        tomb[rows] = True
        stored = [d for d in self.snapshot.docs.get_many(rows) if d is not None]
        chunk = self._analyze([d.title for d in stored], [d.text for d in stored])
        tomb_df = dict(old.tomb_df)
        for term, count in zip(chunk.run_term.tolist(), chunk.run_len.tolist(), strict=True):
            word = self.terms[term]
            tomb_df[word] = tomb_df.get(word, 0) + count
        return tomb, tomb_df

    def _attach(self, slot: int, stored: StoredVectors) -> bool:
        """Put a slot's vectors where views can find them; False when they do not fit this
        snapshot (another encoder, or passages laid out differently)."""
        if not self.encoder or stored.encoder != self.encoder:
            return False
        dim = stored.document.size
        if self._vectors is None:
            self._vectors = np.zeros((0, dim), dtype=np.float32)
        if self._vectors.shape[1] != dim:
            return False
        self._vectors = _grow(self._vectors, slot + 1)
        self._vectors[slot] = stored.document
        if self.passage_options is not None:
            doc = self._docs[slot]
            layout = layout_passages([(doc.title, doc.text)], self.passage_options)
            if len(layout.texts) == stored.passages.shape[0]:
                kinds = np.asarray(layout.kinds, dtype=np.uint8)
                ptr = np.asarray(layout.ptr, dtype=np.int64)
                self._passages[slot] = SlotPassages(
                    stored.passages,
                    kinds,
                    pair_norms(stored.passages, kinds, ptr),
                    np.asarray(layout.spans, dtype=np.int64).reshape(-1, 2),
                    bytes(layout.blob),
                )
        return True

    # -- documents -----------------------------------------------------------------------
    def documents(self, docs: Sequence[int]) -> list[Document | None]:
        """Stored documents by number (snapshot rows, then `n_snapshot + slot`)."""
        n = self.snapshot.n_docs
        rows = [int(d) for d in docs if d < n]
        stored = iter(self.snapshot.docs.get_many(rows))
        return [next(stored) if d < n else self._docs[int(d) - n] for d in docs]

    def lookup(self, doc_id: str) -> int | None:
        """The current number of an external id, None when it is deleted or unknown."""
        slot = self._slot_of.get(doc_id)
        if slot is not None:
            return self.snapshot.n_docs + slot
        if doc_id in self._snap_row:  # written since the snapshot, and deleted since
            return None
        return self.snapshot.docs.lookup(doc_id)
