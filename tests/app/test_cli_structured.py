"""Filters, facets and sorting on the command line: `progsearch search` runs the service's
phases on the index and prints what the server would answer; `progsearch query` passes the
flags to a real server. A bad filter, facets or sort is one line on stderr, the server's own
message, and exit status 2."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.cli_format import facet_lines
from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source
from index.vector_params import VectorOptions
from tests.server_process import ServerProcess, running_server

pytestmark = pytest.mark.model

WORDS = ["rain", "jacket", "hiking", "boots", "warm", "coat", "trail", "shoes", "tent", "lamp"]
CATEGORIES = ["outdoor", "footwear", "camping"]
BRANDS = ["Alpa", "Borea Outdoor", "Cirrus"]
COLOURS = ["red", "blue", "green", "black"]
Record = dict[str, Any]


def products() -> list[Record]:
    rng = random.Random(14)
    out = []
    for i in range(80):
        title = " ".join(rng.sample(WORDS, 3))
        out.append({"id": f"p{i}", "title": title, "text": f"A {title} for the trail.",
                    "category": rng.choice(CATEGORIES), "brand": rng.choice(BRANDS),
                    "colours": rng.sample(COLOURS, rng.randint(1, 2)),
                    "price": rng.randint(5, 300) + (0.5 if i % 4 == 0 else 0),
                    "in_stock": rng.random() < 0.7})
    return out


BY_ID = {p["id"]: p for p in products()}
FILTER = "category = outdoor AND price < 200"


def passes(doc_id: str) -> bool:
    p = BY_ID[doc_id]
    return bool(p["category"] == "outdoor" and p["price"] < 200)


def holds(record: Record, words: str) -> bool:
    return any(w in f"{record['title']} {record['text']}".split() for w in words.split())


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli-structured")
    source = work / "products.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in products()))
    root = work / "index"
    write_snapshot(open_source(source), root,
                   BuildOptions(workers=1, vectors=VectorOptions(batch_size=16)))
    return root


@pytest.fixture(scope="module")
def server(index: Path, tmp_path_factory: pytest.TempPathFactory,
           http: httpx.Client) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("cli-structured-server") / "server.log"
    with running_server(index, log) as s:
        s.wait_ready(http)
        yield s


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """`progsearch ARGS` through its entry point: (exit status, stdout, stderr)."""

    def go(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return go


def search_json(run: Run, index: Path, *args: str) -> dict[str, Any]:
    code, out, err = run("search", str(index), *args, "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


HIT = re.compile(r"^\s*\d+\s+-?\d+\.\d+\s+(\S+)\s")
PHASE = re.compile(r"^(\w+) \(\d+ hits in ")


def printed_hits(out: str) -> dict[str, list[tuple[str, str]]]:
    """`search`'s text output: each phase's hits as (id, the fields line under it)."""
    phases: dict[str, list[tuple[str, str]]] = {}
    lines = out.splitlines()
    current: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if m := PHASE.match(line):
            current = phases.setdefault(m.group(1), [])
        elif (m := HIT.match(line)) and i + 1 < len(lines):
            current.append((m.group(1), lines[i + 1].strip()))
    return phases


def server_search(server: ServerProcess, http: httpx.Client, **params: Any) -> dict[str, Any]:
    # The command line completes no word unless told (--prefix); the server does by default.
    r = http.get(f"{server.url}/search", params={"prefix": "0", **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def without_timing(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload without what differs per answer (its timing, cache state, version and the
    served answer's search id, which a local run has no use for)."""
    return {k: v for k, v in payload.items()
            if k not in ("took_ms", "cached", "index_version", "search_id")}


# -- search ------------------------------------------------------------------------------

def test_search_keeps_every_printed_hit_to_the_filter(run: Run, index: Path) -> None:
    code, out, err = run("search", str(index), "rain jacket boots", "--filter", FILTER,
                         "-k", "10", "--until", "enhanced")
    assert code == 0, err
    assert out.splitlines()[0] == 'filter: category = "outdoor" AND price < 200'
    phases = printed_hits(out)
    assert list(phases) == ["keyword", "semantic", "enhanced"]
    for name, hits in phases.items():
        assert len(hits) >= 5, name
        for doc_id, fields in hits:
            assert passes(doc_id), (name, doc_id)
            record = BY_ID[doc_id]
            assert fields.startswith("category=outdoor brand="), fields
            assert float(fields.split(" price=")[1].split()[0]) == record["price"] < 200
            assert fields.endswith(f"in_stock={str(record['in_stock']).lower()}"), fields
    # Filtered out of every phase, not only the keyword one: the unfiltered search has others.
    unfiltered = printed_hits(run("search", str(index), "rain jacket boots", "-k", "10",
                                  "--until", "enhanced")[1])
    assert any(not passes(doc_id) for hits in unfiltered.values() for doc_id, _ in hits)


