"""Top-k over impact postings with MaxScore pruning: compiled document at a time, or numpy
term at a time.

Compiled (`rankers._maxscore`, built with the package): documents are visited in increasing
order and each gets its exact score at once, so the k-th best score (the threshold) rises
early; the terms whose combined bound falls to the threshold stop being walked and are only
probed, by galloping search, for documents that can still enter the top k (see the C file).

numpy fallback: query terms are taken in decreasing order of their best possible contribution.
While a document that has not been seen yet could still reach the current k-th best score,
postings are added in full to a dense accumulator. Once the remaining terms together cannot lift
an unseen document above that threshold, only the documents already seen are scored further, by
binary search in each remaining postings list, and candidates that can no longer reach the top
k are dropped.

Both give the same result as exhaustive scoring (up to ties at the cut), but the long postings
of common terms are mostly skipped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from index.core.bm25 import top_k
from index.core.types import F32, F64, I32, I64, B

try:
    from rankers._maxscore import MAX_TERMS as COMPILED_MAX_TERMS
    from rankers._maxscore import top_k as compiled_top_k
except ImportError:  # not built: the numpy implementation below runs instead
    compiled_top_k = None  # type: ignore[assignment]
    COMPILED_MAX_TERMS = 0

__all__ = [
    "DENSE_MAX_DOCS",
    "Postings",
    "dense_scores",
    "score_dense",
    "score_docs",
    "score_exhaustive",
    "score_maxscore",
    "score_terms",
    "select",
]

DIRECT_MIN_DOCS = 4096
DIRECT_SHARE = 64
"""Without the compiled path, a filter flagging at most max(DIRECT_MIN_DOCS, n_docs /
DIRECT_SHARE) documents has them scored directly (a binary search per term and document)
instead of walking the postings term at a time. The compiled path never does: it jumps from
one flagged document to the next (memchr over the flags) and gallops its lists there, which
at 1M documents took 0.13-0.6x the unfiltered time at 1 % to 0.002 % flagged, where direct
scoring took 0.7-3.4x (bench.structured)."""
DENSE_MAX_DOCS = 65_536
"""Up to this many documents, scoring every posting and selecting over the whole accumulator
costs less than the bookkeeping of pruning."""


class Postings(NamedTuple):
    """A snapshot's postings in CSR form: the postings of term t are rows ptr[t]:ptr[t + 1] of
    `doc` (ascending) and `imp` (BM25 impacts); `term_max` is each term's best impact."""

    ptr: I64
    doc: I32
    imp: F32
    term_max: F32


def _kth_largest(values: F32, k: int) -> float:
    n = values.size
    if n < k:
        return float("-inf")
    return float(np.partition(values, n - k)[n - k])


def _runs_compiled(terms: I64, k: int) -> bool:
    """Whether `score_maxscore` runs these terms compiled."""
    return compiled_top_k is not None and 0 < terms.size <= COMPILED_MAX_TERMS and k > 0


