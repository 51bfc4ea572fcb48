"""Fixtures of the service's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def root(sample_root: Path, tmp_path: Path) -> Path:
    """A private copy of the sample index, since these tests write to it."""
    copy = tmp_path / "index"
    shutil.copytree(sample_root, copy, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return copy
