"""uvicorn's HTTP protocol with JSON bodies for the requests it refuses itself.

The parser refuses a request before the app sees it when the request line or headers are
too long (a 100 kB query string, say) or malformed, and uvicorn answers that with a plain-text
400. Every error of this service is JSON, so this subclass writes the same shape as
`app.errors`. `progsearch serve` passes it to uvicorn as its `http` protocol.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body

__all__ = ["JsonErrorProtocol"]


class JsonErrorProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(error_body(
            "bad_request",
            "the request could not be parsed: its request line or headers are malformed or "
            "too long (keep q under the documented length)",
        ))
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
