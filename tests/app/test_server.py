"""A real uvicorn serving the app, with a real Redis: the stream, the cache, faults."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import private_redis
from tests.server_process import ServerProcess, running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def server(sample_root: Path, tmp_path_factory: pytest.TempPathFactory,
           http: httpx.Client) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(sample_root, log, "--redis-url", SHARED_REDIS) as s:
        s.wait_ready(http)
        yield s


def metric(http: httpx.Client, server: ServerProcess, name: str) -> float:
    for line in http.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_stream_over_http(server: ServerProcess, http: httpx.Client) -> None:
    status, events = read_stream(http, f"{server.url}/search/stream?q=rain+jacket+for+hiking&k=5")
    assert status == 200
    assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]
    assert events[0].data["hits"] and len(events[1].data["hits"]) == 5
    assert len(events[2].data["hits"]) == 5
    version = events[0].data["index_version"]
    assert [e.id for e in events] == [f"{version}.{n}" for n in (1, 2, 3, 4)]
    _, rest = read_stream(http, f"{server.url}/search/stream?q=rain+jacket+for+hiking&k=5",
                          headers={"Last-Event-ID": events[0].id})
    assert [e.event for e in rest] == ["semantic", "enhanced", "done"]


def test_redis_cache_hit_after_miss_is_shared_by_processes(
    server: ServerProcess, http: httpx.Client, sample_root: Path, tmp_path: Path
) -> None:
    url = f"/search/stream?q=warm+winter+coat+{time.time_ns()}&k=3"
    _, first = read_stream(http, server.url + url)
    assert first[-1].data["cached"] is False
    # The cache is written in the background, after the events are sent: allow it a moment.
    for _ in range(50):
        _, second = read_stream(http, server.url + url)
        if second[-1].data["cached"]:
            break
        time.sleep(0.1)
    assert second[-1].data["cached"] is True
    # Another server process on the same Redis finds the entries the first one wrote.
    with running_server(sample_root, tmp_path / "other.log", "--redis-url", SHARED_REDIS) as other:
        other.wait_ready(http, semantic=False)
        _, third = read_stream(http, other.url + url)
    assert third[0].data["cached"] is True
    assert third[0].data["hits"] == first[0].data["hits"]


def test_bad_input_over_http_is_json_4xx(server: ServerProcess, http: httpx.Client) -> None:
    for path, status in [
        ("/search?q=", 400), ("/search/stream?q=a&k=0", 400),
        ("/search?q=a&k=1000000000", 400), ("/search?q=%ff", 400),
        ("/search?q=a&unknown=1", 400), ("/search?q=" + "x" * 20_000, 414),
    ]:
        r = http.get(server.url + path)
        assert r.status_code == status, path[:60]
        assert r.headers["content-type"].startswith("application/json"), path[:60]
        assert r.json()["error"]["code"], path[:60]
    # A 100 kB query string is refused by the HTTP parser itself, still with a JSON body.
    status, body = raw_request(server.port, b"GET /search?q=" + b"x" * 100_000
                               + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 400 and b'"bad_request"' in body
    # Raw non-ASCII bytes in the request line, as a broken client sends them: the parser
    # refuses them before the app, with the same JSON shape.
    status, body = raw_request(server.port, b"GET /search?q=caf\xe9 HTTP/1.1\r\nHost: x\r\n"
                                            b"Connection: close\r\n\r\n")
    assert status == 400 and b'"bad_request"' in body
    assert "Traceback" not in server.output()


def test_dropped_client_leaves_no_open_stream(server: ServerProcess, http: httpx.Client) -> None:
    before = metric(http, server, "progsearch_open_streams")
    for i in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"GET /search/stream?q=coffee+{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(64)  # the response has started; now go away mid-stream
    deadline = time.monotonic() + 20
    while metric(http, server, "progsearch_open_streams") > before:
        assert time.monotonic() < deadline, "a stream stayed open after its client left"
        time.sleep(0.1)
    assert "Traceback" not in server.output()


def test_search_works_while_redis_is_paused_then_stopped(
    sample_root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    with private_redis() as redis, running_server(
        sample_root, tmp_path / "s.log", "--redis-url", redis.url,
        env={"PROGSEARCH_REDIS_TIMEOUT": "0.05"},
    ) as s:
        s.wait_ready(http)
        _, events = read_stream(http, f"{s.url}/search/stream?q=tea+kettle")
        assert [e.event for e in events] == ["keyword", "semantic", "enhanced", "done"]
        redis.pause()
        try:
            _, paused = read_stream(http, f"{s.url}/search/stream?q=camping+stove")
            r = http.get(f"{s.url}/search", params={"q": "yoga mat"})
        finally:
            redis.resume()
        assert [e.event for e in paused] == ["keyword", "semantic", "enhanced", "done"]
        assert paused[1].data["hits"]
        assert r.status_code == 200 and r.json()["hits"]
        redis.stop()
        _, stopped = read_stream(http, f"{s.url}/search/stream?q=desk+lamp")
        assert [e.event for e in stopped] == ["keyword", "semantic", "enhanced", "done"]
        assert metric(http, s, "progsearch_cache_failures_total") >= 1
        assert "Traceback" not in s.output()


def test_two_workers_and_sigterm_with_open_streams(
    sample_root: Path, tmp_path: Path, http: httpx.Client
) -> None:
    with running_server(sample_root, tmp_path / "w.log", "--workers", "2",
                        "--graceful-timeout", "3") as s:
        s.wait_ready(http, semantic=False)
        for q in ("boots", "kettle", "headphones", "tent"):
            assert http.get(f"{s.url}/search", params={"q": q}).status_code == 200
        socks = []
        for i in range(10):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(f"GET /search/stream?q=lamp+{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        start = time.monotonic()
        code = s.stop(timeout=30)
        took = time.monotonic() - start
        for sock in socks:
            sock.close()
    assert code == 0, s.output()
    assert took < 20, f"SIGTERM took {took:.1f} s with a 3 s graceful timeout"


def test_query_command_prints_each_phase(server: ServerProcess) -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "query", server.url, "waterprof jaket", "-k", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    phases = [line.split(":")[0].split(" in ")[0] for line in lines if line.startswith("== ")]
    assert phases == ["== keyword", "== semantic", "== enhanced", "== done"]
    assert "showing results for: waterproof jacket" in run.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "query", server.url, "", "-k", "3"],
        capture_output=True, text=True, timeout=120,
    )
    # A refusal is the server's message on one line of stderr, as `search` reports its own.
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("progsearch: error: q is required")
    assert len(refused.stderr.splitlines()) == 1
