"""A follow stream read on a thread, for the follow tests: events arrive in a queue."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.sse import Event

__all__ = ["END", "Follower", "write"]

END = "end-of-stream"
"""The event name `Follower` gives the end of the stream (the server closed it)."""


class Follower:
    """`GET /search/stream?follow=1&...` on its own thread; `next(event)` waits for one."""

    def __init__(self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None
                 ) -> None:
        self.events: queue.Queue[Event | BaseException] = queue.Queue()
        self.status: int | None = None
        self.body: Any = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(60, read=120))
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, args=(url, params, headers or {}),
                                        daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _read(self, url: str, params: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            with self._client as client, connect_sse(
                client, "GET", f"{url}/search/stream", params={**params, "follow": 1},
                headers=headers,
            ) as source:
                self.status = source.response.status_code
                stream = source.response.extensions.get("network_stream")
                self._sock = stream.get_extra_info("socket") if stream is not None else None
                if self.status != 200:
                    self.body = json.loads(source.response.read() or b"null")
                    self._ready.set()
                    return
                self._ready.set()
                for e in source.iter_sse():
                    if self._stop.is_set():
                        return
                    if not e.data:  # a ping (an SSE comment) keeping the stream open
                        continue
                    self.events.put(Event(e.event, e.id, json.loads(e.data), e.retry))
                self.events.put(Event(END, "", {}, None))
        except BaseException as exc:  # handed to the test
            self._ready.set()
            self.events.put(exc)

    def next(self, name: str, timeout: float = 10.0) -> Event:
        """The next event named `name` (others before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} event within {timeout} s")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if item.event == name:
                return item

    def quiet(self, seconds: float) -> list[Event]:
        """The events that arrive within `seconds` (none, when nothing changed)."""
        out: list[Event] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                break
            out.append(item)
        return out

    def close(self) -> None:
        """Leave: the connection is closed, so the server ends the follow."""
        self._stop.set()
        if self._sock is not None:  # wakes the reading thread from its blocking read
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._client.close()


def write(client: httpx.Client, url: str, key: str, *docs: dict[str, Any]) -> dict[str, Any]:
    body = "".join(json.dumps(d) + "\n" for d in docs)
    answer = client.post(f"{url}/documents", content=body.encode(),
                         headers={"Authorization": f"Bearer {key}",
                                  "Content-Type": "application/x-ndjson"})
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result
