"""Stale build folders (issue "Hardening", item 10): a compaction killed midway left
`ROOT/.tmp-<uuid>` behind forever. The next compaction (and the next server start) removes
the folders of builds that died, and never one a live build is still writing."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.compact import compact
from index.core.types import Document
from index.snapshot import STAGING, BuildOptions, load_snapshot, sweep_staging, write_snapshot
from rankers.live import LiveIndex
from tests.index.test_compact import ROOT, live_documents, with_delta

_KILLED_COMPACTION = """
import os, signal, sys
from pathlib import Path
import index.snapshot
from index.compact import compact

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

index.snapshot._fsync_tree = die  # midway: the version is written, not yet renamed
compact(Path(sys.argv[1]))
"""

_STALLED_BUILD = """
import sys
from pathlib import Path
import index.snapshot
from index.core.types import Document
from index.snapshot import BuildOptions, write_snapshot

real_fsync_tree = index.snapshot._fsync_tree

def stall(folder):
    print("written", flush=True)
    sys.stdin.read()  # the build stays live, its folder written and not renamed, until told
    real_fsync_tree(folder)

index.snapshot._fsync_tree = stall
docs = [Document("a", "A title", "Some text."), Document("b", "B title", "More text.")]
write_snapshot(docs, Path(sys.argv[1]), BuildOptions(workers=1))
"""


def staging(root: Path) -> list[Path]:
    return sorted(root.glob(f"{STAGING}*"))


def kill_a_compaction(root: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_COMPACTION), str(root)],
        cwd=ROOT, capture_output=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    (left,) = staging(root)
    return left


@pytest.fixture
def stalled_build(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A `write_snapshot` in another process, stopped midway with its folder locked."""
    root = tmp_path / "live"
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent(_STALLED_BUILD), str(root)],
                          cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline()
            assert line == b"written\n", proc.stderr.read().decode()
            (folder,) = staging(root)
            yield proc, folder
        finally:
            if proc.poll() is None:
                proc.kill()


def test_killed_compaction_leaves_no_tmp_folder(tmp_path: Path) -> None:
    log, expected = with_delta(tmp_path)
    left = kill_a_compaction(tmp_path)
    assert (left / "docs").is_dir()
    result = compact(tmp_path, log)  # the next compaction
    assert result is not None
    assert staging(tmp_path) == []
    snap = load_snapshot(tmp_path, verify=True)
    assert live_documents(LiveIndex.open(snap, log)) == expected


def test_killed_build_folders_are_swept_even_with_nothing_to_fold(tmp_path: Path) -> None:
    log, _ = with_delta(tmp_path)
    assert compact(tmp_path, log) is not None
    for name in ("x", "y"):  # folders of builds that died, unlocked
        (tmp_path / f"{STAGING}{name}" / "docs").mkdir(parents=True)
    assert compact(tmp_path, log) is None  # nothing to fold
    assert staging(tmp_path) == []


def test_live_build_folder_is_never_swept(
    stalled_build: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, folder = stalled_build
    assert sweep_staging(folder.parent) == []
    assert folder.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sweep_staging(folder.parent) == [folder]
    assert not folder.exists()


def test_live_build_finishes_after_a_sweep(
    stalled_build: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, folder = stalled_build
    assert sweep_staging(folder.parent) == []
    _, err = proc.communicate(b"go on", timeout=120)
    assert proc.returncode == 0, err.decode()
    snap = load_snapshot(folder.parent, verify=True)
    assert snap.n_docs == 2 and staging(folder.parent) == []


def test_folder_swept_between_mkdir_and_lock_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sweep can find a build's folder in the instant before the build locks it: the build
    notices its folder is gone and makes another one, instead of failing or writing into
    nothing."""
    real_flock = fcntl.flock
    raced: list[Path] = []
    sweeping = False

    def flock_after_a_sweep(fd: int, operation: int) -> None:
        nonlocal sweeping
        if not raced and not sweeping:
            sweeping = True
            try:
                raced.extend(sweep_staging(tmp_path))  # the folder is not locked yet: removed
            finally:
                sweeping = False
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweep)
    folder = write_snapshot([Document("a", "T", "text")], tmp_path, BuildOptions(workers=1))
    assert len(raced) == 1 and not raced[0].exists()
    assert load_snapshot(folder, verify=True).n_docs == 1
    assert staging(tmp_path) == []
