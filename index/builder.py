"""Builds the keyword part of a snapshot: CSR postings with BM25 impacts and the vocabularies.

Documents arrive in chunks already analyzed (`index.pipeline`), their words numbered by the
analyzer that counted them; here words get global numbers. Postings are merged without a global
sort: a chunk's postings come in runs, one per term, each ordered by document, so every run is
copied straight to its place in the CSR arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.chunk import AnalyzedChunk
from index.pipeline import Batch
from rankers.bm25 import BM25Params, idf, impacts

__all__ = ["KeywordStats", "build_keyword_index"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KeywordStats:
    n_docs: int
    n_terms: int
    n_surfaces: int
    n_postings: int
    avg_doc_len: float


class _Ints:
    """A growable int64 array."""

    def __init__(self) -> None:
        self._data = np.zeros(1024, dtype=np.int64)
        self.size = 0

    def _reserve(self, size: int) -> None:
        if size > self._data.size:
            grown = np.zeros(max(size, 2 * self._data.size), dtype=np.int64)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self.size = max(self.size, size)

    def extend(self, values: I64) -> None:
        start = self.size
        self._reserve(start + values.size)
        self._data[start : self.size] = values

    def put(self, at: I64, values: npt.NDArray[np.integer]) -> None:
        if at.size:
            self._reserve(int(at.max()) + 1)
        self._data[at] = values

    def add(self, at: I64, values: npt.NDArray[np.integer]) -> None:
        """Add at distinct positions."""
        if at.size:
            self._reserve(int(at.max()) + 1)
        self._data[at] += values

    @property
    def view(self) -> I64:
        return self._data[: self.size]

    def padded(self, size: int) -> I64:
        """The first `size` values, zeros past the end."""
        self._reserve(size)
        return self._data[:size]


class _Vocabulary:
    """Global numbers for strings, in order of first appearance."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, words: Sequence[str]) -> I64:
        ids = self.ids
        new = dict.fromkeys(w for w in words if w not in ids)
        ids.update(zip(new, range(len(ids), len(ids) + len(new)), strict=True))
        return np.fromiter(map(ids.__getitem__, words), dtype=np.int64, count=len(words))

    def sorted_order(self, used: npt.NDArray[np.bool_]) -> tuple[list[str], I64]:
        """The used words in code-point order, and the new position of each old number (-1 for
        a word not used: one met only in documents dropped as duplicates)."""
        words = list(self.ids)
        kept = np.flatnonzero(used[: len(words)]).tolist()
        order = sorted(kept, key=words.__getitem__)
        rank = np.full(len(words), -1, dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int64)
        return [words[i] for i in order], rank


@dataclass
class _Numbering:
    """Global numbers of the words of one analyzer, by the analyzer's numbers."""

    term: _Ints = field(default_factory=_Ints)
    surface: _Ints = field(default_factory=_Ints)


@dataclass
class _Part:
    """One chunk's postings: runs of global term numbers, documents numbered globally."""

    run_term: I64
    run_len: npt.NDArray[np.int32]
    doc: npt.NDArray[np.int32]
    tf: npt.NDArray[np.float32]


