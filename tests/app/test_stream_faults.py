"""What the server log says when a stream ends badly, against a real uvicorn: a phase past
its deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import private_redis
from tests.server_process import running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def test_enhanced_timeout_logs_no_task_exception_never_retrieved(
    sample_root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    # A broker no worker reads: every enhanced phase passes its deadline. A resumed stream
    # runs the enhanced phase alone, encoding its query inside the deadline, so the job's own
    # timeout fires after the phase's: the single-flight task then fails with nobody waiting.
    with private_redis() as broker, running_server(sample_root, tmp_path / "s.log", env={
        "PROGSEARCH_BROKER_URL": broker.url, "PROGSEARCH_REDIS_URL": broker.url,
        "PROGSEARCH_ENHANCED_TIMEOUT": "0.3", "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http)
        version = http.get(f"{s.url}/readyz").json()["index_version"]
        for i in range(8):
            words = "+".join(["warm", "waterproof", "hiking", "jacket", "for", "rain", str(i)] * 3)
            _, events = read_stream(http, f"{s.url}/search/stream?q={words}",
                                    headers={"Last-Event-ID": f"{version}.2"})
            assert [e.event for e in events] == ["error", "done"]
            assert events[0].data["phase"] == "enhanced"
            assert events[0].data["code"] == "timeout"
        time.sleep(0.5)  # the jobs' own timeouts fire after the phases'
    log = s.output()  # the server has stopped: every task is collected
    assert "never retrieved" not in log, log
    assert "Traceback" not in log, log
