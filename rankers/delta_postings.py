"""The postings of the documents written since the snapshot, as pure functions over arrays.

They live in blocks, like Lucene's segments inside one: each batch of documents a process
applies becomes one small CSR block (terms sorted, each term's postings by ascending slot), and
blocks of similar size are merged, so a query looks at O(log n) of them. A slot is a written
document's row; a replaced or deleted document keeps its slot and postings until a merge, and
an `alive` mask hides it. How they are scored: :mod:`rankers.delta_segment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from index.core.bm25 import impacts, top_k
from index.core.types import F32, F64, I64, B

__all__ = [
    "PostingsBlock",
    "add_segment",
    "bm25_delta",
    "merge_all",
    "merge_segments",
    "merge_top_k",
    "segment",
    "term_postings",
    "top_slots",
]


class PostingsBlock(NamedTuple):
    terms: I64
    """Sorted distinct term numbers."""
    ptr: I64
    """CSR offsets: the postings of terms[i] are rows ptr[i]:ptr[i + 1]."""
    slots: I64
    tf: F32

    @property
    def size(self) -> int:
        return int(self.slots.size)


def segment(term: I64, slot: I64, tf: F32) -> PostingsBlock:
    """A segment from postings in any order (stable: slots stay ascending within a term when
    they come so)."""
    order = np.argsort(term, kind="stable")
    term, slot, tf = term[order], slot[order], tf[order]
    starts = np.flatnonzero(np.diff(term, prepend=-1)) if term.size else np.empty(0, np.int64)
    ptr = np.append(starts, term.size).astype(np.int64)
    return PostingsBlock(
        term[starts].astype(np.int64), ptr, slot.astype(np.int64), tf.astype(np.float32)
    )


def _expand(seg: PostingsBlock) -> I64:
    return np.repeat(seg.terms, np.diff(seg.ptr))


def merge_segments(old: PostingsBlock, new: PostingsBlock, alive: B) -> PostingsBlock:
    """One segment of both (`new` holds the later slots), without the postings of dead slots."""
    term = np.concatenate([_expand(old), _expand(new)])
    slot = np.concatenate([old.slots, new.slots])
    tf = np.concatenate([old.tf, new.tf])
    keep = alive[slot]
    return segment(term[keep], slot[keep], tf[keep])


def add_segment(
    segments: tuple[PostingsBlock, ...], new: PostingsBlock, alive: B, limit: int | None = None
) -> tuple[PostingsBlock, ...]:
    """Append a segment, then merge the last two while the newer is at least half the older:
    sizes then fall geometrically, so there are O(log n) segments and each posting is copied
    O(log n) times. With `limit`, no merge makes a segment of more postings than that (the
    caller merges those elsewhere: they are what makes a merge slow)."""
    out = [*segments, new]
    while len(out) >= 2 and 2 * out[-1].size >= out[-2].size:
        if limit is not None and out[-1].size + out[-2].size > limit:
            break
        newer = out.pop()
        out[-1] = merge_segments(out[-1], newer, alive)
    return tuple(out)


def merge_all(segments: Sequence[PostingsBlock], alive: B) -> PostingsBlock:
    """One segment of all (oldest first), without the postings of dead slots."""
    term = np.concatenate([_expand(s) for s in segments])
    slot = np.concatenate([s.slots for s in segments])
    tf = np.concatenate([s.tf for s in segments])
    keep = alive[slot]
    return segment(term[keep], slot[keep], tf[keep])


def term_postings(segments: Sequence[PostingsBlock], term: int) -> tuple[I64, F32]:
    """Slots and term frequencies of one term over all segments."""
    slots: list[I64] = []
    tfs: list[F32] = []
    for seg in segments:
        i = int(np.searchsorted(seg.terms, term))
        if i < seg.terms.size and seg.terms[i] == term:
            lo, hi = int(seg.ptr[i]), int(seg.ptr[i + 1])
            slots.append(seg.slots[lo:hi])
            tfs.append(seg.tf[lo:hi])
    if not slots:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(slots), np.concatenate(tfs)


def bm25_delta(
    postings: Sequence[tuple[I64, F32]],
    weights: Sequence[float],
    term_idf: F32,
    alive: B,
    doc_len: F32,
    avg_len: float,
    k1: float,
    b: float,
) -> F64:
    """BM25 of every delta slot for weighted query terms.

    `postings[i]` are term i's (slots, tf) in the delta; dead slots are skipped. `term_idf`
    and `avg_len` describe the whole live corpus (every segment)."""
    n_terms = len(postings)
    if n_terms == 0:
        return np.zeros(alive.size, dtype=np.float64)
    # All terms at once: one gather, one impact computation and one bincount.
    lengths = [slots.size for slots, _ in postings]
    slots = np.concatenate([p[0] for p in postings])
    tf = np.concatenate([p[1] for p in postings])
    term = np.repeat(np.arange(n_terms), lengths)
    live = alive[slots]
    slots, tf, term = slots[live], tf[live], term[live]
    imp = impacts(tf, doc_len[slots], avg_len, term_idf[term], k1, b)
    imp *= np.asarray(weights, dtype=np.float32)[term]
    return np.asarray(np.bincount(slots, imp, minlength=alive.size), dtype=np.float64)


def merge_top_k(docs_a: I64, scores_a: F32, docs_b: I64, scores_b: F32, k: int) -> tuple[I64, F32]:
    """The k best of two ranked lists of distinct documents, by score; equal scores keep the
    lower document number first (snapshot rows before delta slots, numbered after them)."""
    docs = np.concatenate([docs_a, docs_b]).astype(np.int64)
    scores = np.concatenate([scores_a, scores_b]).astype(np.float32)
    order = np.lexsort((docs, -scores))[: max(k, 0)]
    return docs[order], scores[order]


def top_slots(scores: F64, k: int) -> tuple[I64, F32]:
    """The k best slots with a positive score, best first."""
    best = top_k(scores, k)
    chosen = scores[best]
    keep = chosen > 0
    return best[keep], chosen[keep].astype(np.float32)
