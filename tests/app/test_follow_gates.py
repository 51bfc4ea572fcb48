"""The follow hub's gates for follows ranked by the semantic phase, in process with the real
encoder: after each document is written and embedded, a follow is updated exactly when a new
search ranks differently, so a gate that skips a follow the document enters fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine import Engine
from app.follow_hub import FollowHub
from app.index_work import IndexWork
from app.metrics import Metrics
from app.params import SearchParams
from app.settings import Settings
from index.core.types import F32, Document
from index.delta import DeltaLog
from rankers.learned import LinearModel
from rankers.model_store import install_model

pytestmark = [pytest.mark.model]

QUERIES = ["waterproof rain jacket", "warm winter parka", "trail running shoes",
           "camping stove", "hiking backpack"]
WRITES = [
    Document("g1", "Rain jacket for small dogs", "A waterproof coat that keeps a dog dry."),
    Document("g2", "Stove-top espresso maker", "Brews strong coffee on any camping stove."),
    Document("g3", "Trail shoes, waterproof", "Running shoes with a membrane for wet trails."),
    Document("g4", "Parka", "Parka parka parka: a word repeated, not a coat described."),
    Document("g5", "Backpack rain cover", "Keeps a hiking backpack dry in a downpour."),
]


def opened(root: Path) -> tuple[Engine, DeltaLog, IndexWork, FollowHub]:
    """The engine with its encoder, its delta log, the embedding work and a follow hub."""
    engine = Engine.open(root)
    engine.load_encoder()
    assert engine.source is not None
    log = engine.source.log
    return engine, log, IndexWork(root, compact_changes=0, log_=log), \
        FollowHub(engine, Settings(follow_per_client=100), Metrics())


def semantic_ids(engine: Engine, params: SearchParams, vector: F32) -> tuple[str, ...]:
    """What a new search's semantic phase shows now."""
    deep = engine.keyword_state(params, engine.candidates, engine.refresh())
    return tuple(h["id"] for h in engine.semantic_payload(params, deep, vector)["hits"])


@pytest.mark.anyio
async def test_semantic_follows_are_updated_exactly_when_a_new_search_changes(
    root: Path,
) -> None:
    engine, log, work, hub = opened(root)
    follows = []
    for q in QUERIES:
        params = SearchParams(q, 5, False)
        vector = engine.encode(q)
        shown = semantic_ids(engine, params, vector)
        follow = hub.open(params, "test", engine.version)
        hub.arm(follow, shown, shown, 4, "semantic", vector)
        follows.append(follow)
    await hub.match_once()
    for follow in follows:
        assert follow.take() is None  # armed on what a search shows: nothing to send
    changed = 0
    for doc in WRITES:
        log.append([doc])
        await hub.match_once()
        assert work.run().embedded == 1
        await hub.match_once()
        for follow in follows:
            params = follow.params
            assert follow.vector is not None
            fresh = semantic_ids(engine, params, follow.vector)
            ranked = follow.take()
            if ranked is None:
                assert fresh == follow.shown, (doc.id, params.q)
            else:
                assert ranked.ids == fresh, (doc.id, params.q)
                changed += 1
    assert changed >= 2  # the writes do enter some lists


FILLER = ("The committee reviewed the quarterly budget, the audit schedule, staffing for the "
          "accounts office, the renewal of the printer lease and the minutes of the last meeting. ")


