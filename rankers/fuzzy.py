"""Typo tolerance: a query word missing from the vocabulary is replaced by its nearest
vocabulary word.

The number of typos allowed grows with the word's length, as in Meilisearch: none under five
characters, one under nine, two beyond. Distance is optimal string alignment (Levenshtein plus
adjacent transpositions, the most common typing slip), computed by rapidfuzz. Among the nearest
words the most frequent wins. The first character is trusted: candidates share it, which keeps
the search to a small slice of the vocabulary and matches how people mistype.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA

from rankers.vocabulary import Vocabulary

__all__ = ["TypoCorrector", "max_typos"]

_CACHE_LIMIT = 50_000


def max_typos(length: int) -> int:
    if length < 5:
        return 0
    if length < 9:
        return 1
    return 2


@dataclass
class _Bucket:
    """Surfaces sharing a first character, ordered by length, as Python strings for rapidfuzz."""

    words: list[str]
    rows: list[int]
    length_start: dict[int, int]


@dataclass
class TypoCorrector:
    vocab: Vocabulary
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _cache: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _bucket(self, first: str) -> _Bucket:
        bucket = self._buckets.get(first)
        if bucket is None:
            lo, hi = self.vocab.prefix_range(first)
            words = self.vocab.surfaces[lo:hi].tolist()
            order = sorted(range(len(words)), key=lambda i: len(words[i]))
            sorted_words = [words[i] for i in order]
            starts: dict[int, int] = {}
            for pos, w in enumerate(sorted_words):
                starts.setdefault(len(w), pos)
            bucket = _Bucket(sorted_words, [lo + i for i in order], starts)
            with self._lock:
                self._buckets[first] = bucket
        return bucket

    def correct(self, word: str) -> tuple[int, int] | None:
        """(surface row, distance) of the best correction, or None."""
        if word in self._cache:
            return self._cache[word]
        result = self._search(word)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = result
        return result

    def _search(self, word: str) -> tuple[int, int] | None:
        allowed = max_typos(len(word))
        if allowed == 0 or not word:
            return None
        bucket = self._bucket(word[0])
        lengths = sorted(bucket.length_start)
        lo_len, hi_len = len(word) - allowed, len(word) + allowed
        start = next((bucket.length_start[n] for n in lengths if n >= lo_len), len(bucket.words))
        stop = next((bucket.length_start[n] for n in lengths if n > hi_len), len(bucket.words))
        if stop <= start:
            return None
        matches = process.extract(
            word, bucket.words[start:stop], scorer=OSA.distance, score_cutoff=allowed, limit=None
        )
        if not matches:
            return None
        best_dist = min(m[1] for m in matches)
        rows = np.asarray([bucket.rows[start + m[2]] for m in matches if m[1] == best_dist])
        df = np.asarray(self.vocab.surface_df[rows])
        best = rows[np.lexsort((rows, -df))[0]]
        return int(best), int(best_dist)
