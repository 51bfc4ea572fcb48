"""The rule for document ids, against a real uvicorn (issue "Hardening", item 3): an id holding
a newline could be written and found, but never read or deleted, since no URL path addresses
it. Ids are now printable text (control characters are refused with a 422 naming the field),
and every id the rule accepts makes the whole round trip: write, get, search, delete."""

from __future__ import annotations

import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.model]

KEY = "ids-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ACCEPTED = [
    "café-Ωμέγα-日本語-🙂",
    "e\u0301",  # NFD: a different id from the NFC "é", kept as written
    "\u00e9",
    "dir/sub/file.txt",
    "/leading/and/trailing/",
    "a//double",
    "a/../b",
    "two words  inside",
    "100% pure %20 %2F %",
    "q?a#b&c=d+e;f",
    "\"quoted\" 'single' \\back",
    "no\u00a0break\u200djoiner",
    "x" * 512,  # 512 bytes
    "é" * 512,  # 512 characters, 1,024 bytes
]
REFUSED = ["line\nbreak", "tab\there", "nul\x00", "bell\x07", "del\x7f", "c1\x85next", "x" * 513]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def server(sample_root: Path, tmp_path_factory: pytest.TempPathFactory,
           http: httpx.Client) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("ids")
    root = work / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    with running_server(root, work / "server.log", env={"PROGSEARCH_API_KEY": KEY}) as s:
        s.wait_ready(http, semantic=False)
        yield s
        assert "Traceback" not in s.output()


def path(doc_id: str) -> str:
    return "/documents/" + quote(doc_id, safe="")


def word(n: int) -> str:
    """A made-up word, distinct for each document, for searching it alone."""
    return "zq" + string.ascii_lowercase[n] * 5


def found(http: httpx.Client, server: ServerProcess, n: int) -> list[str]:
    r = http.get(f"{server.url}/search", params={"q": word(n), "prefix": "0"})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["hits"]]


@pytest.mark.parametrize("n", range(len(ACCEPTED)))
def test_newline_id_round_trip_for_every_accepted_id(server: ServerProcess, http: httpx.Client,
                                                     n: int) -> None:
    doc_id = ACCEPTED[n]
    doc = {"id": doc_id, "title": f"Id check {word(n)}", "text": "An id made of anything."}
    r = http.post(f"{server.url}/documents", content=orjson.dumps(doc),
                  headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    got = http.get(server.url + path(doc_id))
    assert got.status_code == 200, got.text
    assert got.json()["id"] == doc_id
    assert found(http, server, n) == [doc_id]
    gone = http.delete(server.url + path(doc_id), headers=AUTH)
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"] == doc_id
    assert http.get(server.url + path(doc_id)).status_code == 404
    assert found(http, server, n) == []


@pytest.mark.parametrize("doc_id", REFUSED)
def test_newline_id_is_refused_with_422_naming_the_field(server: ServerProcess,
                                                         http: httpx.Client,
                                                         doc_id: str) -> None:
    body = b"\n".join(orjson.dumps({"id": i, "title": "Never written", "text": "x"})
                      for i in ("refusal-first", doc_id))
    r = http.post(f"{server.url}/documents", content=body,
                  headers={**AUTH, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("line 2: field 'id'"), message
    assert "control character" in message or "longer than 512" in message
    # Nothing of the batch was written.
    assert http.get(f"{server.url}/documents/refusal-first").status_code == 404


def test_control_character_in_a_path_is_refused(server: ServerProcess,
                                                http: httpx.Client) -> None:
    r = http.get(f"{server.url}/documents/a%01b")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_id"
    assert "U+0001" in r.json()["error"]["message"]
    # No route matches a newline; still a JSON answer.
    r = http.get(f"{server.url}/documents/line%0Abreak")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_surrounding_whitespace_is_not_part_of_an_id(server: ServerProcess,
                                                     http: httpx.Client) -> None:
    doc = {"id": "  padded id  ", "title": "Padded", "text": "Spaces around its id."}
    r = http.post(f"{server.url}/documents", content=orjson.dumps(doc),
                  headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert http.get(server.url + path("padded id")).json()["id"] == "padded id"
    assert http.get(server.url + path(" padded id ")).json()["id"] == "padded id"
