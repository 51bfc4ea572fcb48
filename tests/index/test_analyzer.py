from __future__ import annotations

import pytest

from index.analyzer import Analyzer, AnalyzerSettings
from index.core.errors import SnapshotError


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Running dogs", ["run", "dog"]),
        ("The cat and the hat", ["cat", "hat"]),
        ("COVID-19 vaccines", ["covid", "19", "vaccin"]),
        ("don't stop", ["dont", "stop"]),
        ("the patient's blood", ["patient", "blood"]),
        ("\uff26\uff35\uff2c\uff2c text", ["full", "text"]),
        ("Straße", ["strass"]),
        ("snake_case words", ["snake", "case", "word"]),
        ("no effect", ["no", "effect"]),
        ("", []),
        ("!!! ... ???", []),
        ("x" * 41 + " kept", ["kept"]),
        ("日本語 テキスト", ["日本語", "テキスト"]),
    ],
)
def test_terms(text: str, terms: list[str]) -> None:
    assert Analyzer().terms(text) == terms


def test_tokens_keep_surface_and_term() -> None:
    tokens = Analyzer().tokens("Diabetes patients")
    assert [(t.surface, t.term) for t in tokens] == [
        ("diabetes", "diabet"),
        ("patients", "patient"),
    ]


def test_settings_without_stemming_or_stopwords() -> None:
    a = Analyzer(AnalyzerSettings(stem=False, stopwords=False))
    assert a.terms("The running dogs") == ["the", "running", "dogs"]


def test_settings_round_trip_and_unknown_language() -> None:
    s = AnalyzerSettings()
    assert AnalyzerSettings.from_json(s.to_json()) == s
    with pytest.raises(SnapshotError, match="unsupported analyzer"):
        AnalyzerSettings.from_json({**s.to_json(), "language": "klingon"})
    with pytest.raises(SnapshotError, match="unknown analyzer settings"):
        AnalyzerSettings.from_json({"colour": "blue"})
