"""Index-time analysis: the C counter against the Python reference and the query-time analyzer."""

from __future__ import annotations

import random
import sys
from collections import Counter as Tally
from collections.abc import Iterator

import numpy as np
import pytest

from index.analyzer import Analyzer, AnalyzerSettings
from index.chunk import AnalyzedChunk, ChunkAnalyzer, native_available

TRICKY = [
    "Running dogs",
    "COVID-19 vaccines, the patient's blood; don't stop",
    "Straße STRASSE straße",
    "\uff26\uff35\uff2c\uff2c width",  # fullwidth: NFKC makes it ASCII
    "ﬁnance ﬀ ﬃ ﬆ",  # ligatures
    "e\u0301te\u0301 cafe\u0301",  # combining accents, composed by NFKC
    "a\u0345b \u0345x",  # casefolds to iota: a letter, so it joins words
    "İstanbul ΣΊΣΥΦΟΣ σοφός ς",
    "rock\uff07n\uff07roll",  # fullwidth apostrophe: NFKC makes it "'", then it is deleted
    "patient\u2019s l'été",
    "snake_case __dunder__ a_b_c",
    "x" * 41 + " " + "y" * 40 + " " + "é" * 40 + " " + "é" * 41,
    "①②③ x² Ⅻ ٣٤٥ ½",
    "日本語 テキスト ｶﾀｶﾅ",
    "\U0001f600 emoji \U0001d401\U0001d428\U0001d425\U0001d41d \U0001d509\U0001d52f",  # math
    "a\u200db nbsp\u00a0here tab\there new\nline",
    "The and No not",
    "ǅungla Ǆ ŉ ǰ ΐ \u1e9e",
    "µ micro Å K \u00aa\u00ba",
    "'' \u2019 a' 'b",
    "",
    "!!! ... ???",
]


def random_text(rng: random.Random, n: int) -> str:
    """Words of ASCII, of the tricky pieces, and of code points from anywhere."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            out.append(rng.choice(TRICKY))
        elif r < 0.7:
            out.append("".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(1, 10))))
        else:
            chars = []
            while len(chars) < rng.randint(1, 6):
                c = rng.randint(0x80, 0x2FFFF)
                if not 0xD800 <= c <= 0xDFFF:
                    chars.append(chr(c))
            out.append("".join(chars))
    return " ".join(out)


def random_docs(seed: int, n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    titles = [random_text(rng, rng.randint(0, 5)) for _ in range(n)]
    bodies = [random_text(rng, rng.randint(0, 40)) for _ in range(n)]
    return titles, bodies


def test_extension_is_built() -> None:
    # `pip install -e .` compiles it; without it builds are several times slower.
    assert native_available()


@pytest.fixture
def native() -> ChunkAnalyzer:
    if not native_available():
        pytest.skip("index._wordcount is not built")
    return ChunkAnalyzer(AnalyzerSettings(), 2.0)


@pytest.mark.parametrize("text", TRICKY)
def test_words_match_the_analyzer(native: ChunkAnalyzer, text: str) -> None:
    assert native._counter is not None
    assert native._counter.words(text) == Analyzer().words(text)


def code_point_texts() -> Iterator[str]:
    """Every code point, each between letters, in other code points' company, and alone."""
    points = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 4096):
        block = points[start : start + 4096]
        yield "".join("a" + c + "b" for c in block)
        yield "".join(block)
        yield " ".join(block)


def test_words_match_the_analyzer_on_every_code_point(native: ChunkAnalyzer) -> None:
    analyzer = Analyzer()
    assert native._counter is not None
    for text in code_point_texts():
        assert native._counter.words(text) == analyzer.words(text)


