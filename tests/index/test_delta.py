from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.core.types import Document
from index.delta import DELTA_FILE, DeltaLog, DeltaTruncatedError, content_hash


def doc(i: int, text: str = "body") -> Document:
    return Document(f"id{i}", f"title {i}", f"{text} {i}", {"n": i})


def test_a_second_log_sees_appended_rows(tmp_path: Path) -> None:
    first = DeltaLog.open(tmp_path)
    assert first.last_seq() == 0
    assert first.append([doc(0), doc(1)]) == 2
    assert first.delete(["id0"]) == 3
    first.close()
    second = DeltaLog.open(tmp_path)
    changes = second.changes_since(0)
    assert [(c.seq, c.op, c.id) for c in changes] == [
        (1, "upsert", "id0"),
        (2, "upsert", "id1"),
        (3, "delete", "id0"),
    ]
    assert changes[1].document == doc(1)
    assert changes[1].hash == content_hash("title 1", "body 1")
    assert second.changes_since(2)[0].seq == 3


def test_wal_and_full_sync(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    conn = log._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    bad = Document(["not", "bindable"], "t", "u")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):  # fails on the second row, inside the transaction
        log.append([doc(0), bad])
    assert log.last_seq() == 0 and log.changes_since(0) == []


def test_content_hash_ignores_other_fields() -> None:
    assert content_hash("a", "b") == content_hash("a", "b")
    assert content_hash("ab", "") != content_hash("a", "b")


def test_put_vectors_is_idempotent(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    log.append([doc(0)])
    digest = log.changes_since(0)[0].hash
    assert [c.id for c in log.pending_embeddings()] == ["id0"]
    vec, passages = np.ones(4, np.float32), np.eye(4, dtype=np.float32)[:2]
    seq = log.put_vectors("id0", digest, vec, passages, ["a", "b"], "enc")
    assert seq == 2
    assert log.put_vectors("id0", digest, vec * 2, passages, ["a", "b"], "enc") is None
    assert log.put_vectors("id0", "other-hash", vec, passages, ["a", "b"], "enc") is None
    assert log.pending_embeddings() == []
    stored = log.get_vectors([("id0", digest)])[("id0", digest)]
    assert stored.seq == 1 and stored.encoder == "enc"
    np.testing.assert_array_equal(stored.document, vec)
    np.testing.assert_array_equal(stored.passages, passages)
    assert stored.passage_texts == ("a", "b")
    assert [c.op for c in log.changes_since(0)] == ["upsert", "vectors"]


def test_pending_skips_replaced_and_deleted(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    log.append([doc(0), doc(1), doc(2)])
    log.append([doc(1, "new body")])
    log.delete(["id2"])
    pending = log.pending_embeddings()
    assert [(c.id, c.seq) for c in pending] == [("id0", 1), ("id1", 4)]
    assert log.latest("id2") is not None and log.latest("id2").op == "delete"  # type: ignore[union-attr]


def test_truncate_keeps_numbering_and_needed_vectors(tmp_path: Path) -> None:
    log = DeltaLog.open(tmp_path)
    log.append([doc(0), doc(1)])
    h0, h1 = (c.hash for c in log.changes_since(0))
    v = np.ones(2, np.float32)
    log.put_vectors("id0", h0, v, np.ones((1, 2)), ["p"])
    log.put_vectors("id1", h1, v, np.ones((1, 2)), ["p"])
    log.append([doc(1)])  # same content again, after the truncation point
    log.truncate_through(4)
    assert log.truncated_through() == 4
    assert [c.seq for c in log.changes_since(4)] == [5]
    assert set(log.get_vectors([("id0", h0), ("id1", h1)])) == {("id1", h1)}
    with pytest.raises(DeltaTruncatedError):
        log.changes_since(3)
    log.truncate_through(5)
    assert log.changes_since(5) == []
    assert log.append([doc(9)]) == 6  # numbers are never reused
    log.truncate_through(2)  # again, or less: harmless
    assert log.truncated_through() == 5


def test_the_file_is_outside_version_folders(tmp_path: Path) -> None:
    DeltaLog.open(tmp_path).append([doc(0)])
    conn = sqlite3.connect(tmp_path / DELTA_FILE)
    assert conn.execute("SELECT count(*) FROM log").fetchone()[0] == 1


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from typing import Any
from index.delta import DeltaLog
from index.core.types import Document

seq = DeltaLog.open(Path(sys.argv[1])).append([Document(f"k{i}", "t", "x") for i in range(50)])
print(seq, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # acknowledged, then gone at once
"""


def test_an_acknowledged_batch_survives_a_killed_writer(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    log = DeltaLog.open(tmp_path)
    assert log.last_seq() == int(proc.stdout) == 50
    assert [c.id for c in log.changes_since(0)] == [f"k{i}" for i in range(50)]


def _open_at_once(root: str, barrier: Any) -> None:
    barrier.wait()
    DeltaLog.open(Path(root)).close()


def test_processes_opening_one_new_log_at_once_all_succeed(tmp_path: Path) -> None:
    """Two servers started on one fresh root open its log together; the switch to WAL
    must wait for the other, not fail with "database is locked"."""
    context = multiprocessing.get_context("fork")
    for round_ in range(20):
        root = tmp_path / str(round_)
        barrier = context.Barrier(4)
        procs = [context.Process(target=_open_at_once, args=(str(root), barrier)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=60)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0], f"round {round_}"
        mode = sqlite3.connect(root / DELTA_FILE).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
