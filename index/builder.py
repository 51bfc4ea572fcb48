"""Builds the keyword part of a snapshot: CSR postings with BM25 impacts and the vocabularies.

Documents arrive in chunks already analyzed (`index.analysis_pool`), their words numbered by the
analyzer that counted them; here words get global numbers. Postings are merged without a global
sort: a chunk's postings come in runs, one per term, each ordered by document, so every run is
copied straight to its place in the CSR arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.chunk import AnalyzedChunk
from index.core.bm25 import BM25Params, idf, impacts
from index.core.types import I64

try:
    from index._wordcount import place as _native_place
except ImportError:  # not compiled: numpy places the postings, with the same result
    _native_place = None  # type: ignore[assignment]

__all__ = ["KeywordBuilder", "KeywordStats"]


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


class KeywordBuilder:
    """Takes analyzed chunks in document order (`add`), then writes the arrays (`finish`)."""

    def __init__(self, params: BM25Params) -> None:
        self.params = params
        self.n_docs = 0
        self._terms, self._surfaces = _Vocabulary(), _Vocabulary()
        self._surface_term, self._surface_df = _Ints(), _Ints()
        self._numberings: dict[str, _Numbering] = {}
        self._parts: list[_Part] = []
        self._doc_lens: list[npt.NDArray[np.float32]] = []

    def add(self, chunk: AnalyzedChunk, n_docs: int) -> None:
        """The next `n_docs` documents, counted in `chunk`."""
        num = self._numberings.setdefault(chunk.source, _Numbering())
        num.term.extend(self._terms.add(chunk.new_terms))
        new_surfaces = self._surfaces.add(chunk.new_surfaces)
        num.surface.extend(new_surfaces)
        self._surface_term.put(new_surfaces, num.term.view[chunk.new_surface_term])
        self._surface_df.add(num.surface.view[chunk.surfaces], chunk.surface_df)
        doc = chunk.post_doc + np.int32(self.n_docs)
        self._parts.append(_Part(num.term.view[chunk.run_term], chunk.run_len, doc, chunk.post_tf))
        self._doc_lens.append(chunk.doc_len)
        self.n_docs += n_docs

    def finish(
        self, folder: Path, threads: int = 2, on_saved: Callable[[Path], None] | None = None
    ) -> KeywordStats:
        """Writes `folder/keyword/*.npy` and `folder/vocab/*.npy`; `on_saved` is told as soon as
        each of the two large postings files is written (to checksum and sync it meanwhile)."""
        parts, n_docs = self._parts, self.n_docs
        all_df = np.zeros(len(self._terms.ids), dtype=np.int64)
        for part in parts:
            all_df[part.run_term] += part.run_len  # a term has one run per chunk
        term_words, term_rank = self._terms.sorted_order(all_df > 0)
        n_terms = len(term_words)
        df = np.zeros(n_terms, dtype=np.int64)
        df[term_rank[all_df > 0]] = all_df[all_df > 0]
        for part in parts:
            part.run_term = term_rank[part.run_term]
        doc_len = np.concatenate(self._doc_lens) if parts else np.zeros(0, dtype=np.float32)
        avg_len = float(doc_len.mean()) if n_docs else 0.0
        ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=ptr[1:])
        n_postings = int(ptr[-1])

        kw = folder / "keyword"
        kw.mkdir(parents=True, exist_ok=True)
        # In memory, then written out: scattering into a file mapping costs a file-system page
        # fault per page, and the file is synced later anyway.
        post_doc = np.empty(n_postings, dtype=np.int32)
        post_imp = np.empty(n_postings, dtype=np.float32)
        term_idf = idf(df, max(n_docs, 1))
        # Each run goes after the runs of the same term from earlier chunks.
        cursor = ptr[:-1].copy()
        dests = []
        for part in parts:
            dests.append(cursor[part.run_term])
            cursor[part.run_term] += part.run_len
        if n_postings:
            norm = self._doc_norm(doc_len, avg_len)
            place = partial(self._place, post_doc, post_imp, doc_len, norm, avg_len, term_idf)
            with ThreadPoolExecutor(max(1, threads)) as pool:
                list(pool.map(place, parts, dests))  # parts fill disjoint slots
        self._parts = []
        del parts, dests
        np.save(kw / "post_doc.npy", post_doc)
        del post_doc
        if on_saved is not None:
            on_saved(kw / "post_doc.npy")
        max_imp = (
            np.maximum.reduceat(post_imp, ptr[:-1][df > 0])
            if n_postings
            else np.zeros(0, np.float32)
        )
        term_max = np.zeros(n_terms, dtype=np.float32)
        term_max[df > 0] = max_imp
        np.save(kw / "post_imp.npy", post_imp)
        del post_imp
        if on_saved is not None:
            on_saved(kw / "post_imp.npy")

        np.save(kw / "term_ptr.npy", ptr)
        np.save(kw / "term_df.npy", df.astype(np.int32))
        np.save(kw / "term_max.npy", term_max)
        np.save(
            kw / "terms.npy",
            np.asarray(term_words, dtype=str) if term_words else np.zeros(0, "U1"),
        )
        np.save(kw / "doc_len.npy", doc_len.astype(np.float32))

        n_all = len(self._surfaces.ids)
        sdf = self._surface_df.padded(n_all)
        used = sdf > 0
        surf_words, surf_rank = self._surfaces.sorted_order(used)
        vocab_surface_term = np.zeros(len(surf_words), dtype=np.int32)
        vocab_surface_term[surf_rank[used]] = term_rank[self._surface_term.padded(n_all)[used]]
        vocab_surface_df = np.zeros(len(surf_words), dtype=np.int32)
        vocab_surface_df[surf_rank[used]] = sdf[used]
        voc = folder / "vocab"
        voc.mkdir(parents=True, exist_ok=True)
        np.save(
            voc / "surfaces.npy",
            np.asarray(surf_words, dtype=str) if surf_words else np.zeros(0, "U1"),
        )
        np.save(voc / "surface_df.npy", vocab_surface_df)
        np.save(voc / "surface_term.npy", vocab_surface_term)
        return KeywordStats(n_docs, n_terms, len(surf_words), n_postings, avg_len)

    def _doc_norm(
        self, doc_len: npt.NDArray[np.float32], avg_len: float
    ) -> npt.NDArray[np.float32]:
        """The document half of BM25's denominator, per document, exactly as
        `index.core.bm25.impacts` computes it per posting (tests/index/test_builder.py checks)."""
        k1, b = self.params.k1, self.params.b
        return k1 * ((1.0 - b) + b * (doc_len / np.float32(avg_len)))

    def _place(
        self,
        post_doc: npt.NDArray[np.int32],
        post_imp: npt.NDArray[np.float32],
        doc_len: npt.NDArray[np.float32],
        doc_norm: npt.NDArray[np.float32],
        avg_len: float,
        term_idf: npt.NDArray[np.float32],
        part: _Part,
        dest: I64,
    ) -> None:
        """Copy one part's runs to their slots, with their impacts."""
        k1, b = self.params.k1, self.params.b
        run_idf = term_idf[part.run_term]
        if _native_place is not None:
            _native_place(
                post_doc, post_imp, dest, part.run_len, run_idf, part.doc, part.tf, doc_norm
            )
            return
        lengths = part.run_len.astype(np.int64)
        first = np.cumsum(lengths) - lengths
        slot = np.repeat(dest - first, lengths) + np.arange(part.doc.size, dtype=np.int64)
        post_doc[slot] = part.doc
        post_imp[slot] = impacts(
            part.tf, doc_len[part.doc], avg_len, np.repeat(run_idf, lengths), k1, b
        )
