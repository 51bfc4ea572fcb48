"""The enhanced phase: re-rank the semantic phase's candidates by their best passages.

For each candidate document, every passage (title, windows of one and two sentences; see
:mod:`index.passages`) is compared with the query vector, in one gather and one matrix product
over the candidates' passages (a CSR layout: ``ptr[d] .. ptr[d + 1]``), and reduced per document
with ``np.maximum.reduceat``. The passage scores are fused with the keyword score, the document
similarity and the semantic phase's fused score: each feature is z-scored over the candidates,
then weighted (weights in :class:`EnhanceSettings`, chosen by cross-validation, see
``bench/enhance.py``). Each hit carries its best passage, HTML-escaped, with the words that match
a query term (after stemming) in ``<mark>`` (:mod:`rankers.highlight`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.bm25 import idf
from index.core.errors import QueryError
from index.passages import PASSAGES_DIR, TITLE, passage_text
from index.snapshot import Snapshot
from rankers.fusion import previous_ranks
from rankers.highlight import highlight_rows, mark_terms
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.maxscore import Postings, score_docs
from rankers.semantic import SemanticResult
from rankers.types import KeywordResult

__all__ = [
    "FEATURES",
    "EnhanceSettings",
    "EnhancedRanker",
    "EnhancedResult",
    "PassageScores",
    "PassageVectors",
    "combine",
    "feedback_scores",
    "gather_segments",
    "highlight_rows",
    "mark_terms",
    "pair_sims",
    "passage_scores",
    "term_coverage",
    "zscore",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FEATURES = ("bm25", "dense", "semantic", "best", "best1", "top2", "title", "coverage", "prf")
"""Per-candidate features: keyword score, document cosine, the semantic phase's fused score,
best passage cosine (title, sentences and sentence pairs), best single passage, mean of the two
best single passages, title passage cosine, the idf-weighted share of the query's terms that
the document contains, and the cosine to the centroid of the semantic phase's top
:data:`PRF_DOCS` documents (pseudo-relevance feedback)."""
PRF_DOCS = 3


@dataclass(frozen=True)
class EnhanceSettings:
    weights: dict[str, float] = field(
        default_factory=lambda: {"bm25": 0.2, "dense": 0.2, "best": 0.4, "coverage": 0.2}
    )
    """Weight of each z-scored feature (names from :data:`FEATURES`; missing ones weigh 0).

    The default is the grid-search optimum (step 0.1 on the simplex) on SciFact train, the same
    in each of 5 cross-validation folds; adding the top-2 mean, the title cosine, the fused
    semantic score or soft-max pooling gained nothing held out (``python -m bench.enhance``)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise QueryError(f"unknown enhanced features {unknown}; use names from {FEATURES}")
        if any(not np.isfinite(w) for w in self.weights.values()):
            raise QueryError(f"enhanced feature weights must be finite: {self.weights}")


@dataclass(frozen=True)
class EnhancedResult:
    docs: I64
    scores: F32
    previous: I64
    """Each hit's 0-based rank in the semantic phase's top k, -1 if it was not there."""
    highlights: tuple[str, ...]
    """Each hit's best passage, HTML-escaped, query words in ``<mark>``."""
    passages: I64
    """Row (in ``passages/``) of the first passage of each hit's highlight (-1: none)."""


# -- pure functions over arrays ---------------------------------------------------------------


