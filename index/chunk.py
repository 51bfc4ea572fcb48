"""Analysis of one chunk of documents into postings.

Run in worker processes at index time. `ChunkAnalyzer` keeps its state for the whole build: the
C extension `index._wordcount` reads every token once (one hash lookup) and counts in the same
pass, and each distinct word is filtered and stemmed once per process, by the same Python code
as at query time (`Analyzer.keep`, `Analyzer.stem_many`). `analyze_chunk` is the pure-Python
version: the reference the extension is tested against, and the fallback when it is not built.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import numpy as np

from index.analyzer import Analyzer, AnalyzerSettings, normalize
from index.core.types import F32, I32, I64

try:
    from index._wordcount import Counter
except ImportError:  # not compiled: the pure-Python path builds the same index, only slower
    Counter = None  # type: ignore[assignment, misc]

__all__ = [
    "AnalyzedChunk",
    "ChunkAnalyzer",
    "ChunkPostings",
    "analyze_chunk",
    "native_available",
    "runs",
]


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


def native_available() -> bool:
    """Whether the C extension is built (`pip install -e .` compiles it)."""
    return Counter is not None


@dataclass(frozen=True)
class AnalyzedChunk:
    """Postings of a chunk, with words numbered by the analyzer that counted them.

    An analyzer numbers words for its whole life and sends the text of each word once:
    `new_terms` and `new_surfaces` continue its numbering, `new_surface_term` is the term of
    each new surface, and `source` tells analyzers apart. Postings come in runs, one per term:
    run i holds `run_len[i]` postings of term `run_term[i]`, ordered by (chunk-local) document.
    """

    source: str
    new_terms: list[str]
    new_surfaces: list[str]
    new_surface_term: I32
    surfaces: I32
    surface_df: I32
    run_term: I32
    run_len: I32
    post_doc: I32
    post_tf: F32
    doc_len: F32

    def words_only(self) -> AnalyzedChunk:
        """The same chunk without its documents: its new words must still be numbered when its
        postings are dropped, since the analyzer's later chunks use them."""
        i32, f32 = np.empty(0, np.int32), np.empty(0, np.float32)
        return dataclasses.replace(
            self,
            surfaces=i32,
            surface_df=i32,
            run_term=i32,
            run_len=i32,
            post_doc=i32,
            post_tf=f32,
            doc_len=f32,
        )


class ChunkAnalyzer:
    """Analyzes chunks one after another, remembering every word it has met.

    Holds the per-process state of a build: surface and term numbers of each distinct word, so
    filtering and stemming run once per word and process, and each word's text is sent once.
    """

    def __init__(
        self, settings: AnalyzerSettings, title_weight: float, *, native: bool = True
    ) -> None:
        self.settings = settings
        self.title_weight = title_weight
        self.source = uuid.uuid4().hex
        self._analyzer = Analyzer(settings)
        self._terms: list[str] = []
        self._term_ids: dict[str, int] = {}
        self._surfaces: list[str] = []
        self._surface_ids: dict[str, int] = {}  # only without the extension
        self._surface_term: list[int] = []
        self._sent_terms = self._sent_surfaces = 0
        self._counter = (
            Counter(self._resolve, normalize, partial(unicodedata.is_normalized, "NFKC"))
            if native and Counter is not None
            else None
        )

    @property
    def native(self) -> bool:
        return self._counter is not None

    def _term(self, stem: str) -> int:
        term = self._term_ids.setdefault(stem, len(self._term_ids))
        if term == len(self._terms):
            self._terms.append(stem)
        return term

    def _resolve(self, word: str) -> tuple[int, int]:
        """Surface and term numbers of a word met for the first time; -1 when not indexed."""
        if not self._analyzer.keep(word):
            return -1, -1
        surface = len(self._surfaces)
        term = self._term(self._analyzer.stem_many([word])[0])
        self._surfaces.append(word)
        self._surface_term.append(term)
        return surface, term

    def analyze(self, titles: list[str], bodies: list[str]) -> AnalyzedChunk:
        if self._counter is None:
            return self._analyze_python(titles, bodies)
        surfaces, surface_df, run_term, run_len, post_doc, post_tf, doc_len = self._counter.analyze(
            titles, bodies, self.title_weight
        )
        return self._chunk(
            np.frombuffer(surfaces, np.int32),
            np.frombuffer(surface_df, np.int32),
            np.frombuffer(run_term, np.int32),
            np.frombuffer(run_len, np.int32),
            np.frombuffer(post_doc, np.int32),
            np.frombuffer(post_tf, np.float32),
            np.frombuffer(doc_len, np.float32),
        )

    def _analyze_python(self, titles: list[str], bodies: list[str]) -> AnalyzedChunk:
        post = analyze_chunk(titles, bodies, self.settings, self.title_weight)
        terms = np.fromiter(map(self._term, post.terms), np.int32, len(post.terms))
        surfaces = np.empty(len(post.surfaces), np.int32)
        surface_terms = terms[post.surface_term].tolist()
        for i, (word, term) in enumerate(zip(post.surfaces, surface_terms, strict=True)):
            surface = self._surface_ids.setdefault(word, len(self._surface_ids))
            if surface == len(self._surfaces):
                self._surfaces.append(word)
                self._surface_term.append(term)
            surfaces[i] = surface
        starts, lengths = runs(post.post_term.astype(np.int64))
        return self._chunk(
            surfaces,
            post.surface_df,
            terms[post.post_term[starts]],
            lengths.astype(np.int32),
            post.post_doc,
            post.post_tf,
            post.doc_len,
        )

    def _chunk(
        self,
        surfaces: I32,
        surface_df: I32,
        run_term: I32,
        run_len: I32,
        post_doc: I32,
        post_tf: F32,
        doc_len: F32,
    ) -> AnalyzedChunk:
        sent_t, sent_s = self._sent_terms, self._sent_surfaces
        self._sent_terms, self._sent_surfaces = len(self._terms), len(self._surfaces)
        return AnalyzedChunk(
            source=self.source,
            new_terms=self._terms[sent_t:],
            new_surfaces=self._surfaces[sent_s:],
            new_surface_term=np.asarray(self._surface_term[sent_s:], dtype=np.int32),
            surfaces=surfaces,
            surface_df=surface_df,
            run_term=run_term,
            run_len=run_len,
            post_doc=post_doc,
            post_tf=post_tf,
            doc_len=doc_len,
        )
