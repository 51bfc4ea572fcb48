"""Compaction: the delta folded into a new version equals a full rebuild, and survives SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from index.compact import compact, fold
from index.core.types import Document
from index.delta import Change, DeltaLog
from index.ingest import embed_pending
from index.snapshot import CURRENT, BuildOptions, load_snapshot, write_snapshot
from rankers.live import LiveIndex
from rankers.live_source import LiveSource
from tests.fake_vectors import FakeEncoder, build_with_vectors
from tests.rankers.test_live import corpus, final_documents, write_delta

ROOT = Path(__file__).resolve().parents[2]


def live_documents(live: LiveIndex) -> dict[str, Document]:
    """Every document the live index holds (snapshot rows not hidden, live delta slots)."""
    view = live.view()
    rows = [r for r in range(view.n_snapshot) if view.tomb is None or not view.tomb[r]]
    slots = (np.flatnonzero(view.alive) + view.n_snapshot).tolist()
    docs = live.documents(rows + slots)
    return {d.id: d for d in docs if d is not None}


def with_delta(root: Path, *, embed: bool = True) -> tuple[DeltaLog, dict[str, Document]]:
    base, added = corpus()
    build_with_vectors(base, root)
    log = DeltaLog.open(root)
    write_delta(log, added)
    if embed:
        snap = load_snapshot(root)
        embed_pending(log, FakeEncoder(), snap.manifest.passage_options, limit=1000)
    return log, {d.id: d for d in final_documents(base, added)}


def test_compaction_equals_a_full_rebuild(tmp_path: Path) -> None:
    log, expected = with_delta(tmp_path / "a")
    result = compact(tmp_path / "a", log)
    assert result is not None and result.through == log.last_seq()
    assert (result.upserts, result.removed, result.n_docs) == (41, 2, 239)
    snap = load_snapshot(tmp_path / "a", verify=True)
    assert snap.manifest.delta_seq == result.through
    rebuilt = load_snapshot(build_with_vectors(final_documents(*corpus()), tmp_path / "b"))
    # Same documents in the same order: every array (postings, impacts, vocabulary, ids,
    # document and passage vectors) is identical.
    assert snap.manifest.arrays == rebuilt.manifest.arrays
    assert snap.docs.get_many(list(range(239))) == rebuilt.docs.get_many(list(range(239)))
    assert log.changes_since(result.through) == [] and log.truncated_through() == result.through
    live = LiveIndex.open(snap, log)
    assert live.view().empty and live.version == snap.version
    assert live_documents(live) == expected
    assert compact(tmp_path / "a", log) is None  # nothing left to fold


def test_a_keyword_only_index_compacts_everything(tmp_path: Path) -> None:
    base, added = corpus()
    write_snapshot(base, tmp_path, BuildOptions(workers=1))
    log = DeltaLog.open(tmp_path)
    write_delta(log, added)
    result = compact(tmp_path, log)
    assert result is not None and result.through == log.last_seq()
    snap = load_snapshot(tmp_path)
    assert not snap.has_vectors
    assert live_documents(LiveIndex.open(snap, log)) == {
        d.id: d for d in final_documents(base, added)
    }


def test_documents_still_being_embedded_stay_in_the_delta(tmp_path: Path) -> None:
    log, expected = with_delta(tmp_path)
    late = Document("late", "A late one", "Written after the others, not embedded yet.")
    seq = log.append([late])
    log.append([Document("d9", "d9 again", "Replaced, not embedded yet either.")])
    result = compact(tmp_path, log)
    assert result is not None and result.through == seq - 1
    live = LiveIndex.open(load_snapshot(tmp_path), log)
    assert live.view().n_slots == 2
    docs = live_documents(live)
    assert docs["late"] == late and docs["d9"].title == "d9 again"
    assert len(docs) == len(expected) + 1


@pytest.mark.parametrize(
    ("ops", "embedded", "through", "state"),
    [
        ([(1, "upsert", "a", "h1"), (2, "upsert", "b", "h2")], {("a", "h1")}, 1, ["a"]),
        ([(1, "upsert", "a", "h1"), (2, "upsert", "a", "h2")], {("a", "h2")}, 2, ["a"]),
        ([(1, "upsert", "a", "h1"), (2, "delete", "a", "")], set(), 2, ["a"]),
        ([(1, "upsert", "a", "h1"), (2, "vectors", "a", "h1")], None, 2, ["a"]),
        (
            [(1, "upsert", "a", "x"), (2, "delete", "b", ""), (3, "upsert", "b", "y")],
            None,
            3,
            ["a", "b"],
        ),
    ],
)
def test_fold(
    ops: list[tuple[int, str, str, str]],
    embedded: set[tuple[str, str]] | None,
    through: int,
    state: list[str],
) -> None:
    changes = [Change(seq, op, i, h, None) for seq, op, i, h in ops]  # type: ignore[arg-type]
    got_through, got_state = fold(changes, embedded)
    assert got_through == through and [c.id for c in got_state] == state


_KILLED = """
import os, signal, sys
from pathlib import Path
import index.snapshot
from index.compact import compact
from index.delta import DeltaLog

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "before-current":
    index.snapshot._set_current = die  # the new version is renamed into place, not current
else:
    DeltaLog.truncate_through = die  # the new version is current, the log not truncated
compact(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("point", ["before-current", "before-truncate"])
def test_a_compaction_killed_leaves_a_whole_version_and_every_document(
    tmp_path: Path, point: str
) -> None:
    log, expected = with_delta(tmp_path)
    old = (tmp_path / CURRENT).read_text()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED), str(tmp_path), point],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    snap = load_snapshot(tmp_path, verify=True)  # whole: every checksum holds
    assert ((tmp_path / CURRENT).read_text() == old) == (point == "before-current")
    assert log.truncated_through() == 0
    live = LiveIndex.open(snap, log)
    assert live_documents(live) == expected
    if point == "before-truncate":
        assert live.view().empty  # the changes the new version holds are not applied again
    # Recovery: the next compaction finishes the job.
    compact(tmp_path, log)
    snap = load_snapshot(tmp_path, verify=True)
    assert log.truncated_through() == snap.manifest.delta_seq == log.last_seq()
    assert live_documents(LiveIndex.open(snap, log)) == expected


def test_live_source_follows_compactions(tmp_path: Path) -> None:
    log, expected = with_delta(tmp_path)
    # A process that never reads CURRENT by itself: only the truncated log sends it there.
    source = LiveSource(tmp_path, DeltaLog.open(tmp_path), check_every=3600)
    first = source.current()
    log.append([Document("x", "X", "written before the compaction")])
    embed_pending(log, FakeEncoder(), first.snapshot.manifest.passage_options)
    compact(tmp_path, log)
    live = source.current()
    assert live is not first and live.snapshot.version == load_snapshot(tmp_path).version
    assert live_documents(live) == {**expected, "x": live_documents(live)["x"]}
    assert source.current() is live
