"""The index work run after writes: compaction when due, and old versions pruned."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from app.index_work import IndexWork, prune_versions
from index.core.types import Document
from index.delta import DeltaLog
from index.manifest import Manifest
from index.snapshot import (
    CURRENT,
    MANIFEST,
    BuildOptions,
    load_snapshot,
    read_manifest,
    resolve_version,
    write_snapshot,
)
from index.sources import open_source
from tests.conftest import make_corpus, write_jsonl


def keyword_index(tmp_path: Path, n: int = 50) -> Path:
    src = write_jsonl(tmp_path / "corpus.jsonl", make_corpus(n, seed=2))
    root = tmp_path / "index"
    write_snapshot(open_source(src), root, BuildOptions(workers=1))
    return root


def test_compaction_runs_when_the_log_reaches_the_threshold(tmp_path: Path) -> None:
    root = keyword_index(tmp_path)
    log = DeltaLog.open(root)
    work = IndexWork(root, compact_changes=10, log_=log)
    log.append([Document(f"n{i}", f"title {i}", "text") for i in range(9)])
    report = work.run()
    assert report.compacted is None and report.embedded == 0
    log.delete(["d0"])
    report = work.run()
    assert report.compacted is not None
    snapshot = load_snapshot(root)
    assert snapshot.version == report.compacted.version
    assert snapshot.n_docs == 50 + 9 - 1
    assert snapshot.docs.lookup("n8") is not None and snapshot.docs.lookup("d0") is None
    assert log.changes_since(report.compacted.through) == []


def test_old_versions_are_pruned_after_their_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "index"
    root.mkdir()
    names = [f"20260101T00000{i}Z-v{i}" for i in range(4)]
    old = time.time() - 3600
    for name in names:
        (root / name).mkdir()
        (root / name / MANIFEST).write_text("{}")
        os.utime(root / name, (old, old))
    (root / CURRENT).write_text(names[-1])
    os.utime(root / names[0], None)  # written just now: still in its grace period
    assert prune_versions(root, keep=2, grace=60) == [names[1]]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [names[0], *names[2:]]
    # The current version is never removed, even when it is not among the newest names.
    (root / CURRENT).write_text(names[0])
    os.utime(root / names[0], (old, old))
    assert prune_versions(root, keep=1, grace=60) == [names[2]]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [names[0], names[3]]


@pytest.mark.model
def test_a_document_written_while_a_pass_held_the_lock_is_embedded_by_that_run(
    sample_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    log = DeltaLog.open(root)
    work = IndexWork(root, compact_changes=0, log_=log)
    embed_all = work._embed_all
    passes: list[int] = []

    def first_pass_misses_a_write(manifest: Manifest) -> tuple[int, bool]:
        passes.append(1)
        if len(passes) == 1:
            # Written after this pass looked, while it held the lock: the run its writer
            # scheduled found the lock taken and returned, leaving it to this run.
            log.append([Document("late", "Copper kettle", "Whistles when the water boils.")])
            return 0, True
        return embed_all(manifest)

    work._embed_all = first_pass_misses_a_write  # type: ignore[method-assign]
    report = work.run()
    assert report.embedded == 1
    assert len(passes) == 2
    assert not work.pending()


@pytest.mark.model
def test_compaction_waits_while_writes_outpace_embedding(sample_root: Path, tmp_path: Path) -> None:
    """Regression: a run embedded until nothing waited, so while writes came faster than
    embedding it never compacted. A pass now ends after its budget, compacts what is
    embedded so far, and goes on; the document still waiting is carried in the delta."""
    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    log = DeltaLog.open(root)
    work = IndexWork(root, compact_changes=1, log_=log)
    embed_all = work._embed_all
    seen: list[int] = []

    def writes_keep_coming(manifest: Manifest, budget: float = 10.0) -> tuple[int, bool]:
        # The version each pass starts from, then a new document arrives during the pass,
        # which runs out of time before it can embed it.
        seen.append(read_manifest(resolve_version(root)).delta_seq)
        stored, _ = embed_all(manifest, budget)
        if len(seen) <= 3:
            log.append([Document(f"new-{len(seen)}", "Copper kettle", f"Boils {len(seen)}.")])
            return stored, False
        return stored, True

    work._embed_all = writes_keep_coming  # type: ignore[method-assign]
    log.append([Document("new-0", "Copper kettle", "Boils water.")])
    report = work.run()
    assert report.embedded == 4 and report.compacted is not None
    # Every pass while the writes went on started from a newer version: each compacted the
    # documents embedded before it, not waiting for the writes to stop.
    assert seen[0] < seen[1] < seen[2] < seen[3]
    assert not work.pending()


@pytest.mark.model
def test_stored_vectors_are_announced_with_the_log_s_seq(sample_root: Path, tmp_path: Path) -> None:
    """Follows shown by a semantic phase hear of a document's vectors from the index work
    itself, not at the hub's next look at the log."""
    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    log = DeltaLog.open(root)
    heard: list[int] = []
    work = IndexWork(root, compact_changes=0, log_=log, embedded=heard.append)
    written = log.append([Document("kettle", "Copper kettle", "Whistles when it boils.")])
    assert work.run().embedded == 1
    assert heard == [log.last_seq()] and heard[0] > written  # the vectors' own change
    assert work.run().embedded == 0 and len(heard) == 1  # nothing stored: nothing told


@pytest.mark.model
@pytest.mark.integration
def test_a_worker_announces_stored_vectors_on_the_write_channel(
    sample_root: Path, tmp_path: Path
) -> None:
    """The Celery worker's context publishes the seq on the channel the servers subscribe
    to for writes (`app.announce.channel_for` of the same root), on the real Redis."""
    import redis

    from app.announce import channel_for
    from app.tasks import WorkerContext

    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    url = "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, socket_timeout=5)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_for(root))
    try:
        context = WorkerContext(root, url, compact_changes=0)
        log = DeltaLog.open(root)
        log.append([Document("kettle", "Copper kettle", "Whistles when it boils.")])
        assert context.index_work().run().embedded == 1
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
        assert message is not None and int(message["data"]) == log.last_seq()
    finally:
        pubsub.close()
        client.close()
