"""A guard for the HTTP edge: generated queries, parameters, headers, ids and document bodies
thrown at a real `progsearch serve`. Every answer is a 2xx, 3xx or 4xx, with a JSON body unless
it is a stream or a 204/304; never a 5xx; and the documents stored before are still found."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.model, pytest.mark.integration]

KEY = "edge-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
KEPT = [
    {"id": "guard-kettle", "title": "Copper kettle", "text": "Whistles when the water boils."},
    {"id": "guard-lamp", "title": "Brass desk lamp", "text": "Warm light for late reading."},
]
EXAMPLES = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("edge")
    root = work / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    env = {"PROGSEARCH_API_KEY": KEY, "PROGSEARCH_MAX_BODY_BYTES": str(256 * 1024)}
    with running_server(root, work / "server.log", env=env) as proc, httpx.Client() as client:
        proc.wait_ready(client, semantic=False)
        r = client.post(f"{proc.url}/documents", content=orjson.dumps(KEPT),
                        headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        yield proc
        # The documents written before the storm are all still there and found.
        for doc in KEPT:
            assert client.get(f"{proc.url}/documents/{doc['id']}").status_code == 200
            hits = client.get(f"{proc.url}/search", params={"q": doc["title"]}).json()["hits"]
            assert doc["id"] in [h["id"] for h in hits]
        assert "Traceback" not in proc.output()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code in (204, 304) or r.headers.get("content-type", "").startswith(
        "text/event-stream"
    ):
        return
    body = r.json()  # every other answer is JSON
    if r.status_code >= 400:
        assert set(body["error"]) >= {"code", "message"}
        assert "/work" not in body["error"]["message"] and "Traceback" not in r.text


raw_values = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=200).map(lambda b: quote(b, safe="")),
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["", "0", "1", "-1", "10", "1e3", "nan", "%", "%zz", "%00", "%C0%AF"]),
)
names = st.one_of(st.sampled_from(["q", "k", "prefix"]), st.text(min_size=1, max_size=12))


@EXAMPLES
@given(params=st.lists(st.tuples(names, raw_values), max_size=5),
       path=st.sampled_from(["/search", "/search/stream"]))
def test_any_query_string_gets_a_json_answer(client: httpx.Client, params: list[tuple[str, str]],
                                             path: str) -> None:
    # '%' is kept as it is: values may come percent-encoded already, or badly.
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='%')}" for n, v in params)
    with client.stream("GET", f"{path}?{query}") as r:
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            assert r.status_code == 200
            for line in r.iter_lines():  # read the whole stream: it must end with done
                if line == "event: done":
                    break
            return
        r.read()
        check(r)


header_names = st.sampled_from(["Last-Event-ID", "If-None-Match", "Accept", "Content-Type",
                                "Origin", "Authorization", "X-API-Key", "Cookie", "Range",
                                "X-Forwarded-For", "Accept-Encoding", "X-Anything"])
# The client sends only what HTTP allows (no white space around a value): the refusals of the
# server's own parser are tested with raw sockets elsewhere.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200).map(
    str.strip
)


@EXAMPLES
@given(headers=st.dictionaries(header_names, header_values, max_size=6),
       q=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30))
def test_any_headers_get_a_json_answer(client: httpx.Client, headers: dict[str, str],
                                       q: str) -> None:
    check(client.get("/search", params={"q": q}, headers=headers))
    with client.stream("GET", "/search/stream", params={"q": q}, headers=headers) as r:
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line == "event: done":
                    break
        else:
            r.read()
            check(r)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=40), st.integers(), json_values),
        "title": st.one_of(st.text(max_size=80), json_values),
        "text": st.one_of(st.text(max_size=200), json_values),
        "price": json_values,
    },
)


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # integers of any size, unlike orjson


bodies = st.one_of(
    documents.map(dumps),
    st.lists(documents, max_size=4).map(dumps),
    json_values.map(dumps),
    st.binary(max_size=300),
    st.lists(documents, max_size=4).map(lambda ds: b"\n".join(dumps(d) for d in ds)),
)
content_types = st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""])


@EXAMPLES
@given(body=bodies, content_type=content_types)
def test_any_document_body_gets_a_json_answer(client: httpx.Client, body: bytes,
                                              content_type: str) -> None:
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    r = client.post("/documents", content=body, headers=headers)
    check(r)
    if r.status_code in (200, 201):
        assert r.json()["written"] >= 1


ids = st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: quote(b, safe="")))


@EXAMPLES
@given(doc_id=ids, method=st.sampled_from(["GET", "DELETE"]))
def test_any_document_id_gets_a_json_answer(client: httpx.Client, doc_id: str,
                                            method: str) -> None:
    if doc_id.startswith("guard"):
        return
    path = quote(doc_id, safe="%")
    check(client.request(method, f"/documents/{path}", headers=AUTH))
