"""Highlights of the enhanced phase: which passage of a hit to show, and its query words marked.

Both work on the few hits shown (k of them), never on every candidate passage.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from index.analyzer import Analyzer
from index.core.types import F32, I64
from index.passages import TITLE

__all__ = ["highlight_rows", "mark_terms"]


def highlight_rows(
    sims: F32,
    pairs: F32,
    offsets: I64,
    kinds: npt.NDArray[np.uint8],
    which: npt.NDArray[np.intp],
) -> tuple[I64, I64]:
    """For documents ``which``: the position (in the layout of :func:`gather_segments`) of the
    first passage of the best window to show, and its length in passages (1, or 2 for a pair of
    sentences); -1 and 0 for a document without passages. The body is preferred: a hit shows
    its title anyway.

    A loop over the shown hits only (k of them), not over passages."""
    first = np.full(which.size, -1, dtype=np.int64)
    size = np.zeros(which.size, dtype=np.int64)
    for i, d in enumerate(which.tolist()):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        if hi == lo:
            continue
        single = np.where(kinds[lo:hi] == TITLE, sims[lo:hi] - 4.0, sims[lo:hi])
        both = np.concatenate([single, pairs[lo:hi]])
        j = int(np.argmax(both))
        first[i], size[i] = lo + j % (hi - lo), 1 + j // (hi - lo)
    return first, size


_TOKEN = re.compile(r"[\w'\u2019]+")


def _word_terms(word: str, analyzer: Analyzer) -> list[str]:
    """``analyzer.terms(word)``, with a fast path for ASCII words: there NFKC changes nothing
    and casefolding is lowercasing, so only apostrophes, underscores and stopwords remain."""
    if not word.isascii():
        return analyzer.terms(word)
    parts = word.lower().replace("'", "").split("_")
    return [analyzer.stem(p) for p in parts if p and analyzer.keep(p)]


def mark_terms(text: str, terms: frozenset[str], analyzer: Analyzer) -> str:
    """``text`` HTML-escaped, with each word whose analyzed form is one of ``terms`` (index
    terms: stemmed, like the query's) wrapped in ``<mark>``."""
    if not terms:
        return html.escape(text)
    tokens: Iterator[re.Match[str] | None]
    if text.isascii():
        # Only words that start like a term can stem to it (a Snowball stem is a prefix of its
        # word but for its last letter: "study" -> "studi"): one regex finds those candidates,
        # which are then checked exactly, instead of analyzing every word.
        starts = _term_starts(terms).finditer(text)
        tokens = (_TOKEN.match(text, m.start()) for m in starts)
    else:
        tokens = _TOKEN.finditer(text)
    out: list[str] = []
    pos = 0
    seen: dict[str, bool] = {}
    for m in tokens:
        if m is None:
            continue
        word = m.group()
        hit = seen.get(word)
        if hit is None:
            hit = seen[word] = any(t in terms for t in _word_terms(word, analyzer))
        if hit:
            out.append(html.escape(text[pos : m.start()]))
            out.append(f"<mark>{html.escape(word)}</mark>")
            pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _term_starts(terms: frozenset[str]) -> re.Pattern[str]:
    prefixes = sorted({re.escape(t[: max(1, len(t) - 1)]) for t in terms}, key=len, reverse=True)
    return re.compile(rf"(?<![\w'\u2019])(?:{'|'.join(prefixes)})", re.IGNORECASE)
