"""Security headers on every answer and CORS answers in JSON, against a real uvicorn. Each test
is named after the defect it guards against (issue "Hardening", items 8 and 9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.test_edge import SEARCH, exchange, parse
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def server(sample_root: Path, tmp_path_factory: pytest.TempPathFactory,
           http: httpx.Client) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("headers") / "server.log"
    with running_server(sample_root, log, env={"PROGSEARCH_CORS_ORIGINS": ORIGIN}) as s:
        s.wait_ready(http, semantic=False)
        yield s
        assert "Traceback" not in s.output()


# Item 8: security headers were missing.

@pytest.mark.parametrize("path", ["/", "/static/app.js", "/search?q=tent", "/search?q=",
                                  "/nowhere", "/healthz"])
def test_missing_security_headers(server: ServerProcess, http: httpx.Client,
                                  path: str) -> None:
    r = http.get(server.url + path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    policies = r.headers.get_list("content-security-policy")
    assert len(policies) == 1
    assert "frame-ancestors 'none'" in policies[0]
    assert "default-src 'self'" in policies[0]


def test_missing_security_headers_on_the_protocols_own_answers(server: ServerProcess) -> None:
    _, headers, _ = parse(exchange(server, SEARCH + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n"))
    assert headers["x-content-type-options"] == "nosniff"


# Item 9: a refused CORS preflight answered 400 text/plain "Disallowed CORS origin".

def test_refused_cors_preflight_is_json(server: ServerProcess, http: httpx.Client) -> None:
    r = http.options(f"{server.url}/search", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == "cors_refused" and "origin" in error["message"]
    assert "access-control-allow-origin" not in r.headers
    r = http.options(f"{server.url}/search", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 400 and "method" in r.json()["error"]["message"]


def test_accepted_cors_preflight_has_no_text_body(server: ServerProcess,
                                                  http: httpx.Client) -> None:
    r = http.options(f"{server.url}/search", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Last-Event-ID"})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == ORIGIN
    r = http.get(f"{server.url}/search", params={"q": "tent"}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