def postings(analyzer: ChunkAnalyzer, chunks: list[AnalyzedChunk]) -> list[dict[str, object]]:
    """Each chunk in words: {(term, doc): tf}, {surface: (df, term)} and doc_len."""
    terms: list[str] = []
    surfaces: list[str] = []
    surface_term: list[int] = []
    out = []
    for c in chunks:
        terms += c.new_terms
        surfaces += c.new_surfaces
        surface_term += c.new_surface_term.tolist()
        run_terms = np.repeat(c.run_term, c.run_len).tolist()
        out.append(
            {
                "tf": {
                    (terms[t], d): tf
                    for t, d, tf in zip(
                        run_terms, c.post_doc.tolist(), c.post_tf.tolist(), strict=True
                    )
                },
                "surfaces": {
                    surfaces[s]: (df, terms[surface_term[s]])
                    for s, df in zip(c.surfaces.tolist(), c.surface_df.tolist(), strict=True)
                },
                "doc_len": c.doc_len.tobytes(),
            }
        )
    return out


@pytest.mark.parametrize("title_weight", [2.0, 1.0, 0.3])
def test_native_counts_equal_the_python_reference(title_weight: float) -> None:
    if not native_available():
        pytest.skip("index._wordcount is not built")
    settings = AnalyzerSettings()
    native = ChunkAnalyzer(settings, title_weight)
    python = ChunkAnalyzer(settings, title_weight, native=False)
    chunks = [random_docs(seed, 150) for seed in range(4)]
    a = [native.analyze(t, b) for t, b in chunks]
    b = [python.analyze(t, b) for t, b in chunks]
    assert postings(native, a) == postings(python, b)
    for c in a:
        # Runs hold distinct terms; each run is ordered by document.
        assert len(set(c.run_term.tolist())) == c.run_term.size
        ends = np.cumsum(c.run_len)
        for start, end in zip(ends - c.run_len, ends, strict=True):
            assert (np.diff(c.post_doc[start:end]) > 0).all()


@pytest.mark.parametrize(
    "settings", [AnalyzerSettings(), AnalyzerSettings(stem=False, stopwords=False)]
)
def test_index_terms_are_the_query_terms(settings: AnalyzerSettings) -> None:
    titles, bodies = random_docs(11, 200)
    chunk = ChunkAnalyzer(settings, 2.0).analyze(titles, bodies)
    run_terms = np.repeat(chunk.run_term, chunk.run_len).tolist()
    indexed: dict[int, Tally[str]] = {}
    for t, d, tf in zip(run_terms, chunk.post_doc.tolist(), chunk.post_tf.tolist(), strict=True):
        indexed.setdefault(d, Tally())[chunk.new_terms[t]] = tf
    query = Analyzer(settings)
    for d, (title, body) in enumerate(zip(titles, bodies, strict=True)):
        expected: Tally[str] = Tally()
        for token in query.tokens(title):
            expected[token.term] += 2
        for token in query.tokens(body):
            expected[token.term] += 1
        assert indexed.get(d, Tally()) == expected, (title, body)
        assert chunk.doc_len[d] == sum(expected.values())


def test_words_are_numbered_once_per_analyzer(native: ChunkAnalyzer) -> None:
    first = native.analyze(["Cats"], ["cats and dogs"])
    second = native.analyze(["dogs"], ["cats, dogs and birds"])
    assert first.source == second.source
    assert first.new_terms == ["cat", "dog"] and second.new_terms == ["bird"]
    assert first.new_surfaces == ["cats", "dogs"] and second.new_surfaces == ["birds"]
    assert second.new_surface_term.tolist() == [2]
    assert sorted(second.surfaces.tolist()) == [0, 1, 2]


def test_counter_refuses_bad_input(native: ChunkAnalyzer) -> None:
    assert native._counter is not None
    with pytest.raises(TypeError):
        native._counter.analyze([b"bytes"], ["x"], 2.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="differ in length"):
        native._counter.analyze(["a", "b"], ["x"], 2.0)
    # A failed chunk leaves the counter usable.
    assert native.analyze(["ok"], ["fine"]).new_terms == ["ok", "fine"]