def gather_segments(ptr: I64, docs: I64) -> tuple[I64, I64]:
    """Passage rows of ``docs``, laid end to end, and the offsets of each document's run
    (``offsets[i] .. offsets[i + 1]`` are document i's rows), with no Python loop."""
    lo = ptr[docs]
    lengths = ptr[docs + 1] - lo
    offsets = np.zeros(docs.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rows = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(lo - offsets[:-1], lengths)
    return rows, offsets


def segment_max(values: F32, offsets: I64, fill: float = 0.0) -> F32:
    """Maximum of each run ``values[offsets[i]:offsets[i + 1]]``; ``fill`` for an empty run."""
    n = offsets.size - 1
    out = np.full(n, fill, dtype=np.float32)
    nonempty = offsets[1:] > offsets[:-1]
    if values.size:
        # reduceat over the starts of non-empty runs only: each then ends where the next begins.
        out[nonempty] = np.maximum.reduceat(values, offsets[:-1][nonempty])
    return out


def pair_sims(sims: F32, norms: F32) -> F32:
    """Cosines of the windows of two sentences: passage j and j + 1 when ``norms[j] > 0`` (the
    length of the sum of their unit vectors, see :func:`index.passages.pair_norms`), else -inf."""
    out = np.full(sims.size, -np.inf, dtype=np.float32)
    j = np.flatnonzero(norms > 0)
    out[j] = (sims[j] + sims[j + 1]) / norms[j]
    return out


@dataclass(frozen=True)
class PassageScores:
    best: F32
    """Best cosine of each document's passages: title, sentences and pairs of sentences."""
    best1: F32
    """Best cosine of its single passages (title, sentences)."""
    top2: F32
    """Mean of the two best single passages (the best alone when a document has one)."""
    title: F32
    """Cosine of the title passage (the best passage when there is no title)."""


def passage_scores(
    sims: F32, pairs: F32, offsets: I64, kinds: npt.NDArray[np.uint8]
) -> PassageScores:
    """Per-document passage features from the cosines of the documents' passages and of their
    sentence pairs (``sims``, ``pairs`` and ``kinds`` laid out as by :func:`gather_segments`)."""
    n = offsets.size - 1
    lengths = np.diff(offsets)
    seg = np.repeat(np.arange(n, dtype=np.int64), lengths)
    best1 = segment_max(sims, offsets)
    best = np.maximum(best1, segment_max(pairs, offsets, fill=-np.inf))
    # One sort by (document, descending cosine) gives every document's best and second best.
    order = np.lexsort((-sims, seg))
    starts = offsets[:-1]
    nonempty = lengths > 0
    first = np.where(nonempty, starts, 0)
    second = np.where(lengths > 1, starts + 1, first)
    if sims.size:
        top2 = np.where(nonempty, (sims[order[first]] + sims[order[second]]) / 2, 0.0)
    else:
        top2 = np.zeros(n)
    title_sims = np.where(kinds == TITLE, sims, np.float32(-np.inf)).astype(np.float32)
    title = segment_max(title_sims, offsets, fill=-np.inf)
    title = np.where(np.isfinite(title), title, best)
    return PassageScores(
        best.astype(np.float32),
        best1,
        top2.astype(np.float32),
        title.astype(np.float32),
    )


def term_coverage(postings: Postings, terms: I64, weights: F32, docs: I64) -> F32:
    """Share of the query's term weight (``weights``, e.g. idf) that each document contains,
    by binary search of the documents in each term's postings (a loop over query terms)."""
    ptr, post_doc, _, _ = postings
    total = np.zeros(docs.size, dtype=np.float32)
    mass = float(np.sum(weights))
    if docs.size == 0 or mass <= 0:
        return total
    for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
        d = post_doc[ptr[t] : ptr[t + 1]]
        if d.size == 0:
            continue
        pos = np.minimum(np.searchsorted(d, docs), d.size - 1)
        total += np.float32(w) * (d[pos] == docs)
    return total / np.float32(mass)


def feedback_scores(vectors: F32, ranked: int) -> F32:
    """Cosine of each row of ``vectors`` (the candidates' unit document vectors, best first) to
    the centroid of the first ``ranked`` rows: documents like the top hits score high."""
    if vectors.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    centroid = vectors[:ranked].sum(axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(centroid))
    if norm == 0.0:
        return np.zeros(vectors.shape[0], dtype=np.float32)
    out: F32 = (vectors @ (centroid / np.float32(norm))).astype(np.float32)
    return out


def zscore(values: npt.ArrayLike) -> F64:
    """Mean 0 and standard deviation 1 over the candidates (all zeros when they are all equal)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    std = v.std()
    return (v - v.mean()) / std if std > 0 else np.zeros_like(v)


def combine(features: dict[str, npt.ArrayLike], weights: dict[str, float]) -> F64:
    """Weighted sum of the z-scored features (a feature without weight is ignored)."""
    total: F64 | None = None
    for name, weight in weights.items():
        if weight == 0.0:
            continue
        part = weight * zscore(features[name])
        total = part if total is None else total + part
    if total is None:
        size = len(np.asarray(next(iter(features.values())))) if features else 0
        return np.zeros(size, dtype=np.float64)
    return total


# -- the ranker -------------------------------------------------------------------------------


class PassageVectors:
    """The stored (quantized) passage vectors: indexing gives float32 rows, as if they were
    stored so; :meth:`sims` multiplies before it rescales, which is cheaper."""

    def __init__(self, stored: npt.NDArray[Any], scale: F32) -> None:
        self.stored = stored
        self.scale = scale

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.stored.shape)

    def __len__(self) -> int:
        return int(self.stored.shape[0])

    def __getitem__(self, rows: Any) -> F32:
        out: F32 = self.stored[rows].astype(np.float32) * self.scale[rows][..., None]
        return out

    def sims(self, rows: I64, q: F32) -> F32:
        """Cosines of passages ``rows`` with the unit query vector ``q``."""
        raw = self.stored[rows].astype(np.float32) @ q
        out: F32 = (raw * self.scale[rows]).astype(np.float32)
        return out


class EnhancedRanker:
    """Holds the memory-mapped passages and document vectors of a snapshot."""

    def __init__(
        self, snapshot: Snapshot, keyword: KeywordRanker, settings: EnhanceSettings | None = None
    ) -> None:
        vectors = snapshot.manifest.get("vectors") or {}
        if not vectors.get("passages"):
            raise QueryError(
                "this snapshot has no passages; rebuild it without --no-passages (and with vectors)"
            )
        a = snapshot.arrays
        self.snapshot = snapshot
        self.keyword = keyword
        self.settings = settings or EnhanceSettings()
        self.doc_vectors: npt.NDArray[Any] = a["vectors/vectors.npy"]
        self.ptr: I64 = a[f"{PASSAGES_DIR}/ptr.npy"]
        self.vectors = PassageVectors(
            a[f"{PASSAGES_DIR}/vectors.npy"], a[f"{PASSAGES_DIR}/scale.npy"]
        )
        self.kinds: npt.NDArray[np.uint8] = a[f"{PASSAGES_DIR}/kind.npy"]
        self.spans: I64 = a[f"{PASSAGES_DIR}/span.npy"]
        self.text: npt.NDArray[np.uint8] = a[f"{PASSAGES_DIR}/text.npy"]
        self.pair_norm: F32 = a[f"{PASSAGES_DIR}/pair_norm.npy"]
        self.idf: F32 = idf(a["keyword/term_df.npy"], snapshot.n_docs)

    def _text(self, row: int, size: int) -> str:
        """Text of passages row .. row + size - 1 (consecutive sentences), from the blob."""
        span = np.array([self.spans[row][0], self.spans[row + size - 1][1]], dtype=np.int64)
        return passage_text(self.text, span)

    def features(
        self, plan: QueryPlan, keyword: KeywordResult, query_vector: F32, semantic: SemanticResult
    ) -> tuple[dict[str, F32], tuple[F32, F32], I64, I64]:
        """Every feature of the semantic phase's hits, and the passage and pair cosines, rows
        and offsets (see :func:`gather_segments`) that the highlights need."""
        docs = semantic.docs
        if keyword.all_scores is not None:
            bm25 = keyword.all_scores[docs].astype(np.float32)
        else:
            bm25 = score_docs(self.keyword.postings, plan.terms, plan.weights, docs)
        q = np.asarray(query_vector, dtype=np.float32)
        doc_vectors = np.asarray(self.doc_vectors[docs], dtype=np.float32)
        dense = doc_vectors @ q
        rows, offsets = gather_segments(self.ptr, docs)
        sims = self.vectors.sims(rows, q)
        pairs = pair_sims(sims, self.pair_norm[rows])
        ps = passage_scores(sims, pairs, offsets, self.kinds[rows])
        feats = {
            "bm25": bm25,
            "dense": dense.astype(np.float32),
            "semantic": semantic.scores,
            "best": ps.best,
            "best1": ps.best1,
            "top2": ps.top2,
            "title": ps.title,
            "coverage": term_coverage(
                self.keyword.postings, plan.terms, plan.weights * self.idf[plan.terms], docs
            ),
            "prf": feedback_scores(doc_vectors, PRF_DOCS),
        }
        return feats, (sims, pairs), rows, offsets

    def rerank(
        self,
        query: str,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        semantic: SemanticResult,
        k: int,
    ) -> EnhancedResult:
        """The top ``k`` of the semantic phase's hits (run it with k = its candidate depth),
        re-ranked; ``query`` is the query text (unused by scoring, kept for the highlights'
        callers and future features)."""
        del query
        if semantic.docs.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return EnhancedResult(empty, np.empty(0, dtype=np.float32), empty, (), empty)
        feats, sims, rows, offsets = self.features(plan, keyword, query_vector, semantic)
        fused = combine(dict(feats), self.settings.weights)
        order = np.lexsort((np.arange(fused.size), -fused))[:k]
        docs = semantic.docs[order]
        first, size = highlight_rows(*sims, offsets, self.kinds[rows], order)
        passages = np.where(first >= 0, rows[np.maximum(first, 0)], -1).astype(np.int64)
        terms = frozenset(str(t) for t in self.keyword.vocab.terms[plan.terms])
        highlights = tuple(
            mark_terms(self._text(p, n), terms, self.keyword.analyzer) if p >= 0 else ""
            for p, n in zip(passages.tolist(), size.tolist(), strict=True)
        )
        return EnhancedResult(
            docs,
            fused[order].astype(np.float32),
            previous_ranks(docs, semantic.docs[:k]),
            highlights,
            passages,
        )
