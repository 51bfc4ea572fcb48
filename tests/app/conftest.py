"""Fixtures of the service's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.server_process import ServerProcess


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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per test module."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    """The page of the module's `server`, in a fresh browser context (a module that needs a
    viewport or listeners of its own defines its own `page`)."""
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(server.url + "/")
    yield pg
    context.close()