def test_search_json_is_the_servers_payloads(run: Run, index: Path, server: ServerProcess,
                                             http: httpx.Client) -> None:
    out = search_json(run, index, "rain jacket", "--filter", FILTER, "--facets",
                      "category,brand,colours,price,in_stock", "--sort", "price:asc",
                      "-k", "6", "--until", "semantic")
    assert list(out) == ["query", "keyword", "semantic"]
    for name in ("keyword", "semantic"):
        hits = out[name]["hits"]
        assert hits and all(passes(h["id"]) for h in hits), name
        for h in hits:
            record = BY_ID[h["id"]]
            colours = sorted(record["colours"])  # a list comes back in dictionary order
            assert h["fields"] == {
                **{n: record[n] for n in ("category", "brand", "price", "in_stock")},
                "colours": colours if len(colours) > 1 else colours[0],
            }
    served = server_search(server, http, q="rain jacket", filter=FILTER, k=6,
                           facets="category,brand,colours,price,in_stock", sort="price:asc")
    assert without_timing(out["keyword"]) == without_timing(served)


def test_search_prints_the_facets_the_server_counts(run: Run, index: Path,
                                                    server: ServerProcess,
                                                    http: httpx.Client) -> None:
    args = {"q": "rain", "filter": "in_stock = true", "facets": "category,colours,price"}
    out = search_json(run, index, args["q"], "--filter", args["filter"], "--facets",
                      args["facets"], "-k", "2")
    served = server_search(server, http, k=2, **args)["facets"]
    assert out["keyword"]["facets"] == served
    # ... which are the counts over the whole match set, not the two hits shown.
    matches = [p for p in products() if holds(p, "rain") and p["in_stock"]]
    assert served["category"]["matched"] == len(matches) > 2
    assert dict(map(tuple, served["category"]["values"])) == Counter(
        p["category"] for p in matches)
    prices = [p["price"] for p in matches]
    assert (served["price"]["min"], served["price"]["max"]) == (min(prices), max(prices))

    code, text, err = run("search", str(index), args["q"], "--filter", args["filter"],
                          "--facets", args["facets"], "-k", "2")
    assert code == 0, err
    lines = text.splitlines()
    at = lines.index("facets")
    assert lines[at + 1 : at + 4] == [f"  {line}" for line in facet_lines(served)]
    assert lines[at + 3] == f"  price ({len(matches)} matched): min {min(prices):g}, " \
                            f"max {max(prices):g}"
    top = Counter(p["category"] for p in matches).most_common(1)[0]
    assert lines[at + 1].startswith(f"  category ({len(matches)} matched): {top[0]} {top[1]}")


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_search_sort_orders_every_phase(run: Run, index: Path, direction: str) -> None:
    out = search_json(run, index, "trail shoes", "--sort", f"price:{direction}", "-k", "8",
                      "--until", "enhanced")
    for name in ("keyword", "semantic", "enhanced"):
        prices = [h["fields"]["price"] for h in out[name]["hits"]]
        assert len(prices) == 8, name
        assert prices == sorted(prices, reverse=direction == "desc"), name
    code, text, err = run("search", str(index), "trail shoes", "--sort", f"price:{direction}",
                          "-k", "8")
    assert code == 0, err
    printed = [float(re.search(r"price=(\S+)", f).group(1))  # type: ignore[union-attr]
               for _, f in printed_hits(text)["keyword"]]
    assert printed == [h["fields"]["price"] for h in out["keyword"]["hits"]]


def test_an_empty_query_with_a_filter_browses(run: Run, index: Path, server: ServerProcess,
                                             http: httpx.Client) -> None:
    out = search_json(run, index, "", "--filter", "category = camping", "--sort",
                      "price:desc", "-k", "5")
    camping = sorted((p for p in products() if p["category"] == "camping"),
                     key=lambda p: (-p["price"], p["id"]))
    assert [h["id"] for h in out["keyword"]["hits"]] == [p["id"] for p in camping[:5]]
    served = server_search(server, http, q="", filter="category = camping",
                           sort="price:desc", k=5)
    assert without_timing(out["keyword"]) == without_timing(served)
    # A filter alone browses too (document order), and facets then count what passes.
    out = search_json(run, index, "", "--filter", "category = camping", "--facets",
                      "category", "-k", "3")
    assert len(out["keyword"]["hits"]) == 3
    assert out["keyword"]["facets"]["category"]["values"] == [["camping", len(camping)]]


