"""A raw-socket HTTP/1.1 client for benchmarks: one fresh connection per request, SSE parsed.

Raw sockets rather than httpx because the client must cost microseconds, not the 60 ms of a
new `httpx.Client`: every event is stamped with `time.perf_counter()` when its last byte
arrives, so the figures are the server's, not the client's. The same parser serves a blocking
client (one request at a time) and an asyncio one (many streams at once).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Event",
    "HttpParser",
    "Reply",
    "fetch",
    "fetch_async",
    "order_problem",
    "phase_errors",
]

_LINE_END = re.compile(rb"\r\n|\r|\n")
PHASES = ("keyword", "semantic", "enhanced")
"""The phase events of protocol version 1, in the order a stream sends them."""


@dataclass(frozen=True)
class Event:
    name: str
    id: str
    data: str
    at: float
    """`time.perf_counter()` when the blank line ending the event arrived."""

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Reply:
    sent: float = 0.0
    """`time.perf_counter()` just before the request was written."""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[Event] = field(default_factory=list)
    ended: float = 0.0
    error: str | None = None

    def ms(self, at: float) -> float:
        return (at - self.sent) * 1000

    def event(self, name: str) -> Event | None:
        return next((e for e in self.events if e.name == name), None)


class HttpParser:
    """Incremental parser of one HTTP/1.1 response: head, chunked or sized body, SSE events."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.complete = False
        self._buf = b""
        self._head_done = False
        self._chunked = False
        self._remaining = -1  # bytes left of the sized body or of the current chunk
        self._state = "size"  # of the chunked decoder: size line, data, or its CRLF
        self._sse = b""
        self._fields: dict[str, str] = {}
        self._body: list[bytes] = []

    def feed(self, data: bytes, now: float) -> None:
        self._buf += data
        if not self._head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head(self._buf[:end].decode("latin-1"))
            self._buf = self._buf[end + 4 :]
        if self._chunked:
            self._dechunk(now)
            return
        piece, self._buf = self._buf, b""
        if self._remaining >= 0:
            self._remaining -= len(piece)
        self._take(piece, now)
        if self._remaining == 0:
            self._finish(now)

    def eof(self, now: float) -> None:
        """The server closed the connection."""
        if self.complete:
            return
        if self._head_done and not self._chunked and self._remaining < 0:
            self._finish(now)  # a body delimited by the end of the connection
        else:
            self.reply.error = self.reply.error or "connection closed mid-response"

    def _head(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        self.reply.status = int(status_line.split(" ", 2)[1])
        for line in lines:
            name, _, value = line.partition(":")
            self.reply.headers[name.strip().lower()] = value.strip()
        self._head_done = True
        self._chunked = "chunked" in self.reply.headers.get("transfer-encoding", "")
        if not self._chunked and "content-length" in self.reply.headers:
            self._remaining = int(self.reply.headers["content-length"])
        if self._remaining == 0:
            self._finish(time.perf_counter())

    def _dechunk(self, now: float) -> None:
        while not self.complete:
            if self._state == "size":
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(self._buf[:end].split(b";")[0], 16)
                self._buf = self._buf[end + 2 :]
                if size == 0:
                    self._finish(now)
                    return
                self._remaining, self._state = size, "data"
            elif self._state == "data":
                if not self._buf:
                    return
                piece = self._buf[: self._remaining]
                self._buf = self._buf[len(piece) :]
                self._remaining -= len(piece)
                self._take(piece, now)
                if self._remaining == 0:
                    self._state = "crlf"
            else:  # the CRLF that ends a chunk's data
                if len(self._buf) < 2:
                    return
                self._buf, self._state = self._buf[2:], "size"

    def _take(self, piece: bytes, now: float) -> None:
        if self.reply.headers.get("content-type", "").startswith("text/event-stream"):
            self._sse += piece
            self._events(now)
        else:
            self._body.append(piece)

    def _events(self, now: float) -> None:
        while True:
            match = _LINE_END.search(self._sse)
            if match is None:
                return
            if match.group() == b"\r" and match.end() == len(self._sse):
                return  # maybe the first half of a CRLF
            line = self._sse[: match.start()].decode("utf-8")
            self._sse = self._sse[match.end() :]
            if not line:
                if "data" in self._fields or "event" in self._fields:
                    self.reply.events.append(Event(
                        self._fields.get("event", "message"), self._fields.get("id", ""),
                        self._fields.get("data", ""), now,
                    ))
                self._fields = {}
            elif not line.startswith(":"):  # a comment is a ping
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data" and "data" in self._fields:
                    value = self._fields["data"] + "\n" + value
                self._fields[name] = value

    def _finish(self, now: float) -> None:
        self.complete = True
        self.reply.ended = now
        self.reply.body = b"".join(self._body)


def _request(path: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def fetch(port: int, path: str, timeout: float = 30.0) -> Reply:
    """One GET on a fresh loopback connection, read to the end; never raises on I/O errors."""
    reply = Reply()
    parser = HttpParser(reply)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = _request(path, port)
            reply.sent = time.perf_counter()
            sock.sendall(request)
            while not parser.complete:
                data = sock.recv(65536)
                now = time.perf_counter()
                if not data:
                    parser.eof(now)
                    break
                parser.feed(data, now)
    except (OSError, ValueError) as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    return reply


async def fetch_async(port: int, path: str, start: asyncio.Event | None = None,
                      timeout: float = 60.0) -> Reply:
    """`fetch` for asyncio: connects, then waits for `start` so many requests leave together."""
    reply = Reply()
    parser = HttpParser(reply)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if start is not None:
                await start.wait()
            reply.sent = time.perf_counter()
            writer.write(_request(path, port))
            while not parser.complete:
                data = await reader.read(65536)
                now = time.perf_counter()
                if not data:
                    parser.eof(now)
                    break
                parser.feed(data, now)
    except (OSError, ValueError, TimeoutError) as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    return reply


def order_problem(reply: Reply, required: tuple[str, ...] = ("keyword", "semantic")
                  ) -> str | None:
    """What is wrong with a stream's events, or None. Right is: the `required` phases, then
    possibly later ones of `PHASES`, each once and in protocol order (an `error` event standing
    for its phase), event ids increasing, and `done` last."""
    if reply.error:
        return reply.error
    if reply.status != 200:
        return f"status {reply.status}"
    names = [e.name for e in reply.events]
    if not names or names[-1] != "done" or names.count("done") != 1:
        return f"events {names}: no single final done"
    seen = tuple(e.json().get("phase", "?") if e.name == "error" else e.name
                 for e in reply.events[:-1])
    if seen[: len(required)] != required or seen != PHASES[: len(seen)]:
        return f"events {names}: expected {list(required)}, later phases in order, then done"
    seqs = [e.id.rpartition(".")[2] for e in reply.events]
    if not all(s.isdigit() for s in seqs) or [int(s) for s in seqs] != sorted(
        {int(s) for s in seqs}
    ):
        return f"event ids {[e.id for e in reply.events]} are not increasing"
    return None


def phase_errors(reply: Reply) -> list[str]:
    """`phase:code` of every `error` event of a stream."""
    out = []
    for e in reply.events:
        if e.name == "error":
            body = e.json()
            out.append(f"{body.get('phase')}:{body.get('code')}")
    return out
