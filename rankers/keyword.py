"""The keyword phase: analyze the query, fix typos, complete the last word, BM25 top-k over
every segment of a view (:mod:`rankers.segment`)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from index.analyzer import Analyzer
from index.snapshot import Snapshot
from rankers.delta_postings import merge_top_k
from rankers.fuzzy import TypoCorrector
from rankers.maxscore import Postings
from rankers.segment import SegmentView
from rankers.snapshot_segment import SnapshotSegment
from rankers.types import Correction, Expansion, KeywordResult
from rankers.vocabulary import Vocabulary

__all__ = ["KeywordRanker", "QueryPlan"]

MAX_COMPLETIONS = 4


@dataclass(frozen=True)
class QueryPlan:
    """What a query is scored with: index terms and their weights, plus what was changed."""

    terms: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    corrections: tuple[Correction, ...] = ()
    expansion: Expansion | None = None
    unknown: tuple[str, ...] = ()
    vocabulary: npt.NDArray[np.str_] | None = None
    """The snapshot's index terms, which `terms` are rows of."""
    searched_as_typed: tuple[tuple[str, float], ...] | None = None
    """With written documents: every weighted term as a stem, including query words the
    snapshot does not know but another segment does (neither corrected nor reported
    unknown); None: the same as `terms`."""

    @functools.cached_property
    def words(self) -> tuple[tuple[str, float], ...]:
        """The weighted terms as index terms (stems), for segments with their own term
        dictionary (computed when a segment asks: the snapshot reads `terms`)."""
        if self.searched_as_typed is not None:
            return self.searched_as_typed
        vocab = self.vocabulary
        if vocab is None:
            return ()
        pairs = zip(self.terms.tolist(), self.weights.tolist(), strict=True)
        return tuple((str(vocab[t]), w) for t, w in pairs)


def wants_prefix(query: str) -> bool:
    """Search-as-you-type: the last word is unfinished unless the query ends in a separator."""
    return bool(query) and query[-1].isalnum()