@pytest.mark.anyio
async def test_the_words_gate_alone_finds_a_document_that_enters_by_its_words(root: Path) -> None:
    """The semantic phase's fusion counts BM25 too, so a newly embedded document can enter by
    its words. With the cosine gate shut (its bar above any cosine), only the fused-floor gate
    (`_embedded_by_words`) can find it: the update must still come, equal to a fresh search."""
    engine, log, work, hub = opened(root)
    params = SearchParams("warm winter parka", 5, False)
    vector = engine.encode(params.q)
    shown = semantic_ids(engine, params, vector)
    follow = hub.open(params, "test", engine.version)
    hub.arm(follow, shown, shown, 4, "semantic", vector)
    await hub.match_once()
    assert follow.take() is None and follow.floor is not None
    # Armed with nothing written yet, its cosine bar is the snapshot's lowest shown cosine:
    # a document far from the query, with none of its words, re-runs nothing.
    log.append([Document("w0", "Minutes", FILLER)])
    await hub.match_once()
    assert work.run().embedded == 1
    hub.matched = 0
    await hub.match_once()
    assert hub.matched == 0 and follow.take() is None
    hub.vectors.set_bar(follow.key, 2.0)  # now no cosine passes it
    words = "Parka parka warm winter parka, warm parka."
    log.append([Document("w1", "Minutes", FILLER * 2 + words)])
    await hub.match_once()
    assert work.run().embedded == 1
    await hub.match_once()
    fresh = semantic_ids(engine, params, vector)
    assert "w1" in fresh  # it enters, by its words
    ranked = follow.take()
    assert ranked is not None and ranked.ids == fresh


@pytest.mark.anyio
async def test_enhanced_follows_are_re_ranked_when_a_new_model_is_installed(root: Path) -> None:
    """No write needed: the hub sees the model's pointer move and re-ranks the follows of the
    enhanced phase (those of the other phases do not use it and stay as they are)."""
    engine = Engine.open(root)
    engine.load_encoder()
    engine.model_poll = 0.0
    hub = FollowHub(engine, Settings(follow_per_client=100), Metrics())
    follows = {}
    for q in QUERIES:
        params = SearchParams(q, 5, False)
        vector = engine.encode(q)
        shown = tuple(h["id"] for h in engine.enhanced_payload(params, vector)["hits"])
        follows[q] = hub.open(params, "test", engine.version)
        hub.arm(follows[q], shown, shown, 4, "enhanced", vector)
    semantic = hub.open(SearchParams(QUERIES[0], 5, False), "test", engine.version)
    hub.arm(semantic, (), (), 4, "semantic", engine.encode(QUERIES[0]))
    await hub.match_once()
    for follow in [*follows.values(), semantic]:
        follow.take()
    assert not hub._behind()
    install_model(root, LinearModel({"title": 1.0}))
    assert hub._behind()
    hub.matched = 0
    await hub.match_once()
    assert hub.matched == len(QUERIES)  # the enhanced follows, not the semantic one
    moved = 0
    for q, follow in follows.items():
        fresh = tuple(h["id"] for h in engine.enhanced_payload(
            SearchParams(q, 5, False), engine.encode(q))["hits"])
        ranked = follow.take()
        if ranked is None:
            assert fresh == follow.shown, q
        else:
            assert ranked.ids == fresh, q
            moved += 1
    assert moved >= 1  # ranking by the title alone does move some list
    assert semantic.take() is None
    assert not hub._behind()


@pytest.mark.anyio
async def test_a_write_outside_a_follows_filter_does_not_re_run_it(root: Path) -> None:
    """A document can enter a follow only if it passes its filter: the gate asks the filter
    before re-running, whatever the words and the k-th score say."""
    engine = Engine.open(root)
    assert engine.source is not None
    hub = FollowHub(engine, Settings(follow_per_client=100), Metrics())
    outdoor = hub.open(engine.check(SearchParams("jacket", 5, False, "category = outdoor")),
                       "test", engine.version)
    footwear = hub.open(engine.check(SearchParams("jacket", 5, False, "category = footwear")),
                        "test", engine.version)
    for follow in (outdoor, footwear):
        hub.arm(follow, (), (), 4)
    await hub.match_once()
    for follow in (outdoor, footwear):
        follow.take()
    hub.matched = 0
    engine.source.log.append([Document("j1", "Jacket jacket jacket", "A jacket.",
                                       {"category": "outdoor"})])
    await hub.match_once()
    assert hub.matched == 1  # the outdoor follow only: the footwear one's filter refuses it
    ranked = outdoor.take()
    assert ranked is not None and "j1" in ranked.ids
    assert footwear.take() is None
