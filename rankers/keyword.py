"""The keyword phase: analyze the query, fix typos, complete the last word, BM25 top-k."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from index.analyzer import Analyzer
from index.snapshot import Snapshot
from rankers.fuzzy import TypoCorrector
from rankers.maxscore import Postings, score_terms
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

    def plan(self, query: str, *, prefix: bool = False) -> QueryPlan:
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
                    words = tuple(str(self.vocab.surfaces[r]) for r in rows)
                    expansion = Expansion(tok.surface, words)
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
        ids = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        ws = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        return QueryPlan(ids, ws, tuple(corrections), expansion, tuple(unknown))

    def _acc(self) -> npt.NDArray[np.float32]:
        acc: npt.NDArray[np.float32] | None = getattr(self._scratch, "acc", None)
        if acc is None:
            acc = np.zeros(self.snapshot.n_docs, dtype=np.float32)
            self._scratch.acc = acc
        return acc

    def search(self, query: str, k: int = 10, *, prefix: bool = False) -> KeywordResult:
        return self.run(self.plan(query, prefix=prefix), k)

    def run(self, plan: QueryPlan, k: int) -> KeywordResult:
        docs, scores, full = score_terms(self.postings, plan.terms, plan.weights, k, self._acc())
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
