"""Phases as objects: the registry, readiness, and a fourth phase added with one class and
one registry entry, seen through the real stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.cli import main
from app.engine import KeywordState, SemanticState, SemanticStatus
from app.phases import (
    ENHANCED,
    KEYWORD,
    PHASES,
    SEMANTIC,
    BasePhase,
    Capabilities,
    Computed,
    Context,
    Need,
    Registry,
)
from app.server import create_app
from app.settings import Settings
from tests.app.test_api import wait_ready
from tests.sse import read_stream


class WordCountPhase(BasePhase):
    """A toy fourth phase: the query's word count and how deep the keyword phase went. It
    reads the keyword phase's state when that phase ran in the same request."""

    name = "wordcount"
    seq = 4

    def __init__(self) -> None:
        self.computed: list[str] = []

    async def compute(self, ctx: Context) -> Computed:
        self.computed.append(ctx.params.q)
        keyword = ctx.previous(KeywordState)
        return Computed({
            "phase": self.name, "index_version": ctx.engine.version, "query": ctx.params.q,
            "k": ctx.params.k, "hits": [], "words": len(ctx.params.q.split()),
            "keyword_depth": None if keyword is None else int(keyword.result.docs.size),
        })


# -- the registry -------------------------------------------------------------------------

def test_the_registry_keeps_todays_ids() -> None:
    assert PHASES.names == ["keyword", "semantic", "enhanced"]
    assert [p.seq for p in PHASES] == [1, 2, 3]
    assert PHASES.done == 4
    assert PHASES.first is KEYWORD
    assert PHASES.after(1) == [SEMANTIC, ENHANCED]
    assert PHASES.after(4) == []
    assert PHASES.until("semantic") == [KEYWORD, SEMANTIC]


def test_a_fourth_phase_moves_done() -> None:
    registry = PHASES.adding(WordCountPhase())
    assert registry.names == ["keyword", "semantic", "enhanced", "wordcount"]
    assert registry.done == 5
    assert PHASES.done == 4  # the default registry is not changed


class Misnumbered(WordCountPhase):
    seq = 7


class Renamed(WordCountPhase):
    name = "keyword"


class NeedsVectorFirst(WordCountPhase):
    seq = 1
    needs = frozenset({Need.VECTOR})


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([], "at least one phase"),
        ([KEYWORD, SEMANTIC, ENHANCED, Misnumbered()], "must be 1..4 in order"),
        ([KEYWORD, SEMANTIC, ENHANCED, Renamed()], "names repeat"),
        ([NeedsVectorFirst()], "cannot need ['vector']"),
        ([SEMANTIC], "must be 1..1"),
    ],
)
def test_a_bad_registry_is_refused_with_the_reason(phases: list[BasePhase], message: str
                                                   ) -> None:
    with pytest.raises(ValueError) as info:
        Registry(phases)
    assert message in str(info.value)


def test_an_unknown_phase_name_lists_the_phases() -> None:
    with pytest.raises(KeyError) as info:
        PHASES["fuzzy"]
    assert "['keyword', 'semantic', 'enhanced']" in str(info.value)


LOADING = SemanticStatus(SemanticState.LOADING)
READY_ENCODER = SemanticStatus(SemanticState.READY)
NO_VECTORS = SemanticStatus(SemanticState.UNAVAILABLE, "this index has no vectors")
FAILED = SemanticStatus(SemanticState.FAILED, "the query encoder failed to load")
NO_PASSAGES = "this index has no passages; rebuild it without --no-passages"


@pytest.mark.parametrize(
    ("encoder", "passages", "semantic", "enhanced"),
    [
        (READY_ENCODER, True, ("ready", "", ""), ("ready", "", "")),
        (LOADING, True, ("loading", "warming_up", "the query encoder is still loading"),
         ("loading", "warming_up", "the query encoder is still loading")),
        (READY_ENCODER, False, ("ready", "", ""), ("unavailable", "unavailable", NO_PASSAGES)),
        (LOADING, False, ("loading", "warming_up", "the query encoder is still loading"),
         ("unavailable", "unavailable", NO_PASSAGES)),
        (NO_VECTORS, False, ("unavailable", "unavailable", "this index has no vectors"),
         ("unavailable", "unavailable", NO_PASSAGES)),
        (FAILED, True, ("failed", "unavailable", "the query encoder failed to load"),
         ("failed", "unavailable", "the query encoder failed to load")),
    ],
)
def test_readiness_follows_what_each_phase_needs(
    encoder: SemanticStatus, passages: bool, semantic: tuple[str, str, str],
    enhanced: tuple[str, str, str],
) -> None:
    caps = Capabilities(encoder, passages)
    assert KEYWORD.readiness(caps).ok
    for phase, want in ((SEMANTIC, semantic), (ENHANCED, enhanced)):
        got = phase.readiness(caps)
        assert (got.state, got.code, got.message) == want, phase.name
        assert got.ok is (want[0] == "ready")


