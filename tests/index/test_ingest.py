"""The write path's edges: request bodies to documents, and the idempotent embedding task."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from index.core.errors import SourceError
from index.core.types import Document
from index.delta import DeltaLog
from index.ingest import embed_document, embed_pending, parse_documents
from index.passages import PassageOptions
from tests.fake_vectors import FakeEncoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("body", "ndjson", "ids"),
    [
        (b'{"id": "a", "title": "T", "text": "x"}', None, ["a"]),
        (b'[{"id": "a", "text": "x"}, {"_id": "b", "title": "y"}]', None, ["a", "b"]),
        (b'{"id": "a", "text": "x"}\n\n{"id": 7, "text": "y"}\n', None, ["a", "7"]),
        (b'{"id": "a", "text": "x"}\n', True, ["a"]),
        (b'{\n "id": "a",\n "text": "pretty"\n}', None, ["a"]),
    ],
)
def test_parse_documents(body: bytes, ndjson: bool | None, ids: list[str]) -> None:
    assert [d.id for d in parse_documents(body, ndjson=ndjson)] == ids


@pytest.mark.parametrize(
    ("body", "ndjson", "message"),
    [
        (b'{"id": "a", "text": "x"}\n{"id": "b", "text": ""}', None, "line 2: fields 'title'"),
        (b'{"id": "a", "text": "x"}\n{oops}\n', None, "line 2: malformed JSON"),
        (b'[{"id": "a", "text": "x"}, {"text": "y"}]', None, "item 1: field 'id' is missing"),
        (b"{oops}", False, "malformed JSON"),
        (b"[]", None, "no document"),
        (b'{"id": "a", "title": 3}', None, "field 'title' must be a string"),
    ],
)
def test_bad_bodies_name_the_record(body: bytes, ndjson: bool | None, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_documents(body, ndjson=ndjson)


def test_embed_document_skips_what_is_stale_or_done(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    encoder, options = FakeEncoder(), PassageOptions()
    log.append([Document("a", "Title", "One sentence here. And a second one here.")])
    first = log.changes_since(0)[0]
    log.append([Document("a", "Title", "Replaced.")])
    assert not embed_document(log, encoder, "a", first.hash, options)  # replaced since
    latest = log.latest("a")
    assert latest is not None
    assert embed_document(log, encoder, "a", latest.hash, options)
    calls = encoder.encoded
    assert not embed_document(log, encoder, "a", latest.hash, options)  # done already
    assert encoder.encoded == calls
    log.delete(["a"])
    assert log.pending_embeddings() == []
    assert not embed_document(log, encoder, "a", latest.hash, options)


_KILLED_WORKER = """
import os, signal, sys
from pathlib import Path
from index.delta import DeltaLog
from index.ingest import embed_pending
from index.passages import PassageOptions
from tests.fake_vectors import FakeEncoder

log = DeltaLog.open(Path(sys.argv[1]))
def trace(sql):
    # Inside put_vectors' transaction: the vectors row is written, its log entry not yet.
    if sql.startswith("INSERT INTO log (op, id, hash) VALUES ('vectors'"):
        os.kill(os.getpid(), signal.SIGKILL)
log._conn().set_trace_callback(trace)
embed_pending(log, FakeEncoder(), PassageOptions())
"""


def test_a_worker_killed_while_storing_vectors_embeds_exactly_once(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    log.append([Document(f"d{i}", f"Title {i}", f"Body number {i}. More text.") for i in range(3)])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WORKER), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len(log.pending_embeddings()) == 3  # the killed transaction left nothing
    assert embed_pending(log, FakeEncoder(), PassageOptions()) == 3  # the task, run again
    assert embed_pending(log, FakeEncoder(), PassageOptions()) == 0
    ops = [(c.op, c.id) for c in log.changes_since(3)]
    assert sorted(ops) == [("vectors", "d0"), ("vectors", "d1"), ("vectors", "d2")]
    stored = log.get_vectors((c.id, c.hash) for c in log.changes_since(0) if c.op == "upsert")
    assert len(stored) == 3 and all(v.passages.shape == (2, 16) for v in stored.values())


@pytest.mark.model
def test_a_written_document_is_found_by_meaning_once_embedded(
    sample_root: Path, tmp_path: Path
) -> None:
    import shutil

    from index.ingest import load_document_encoder
    from index.snapshot import load_snapshot
    from rankers.enhance import EnhancedRanker
    from rankers.keyword import KeywordRanker
    from rankers.live import LiveIndex
    from rankers.semantic import SemanticRanker
    from tests.live_search import LiveSearch

    root = shutil.copytree(sample_root, tmp_path / "index")  # the fixture is shared
    snap = load_snapshot(root)
    encoder = load_document_encoder(snap.manifest)
    log = DeltaLog.open(root)
    new = Document("p99", "Feline scratching tower", "A sisal post where cats sharpen claws.")
    log.append([new])
    live = LiveIndex.open(snap, log)
    keyword = KeywordRanker(snap)
    search = LiveSearch(live, keyword)
    semantic = SemanticRanker(snap, keyword, encoder)
    query = "somewhere for my kitten to scratch"
    plan = search.plan(query)
    vector = encoder.encode_query(query)
    before = search.fuse(semantic, plan, search.run(plan, 100), vector, 10)
    assert live.lookup("p99") not in before.docs.tolist()  # not embedded yet
    assert embed_pending(log, encoder, snap.manifest.passage_options) == 1
    live.refresh(log)
    after = search.fuse(semantic, plan, search.run(plan, 100), vector, 100)
    assert after.docs[0] == live.lookup("p99")
    enhanced = search.rerank(
        EnhancedRanker(snap, keyword), plan, search.run(plan, 100), vector, after, 5
    )
    assert enhanced.docs[0] == live.lookup("p99")
    assert enhanced.highlights[0] == "A sisal post where cats sharpen claws."
