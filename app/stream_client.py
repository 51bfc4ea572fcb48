"""`progsearch query URL "q"`: print each phase of a stream as it arrives, with its timing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import httpx
from httpx_sse import connect_sse

from app.cli_format import facet_lines, fields_text, structured_text
from index.core.errors import ProgsearchError

__all__ = ["query", "refusal"]


def _print_phase(out: TextIO, name: str, data: dict[str, Any], elapsed_ms: float) -> None:
    took = data.get("took_ms")
    cached = " cached" if data.get("cached") else ""
    out.write(f"== {name}: {len(data['hits'])} hits, {took} ms server, "
              f"{elapsed_ms:.1f} ms since the request{cached}\n")
    if data.get("corrected_query"):
        out.write(f"   showing results for: {data['corrected_query']}\n")
    echo = structured_text(data)
    if echo:
        out.write(f"   {echo}\n")
    for hit in data["hits"]:
        prev = hit.get("previous_rank")
        move = "" if name == "keyword" else (" (new)" if prev is None else f" (was {prev})")
        out.write(f"   {hit['rank']:>2}. {hit['title'] or hit['id']}  [{hit['score']:.3f}]{move}\n")
        if "fields" in hit:
            out.write(f"       {fields_text(hit['fields'])}\n")
        if hit.get("highlight"):
            out.write(f"       {hit['highlight']}\n")
    if data.get("facets"):
        out.write("   facets\n")
        for line in facet_lines(data["facets"]):
            out.write(f"     {line}\n")


def refusal(response: httpx.Response) -> ProgsearchError:
    """A server's refusal as the command line reports it: a 4xx's own message (what a bad
    filter's 400 says, position included), else the status with it."""
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = " ".join(response.text.split())[:200]
    if 400 <= response.status_code < 500:
        return ProgsearchError(message)
    return ProgsearchError(f"the server answered {response.status_code}: {message}")


def query(url: str, q: str, *, k: int = 10, as_json: bool = False, timeout: float = 30.0,
          params: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Stream one search from a running server; returns 0, or 1 when a phase failed.
    `params`: more query parameters (`filter`, `facets`, `sort`). A refused request is a
    `ProgsearchError` with the server's message."""
    out = out or sys.stdout
    failed = False
    start = time.perf_counter()
    with httpx.Client(timeout=timeout) as client, connect_sse(
        client, "GET", url.rstrip("/") + "/search/stream",
        params={"q": q, "k": k, **(params or {})},
    ) as source:
        if source.response.status_code != 200:
            source.response.read()
            raise refusal(source.response)
        for event in source.iter_sse():
            elapsed = (time.perf_counter() - start) * 1000
            data = json.loads(event.data)
            failed = failed or event.event == "error"
            if as_json:
                out.write(json.dumps({"event": event.event, "id": event.id,
                                      "elapsed_ms": round(elapsed, 3), "data": data}) + "\n")
            elif event.event == "error":
                out.write(f"== {data['phase']} failed ({data['code']}): {data['message']}\n")
            elif event.event == "done":
                out.write(f"== done in {data['total_ms']} ms server, {elapsed:.1f} ms here\n")
            else:
                _print_phase(out, event.event, data, elapsed)
            out.flush()
            if event.event == "done":
                break
    return 1 if failed else 0
