"""Builds the keyword part of a snapshot: CSR postings with BM25 impacts and the vocabularies.

Documents arrive in chunks, are analyzed in worker processes (`index.chunk`), and their postings
are merged without a global sort: each chunk's postings are already grouped by term and ordered
by document, so every posting can be placed straight into its CSR slot.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.analyzer import AnalyzerSettings
from index.chunk import ChunkPostings, analyze_chunk, runs
from index.types import Document
from rankers.bm25 import BM25Params, idf, impacts

__all__ = ["KeywordStats", "build_keyword_index", "chunked"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KeywordStats:
    n_docs: int
    n_terms: int
    n_surfaces: int
    n_postings: int
    avg_doc_len: float


def chunked(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Vocabulary:
    """Grows global ids for strings met in chunks; keeps per-id counts."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.counts = np.zeros(1024, dtype=np.int64)

    def map(self, words: Sequence[str], counts: npt.NDArray[Any] | None = None) -> I64:
        setdefault = self.ids.setdefault
        mapped = np.fromiter(
            (setdefault(w, len(self.ids)) for w in words), dtype=np.int64, count=len(words)
        )
        if len(self.ids) > self.counts.size:
            grown = np.zeros(max(len(self.ids), 2 * self.counts.size), dtype=np.int64)
            grown[: self.counts.size] = self.counts
            self.counts = grown
        if counts is not None:
            np.add.at(self.counts, mapped, counts)
        return mapped

    def sorted_order(self) -> tuple[list[str], I64]:
        """Words in code-point order, and the new position of each old id."""
        words = list(self.ids)
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words), dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(words), dtype=np.int64)
        return [words[i] for i in order], rank


@dataclass
class _Merged:
    term: npt.NDArray[np.int32]
    doc: npt.NDArray[np.int32]
    tf: npt.NDArray[np.float32]


def _analyzed(
    chunks: Iterable[list[Document]], settings: AnalyzerSettings, title_weight: float, workers: int
) -> Iterator[tuple[list[Document], ChunkPostings]]:
    """Chunks with their postings, in input order, analyzed by `workers` processes."""
    if workers <= 1:
        for chunk in chunks:
            titles = [d.title for d in chunk]
            bodies = [d.text for d in chunk]
            yield chunk, analyze_chunk(titles, bodies, settings, title_weight)
        return
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[list[Document], cf.Future[ChunkPostings]]] = deque()
        for chunk in chunks:
            titles = [d.title for d in chunk]
            bodies = [d.text for d in chunk]
            pending.append(
                (chunk, pool.submit(analyze_chunk, titles, bodies, settings, title_weight))
            )
            if len(pending) > workers:
                done, fut = pending.popleft()
                yield done, fut.result()
        while pending:
            done, fut = pending.popleft()
            yield done, fut.result()


def build_keyword_index(
    docs: Iterable[Document],
    folder: Path,
    *,
    settings: AnalyzerSettings,
    params: BM25Params,
    workers: int = 2,
    chunk_size: int = 20_000,
    on_chunk: Callable[[list[Document]], None] | None = None,
) -> KeywordStats:
    """Writes `folder/keyword/*.npy` and `folder/vocab/*.npy`; `on_chunk` sees each chunk (the
    document store is filled through it) after its postings are computed."""
    terms = _Vocabulary()
    surfaces = _Vocabulary()
    surface_term_parts: list[tuple[I64, I64]] = []
    parts: list[_Merged] = []
    doc_lens: list[npt.NDArray[np.float32]] = []
    n_docs = 0
    for chunk, post in _analyzed(chunked(docs, chunk_size), settings, params.title_weight, workers):
        term_map = terms.map(post.terms)
        surf_map = surfaces.map(post.surfaces, post.surface_df)
        surface_term_parts.append((surf_map, term_map[post.surface_term]))
        parts.append(
            _Merged(
                term=term_map[post.post_term].astype(np.int32),
                doc=(post.post_doc + n_docs).astype(np.int32),
                tf=post.post_tf,
            )
        )
        doc_lens.append(post.doc_len)
        n_docs += len(chunk)
        if on_chunk is not None:
            on_chunk(chunk)

    term_words, term_rank = terms.sorted_order()
    n_terms = len(term_words)
    for part in parts:
        part.term = term_rank[part.term].astype(np.int32)
    doc_len = np.concatenate(doc_lens) if doc_lens else np.zeros(0, dtype=np.float32)
    avg_len = float(doc_len.mean()) if n_docs else 0.0
    df = np.zeros(n_terms, dtype=np.int64)
    for part in parts:
        df += np.bincount(part.term, minlength=n_terms)
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
        # A chunk's postings come in runs, one per term, each ordered by document. The global
        # renumbering only reorders whole runs, so permute runs instead of sorting postings.
        starts, lengths = runs(part.term.astype(np.int64))
        order = np.argsort(part.term[starts])
        lengths = lengths[order]
        run_first = np.cumsum(lengths) - lengths
        within = np.arange(part.term.size, dtype=np.int64) - np.repeat(run_first, lengths)
        gather = np.repeat(starts[order], lengths) + within
        t = part.term[gather].astype(np.int64)
        d = part.doc[gather]
        slot = cursor[t] + within
        post_doc[slot] = d
        post_imp[slot] = impacts(
            part.tf[gather], doc_len[d], avg_len, term_idf[t], params.k1, params.b
        )
        cursor[part.term[starts[order]]] += lengths
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

    surf_words, surf_rank = surfaces.sorted_order()
    surface_term = np.zeros(len(surf_words), dtype=np.int32)
    for surf_map, term_ids in surface_term_parts:
        surface_term[surf_rank[surf_map]] = term_rank[term_ids]
    surface_df = np.zeros(len(surf_words), dtype=np.int32)
    surface_df[surf_rank] = surfaces.counts[: len(surf_words)]
    voc = folder / "vocab"
    voc.mkdir(parents=True, exist_ok=True)
    np.save(
        voc / "surfaces.npy", np.asarray(surf_words, dtype=str) if surf_words else np.zeros(0, "U1")
    )
    np.save(voc / "surface_df.npy", surface_df)
    np.save(voc / "surface_term.npy", surface_term)
    return KeywordStats(n_docs, n_terms, len(surf_words), n_postings, avg_len)