def score_terms(
    postings: Postings,
    terms: I64,
    weights: F32,
    k: int,
    acc: F32,
    allow: B | None = None,
) -> tuple[I64, F32, F64 | None]:
    """Top-k documents for a weighted bag of terms, and the score of every document when the
    corpus is small enough to be scored densely (else None).

    `acc` is a zeroed float32 scratch array with one slot per document; it is zeroed again
    before returning, so a caller can keep one per thread. `allow` (one flag per document)
    limits the search to the flagged documents: the others are never scored, and score 0 in
    the dense scores. Without the compiled path, when few are flagged they are scored
    directly, by binary search.
    """
    if terms.size == 0 or k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), None
    if acc.size <= DENSE_MAX_DOCS:
        full = dense_scores(postings, terms, weights, acc.size)
        if allow is not None:
            full = np.where(allow, full, 0.0)
        return (*select(full, k), full)
    if (allow is not None and not _runs_compiled(terms, k)
            and np.count_nonzero(allow) <= max(DIRECT_MIN_DOCS, acc.size // DIRECT_SHARE)):
        # Counting is cheap; the row numbers are gathered only when they are used.
        rows = np.flatnonzero(allow)
        scores = score_docs(postings, terms, weights, rows)
        best = top_k(scores, k)
        keep = scores[best] > 0
        return rows[best][keep].astype(np.int64), scores[best][keep], None
    return (*score_maxscore(postings, terms, weights, k, acc, allow=allow), None)


def score_dense(
    postings: Postings, terms: I64, weights: F32, k: int, n_docs: int
) -> tuple[I64, F32]:
    """Score every posting with one bincount, then select over all documents."""
    return select(dense_scores(postings, terms, weights, n_docs), k)


def dense_scores(postings: Postings, terms: I64, weights: F32, n_docs: int) -> F64:
    """The score of every document (0 where no query term occurs)."""
    if terms.size == 0:
        return np.zeros(n_docs, dtype=np.float64)
    ptr, post_doc, post_imp, _ = postings
    docs: list[I32] = []
    imps: list[F32] = []
    for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
        lo, hi = ptr[t], ptr[t + 1]
        docs.append(post_doc[lo:hi])
        imps.append(post_imp[lo:hi] * np.float32(w) if w != 1.0 else post_imp[lo:hi])
    counts = np.bincount(np.concatenate(docs), np.concatenate(imps), minlength=n_docs)
    return np.asarray(counts, dtype=np.float64)  # already float64: weights make it so


def select(scores: F64, k: int) -> tuple[I64, F32]:
    """The top k documents of a dense score array, leaving out documents that scored 0."""
    best = top_k(scores, k)
    chosen = scores[best].astype(np.float32)
    matched = chosen > 0
    return best[matched], chosen[matched]


def score_maxscore(
    postings: Postings, terms: I64, weights: F32, k: int, acc: F32, *, compiled: bool = True,
    allow: B | None = None,
) -> tuple[I64, F32]:
    """MaxScore pruning (see the module docstring); same contract as `score_terms`.

    Runs compiled, document at a time (`rankers._maxscore`), when the extension is built and
    takes this many terms; else, or with `compiled=False`, term at a time in numpy."""
    ptr, post_doc, post_imp, term_max = postings
    ub = term_max[terms] * weights
    order = np.argsort(-ub, kind="stable")
    terms, weights, ub = terms[order], weights[order], ub[order]
    # A little slack so float32 rounding in the accumulator never prunes a true top-k document.
    rest = np.cumsum(ub[::-1].astype(np.float64))[::-1] * (1.0 + 1e-5) + 1e-6
    if compiled and _runs_compiled(terms, k):
        out_doc = np.empty(k, dtype=np.int64)
        out_score = np.empty(k, dtype=np.float32)
        n = compiled_top_k(
            ptr, post_doc, post_imp, np.ascontiguousarray(terms, dtype=np.int64),
            np.ascontiguousarray(weights, dtype=np.float32), np.append(rest, 0.0), acc.size,
            out_doc, out_score, allow,
        )
        return out_doc[:n], out_score[:n]
    theta = float("-inf")
    seen: list[I32] = []
    n_seen = 0
    i = 0
    while i < terms.size and not (rest[i] <= theta):
        t = int(terms[i])
        lo, hi = int(ptr[t]), int(ptr[t + 1])
        d = post_doc[lo:hi]
        if allow is not None:
            keep = allow[d]
            d, imp = d[keep], post_imp[lo:hi][keep]
        else:
            imp = post_imp[lo:hi]
        acc[d] += imp * weights[i]
        seen.append(d)
        n_seen += d.size
        i += 1
        # The threshold can only stop this loop once the bounds seen so far exceed what is left.
        if i < terms.size and rest[0] - rest[i] >= rest[i]:
            theta = max(theta, _kth_largest(acc[d], k))
    # Candidates are the documents whose partial score plus what the remaining terms could add
    # still reaches the threshold.
    remaining = float(rest[i]) if i < terms.size else 0.0
    floor = max(theta - remaining, float(np.finfo(np.float32).tiny))  # untouched slots are 0
    cand: I64
    if n_seen * 8 < acc.size:
        # Few postings seen: filter them, then deduplicate the survivors by sorting.
        d = np.concatenate(seen)
        d = np.sort(d[acc[d] >= floor])
        cand = d[np.diff(d, prepend=-1) != 0].astype(np.int64)
    else:
        cand = np.flatnonzero(acc >= floor).astype(np.int64)
    scores: F32 = acc[cand]
    acc.fill(0.0)
    theta = max(theta, _kth_largest(scores, k))
    for j in range(i, terms.size):
        keep = scores + rest[j] >= theta
        cand, scores = cand[keep], scores[keep]
        if cand.size == 0:
            break
        t = int(terms[j])
        d, imp = post_doc[ptr[t] : ptr[t + 1]], post_imp[ptr[t] : ptr[t + 1]]
        if cand.size * np.log2(max(d.size, 2)) > 4 * d.size:
            # Many candidates against a short list: scatter the list, then gather.
            acc[d] = imp
            scores += acc[cand] * weights[j]
            acc[d] = 0.0
        else:
            _add_term(d, imp, weights[j], cand, scores)
        theta = max(theta, _kth_largest(scores, k))
    best = top_k(scores, k)
    return cand[best], scores[best]


def score_exhaustive(
    postings: Postings, n_docs: int, terms: I64, weights: F32, k: int
) -> tuple[I64, F32]:
    """Reference: score every document, then select. Used by tests and benchmarks."""
    ptr, post_doc, post_imp, _ = postings
    scores = np.zeros(n_docs, dtype=np.float32)
    for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
        lo, hi = int(ptr[t]), int(ptr[t + 1])
        scores[post_doc[lo:hi]] += post_imp[lo:hi] * np.float32(w)
    touched = np.flatnonzero(scores > 0)
    best = top_k(scores[touched], k)
    return touched[best].astype(np.int64), scores[touched][best]


def score_docs(postings: Postings, terms: I64, weights: F32, docs: I64) -> F32:
    """BM25 scores of given documents (any order), by binary search in each postings list.

    Lets a later phase score candidates that the keyword top-k did not include.
    """
    ptr, post_doc, post_imp, _ = postings
    scores = np.zeros(docs.size, dtype=np.float32)
    if docs.size == 0 or terms.size == 0:
        return scores
    lengths = ptr[terms + 1] - ptr[terms]
    if int(lengths.sum()) > _BATCHED_POSTINGS:
        for t, w in zip(terms.tolist(), weights.tolist(), strict=True):
            _add_term(post_doc[ptr[t] : ptr[t + 1]], post_imp[ptr[t] : ptr[t + 1]], w, docs, scores)
        return scores
    # Short lists: one binary search for all terms at once. Keys (term slot, doc) are sorted
    # because each list is sorted by doc and the lists are laid end to end in slot order.
    slots = np.arange(terms.size, dtype=np.int64)
    keys = np.concatenate([post_doc[ptr[t] : ptr[t + 1]] for t in terms.tolist()]).astype(np.int64)
    keys += np.repeat(slots << 32, lengths)
    imps = np.concatenate([post_imp[ptr[t] : ptr[t + 1]] for t in terms.tolist()])
    imps = imps * np.repeat(weights, lengths)
    wanted = ((slots << 32)[:, None] + docs[None, :]).ravel()
    pos = np.searchsorted(keys, wanted)
    pos[pos >= keys.size] = 0
    hit = keys[pos] == wanted
    contrib = np.where(hit, imps[pos], np.float32(0.0)).reshape(terms.size, docs.size)
    total: F32 = contrib.sum(axis=0, dtype=np.float32)
    return total


_BATCHED_POSTINGS = 200_000
"""Up to this many postings in all, candidates are scored with one batched binary search."""


def _add_term(d: I32, imp: F32, weight: float, docs: I64, scores: F32) -> None:
    """Add one term's impacts to the scores of `docs`, found by binary search in its postings."""
    if d.size == 0:
        return
    pos = np.searchsorted(d, docs)
    pos[pos >= d.size] = 0
    hit = d[pos] == docs
    scores[hit] += imp[pos[hit]] * np.float32(weight)
