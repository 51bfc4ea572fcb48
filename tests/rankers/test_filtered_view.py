"""A filter limits one view that every phase reads: every hit of the keyword, semantic and
enhanced phases passes it, in the snapshot and among written documents, and the keyword
phase returns exactly the best documents that pass (checked against exhaustive scoring)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.columns import KeywordColumn, NumberColumn
from index.core.types import Document
from index.delta import DeltaLog
from index.ingest import embed_pending
from index.snapshot import load_snapshot
from rankers.delta_segment import live_view
from rankers.enhance import EnhancedRanker
from rankers.keyword import KeywordRanker
from rankers.live import LiveIndex
from rankers.segment import Segment
from rankers.semantic import FusionSettings, SemanticRanker
from tests.conftest import make_corpus
from tests.fake_vectors import FakeEncoder, build_with_vectors, fake_vector

COLOURS = ["red", "green", "blue", "black"]


def documents(n: int, seed: int, prefix: str) -> list[Document]:
    rng = random.Random(seed)
    out = []
    for r in make_corpus(n, seed=seed):
        fields = {"colour": rng.choice(COLOURS), "price": rng.randint(1, 100)}
        out.append(Document(prefix + r["_id"], r["title"], r["text"], fields))
    return out


def cheap_and_red(seg: Segment) -> np.ndarray:
    """colour = red AND price < 50, straight from the columns."""
    colour, price = seg.columns["colour"], seg.columns["price"]
    assert isinstance(colour, KeywordColumn) and isinstance(price, NumberColumn)
    red = np.flatnonzero(colour.values == "red")
    has = np.zeros(colour.rows, dtype=bool)
    if red.size:
        rows = np.repeat(np.arange(colour.rows), np.diff(colour.ptr))
        has[rows[np.isin(colour.codes, red)]] = True
    out: np.ndarray = has & price.present & (price.values < 50)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("filtered")
    base = documents(300, 1, "s")
    snap = load_snapshot(build_with_vectors(base, root))
    assert snap.manifest.schema is not None
    log = DeltaLog.open(root)
    added = documents(60, 2, "w")
    log.append(added)
    log.append([replace(base[0], fields={"colour": "red", "price": 10})])  # now passes
    log.delete([base[1].id])
    embed_pending(log, FakeEncoder(), snap.manifest.passage_options, limit=1000)
    live = LiveIndex.open(snap, log)
    keyword = KeywordRanker(snap)
    semantic = SemanticRanker(snap, keyword, FakeEncoder(), FusionSettings(candidates=50))
    enhanced = EnhancedRanker(snap, keyword)
    return snap, live, keyword, semantic, enhanced


def passes(live: LiveIndex, docs: np.ndarray) -> list[bool]:
    out = []
    for doc in live.documents(docs.tolist()):
        assert doc is not None
        out.append(doc.fields["colour"] == "red" and doc.fields["price"] < 50)
    return out


@pytest.mark.parametrize("query", ["vitamin deficiency", "brain memory sleep", "cancer"])
@pytest.mark.parametrize("written", [True, False])
def test_every_phase_keeps_to_the_filter(setup, query: str, written: bool) -> None:  # type: ignore[no-untyped-def]
    snap, live, keyword, semantic, enhanced = setup
    view = live_view(live if written else None, keyword, semantic, enhanced, always=True)
    assert view is not None
    view = view.with_filter(cheap_and_red)
    plan = keyword.plan(query, view=view)
    kw = keyword.run(plan, 1000, view)
    assert kw.docs.size and all(passes(live, kw.docs))
    # Exactly the allowed documents that the unfiltered search scores, in the same order.
    unfiltered = live_view(live if written else None, keyword, always=True)
    everything = keyword.run(plan, 100_000, unfiltered)
    keep = np.asarray(passes(live, everything.docs), dtype=bool)
    np.testing.assert_array_equal(kw.docs, everything.docs[keep])
    np.testing.assert_allclose(kw.scores, everything.scores[keep], rtol=1e-6)

    q = fake_vector(query)
    sem = semantic.fuse(plan, kw, q, 50, view)
    assert sem.docs.size and all(passes(live, sem.docs))
    res = enhanced.rerank(query, plan, kw, q, sem, 10, view)
    assert res.docs.size and all(passes(live, res.docs))
    if written:
        assert set(kw.docs.tolist()) & set(range(snap.n_docs, snap.n_docs + 61))


def test_nearest_neighbours_inside_a_filter_are_exact(setup) -> None:  # type: ignore[no-untyped-def]
    _snap, _live, keyword, semantic, _enhanced = setup
    view = live_view(None, keyword, semantic, always=True)
    assert view is not None
    view = view.with_filter(cheap_and_red)
    seg = view.segments[0]
    q = fake_vector("vitamin deficiency")
    got = seg.nearest(q, 10)
    allowed = np.flatnonzero(cheap_and_red(seg))
    cos = np.asarray(semantic.vectors[allowed], dtype=np.float32) @ q
    want = allowed[np.argsort(-cos, kind="stable")[:10]]
    np.testing.assert_array_equal(got, want)


def test_a_deleted_document_never_passes(setup) -> None:  # type: ignore[no-untyped-def]
    snap, live, keyword, semantic, enhanced = setup
    view = live_view(live, keyword, semantic, enhanced)
    assert view is not None
    everyone = view.with_filter(lambda seg: np.ones(seg.size, dtype=bool))
    plan = keyword.plan("vitamin", view=everyone)
    kw = keyword.run(plan, 100_000, everyone)
    deleted = snap.docs.lookup("s" + "d1")
    assert deleted is not None and deleted not in kw.docs.tolist()
    assert 0 not in kw.docs.tolist()  # replaced: its new version is a written document


def test_columns_of_written_documents(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _snap, live, keyword, *_ = setup
    view = live_view(live, keyword)
    assert view is not None
    colour = view.segments[1].columns["colour"]
    assert isinstance(colour, KeywordColumn) and colour.rows == view.segments[1].size
    assert view.segments[1].columns is view.segments[1].columns  # built once per view


@pytest.mark.parametrize("query", ["vitamin deficiency", "brain", ""])
def test_facet_counts_equal_a_brute_force_count(setup, query: str) -> None:  # type: ignore[no-untyped-def]
    from collections import Counter

    from rankers.facets import count_facets

    _snap, live, keyword, *_ = setup
    view = live_view(live, keyword, always=True)
    assert view is not None
    filtered = view.with_filter(cheap_and_red)
    plan = keyword.plan(query, view=view)
    words = [w for w, _ in plan.words]
    got = {f.field: f for f in count_facets(filtered, words, ["colour", "price"])}
    # Brute force: every document the unfiltered search matches (or every live one, for an
    # empty query), kept when it passes the filter.
    if words:
        matches = keyword.run(plan, 100_000, view).docs
    else:
        n = view.segments[0].size + view.segments[1].size
        all_docs = np.arange(n)
        matches = all_docs[view.mask(all_docs, lambda seg, rows: seg.live(rows))]
    docs = [d for d in live.documents(matches.tolist()) if d is not None]
    kept = [d for d in docs if d.fields["colour"] == "red" and d.fields["price"] < 50]
    assert kept
    assert got["colour"].matched == len(kept)
    assert dict(got["colour"].values) == Counter(d.fields["colour"] for d in kept)
    prices = [d.fields["price"] for d in kept]
    assert (got["price"].min, got["price"].max) == (min(prices), max(prices))
    assert got["price"].matched == len(kept)


def test_sorting_by_a_field_then_relevance(setup) -> None:  # type: ignore[no-untyped-def]
    from index.core.errors import QueryError
    from rankers.sorting import parse_sort, sort_order

    _snap, live, keyword, *_ = setup
    view = live_view(live, keyword, always=True)
    assert view is not None
    plan = keyword.plan("vitamin brain", view=view)
    kw = keyword.run(plan, 200, view)
    keys = parse_sort("price:desc", ["price"])
    order = sort_order(view, kw.docs, kw.scores, keys)
    docs = [d for d in live.documents(kw.docs[order].tolist()) if d is not None]
    pairs = [(-d.fields["price"], -float(s)) for d, s in zip(docs, kw.scores[order], strict=True)]
    assert pairs == sorted(pairs)  # price descending, equal prices by relevance
    for bad, message in [("colour:asc", "not sortable"), ("price:up", "direction"),
                         ("price,price:desc", "twice"), ("", "empty key")]:
        with pytest.raises(QueryError, match=message):
            parse_sort(bad, ["price"])