@dataclass
class KeywordRanker:
    snapshot: Snapshot
    analyzer: Analyzer = field(init=False)
    vocab: Vocabulary = field(init=False)
    typos: TypoCorrector = field(init=False)
    _scratch: threading.local = field(init=False, default_factory=threading.local)

    def __post_init__(self) -> None:
        a = self.snapshot.arrays
        self.analyzer = Analyzer(self.snapshot.analyzer)
        self.vocab = Vocabulary.from_arrays(a)
        self.typos = TypoCorrector(self.vocab)
        self.postings = Postings(
            a["keyword/term_ptr.npy"],
            a["keyword/post_doc.npy"],
            a["keyword/post_imp.npy"],
            a["keyword/term_max.npy"],
        )
        self.term_df: npt.NDArray[np.int64] = a["keyword/term_df.npy"]
        self.view: SegmentView = SnapshotSegment(self).alone()
        """The snapshot alone, searched when no other view is given."""

    def plan(
        self, query: str, *, prefix: bool = False, view: SegmentView | None = None
    ) -> QueryPlan:
        """What `query` is scored with. With a `view` of several segments, a word the snapshot
        lacks but another segment has is searched as typed."""
        tokens = self.analyzer.tokens(query)
        weights: dict[int, float] = {}
        corrections: list[Correction] = []
        unknown: list[str] = []
        expansion: Expansion | None = None
        last = len(tokens) - 1
        for i, tok in enumerate(tokens):
            if prefix and i == last and wants_prefix(query):
                rows = self.vocab.completions(tok.surface, MAX_COMPLETIONS)
                if rows:
                    # The completions share the word's weight, in proportion to how common
                    # each is, so a short prefix does not outweigh the finished words.
                    df = np.asarray(self.vocab.surface_df[rows], dtype=np.float64)
                    for row, share in zip(rows, df / df.sum(), strict=True):
                        t = int(self.vocab.surface_term[row])
                        weights[t] = weights.get(t, 0.0) + float(share)
                    completed = tuple(str(self.vocab.surfaces[r]) for r in rows)
                    expansion = Expansion(tok.surface, completed)
                    continue
            term = self.vocab.term_id(tok.term)
            if term is None:
                fixed = self.typos.correct(tok.surface)
                if fixed is None:
                    unknown.append(tok.surface)
                    continue
                row, dist = fixed
                term = int(self.vocab.surface_term[row])
                corrections.append(Correction(tok.surface, str(self.vocab.surfaces[row]), dist))
            weights[term] = weights.get(term, 0.0) + 1.0
        extra: dict[str, float] = {}
        if view is not None and len(view.segments) > 1:
            corrections, unknown = self._known_elsewhere(view, weights, extra, corrections, unknown)
        ids = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        ws = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        typed = None
        if extra:
            words = {str(self.vocab.terms[t]): w for t, w in weights.items()}
            for stem, w in extra.items():
                words[stem] = words.get(stem, 0.0) + w
            typed = tuple(words.items())
        return QueryPlan(
            ids, ws, tuple(corrections), expansion, tuple(unknown), self.vocab.terms, typed
        )

    def _known_elsewhere(
        self,
        view: SegmentView,
        weights: dict[int, float],
        extra: dict[str, float],
        corrections: list[Correction],
        unknown: list[str],
    ) -> tuple[list[Correction], list[str]]:
        """Undo the corrections of words another segment has as typed, and keep the unknown
        words another segment has; both are searched as typed (`extra`)."""
        others = [seg for seg in view.segments if seg.base > 0]

        def elsewhere(word: str) -> str | None:
            stem = self.analyzer.stem(word)
            return stem if any(s.knows(stem) for s in others) else None

        kept: list[Correction] = []
        for c in corrections:
            stem = elsewhere(c.original)
            row = self.vocab.surface_id(c.corrected)
            if stem is None or row is None:
                kept.append(c)
                continue
            term = int(self.vocab.surface_term[row])
            weights[term] -= 1.0
            if weights[term] <= 1e-6:
                del weights[term]
            extra[stem] = extra.get(stem, 0.0) + 1.0
        kept_unknown = []
        for word in unknown:
            stem = elsewhere(word)
            if stem is None:
                kept_unknown.append(word)
            else:
                extra[stem] = extra.get(stem, 0.0) + 1.0
        return kept, kept_unknown

    def scratch(self) -> npt.NDArray[np.float32]:
        """This thread's zeroed accumulator, one slot per snapshot row."""
        acc: npt.NDArray[np.float32] | None = getattr(self._scratch, "acc", None)
        if acc is None:
            acc = np.zeros(self.snapshot.n_docs, dtype=np.float32)
            self._scratch.acc = acc
        return acc

    def search(self, query: str, k: int = 10, *, prefix: bool = False) -> KeywordResult:
        return self.run(self.plan(query, prefix=prefix), k)

    def run(self, plan: QueryPlan, k: int, view: SegmentView | None = None) -> KeywordResult:
        """The top k of every segment merged by score (equal scores: lower number first);
        `all_scores` covers every document when every segment was scored densely."""
        view = view or self.view
        segments = view.segments
        if len(segments) == 1:
            docs, scores, full = segments[0].top(plan, view, k)
        else:
            tops = [seg.top(plan, view, k) for seg in segments]
            docs, scores = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            for (rows, seg_scores, _), seg in zip(tops, segments, strict=True):
                docs, scores = merge_top_k(docs, scores, rows + seg.base, seg_scores, k)
            dense = [t[2] for t in tops]
            full = None
            if all(d is not None for d in dense):
                full = np.concatenate([d for d in dense if d is not None])
        return KeywordResult(
            docs=docs,
            scores=scores,
            corrections=plan.corrections,
            expansion=plan.expansion,
            unknown=plan.unknown,
            term_ids=plan.terms,
            vocabulary=self.vocab.terms,
            all_scores=full,
        )
