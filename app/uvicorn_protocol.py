"""uvicorn's httptools protocol with bounded request heads and JSON bodies for its refusals.

uvicorn's httptools protocol (the fast one, which `progsearch serve` runs) puts no bound on a
request's headers and no deadline on their arrival: httptools buffers a header until its end,
however long, and a client that sends half a head holds its socket forever. uvicorn 0.54.0
has no setting or hook for either (`h11_max_incomplete_event_size` only reaches its h11
protocol, which is slower), so this subclass adds both where the bytes arrive:

- header bytes and count are counted in the parser's callbacks, and the bytes of a head still
  incomplete after each read are counted too (httptools holds a header's bytes until the header
  ends), so memory stays within the limit plus one read: past it, 431;
- one timer per request head, armed when the connection opens (then when the next request on it
  starts) and cancelled when the head is complete: past it, 408 (or a plain close when the
  client sent nothing at all);
- a URL longer than the parser can take (65,535 bytes) is refused as soon as it is that long,
  not when it ends;
- every refusal, its own and the parser's (malformed or non-ASCII request lines), is the JSON
  body of `app.errors`, after which the connection stops reading the request (it discards
  what the client still sends, for at most `LINGER_SECONDS`) so the client reads the answer
  instead of a reset.

It subclasses uvicorn's private `HttpToolsProtocol`, so it is pinned to uvicorn's version:
`tests/app/test_uvicorn_protocol.py` checks the names and signatures it overrides.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.errors import error_body

__all__ = ["MAX_URL_BYTES", "HeadLimits", "JsonErrorProtocol"]

MAX_URL_BYTES = 65_535
"""The longest URL httptools' `parse_url` takes (its offsets are 16-bit)."""
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 << 20
"""After a refusal, what is still read and dropped before closing: closing a socket with unread
input resets it, and the client would lose the answer it has not read yet."""
_LINE_BYTES = 4
"""": " and CRLF around each header, as counted against `max_header_bytes`."""
_UNPARSABLE = ("the request could not be parsed: its request line or headers are malformed or "
               "too long (keep q under the documented length)")


@dataclass(frozen=True)
class HeadLimits:
    max_header_bytes: int = 16_384
    """Header names and values (plus 4 bytes a line) of one request, in all."""
    max_headers: int = 100
    timeout: float = 5.0
    """Seconds for a request's head to arrive, from the connection's opening or the first byte
    of the request."""


class _RefusedError(Exception):
    """Raised in a parser callback to stop the parse; the refusal is already recorded."""


class JsonErrorProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: HeadLimits = HeadLimits()) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._url_bytes = 0
        self._head_read = 0
        """Bytes received while this request's head was incomplete after the read."""
        self._chunk = 0
        self._refusal: tuple[int, str, str] | None = None
        self._refused = False
        self._linger_left = LINGER_BYTES

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        self._chunk = len(data)
        super().data_received(data)
        if self._in_head and not self._refused:
            # httptools holds the bytes of an unfinished header where the callbacks do not
            # see them: bound what a head has received so far instead.
            self._head_read += len(data)
            if self._timer is None:  # a later request on the connection, arriving in pieces
                self._arm()
            if self._head_read - self._url_bytes > self.limits.max_header_bytes + 64:
                self._refuse(*self._too_large())

    # httptools callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._url_bytes = self._head_read = 0

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > MAX_URL_BYTES:
            self._refusal = (400, "bad_request", _UNPARSABLE)
            raise _RefusedError
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # The head is at most what arrived while it was incomplete plus this read: only a head
        # that may be over the limit has its headers summed.
        if len(self.headers) > self.limits.max_headers or (
            self._head_read + self._chunk - self._url_bytes > self.limits.max_header_bytes
            and sum(len(n) + len(v) for n, v in self.headers) + _LINE_BYTES * len(self.headers)
            > self.limits.max_header_bytes
        ):
            self._refusal = self._too_large()
            raise _RefusedError
        super().on_headers_complete()

    # uvicorn's answer to a request its parser refused (our callbacks' refusals included)

    def send_400_response(self, msg: str) -> None:
        self._refuse(*(self._refusal or (400, "bad_request", _UNPARSABLE)))

    # the limits

    def _too_large(self) -> tuple[int, str, str]:
        if len(self.headers) > self.limits.max_headers:
            return 431, "headers_too_large", (
                f"the request has more than {self.limits.max_headers} headers")
        return 431, "headers_too_large", (
            f"the request headers are over {self.limits.max_header_bytes} bytes in all")

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._in_head:  # connected and sent nothing: nothing to answer
            self.transport.close()
            return
        self._refuse(408, "request_timeout",
                     f"the request head did not arrive within {self.limits.timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._disarm()
        body = orjson.dumps(error_body(code, message))
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n"
                    b"x-content-type-options: nosniff\r\n"
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
                    b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

