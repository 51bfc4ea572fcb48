"""The HTTP edge against a real uvicorn, as a hostile client meets it: request heads that are
too large or never finish (`app.uvicorn_protocol`). Each test is named after the defect it
guards against (issue "Hardening", items 1 and 2)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

TIMEOUT = 1.0
"""PROGSEARCH_HEADER_TIMEOUT of the server under test, seconds."""
SEARCH = b"GET /search?q=rain HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def server(sample_root: Path, tmp_path_factory: pytest.TempPathFactory,
           http: httpx.Client) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("edge") / "server.log"
    env = {"PROGSEARCH_HEADER_TIMEOUT": str(TIMEOUT)}
    with running_server(sample_root, log, env=env) as s:
        s.wait_ready(http, semantic=False)
        yield s
        assert "Traceback" not in s.output()


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def exchange(server: ServerProcess, *pieces: bytes, pause: float = 0.0) -> bytes:
    """Send the pieces (a pause between them), then read until the server closes."""
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError):  # the server stopped reading: it answered
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(pause)
        return read_all(sock)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), {k.lower(): v for k, v in headers.items()}, body


def json_error(answer: bytes, status: int, code: str) -> str:
    got, headers, body = parse(answer)
    assert got == status, answer[:300]
    assert headers["content-type"] == "application/json"
    error = orjson.loads(body)["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def rss_kib(server: ServerProcess) -> int:
    with open(f"/proc/{server.proc.pid}/status") as fh:
        line = next(line for line in fh if line.startswith("VmRSS:"))
    return int(line.split()[1])


def open_fds(server: ServerProcess) -> int:
    return len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))


# Item 1: header size and count were unlimited.

@pytest.mark.parametrize("size", [64_000, 1_000_000, 64_000_000])
def test_unlimited_header_size_gets_431(server: ServerProcess, size: int) -> None:
    started = time.monotonic()
    answer = exchange(server, SEARCH + b"X-Big: " + b"a" * size + b"\r\n\r\n")
    message = json_error(answer, 431, "headers_too_large")
    assert "16384 bytes" in message
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("count", [101, 1_000, 10_000])
def test_unlimited_header_count_gets_431(server: ServerProcess, count: int) -> None:
    many = b"".join(b"X-%d: b\r\n" % i for i in range(count))
    message = json_error(exchange(server, SEARCH + many + b"\r\n"), 431, "headers_too_large")
    assert "100 headers" in message


@pytest.mark.parametrize("split", [False, True])
def test_header_limit_counts_the_headers_not_the_arrival(server: ServerProcess,
                                                         split: bool) -> None:
    """Under the limit passes, over it is refused, whether the head comes in one read or in
    many (each a separate count in the protocol)."""
    for value, status in [(15_000, 200), (16_400, 431)]:
        request = SEARCH + b"X-Big: " + b"a" * value + b"\r\nConnection: close\r\n\r\n"
        pieces = [request[i:i + 1000] for i in range(0, len(request), 1000)] if split else [
            request]
        got, _, _ = parse(exchange(server, *pieces, pause=0.002 if split else 0))
        assert got == status, (value, split)
    many = b"".join(b"X-%d: b\r\n" % i for i in range(99))
    close = b"Connection: close\r\n\r\n"
    got, _, _ = parse(exchange(server, SEARCH + many + close))  # Host, 99, Connection: 101
    assert got == 431
    got, _, _ = parse(exchange(server, SEARCH + many[: -len(b"X-98: b\r\n")] + close))
    assert got == 200  # 100 headers


def test_huge_concurrent_headers_keep_memory_bounded(server: ServerProcess) -> None:
    """Four concurrent 100 MB headers grew the server by 450 MB; now each is refused after
    its first reads, and the server discards the rest without keeping it."""
    before = rss_kib(server)
    payload = SEARCH + b"X-Big: " + b"a" * (100 << 20) + b"\r\n\r\n"
    answers: list[bytes] = []

    def send() -> None:
        with connect(server) as sock:
            with contextlib.suppress(OSError):  # the server stopped reading after answering
                sock.sendall(payload)
            try:
                answers.append(sock.recv(4096))
            except OSError:
                answers.append(b"")

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    peak = before
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(server))
        time.sleep(0.02)
    grown_mib = (max(peak, rss_kib(server)) - before) / 1024
    assert grown_mib < 30, f"the server grew by {grown_mib:.0f} MiB"
    assert len(answers) == 4
    assert sum(a.startswith(b"HTTP/1.1 431 ") for a in answers) >= 3, answers


def test_url_too_long_for_the_parser_is_still_json_400(server: ServerProcess) -> None:
    for pieces in ([b"GET /search?q=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
                   [b"GET /search?q=", *[b"x" * 10_000] * 10]):  # a URL that never ends
        json_error(exchange(server, *pieces), 400, "bad_request")


def test_pipelined_requests_are_all_answered(server: ServerProcess) -> None:
    one = SEARCH + b"\r\n"
    answer = exchange(server, one + one + SEARCH + b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 3


# Item 2: half-sent requests were never timed out.

def test_half_sent_request_is_timed_out(server: ServerProcess, http: httpx.Client) -> None:
    baseline = open_fds(server)
    socks = [connect(server) for _ in range(200)]
    for sock in socks:
        sock.sendall(SEARCH + b"X-a: b\r\n")
    # Normal clients are served meanwhile.
    started = time.monotonic()
    assert http.get(f"{server.url}/search", params={"q": "tent"}).status_code == 200
    assert time.monotonic() - started < 1
    for sock in socks:
        message = json_error(read_all(sock), 408, "request_timeout")
        assert f"{TIMEOUT:g} s" in message
        sock.close()
    assert time.monotonic() - started < TIMEOUT + 5
    deadline = time.monotonic() + 10
    while open_fds(server) > baseline + 5:
        assert time.monotonic() < deadline, "the server kept the timed-out sockets open"
        time.sleep(0.1)


def test_half_sent_request_trickling_bytes_is_timed_out(server: ServerProcess) -> None:
    """A client that keeps sending a byte at a time is timed out from its head's start."""
    with connect(server) as sock:
        sock.sendall(SEARCH)
        started = time.monotonic()
        for _ in range(50):
            sock.sendall(b"X")
            if select.select([sock], [], [], 0.1)[0]:  # the server answered
                break
        answer = read_all(sock)
    json_error(answer, 408, "request_timeout")
    assert time.monotonic() - started < TIMEOUT + 3


def test_half_sent_request_after_a_keep_alive_request_is_timed_out(
    server: ServerProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(SEARCH + b"\r\n")
        time.sleep(0.3)  # the answer to the first request arrives
        sock.sendall(SEARCH + b"X-a: b\r\n")
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 408 Request Timeout" in answer
    assert time.monotonic() - started < TIMEOUT + 3


def test_silent_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
    assert TIMEOUT * 0.8 < time.monotonic() - started < TIMEOUT + 3


def test_slow_body_is_not_a_slow_head(server: ServerProcess) -> None:
    """The timer is for the head only: a head that arrived in time is served however long the
    client then takes (here a keep-alive request sent well after the timeout)."""
    with connect(server) as sock:
        sock.sendall(SEARCH + b"\r\n")
        first = sock.recv(65536)
        time.sleep(TIMEOUT * 1.5)  # within uvicorn's keep-alive (5 s)
        sock.sendall(SEARCH + b"Connection: close\r\n\r\n")
        second = read_all(sock)
    assert (first + second).count(b"HTTP/1.1 200 OK") == 2, (first + second)[-300:]
