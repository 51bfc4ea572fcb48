"""Analysis of one chunk of documents into postings, as a pure function.

Run in worker processes at index time. Python touches each token once (a dict lookup giving a
raw-word id); splitting, stopwords and stemming run once per distinct word, and counting is done
with numpy sorts, so the cost per token stays small.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.analyzer import Analyzer, AnalyzerSettings

__all__ = ["ChunkPostings", "analyze_chunk", "runs"]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ChunkPostings:
    """Postings of a chunk, with chunk-local term and surface numbers.

    `post_term`, `post_doc` and `post_tf` are sorted by term, then document.
    """

    terms: list[str]
    surfaces: list[str]
    surface_term: I32
    surface_df: I32
    post_term: I32
    post_doc: I32
    post_tf: F32
    doc_len: F32


def runs(sorted_keys: I64) -> tuple[I64, I64]:
    """Start positions and lengths of the runs of equal values in a sorted array."""
    if sorted_keys.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.diff(sorted_keys, prepend=sorted_keys[0] - 1)).astype(np.int64)
    lengths = np.diff(starts, append=sorted_keys.size).astype(np.int64)
    return starts, lengths


def analyze_chunk(
    titles: list[str], bodies: list[str], settings: AnalyzerSettings, title_weight: float
) -> ChunkPostings:
    analyzer = Analyzer(settings)
    n_docs = len(titles)
    raw: defaultdict[str, int] = defaultdict()
    raw.default_factory = raw.__len__
    lookup = raw.__getitem__
    ids: list[int] = []
    field_lens = np.zeros((2, n_docs), dtype=np.int64)
    for f, texts in enumerate((titles, bodies)):
        lens = field_lens[f]
        for i, text in enumerate(texts):
            words = analyzer.words(text)
            lens[i] = len(words)
            ids.extend(map(lookup, words))

    # Per distinct raw word: its surface number (-1 for a word not indexed), then per distinct
    # surface: its stem.
    surf_ids: dict[str, int] = {}
    keep = analyzer.keep
    raw_surface = np.fromiter(
        (surf_ids.setdefault(w, len(surf_ids)) if keep(w) else -1 for w in raw),
        dtype=np.int64,
        count=len(raw),
    )
    surfaces = list(surf_ids)
    stems = analyzer.stem_many(surfaces)
    term_ids: dict[str, int] = {}
    surface_term = np.fromiter(
        (term_ids.setdefault(t, len(term_ids)) for t in stems), dtype=np.int32, count=len(stems)
    )

    token_surface = raw_surface[np.asarray(ids, dtype=np.int64)]
    token_doc = np.concatenate(
        [np.repeat(np.arange(n_docs, dtype=np.int64), field_lens[f]) for f in (0, 1)]
    )
    token_field = np.repeat(np.array([1, 0], dtype=np.int64), field_lens.sum(axis=1))
    indexed = token_surface >= 0
    surf = token_surface[indexed]
    doc = token_doc[indexed]
    is_title = token_field[indexed]
    term = surface_term[surf].astype(np.int64)

    weights = np.where(is_title == 1, np.float32(title_weight), np.float32(1.0))
    doc_len = np.bincount(doc, weights=weights, minlength=n_docs).astype(np.float32)

    # Term frequency per (term, doc), title occurrences weighted: sort, then sum runs.
    key = ((term * max(n_docs, 1) + doc) << 1) | is_title
    key.sort()
    starts, lengths = runs(key)
    pair = key[starts] >> 1
    weight = np.where((key[starts] & 1) == 1, title_weight, 1.0) * lengths
    pstarts, _ = runs(pair)
    tf = np.add.reduceat(weight, pstarts) if pstarts.size else np.empty(0)
    pairs = pair[pstarts]

    # Document frequency of each surface form (for typo correction and prefix expansion).
    skey = surf.astype(np.int64) * max(n_docs, 1) + doc
    skey.sort()
    sstarts, _ = runs(skey)
    surface_df = np.bincount(skey[sstarts] // max(n_docs, 1), minlength=len(surfaces))

    return ChunkPostings(
        terms=list(term_ids),
        surfaces=surfaces,
        surface_term=surface_term,
        surface_df=surface_df.astype(np.int32),
        post_term=(pairs // max(n_docs, 1)).astype(np.int32),
        post_doc=(pairs % max(n_docs, 1)).astype(np.int32),
        post_tf=tf.astype(np.float32),
        doc_len=doc_len,
    )
