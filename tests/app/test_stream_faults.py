"""What the server log says when a stream ends badly, against a real uvicorn: a client that
stops reading, a phase past its deadline."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.app.test_server import metric
from tests.redis_server import private_redis
from tests.server_process import running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]


def frozen_client(port: int) -> socket.socket:
    """A client that asks for many streams on one connection and reads none of them: a tiny
    receive window, and requests pipelined, so the server's sends soon block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    requests = b"".join(f"GET /search/stream?q=rain+jacket+{i}&k=20 HTTP/1.1\r\nHost: x\r\n\r\n"
                        .encode() for i in range(400))
    with contextlib.suppress(BlockingIOError):  # the server stopped reading: enough is sent
        sock.sendall(requests)
    return sock


def test_dropping_a_frozen_client_is_one_info_line_counted_as_client_timeout(
    sample_root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    with running_server(sample_root, tmp_path / "s.log",
                        env={"PROGSEARCH_SEND_TIMEOUT": "0.5"}) as s:
        s.wait_ready(http)
        sock = frozen_client(s.port)
        try:
            deadline = time.monotonic() + 30
            while metric(http, s, 'progsearch_errors_total{code="client_timeout"}') < 1:
                assert time.monotonic() < deadline, s.output()
                time.sleep(0.1)
            assert metric(http, s, "progsearch_open_streams") == 0
        finally:
            sock.close()
        assert metric(http, s, 'progsearch_errors_total{code="internal"}') == 0
    log = s.output()
    dropped = [line for line in log.splitlines() if "dropped a stream" in line]
    assert dropped and all(line.startswith("progsearch: INFO:") for line in dropped), log
    assert "Traceback" not in log and "SendTimeoutError" not in log, log
    assert "ERROR" not in log, log


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
