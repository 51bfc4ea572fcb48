"""Text analysis: normalize, tokenize, drop stopwords, stem.

The same analyzer runs at index time and at query time; its settings are stored in the snapshot
manifest so a snapshot is always queried the way it was built.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import Stemmer

from index.core.errors import SnapshotError
from index.stopwords import ENGLISH

__all__ = ["Analyzer", "AnalyzerSettings", "Token"]

# A word is a run of letters and digits. Apostrophes are removed first, so they join a word
# ("don't" -> "dont"; "patient's" -> "patients", which stems like "patient"); hyphens and
# underscores separate words ("covid-19" -> "covid", "19").
_WORD = re.compile(r"\w+")
_APOSTROPHES = ("'", "\u2019")

MAX_TOKEN_CHARS = 40
"""Longer runs (hashes, base64, glued URLs) are dropped: never typed, they bloat the vocabulary."""


@dataclass(frozen=True)
class AnalyzerSettings:
    """What the analyzer does; recorded in the manifest."""

    language: str = "english"
    stem: bool = True
    stopwords: bool = True
    normalization: str = "NFKC+casefold"
    max_token_chars: int = MAX_TOKEN_CHARS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalyzerSettings:
        try:
            settings = cls(**data)
        except TypeError as exc:
            raise SnapshotError(f"unknown analyzer settings {data!r}: {exc}") from exc
        if settings.language != "english" or settings.normalization != "NFKC+casefold":
            raise SnapshotError(
                f"unsupported analyzer {settings.language!r}/{settings.normalization!r}; "
                "this version knows english with NFKC+casefold"
            )
        return settings


@dataclass(frozen=True)
class Token:
    """A query word: its surface form (normalized, unstemmed) and its index term (stemmed)."""

    surface: str
    term: str


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass
class Analyzer:
    settings: AnalyzerSettings = field(default_factory=AnalyzerSettings)

    def __post_init__(self) -> None:
        # PyStemmer's own cache is off (size 0): `stem` memoizes in a dict, and index time stems
        # each distinct word once, so its cache would only cost time evicting entries.
        self._stemmer = Stemmer.Stemmer(self.settings.language, 0) if self.settings.stem else None
        self._stop = ENGLISH if self.settings.stopwords else frozenset()
        # Stemming is the costly step; a word's stem never changes, so memoize it per analyzer.
        self._stem_cache: dict[str, str] = {}

    def words(self, text: str) -> list[str]:
        """Raw words of a text: normalized, not yet filtered or stemmed."""
        text = normalize(text)
        for mark in _APOSTROPHES:
            if mark in text:
                text = text.replace(mark, "")
        if "_" in text:
            text = text.replace("_", " ")
        return _WORD.findall(text)

    def keep(self, word: str) -> bool:
        """Whether a raw word is indexed: not a stopword, not absurdly long."""
        return word not in self._stop and len(word) <= self.settings.max_token_chars

    def surfaces(self, text: str) -> list[str]:
        """Normalized words without stopwords, unstemmed."""
        keep = self.keep
        return [w for w in self.words(text) if keep(w)]

    def stem_many(self, surfaces: list[str]) -> list[str]:
        """Stems of many distinct surfaces at once (index time)."""
        if self._stemmer is None:
            return list(surfaces)
        return list(self._stemmer.stemWords(surfaces))

    def stem(self, surface: str) -> str:
        cached = self._stem_cache.get(surface)
        if cached is None:
            cached = self._stemmer.stemWord(surface) if self._stemmer is not None else surface
            if len(self._stem_cache) < 1_000_000:
                self._stem_cache[surface] = cached
        return cached

    def terms(self, text: str) -> list[str]:
        """Index terms of a text: the stems of its non-stopword words, in order."""
        return [self.stem(s) for s in self.surfaces(text)]

    def tokens(self, text: str) -> list[Token]:
        return [Token(s, self.stem(s)) for s in self.surfaces(text)]
