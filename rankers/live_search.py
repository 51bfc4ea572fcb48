"""The three phases over a `LiveIndex`: the snapshot rankers' answers merged with the delta's.

Each method mirrors the snapshot ranker it extends (`KeywordRanker.run`, `SemanticRanker.fuse`,
`EnhancedRanker.rerank`), takes and returns the same types, and numbers delta documents after the
snapshot's rows (`n_snapshot + slot`), so callers keep their code and only look documents up
through `LiveIndex.documents`. When nothing was written since the snapshot, each method is the
snapshot ranker's own call.

- keyword: the snapshot's top k + (hidden rows) with the hidden rows removed, merged by score
  with the delta's top k (see :mod:`rankers.delta_postings` for the statistics used).
- semantic: candidates are the keyword candidates, the snapshot's nearest neighbours and the
  nearest embedded delta documents (an exact scan: the delta is small); both scores are exact for
  every candidate, then fused as `SemanticRanker.fuse` does. A delta document takes part once it
  is embedded.
- enhanced: the passages of snapshot and delta candidates laid end to end in candidate order,
  then the same features and fusion as `EnhancedRanker.rerank`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from index.core.bm25 import idf, top_k
from index.passages import passage_text
from rankers.delta_postings import bm25_delta, merge_top_k, term_postings, top_slots
from rankers.fusion import fuse, linear_aligned, previous_ranks
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.live import DeltaView, LiveIndex
from rankers.maxscore import score_docs
from rankers.types import KeywordResult

if TYPE_CHECKING:
    # The semantic and enhanced rankers pull in FAISS: imported where those phases run, so a
    # process answering keyword queries does not load it.
    from rankers.enhance import EnhancedRanker, EnhancedResult
    from rankers.semantic import FusionSettings, SemanticRanker, SemanticResult

__all__ = ["LivePlan", "LiveSearch", "fuse_candidates"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LivePlan(QueryPlan):
    """A snapshot query plan, plus the index terms (as words) the delta is scored with: the
    plan's terms, and query words the snapshot does not know but the delta does (those are
    neither corrected nor reported unknown)."""

    delta_terms: tuple[tuple[str, float], ...] = ()


def fuse_candidates(cand: I64, bm25: F32, cos: F32, fusion: FusionSettings) -> tuple[I64, F32]:
    """Candidates with both scores fused as `SemanticRanker.fuse` does, best first."""
    w = fusion.dense_weight
    if fusion.method == "rrf":
        lists = [cand[np.argsort(-bm25, kind="stable")], cand[np.argsort(-cos, kind="stable")]]
        return fuse("rrf", lists, weights=[1.0 - w, w], k=fusion.rrf_k)
    fused = linear_aligned([bm25, cos], [1.0 - w, w], norm=fusion.norm)
    order = np.lexsort((cand, -fused))
    return cand[order], fused[order].astype(np.float32)


class LiveSearch:
    def __init__(self, live: LiveIndex, keyword: KeywordRanker) -> None:
        self.live = live
        self.keyword = keyword
        self.term_df = keyword.snapshot.arrays["keyword/term_df.npy"]

    # -- keyword ---------------------------------------------------------------------------
    def plan(self, query: str, *, prefix: bool = False) -> LivePlan:
        base = self.keyword.plan(query, prefix=prefix)
        vocab, known = self.keyword.vocab, self.live.term_ids
        weights = dict(zip(base.terms.tolist(), base.weights.tolist(), strict=True))
        extra: dict[str, float] = {}
        corrections = []
        for c in base.corrections:
            stem = self.keyword.analyzer.stem(c.original)
            row = vocab.surface_id(c.corrected)
            if stem not in known or row is None:
                corrections.append(c)
                continue
            # The word exists as typed in the delta: no correction on either side.
            term = int(vocab.surface_term[row])
            weights[term] -= 1.0
            if weights[term] <= 1e-6:
                del weights[term]
            extra[stem] = extra.get(stem, 0.0) + 1.0
        unknown = []
        for word in base.unknown:
            stem = self.keyword.analyzer.stem(word)
            if stem in known:
                extra[stem] = extra.get(stem, 0.0) + 1.0
            else:
                unknown.append(word)
        delta = {str(vocab.terms[t]): w for t, w in weights.items()}
        for stem, w in extra.items():
            delta[stem] = delta.get(stem, 0.0) + w
        return LivePlan(
            np.fromiter(weights.keys(), dtype=np.int64, count=len(weights)),
            np.fromiter(weights.values(), dtype=np.float32, count=len(weights)),
            tuple(corrections),
            base.expansion,
            tuple(unknown),
            tuple(delta.items()),
        )

    def _delta_terms(self, plan: QueryPlan) -> tuple[tuple[str, float], ...]:
        if isinstance(plan, LivePlan):
            return plan.delta_terms
        terms = self.keyword.vocab.terms
        pairs = zip(plan.terms.tolist(), plan.weights.tolist(), strict=True)
        return tuple((str(terms[t]), w) for t, w in pairs)

    def delta_scores(self, plan: QueryPlan, view: DeltaView) -> tuple[F64, F32]:
        """BM25 of every delta slot, and the combined idf of each of the plan's delta terms."""
        terms = self._delta_terms(plan)
        postings = []
        other = []
        empty = (np.empty(0, np.int64), np.empty(0, np.float32))
        for stem, _ in terms:
            tid = self.live.term_ids.get(stem)
            postings.append(term_postings(view.segments, tid) if tid is not None else empty)
            sid = self.keyword.vocab.term_id(stem)
            snap_df = int(self.term_df[sid]) if sid is not None else 0
            other.append(snap_df - view.tomb_df.get(stem, 0))
        p = self.live.params
        scores, dfs = bm25_delta(
            postings, [w for _, w in terms], other, view.alive, view.doc_len,
            view.n_docs, view.avg_len, p.k1, p.b,
        )  # fmt: skip
        return scores, idf(np.asarray(other, dtype=np.int64) + dfs, max(view.n_docs, 1))

    def run(self, plan: QueryPlan, k: int) -> KeywordResult:
        """`KeywordRanker.run` over the live corpus; `all_scores`, when the snapshot is small
        enough to score densely, covers the delta slots too (0 for hidden rows)."""
        view = self.live.view()
        if view.empty:
            return self.keyword.run(plan, k)
        snap = self.keyword.run(plan, k + view.n_tomb)
        docs, scores = snap.docs, snap.scores
        if view.tomb is not None:
            keep = ~view.tomb[docs]
            docs, scores = docs[keep][:k], scores[keep][:k]
        delta, _ = self.delta_scores(plan, view)
        slots, slot_scores = top_slots(delta, k)
        docs, scores = merge_top_k(docs, scores, slots + view.n_snapshot, slot_scores, k)
        full = snap.all_scores
        if full is not None:
            if view.tomb is not None:
                full = np.where(view.tomb, 0.0, full)
            full = np.concatenate([full, delta])
        return replace(snap, docs=docs, scores=scores, all_scores=full)

    def search(self, query: str, k: int = 10, *, prefix: bool = False) -> KeywordResult:
        return self.run(self.plan(query, prefix=prefix), k)

    # -- semantic --------------------------------------------------------------------------
    def _bm25(self, plan: QueryPlan, keyword: KeywordResult, docs: I64, view: DeltaView) -> F32:
        out = np.zeros(docs.size, dtype=np.float32)
        snap = docs < view.n_snapshot
        if keyword.all_scores is not None:
            out[snap] = keyword.all_scores[docs[snap]]
        else:
            out[snap] = score_docs(self.keyword.postings, plan.terms, plan.weights, docs[snap])
        if not snap.all():
            delta, _ = self.delta_scores(plan, view)
            out[~snap] = delta[docs[~snap] - view.n_snapshot]
        return out

    @staticmethod
    def _cosines(vectors: npt.NDArray[np.generic], docs: I64, q: F32, view: DeltaView) -> F32:
        out = np.zeros(docs.size, dtype=np.float32)
        snap = docs < view.n_snapshot
        out[snap] = np.asarray(vectors[docs[snap]], dtype=np.float32) @ q
        if not snap.all():
            assert view.vectors is not None
            out[~snap] = view.vectors[docs[~snap] - view.n_snapshot] @ q
        return out

    @staticmethod
    def _rows(vectors: npt.NDArray[np.generic], docs: I64, view: DeltaView) -> F32:
        """The document vectors of `docs` (snapshot rows and embedded delta slots)."""
        snap = docs < view.n_snapshot
        out = np.zeros((docs.size, vectors.shape[1]), dtype=np.float32)
        out[snap] = np.asarray(vectors[docs[snap]], dtype=np.float32)
        if not snap.all():
            assert view.vectors is not None
            out[~snap] = view.vectors[docs[~snap] - view.n_snapshot]
        return out

    @staticmethod
    def _embedded(docs: I64, view: DeltaView) -> npt.NDArray[np.bool_]:
        """Snapshot rows not hidden, and live delta slots that have vectors."""
        ok = view.live(docs)
        slots = docs - view.n_snapshot
        delta = np.flatnonzero((slots >= 0) & ok)
        ok[delta] &= view.embedded[slots[delta]]
        return ok

    def fuse(
        self,
        semantic: SemanticRanker,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        k: int,
    ) -> SemanticResult:
        """`SemanticRanker.fuse` over the live corpus (`keyword` from `run`)."""
        from rankers.semantic import SemanticResult

        view = self.live.view()
        if view.empty:
            return semantic.fuse(plan, keyword, query_vector, k)
        depth = semantic.fusion.candidates
        q = np.asarray(query_vector, dtype=np.float32)
        ann, _ = semantic.dense(q, depth + view.n_tomb)
        if view.tomb is not None:
            ann = ann[~view.tomb[ann]]
        parts = [keyword.docs[:depth], ann[:depth]]
        slots = np.flatnonzero(view.embedded)
        if slots.size and view.vectors is not None:
            near = top_k(view.vectors[slots] @ q, depth)
            parts.append(slots[near] + view.n_snapshot)
        cand = np.unique(np.concatenate(parts))
        cand = cand[self._embedded(cand, view)]
        if cand.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return SemanticResult(empty, np.empty(0, dtype=np.float32), empty)
        bm25 = self._bm25(plan, keyword, cand, view)
        cos = self._cosines(semantic.vectors, cand, q, view)
        ids, scores = fuse_candidates(cand, bm25, cos, semantic.fusion)
        ids, scores = ids[:k], scores[:k].astype(np.float32)
        return SemanticResult(ids, scores, previous_ranks(ids, keyword.docs[:k]))

    # -- enhanced --------------------------------------------------------------------------
    def rerank(
        self,
        enhanced: EnhancedRanker,
        plan: QueryPlan,
        keyword: KeywordResult,
        query_vector: F32,
        semantic: SemanticResult,
        k: int,
    ) -> EnhancedResult:
        """`EnhancedRanker.rerank` over the live corpus (`semantic` from `fuse`, run with k =
        its candidate depth). Highlights of delta documents have no row in the snapshot's
        passages: their `passages` entry is -1."""
        from rankers.enhance import (
            PRF_DOCS,
            EnhancedResult,
            combine,
            feedback_scores,
            highlight_rows,
            mark_terms,
            passage_scores,
        )

        view = self.live.view()
        if view.empty:
            return enhanced.rerank("", plan, keyword, query_vector, semantic, k)
        keep = self._embedded(semantic.docs, view)
        docs, sem_scores = semantic.docs[keep], semantic.scores[keep]
        if docs.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return EnhancedResult(empty, np.empty(0, dtype=np.float32), empty, (), empty)
        q = np.asarray(query_vector, dtype=np.float32)
        layout = _Layout(enhanced, docs, q, view)
        ps = passage_scores(layout.sims, layout.pairs, layout.offsets, layout.kinds)
        vectors = self._rows(enhanced.doc_vectors, docs, view)
        feats = {
            "bm25": self._bm25(plan, keyword, docs, view),
            "dense": vectors @ q,
            "semantic": sem_scores,
            "best": ps.best,
            "best1": ps.best1,
            "top2": ps.top2,
            "title": ps.title,
            "coverage": self._coverage(plan, docs, view),
            "prf": feedback_scores(vectors, PRF_DOCS),
        }
        fused = combine(dict(feats), enhanced.settings.weights)
        order = np.lexsort((np.arange(fused.size), -fused))[:k]
        first, size = highlight_rows(layout.sims, layout.pairs, layout.offsets, layout.kinds, order)
        terms = frozenset(stem for stem, _ in self._delta_terms(plan))
        texts, rows = [], []
        for i, pos, n in zip(order.tolist(), first.tolist(), size.tolist(), strict=True):
            text, row = layout.text(i, pos, n) if pos >= 0 else ("", -1)
            texts.append(mark_terms(text, terms, self.keyword.analyzer) if pos >= 0 else "")
            rows.append(row)
        out = docs[order]
        return EnhancedResult(
            out,
            fused[order].astype(np.float32),
            previous_ranks(out, semantic.docs[:k]),
            tuple(texts),
            np.asarray(rows, dtype=np.int64),
        )

    def _coverage(self, plan: QueryPlan, docs: I64, view: DeltaView) -> F32:
        """Share of the query's idf-weighted terms each document contains (combined idf)."""
        terms = self._delta_terms(plan)
        _, term_idf = self.delta_scores(plan, view)
        ptr, post_doc = self.keyword.postings.ptr, self.keyword.postings.doc
        snap = docs < view.n_snapshot
        total = np.zeros(docs.size, dtype=np.float32)
        mass = 0.0
        for (stem, w), t_idf in zip(terms, term_idf.tolist(), strict=True):
            weight = w * t_idf
            mass += weight
            has = np.zeros(docs.size, dtype=bool)
            sid = self.keyword.vocab.term_id(stem)
            if sid is not None and ptr[sid + 1] > ptr[sid]:
                d = post_doc[ptr[sid] : ptr[sid + 1]]
                rows = docs[snap]
                pos = np.minimum(np.searchsorted(d, rows), d.size - 1)
                has[snap] = d[pos] == rows
            tid = self.live.term_ids.get(stem)
            if tid is not None and not snap.all():
                slots, _ = term_postings(view.segments, tid)
                has[~snap] = np.isin(docs[~snap] - view.n_snapshot, slots)
            total += np.float32(weight) * has
        return total / np.float32(mass) if mass > 0 else total


