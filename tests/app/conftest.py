"""Fixtures of the service's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def root(sample_root: Path, tmp_path: Path) -> Path:
    """A private copy of the sample index, since these tests write to it."""
    copy = tmp_path / "index"
    shutil.copytree(sample_root, copy, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return copy


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A client for a test module's real server."""
    with httpx.Client(timeout=30) as client:
        yield client
