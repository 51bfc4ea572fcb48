"""The encoder's state: an Enum whose values JSON shows, written with its error under the
engine's lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine import Engine, SemanticState, SemanticStatus
from index.core.types import Document
from tests.conftest import make_corpus
from tests.fake_vectors import build_with_vectors


def test_states_keep_their_json_values() -> None:
    assert {s.name: s.value for s in SemanticState} == {
        "LOADING": "loading", "READY": "ready", "UNAVAILABLE": "unavailable", "FAILED": "failed",
    }


def test_an_index_without_vectors_is_unavailable_from_the_start(snapshot_root: Path) -> None:
    engine = Engine.open(snapshot_root)
    assert engine.semantic_status == SemanticStatus(
        SemanticState.UNAVAILABLE, "this index has no vectors"
    )
    assert engine.start_encoder() is None


def test_encoder_state_written_outside_the_engine_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loading thread set the state after releasing the lock; it now waits for it."""
    import index.core.encoder  # noqa: F401  (imported first, so the load below fails at once)

    monkeypatch.setenv("PROGSEARCH_MODEL_DIR", "/dev/null/models")  # cannot be created
    docs = [Document(r["_id"], r["title"], r["text"]) for r in make_corpus(20)]
    engine = Engine.open(build_with_vectors(docs, tmp_path / "ix"))
    assert engine.semantic_status == SemanticStatus(SemanticState.LOADING)
    with engine._lock:
        thread = engine.start_encoder()
        assert thread is not None
        thread.join(5)
        assert thread.is_alive() and engine.semantic_state is SemanticState.LOADING
    thread.join(30)
    assert not thread.is_alive()
    assert engine.semantic_status == SemanticStatus(
        SemanticState.FAILED, "the query encoder failed to load"
    )