# -- a fourth phase through the real stream -------------------------------------------------

@pytest.fixture(scope="module")
def toy() -> WordCountPhase:
    return WordCountPhase()


@pytest.fixture(scope="module")
def client(sample_root: Path, toy: WordCountPhase) -> Iterator[TestClient]:
    app = create_app(Settings(index=sample_root), phases=PHASES.adding(toy))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


@pytest.mark.model
def test_a_fourth_phase_streams_with_its_id_and_done_entry(client: TestClient,
                                                          toy: WordCountPhase) -> None:
    status, events = read_stream(client, "/search/stream?q=warm+rain+jacket&k=3")
    assert status == 200
    assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "wordcount", "done"]
    version = events[0].data["index_version"]
    assert [e.id for e in events] == [f"{version}.{n}" for n in (1, 2, 3, 4, 5)]
    assert events[3].data["words"] == 3 and events[3].data["cached"] is False
    # The keyword phase's state of this very request: its candidates, deeper than k.
    assert events[3].data["keyword_depth"] > 3
    done = events[4].data
    assert list(done["phases"]) == ["keyword", "semantic", "enhanced", "wordcount"]
    assert done["errors"] == []
    assert client.get("/readyz").json()["phases"]["wordcount"] == "ready"


@pytest.mark.model
def test_a_fourth_phase_resumes_after_last_event_id(client: TestClient,
                                                   toy: WordCountPhase) -> None:
    url = "/search/stream?q=insulated+tent&k=3"
    _, events = read_stream(client, url)
    version = events[0].data["index_version"]
    _, rest = read_stream(client, url, headers={"Last-Event-ID": f"{version}.3"})
    assert [(e.event, e.id) for e in rest] == [("wordcount", f"{version}.4"),
                                               ("done", f"{version}.5")]
    _, only_done = read_stream(client, url, headers={"Last-Event-ID": f"{version}.4"})
    assert [e.event for e in only_done] == ["done"]
    status, none = read_stream(client, url, headers={"Last-Event-ID": f"{version}.5"})
    assert (status, none) == (204, [])


@pytest.mark.model
def test_a_fourth_phase_comes_from_the_cache(client: TestClient, toy: WordCountPhase) -> None:
    url = "/search/stream?q=espresso+machine+grinder&k=2"
    _, first = read_stream(client, url)
    assert first[3].event == "wordcount" and first[3].data["cached"] is False
    for _ in range(50):  # the cache is written in the background, after the events
        _, again = read_stream(client, url)
        if again[-1].data["cached"]:
            break
        time.sleep(0.1)
    assert again[3].event == "wordcount" and again[3].data["cached"] is True
    assert again[3].data["words"] == 3
    assert toy.computed.count("espresso machine grinder") == 1
    metrics = client.get("/metrics").text
    assert 'progsearch_cache_requests_total{kind="wordcount",result="hit"}' in metrics
    assert 'progsearch_phase_seconds_count{phase="wordcount",source="cache"}' in metrics


@pytest.mark.model
def test_a_fourth_phase_gets_no_keyword_state_when_the_keyword_phase_did_not_run(
    client: TestClient, toy: WordCountPhase
) -> None:
    version = client.get("/readyz").json()["index_version"]
    _, rest = read_stream(client, "/search/stream?q=hiking+boots+waterproof&k=4",
                          headers={"Last-Event-ID": f"{version}.3"})
    assert [e.event for e in rest] == ["wordcount", "done"]
    assert rest[0].data["keyword_depth"] is None


# -- the command line iterates the registry -------------------------------------------------

@pytest.mark.model
def test_search_command_runs_the_phases_until_the_one_asked(
    sample_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(sample_root), "rain jacket", "-k", "3", "--until", "enhanced",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["query", "keyword", "corrections", "expansion", "unknown", "semantic",
                         "enhanced"]
    assert out["keyword"]["hits"] and len(out["semantic"]["hits"]) == 3
    assert len(out["enhanced"]["hits"]) == 3
    assert all("previous_rank" in h for h in out["enhanced"]["hits"])
    assert main(["search", str(sample_root), "rain jacket", "--until", "fuzzy"]) == 2
    assert "the phases are ['keyword', 'semantic', 'enhanced']" in capsys.readouterr().err


def test_search_command_names_a_phase_the_index_cannot_run(
    snapshot_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(snapshot_root), "protein", "--semantic"]) == 2
    assert "the semantic phase is unavailable: this index has no vectors" in (
        capsys.readouterr().err)