BAD = [
    pytest.param(["--filter", "price <"], "filter, position 8:", id="syntax"),
    pytest.param(["--filter", "colour = red"], "unknown field 'colour'", id="unknown-field"),
    pytest.param(["--filter", 'price = "cheap"'], "not a value of the number field",
                 id="type-mismatch"),
    pytest.param(["--facets", "category,nope"], "'nope' is not facetable", id="facets"),
    pytest.param(["--sort", "category:asc"], "'category' is not sortable", id="sort-field"),
    pytest.param(["--sort", "price:up"], "direction 'up'", id="sort-direction"),
]
FLAG_PARAM = {"--filter": "filter", "--facets": "facets", "--sort": "sort"}


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("progsearch: error: ")
    return lines[0].removeprefix("progsearch: error: ")


@pytest.mark.parametrize(("flags", "needle"), BAD)
def test_a_bad_structured_flag_is_the_servers_400_on_one_line(
    run: Run, index: Path, server: ServerProcess, http: httpx.Client, flags: list[str],
    needle: str,
) -> None:
    code, out, err = run("search", str(index), "rain", *flags)
    assert (code, out) == (2, "")
    message = one_error_line(err)
    assert needle in message
    r = http.get(f"{server.url}/search", params={"q": "rain", FLAG_PARAM[flags[0]]: flags[1]})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "invalid_query", "message": message}

    code, out, err = run("query", server.url, "rain", *flags)
    assert (code, out) == (2, "")
    assert one_error_line(err) == message


def test_errors_of_the_installed_command_have_no_traceback(index: Path,
                                                            server: ServerProcess) -> None:
    for args in (["search", str(index), "rain", "--filter", "price < 10 AND"],
                 ["search", str(index), "", "--facets", "brand"],
                 ["query", server.url, "rain", "--sort", "colour:desc"]):
        done = subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        one_error_line(done.stderr)


# -- query -------------------------------------------------------------------------------

def test_query_passes_the_flags_to_the_server(run: Run, server: ServerProcess,
                                              http: httpx.Client) -> None:
    code, out, err = run("query", server.url, "rain jacket", "-k", "6", "--filter", FILTER,
                         "--facets", "category,price", "--sort", "price:desc", "--json")
    assert code == 0, err
    events = {e["event"]: e["data"] for e in map(json.loads, out.splitlines())}
    assert list(events) == ["keyword", "semantic", "enhanced", "done"]
    for name in ("keyword", "semantic", "enhanced"):
        hits = events[name]["hits"]
        assert hits and all(passes(h["id"]) for h in hits), name
        prices = [h["fields"]["price"] for h in hits]
        assert prices == sorted(prices, reverse=True), name
    keyword = events["keyword"]
    assert keyword["filter"] == 'category = "outdoor" AND price < 200'
    assert keyword["sort"] == "price:desc"
    served = http.get(f"{server.url}/search", params={"q": "rain jacket", "k": 6,
                                                      "filter": FILTER,
                                                      "facets": "category,price"}).json()
    assert keyword["facets"] == served["facets"]


def test_query_prints_fields_and_facets_as_search_does(run: Run, index: Path,
                                                       server: ServerProcess) -> None:
    flags = ["--filter", FILTER, "--facets", "category,brand,price", "-k", "4"]
    code, out, err = run("query", server.url, "rain ", *flags)
    assert code == 0, err
    code, searched, err = run("search", str(index), "rain", *flags)
    assert code == 0, err
    # The same lines, indented as each command indents its own.
    facets = [line.strip() for line in searched.splitlines()[searched.splitlines()
                                                             .index("facets") + 1 :]][:3]
    queried = [line.strip() for line in out.splitlines()]
    at = queried.index("facets")
    assert queried[at + 1 : at + 4] == facets
    assert queried[at + 4].startswith("== semantic")  # after the keyword phase's hits
    fields = [f for hits in printed_hits(searched).values() for _, f in hits]
    assert fields and all(f in queried for f in fields)
    assert 'filter: category = "outdoor" AND price < 200' in queried