def build_keyword_index(
    batches: Iterable[tuple[Batch, AnalyzedChunk]],
    folder: Path,
    *,
    params: BM25Params,
    on_batch: Callable[[Batch], None] | None = None,
) -> KeywordStats:
    """Writes `folder/keyword/*.npy` and `folder/vocab/*.npy` from analyzed batches (see
    `index.pipeline.analyzed_batches`); `on_batch` sees each batch (the document store is
    filled through it)."""
    terms, surfaces = _Vocabulary(), _Vocabulary()
    surface_term, surface_df = _Ints(), _Ints()
    numberings: dict[str, _Numbering] = {}
    parts: list[_Part] = []
    doc_lens: list[npt.NDArray[np.float32]] = []
    n_docs = 0
    for batch, chunk in batches:
        num = numberings.setdefault(chunk.source, _Numbering())
        num.term.extend(terms.add(chunk.new_terms))
        new_surfaces = surfaces.add(chunk.new_surfaces)
        num.surface.extend(new_surfaces)
        surface_term.put(new_surfaces, num.term.view[chunk.new_surface_term])
        surface_df.add(num.surface.view[chunk.surfaces], chunk.surface_df)
        doc = chunk.post_doc + np.int32(n_docs)
        parts.append(_Part(num.term.view[chunk.run_term], chunk.run_len, doc, chunk.post_tf))
        doc_lens.append(chunk.doc_len)
        n_docs += len(batch)
        if on_batch is not None:
            on_batch(batch)

    all_df = np.zeros(len(terms.ids), dtype=np.int64)
    for part in parts:
        all_df[part.run_term] += part.run_len  # a term has one run per chunk
    term_words, term_rank = terms.sorted_order(all_df > 0)
    n_terms = len(term_words)
    df = np.zeros(n_terms, dtype=np.int64)
    df[term_rank[all_df > 0]] = all_df[all_df > 0]
    for part in parts:
        part.run_term = term_rank[part.run_term]
    doc_len = np.concatenate(doc_lens) if doc_lens else np.zeros(0, dtype=np.float32)
    avg_len = float(doc_len.mean()) if n_docs else 0.0
    ptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=ptr[1:])
    n_postings = int(ptr[-1])

    kw = folder / "keyword"
    kw.mkdir(parents=True, exist_ok=True)
    post_doc = np.lib.format.open_memmap(kw / "post_doc.npy", "w+", np.int32, (n_postings,))
    post_imp = np.lib.format.open_memmap(kw / "post_imp.npy", "w+", np.float32, (n_postings,))
    term_idf = idf(df, max(n_docs, 1))
    cursor = ptr[:-1].copy()
    for part in parts:
        # Each run goes after the runs of the same term from earlier chunks.
        lengths = part.run_len.astype(np.int64)
        dest = cursor[part.run_term]
        cursor[part.run_term] += lengths
        first = np.cumsum(lengths) - lengths
        slot = np.repeat(dest - first, lengths) + np.arange(part.doc.size, dtype=np.int64)
        post_doc[slot] = part.doc
        post_imp[slot] = impacts(
            part.tf,
            doc_len[part.doc],
            avg_len,
            term_idf[np.repeat(part.run_term, lengths)],
            params.k1,
            params.b,
        )
    post_doc.flush()
    post_imp.flush()
    max_imp = (
        np.maximum.reduceat(post_imp, ptr[:-1][df > 0]) if n_postings else np.zeros(0, np.float32)
    )
    term_max = np.zeros(n_terms, dtype=np.float32)
    term_max[df > 0] = max_imp
    del post_doc, post_imp

    np.save(kw / "term_ptr.npy", ptr)
    np.save(kw / "term_df.npy", df.astype(np.int32))
    np.save(kw / "term_max.npy", term_max)
    np.save(
        kw / "terms.npy", np.asarray(term_words, dtype=str) if term_words else np.zeros(0, "U1")
    )
    np.save(kw / "doc_len.npy", doc_len.astype(np.float32))

    n_all = len(surfaces.ids)
    sdf = surface_df.padded(n_all)
    used = sdf > 0
    surf_words, surf_rank = surfaces.sorted_order(used)
    vocab_surface_term = np.zeros(len(surf_words), dtype=np.int32)
    vocab_surface_term[surf_rank[used]] = term_rank[surface_term.padded(n_all)[used]]
    vocab_surface_df = np.zeros(len(surf_words), dtype=np.int32)
    vocab_surface_df[surf_rank[used]] = sdf[used]
    voc = folder / "vocab"
    voc.mkdir(parents=True, exist_ok=True)
    np.save(
        voc / "surfaces.npy", np.asarray(surf_words, dtype=str) if surf_words else np.zeros(0, "U1")
    )
    np.save(voc / "surface_df.npy", vocab_surface_df)
    np.save(voc / "surface_term.npy", vocab_surface_term)
    return KeywordStats(n_docs, n_terms, len(surf_words), n_postings, avg_len)
