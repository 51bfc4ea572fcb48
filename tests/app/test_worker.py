"""The enhanced phase through a real Celery worker process and a real Redis broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.click_log import ClickLog, Shown
from app.click_schedule import MARKER
from tests.redis_server import PrivateRedis, private_redis
from tests.server_process import running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]


class WorkerProcess:
    def __init__(self, root: Path, broker: str, log: Path, *args: str, **env: str) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", str(root), "--broker-url", broker,
                 *args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
            )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while "semantic phase ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text(errors="replace"))
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crashed machine would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateRedis]:
    with private_redis() as redis:
        yield redis


@pytest.fixture(scope="module")
def worker(sample_root: Path, broker: PrivateRedis,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = WorkerProcess(sample_root, broker.url, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def serve(root: Path, log: Path, broker: PrivateRedis, **env: str):  # type: ignore[no-untyped-def]
    return running_server(root, log, env={"PROGSEARCH_BROKER_URL": broker.url,
                                          "PROGSEARCH_ENHANCED_TIMEOUT": "2", **env})


def test_enhanced_phase_through_celery(sample_root: Path, broker: PrivateRedis,
                                       worker: WorkerProcess, http: httpx.Client,
                                       tmp_path: Path) -> None:
    with serve(sample_root, tmp_path / "s.log", broker) as s:
        s.wait_ready(http)
        _, events = read_stream(http, f"{s.url}/search/stream?q=rain+jacket+for+hiking&k=4")
        assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"], events
        enhanced = events[2].data
        assert len(enhanced["hits"]) == 4
        assert "<mark>" in enhanced["hits"][0]["highlight"]
        semantic_ids = [h["id"] for h in events[1].data["hits"]]
        for hit in enhanced["hits"]:
            if hit["previous_rank"] is not None:
                assert semantic_ids[hit["previous_rank"] - 1] == hit["id"]
        assert events[2].id.endswith(".3")
        assert "progsearch.enhance" in worker.log.read_text()
        # The reconnect after `semantic` gets just the enhanced phase and done.
        _, rest = read_stream(http, f"{s.url}/search/stream?q=rain+jacket+for+hiking&k=4",
                              headers={"Last-Event-ID": events[1].id})
        assert [e.event for e in rest] == ["enhanced", "done"]


def test_no_worker_means_an_enhanced_timeout_not_a_hang(
    sample_root: Path, http: httpx.Client, tmp_path: Path
) -> None:
    with private_redis() as idle_broker, serve(sample_root, tmp_path / "s.log", idle_broker,
                                               PROGSEARCH_ENHANCED_TIMEOUT="0.5") as s:
        s.wait_ready(http)
        _, events = read_stream(http, f"{s.url}/search/stream?q=coffee+grinder")
    assert [e.event for e in events] == ["keyword", "semantic", "error", "done"]
    assert events[2].data["phase"] == "enhanced" and events[2].data["code"] == "timeout"


def test_broker_stopped_keeps_keyword_and_semantic(sample_root: Path, http: httpx.Client,
                                                  tmp_path: Path) -> None:
    # A private Redis for the cache and answers, and a query no other test sends: nothing
    # can come from a cache, so the enhanced phase must report the dead broker.
    with private_redis() as doomed, private_redis() as cache, serve(
        sample_root, tmp_path / "s.log", doomed,
        PROGSEARCH_REDIS_URL=cache.url, PROGSEARCH_PRECOMPUTE_TOP="0",
    ) as s:
        s.wait_ready(http)
        doomed.stop()
        start = time.monotonic()
        _, events = read_stream(http, f"{s.url}/search/stream?q=folding+yoga+mat+{time.time_ns()}")
        took = time.monotonic() - start
        assert [e.event for e in events] == ["keyword", "semantic", "error", "done"], events
        assert events[2].data["phase"] == "enhanced"
        assert events[2].data["code"] in ("unavailable", "timeout")
        assert took < 30  # bounded by the publish timeout and the deadline, not hung
        assert "Traceback" not in s.output()


def test_beat_sends_the_training_from_clicks_to_a_worker(root: Path, tmp_path: Path) -> None:
    clicks = ClickLog.open(root)
    for i, query in enumerate(("rain jacket", "warm coat", "hiking boots", "camping tent")):
        shown = Shown(f"s{i}", query, "", ("p01", "p02", "p03", "p04", "p05"), "default",
                      time.time())
        clicks.add(shown, "p03")
    with private_redis() as broker:
        w = WorkerProcess(root, broker.url, tmp_path / "worker.log", "--beat",
                          PROGSEARCH_CLICK_TRAIN_SECONDS="1", PROGSEARCH_CLICK_TRAIN_MIN="1")
        try:
            deadline = time.monotonic() + 300
            while not (root / MARKER).exists():
                assert w.proc.poll() is None and time.monotonic() < deadline, \
                    w.log.read_text(errors="replace")
                time.sleep(0.2)
        finally:
            w.stop()
    report = json.loads((root / MARKER).read_text())["report"]
    assert report[0].startswith("4 searches with 4 clicks in the log")
    assert "progsearch.learn_clicks" in w.log.read_text(errors="replace")
