"""Shared vocabulary of the rankers package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["Correction", "Expansion", "Hit", "KeywordResult", "Ranked"]

IdArray = npt.NDArray[np.int64]
ScoreArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Hit:
    doc: int
    """Internal document number (row in the snapshot)."""
    id: str
    """External document id."""
    score: float
    rank: int
    previous_rank: int | None = None


@dataclass(frozen=True)
class Correction:
    """A query word that was not in the vocabulary, and the word used instead."""

    original: str
    corrected: str
    distance: int


@dataclass(frozen=True)
class Expansion:
    """The last, unfinished word of a query and the vocabulary words it was completed to."""

    prefix: str
    completions: tuple[str, ...]


@dataclass(frozen=True)
class KeywordResult:
    docs: IdArray
    scores: ScoreArray
    corrections: tuple[Correction, ...] = ()
    expansion: Expansion | None = None
    unknown: tuple[str, ...] = ()
    """Query words neither in the vocabulary nor close to a word in it."""
    term_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    """Index terms the query was scored with (rows of `vocabulary`)."""
    vocabulary: npt.NDArray[np.str_] = field(default_factory=lambda: np.empty(0, "U1"))
    all_scores: npt.NDArray[np.float64] | None = None
    """The score of every document, kept when the corpus is small enough to score densely, so
    the semantic phase can read the BM25 score of any candidate."""

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(str(self.vocabulary[t]) for t in self.term_ids)

    @property
    def corrected_query(self) -> str | None:
        return None if not self.corrections else " ".join(c.corrected for c in self.corrections)


class Ranked(Protocol):
    """Anything that yields a ranked list of internal document numbers with scores."""

    docs: IdArray
    scores: ScoreArray
