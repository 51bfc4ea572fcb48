"""A server starting on an index root removes the `ROOT/.tmp-*` folders of builds that died
(issue "Hardening", item 10: a compaction killed midway left one forever), and leaves the
folder of a build that is still writing."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from index.snapshot import STAGING
from tests.server_process import running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]


def test_killed_compaction_folder_is_removed_at_the_next_start(sample_root: Path,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    dead = root / f"{STAGING}dead"
    (dead / "docs").mkdir(parents=True)  # what a build killed midway leaves: nobody locks it
    live = root / f"{STAGING}live"
    (live / "docs").mkdir(parents=True)
    owner = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)  # as write_snapshot holds the folder it writes
        with running_server(root, tmp_path / "server.log") as s, httpx.Client() as http:
            s.wait_ready(http, semantic=False)
            deadline = time.monotonic() + 30
            # the sweep logs what it removed once it has removed them all: wait for both
            while dead.exists() or f"removed {dead}" not in s.output():
                assert time.monotonic() < deadline, s.output()
                time.sleep(0.05)
            assert live.is_dir()
            assert f"removed {dead}" in s.output()
    finally:
        os.close(owner)
