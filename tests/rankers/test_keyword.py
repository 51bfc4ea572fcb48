from __future__ import annotations

import threading

import pytest

from index.snapshot import Snapshot
from rankers.fuzzy import max_typos
from rankers.keyword import KeywordRanker, wants_prefix


@pytest.fixture(scope="module")
def ranker(snapshot: Snapshot) -> KeywordRanker:
    return KeywordRanker(snapshot)


@pytest.mark.parametrize(("length", "typos"), [(1, 0), (4, 0), (5, 1), (8, 1), (9, 2), (30, 2)])
def test_typo_budget_grows_with_length(length: int, typos: int) -> None:
    assert max_typos(length) == typos


@pytest.mark.parametrize(
    ("query", "expected"),
    [("insulin", True), ("insulin ", False), ("insulin.", False), ("", False), ("é", True)],
)
def test_wants_prefix(query: str, expected: bool) -> None:
    assert wants_prefix(query) == expected


def test_exact_query_ranks_matching_documents(ranker: KeywordRanker, snapshot: Snapshot) -> None:
    result = ranker.search("insulin glucose", 5)
    assert len(result.docs) == 5 and list(result.scores) == sorted(result.scores, reverse=True)
    for doc in snapshot.docs.get_many([int(d) for d in result.docs]):
        assert doc is not None
        text = (doc.title + " " + doc.text).lower()
        assert "insulin" in text or "glucose" in text
    assert result.corrections == () and result.terms == ("insulin", "glucos")


@pytest.mark.parametrize(
    ("typed", "fixed", "distance"),
    [
        ("insullin", "insulin", 1),
        ("glcuose", "glucose", 1),
        ("infectoin", "infection", 1),
        ("metabolsim", "metabolism", 1),
        ("regenaraton", "regeneration", 2),
    ],
)
def test_typos_are_corrected_and_reported(
    ranker: KeywordRanker, typed: str, fixed: str, distance: int
) -> None:
    result = ranker.search(typed, 5)
    assert [(c.original, c.corrected, c.distance) for c in result.corrections] == [
        (typed, fixed, distance)
    ]
    assert result.docs.size > 0
    assert result.corrected_query == fixed


def test_short_words_and_far_words_are_not_corrected(ranker: KeywordRanker) -> None:
    assert ranker.search("dnx", 5).unknown == ("dnx",)
    assert ranker.search("qqqqqqqq", 5).docs.size == 0


def test_prefix_expands_the_last_word_only(ranker: KeywordRanker) -> None:
    result = ranker.search("insulin infe", 5, prefix=True)
    assert result.expansion is not None and result.expansion.prefix == "infe"
    assert "infection" in result.expansion.completions
    assert result.docs.size > 0
    assert ranker.search("insulin infe ", 5, prefix=True).expansion is None
    assert ranker.search("insulin infe", 5, prefix=False).expansion is None


def test_prefix_prefers_frequent_completions(ranker: KeywordRanker) -> None:
    rows = ranker.vocab.completions("re", 10)
    dfs = [int(ranker.vocab.surface_df[r]) for r in rows]
    assert dfs == sorted(dfs, reverse=True) and len(rows) >= 3
    assert all(str(ranker.vocab.surfaces[r]).startswith("re") for r in rows)


@pytest.mark.parametrize("query", ["", "   ", "!!!", "the and of", "\x00\x01", "🙂" * 50])
def test_queries_without_terms_return_nothing(ranker: KeywordRanker, query: str) -> None:
    result = ranker.search(query, 10, prefix=True)
    assert result.docs.size == 0


def test_concurrent_searches_agree(ranker: KeywordRanker) -> None:
    queries = ["protein kinase", "immune virus", "sleep memory brain", "diet obesity"] * 25
    expected = {q: ranker.search(q, 10).docs.tolist() for q in set(queries)}
    errors: list[str] = []

    def worker(chunk: list[str]) -> None:
        for q in chunk:
            if ranker.search(q, 10).docs.tolist() != expected[q]:
                errors.append(q)

    threads = [threading.Thread(target=worker, args=(queries[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
