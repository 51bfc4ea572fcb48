"""Read-only views of a snapshot's vocabularies: index terms and surface forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Vocabulary"]

_TERM_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class Vocabulary:
    """`terms` and `surfaces` are sorted arrays of strings, so lookups are binary searches on
    the memory-mapped arrays and nothing is built at start-up."""

    terms: npt.NDArray[np.str_]
    surfaces: npt.NDArray[np.str_]
    surface_df: npt.NDArray[np.int32]
    surface_term: npt.NDArray[np.int32]
    _term_cache: dict[str, int | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[Any]]) -> Vocabulary:
        return cls(
            arrays["keyword/terms.npy"],
            arrays["vocab/surfaces.npy"],
            arrays["vocab/surface_df.npy"],
            arrays["vocab/surface_term.npy"],
        )

    @staticmethod
    def _find(sorted_words: npt.NDArray[np.str_], word: str) -> int | None:
        i = int(np.searchsorted(sorted_words, word))
        if i < sorted_words.size and sorted_words[i] == word:
            return i
        return None

    def term_id(self, term: str) -> int | None:
        # Query words repeat a lot; a bounded memo saves the binary search over strings.
        try:
            return self._term_cache[term]
        except KeyError:
            found = self._find(self.terms, term)
            if len(self._term_cache) >= _TERM_CACHE_LIMIT:
                self._term_cache.clear()
            self._term_cache[term] = found
            return found

    def surface_id(self, surface: str) -> int | None:
        return self._find(self.surfaces, surface)

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """Rows of the surfaces that start with `prefix`."""
        lo = int(np.searchsorted(self.surfaces, prefix, side="left"))
        hi = int(np.searchsorted(self.surfaces, prefix + "\U0010ffff", side="left"))
        return lo, hi

    def completions(self, prefix: str, limit: int) -> list[int]:
        """Surface rows starting with `prefix`, most frequent first (at most `limit`)."""
        lo, hi = self.prefix_range(prefix)
        if hi <= lo:
            return []
        df = np.asarray(self.surface_df[lo:hi])
        top = np.argpartition(-df, limit - 1)[:limit] if df.size > limit else np.arange(df.size)
        top = top[np.lexsort((top, -df[top]))]
        return [lo + int(i) for i in top]