class _Layout:
    """The passages of snapshot and delta candidates, laid end to end in candidate order (as
    `rankers.enhance.gather_segments` lays out the snapshot's), with their cosines."""

    def __init__(self, enhanced: EnhancedRanker, docs: I64, q: F32, view: DeltaView) -> None:
        from rankers.enhance import gather_segments, pair_sims

        self.enhanced, self.view, self.docs = enhanced, view, docs
        snap = docs < view.n_snapshot
        self.rows, soff = gather_segments(enhanced.ptr, docs[snap])
        sims = [np.asarray(enhanced.vectors[self.rows], dtype=np.float32) @ q]
        kinds = [np.asarray(enhanced.kinds[self.rows])]
        norms = [np.asarray(enhanced.pair_norm[self.rows], dtype=np.float32)]
        lengths = np.zeros(docs.size, dtype=np.int64)
        starts = np.zeros(docs.size, dtype=np.int64)
        lengths[snap], starts[snap] = np.diff(soff), soff[:-1]
        at = int(soff[-1])
        for i in np.flatnonzero(~snap).tolist():
            p = view.passages[int(docs[i]) - view.n_snapshot]
            if p is None:
                continue
            sims.append(np.asarray(p.vectors, dtype=np.float32) @ q)
            kinds.append(p.kinds)
            norms.append(p.pair_norm)
            lengths[i], starts[i] = p.kinds.size, at
            at += p.kinds.size
        self.offsets = np.zeros(docs.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        total = int(self.offsets[-1])
        self.perm = np.arange(total, dtype=np.int64) + np.repeat(
            starts - self.offsets[:-1], lengths
        )
        self.sims = np.concatenate(sims).astype(np.float32)[self.perm]
        self.kinds = np.concatenate(kinds).astype(np.uint8)[self.perm]
        self.pairs = pair_sims(self.sims, np.concatenate(norms)[self.perm])
        self.n_snap_passages = self.rows.size

    def text(self, i: int, pos: int, size: int) -> tuple[str, int]:
        """Text of `size` passages from position `pos` (candidate i's), and their snapshot row
        (-1 for a delta document)."""
        src = int(self.perm[pos])
        if src < self.n_snap_passages:
            row = int(self.rows[src])
            spans = self.enhanced.spans
            span = np.array([spans[row][0], spans[row + size - 1][1]], dtype=np.int64)
            return passage_text(self.enhanced.text, span), row
        p = self.view.passages[int(self.docs[i]) - self.view.n_snapshot]
        assert p is not None
        local = pos - int(self.offsets[i])
        start, end = int(p.spans[local][0]), int(p.spans[local + size - 1][1])
        return p.blob[start:end].decode("utf-8"), -1
