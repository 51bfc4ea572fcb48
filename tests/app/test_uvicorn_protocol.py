"""`app.uvicorn_protocol` subclasses uvicorn's private `HttpToolsProtocol`: uvicorn 0.54.0 has
no supported hook for a header limit, a header timeout or the body of the parser's refusals
(`Config.http` takes a protocol class; `h11_max_incomplete_event_size` reaches only the h11
protocol). These tests fail loudly when an upgrade moves what the subclass relies on; its
behaviour is tested against a real uvicorn in `test_edge.py`."""

from __future__ import annotations

import inspect
import pickle
from functools import partial

import httptools
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import Server

from app.uvicorn_protocol import HeadLimits, JsonErrorProtocol

PINNED = "0.54.0"
"""The uvicorn version the subclass was written against (pyproject.toml pins the same)."""

OVERRIDDEN = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_headers_complete": ["self"],
    "send_400_response": ["self", "msg"],
}


def test_uvicorn_is_the_pinned_version() -> None:
    assert uvicorn.__version__ == PINNED, (
        "uvicorn changed: check app/uvicorn_protocol.py against its HttpToolsProtocol, then "
        "update PINNED")


def test_overridden_methods_exist_with_their_signatures() -> None:
    base = httptools_impl.HttpToolsProtocol
    for name, params in OVERRIDDEN.items():
        method = getattr(base, name, None)
        assert callable(method), f"HttpToolsProtocol.{name} is gone"
        assert list(inspect.signature(method).parameters) == params, name
        assert name in vars(JsonErrorProtocol), f"{name} is no longer overridden"


def test_what_the_subclass_reads_is_still_there() -> None:
    """Names read from uvicorn's module and instances: the status lines, the headers list the
    parser callbacks fill, the default headers, the loop and transport."""
    assert httptools_impl.STATUS_LINE[431] == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert httptools_impl.STATUS_LINE[408] == b"HTTP/1.1 408 Request Timeout\r\n"
    init = inspect.getsource(httptools_impl.HttpToolsProtocol.__init__)
    for attribute in ("self.loop", "self.transport", "self.server_state", "self.headers"):
        assert attribute in init, attribute
    begin = inspect.getsource(httptools_impl.HttpToolsProtocol.on_message_begin)
    assert "self.headers = []" in begin


def test_parser_errors_still_reach_send_400_response() -> None:
    """Our callbacks refuse a request by raising: httptools turns it into an
    `HttpParserCallbackError`, which uvicorn's `data_received` catches and answers through
    `send_400_response`."""
    assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
    source = inspect.getsource(httptools_impl.HttpToolsProtocol.data_received)
    assert "except httptools.HttpParserError" in source
    assert "self.send_400_response(" in source


def test_uvicorn_builds_protocols_with_keyword_arguments() -> None:
    """`serve` passes a partial binding the limits as uvicorn's `http` class: uvicorn must call
    it with keywords only, and the partial must pickle for spawned workers."""
    source = inspect.getsource(Server.startup)
    assert "config.http_protocol_class(" in source
    call = source.split("config.http_protocol_class(", 1)[1].split(")", 1)[0]
    assert "config=config" in call and "server_state=" in call and "app_state=" in call
    factory = partial(JsonErrorProtocol, limits=HeadLimits(8192, 50, 2.0))
    restored = pickle.loads(pickle.dumps(factory))
    assert restored.func is JsonErrorProtocol
    assert restored.keywords["limits"] == HeadLimits(8192, 50, 2.0)
