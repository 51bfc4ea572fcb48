"""`progsearch query URL "q"`: print each phase of a stream as it arrives, with its timing."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import httpx
from httpx_sse import connect_sse

__all__ = ["query"]


def _print_phase(out: TextIO, name: str, data: dict[str, Any], elapsed_ms: float) -> None:
    took = data.get("took_ms")
    cached = " cached" if data.get("cached") else ""
    out.write(f"== {name}: {len(data['hits'])} hits, {took} ms server, "
              f"{elapsed_ms:.1f} ms since the request{cached}\n")
    if data.get("corrected_query"):
        out.write(f"   showing results for: {data['corrected_query']}\n")
    for hit in data["hits"]:
        prev = hit.get("previous_rank")
        move = "" if name == "keyword" else (" (new)" if prev is None else f" (was {prev})")
        out.write(f"   {hit['rank']:>2}. {hit['title'] or hit['id']}  [{hit['score']:.3f}]{move}\n")
        if hit.get("highlight"):
            out.write(f"       {hit['highlight']}\n")


def query(url: str, q: str, *, k: int = 10, as_json: bool = False, timeout: float = 30.0,
          out: TextIO = sys.stdout) -> int:
    """Stream one search from a running server; returns 0, or 1 when a phase failed."""
    failed = False
    start = time.perf_counter()
    with httpx.Client(timeout=timeout) as client, connect_sse(
        client, "GET", url.rstrip("/") + "/search/stream", params={"q": q, "k": k}
    ) as source:
        if source.response.status_code != 200:
            source.response.read()
            out.write(f"error {source.response.status_code}: {source.response.text}\n")
            return 1
        for event in source.iter_sse():
            elapsed = (time.perf_counter() - start) * 1000
            data = json.loads(event.data)
            if as_json:
                out.write(json.dumps({"event": event.event, "id": event.id,
                                      "elapsed_ms": round(elapsed, 3), "data": data}) + "\n")
            elif event.event == "error":
                failed = True
                out.write(f"== {data['phase']} failed ({data['code']}): {data['message']}\n")
            elif event.event == "done":
                out.write(f"== done in {data['total_ms']} ms server, {elapsed:.1f} ms here\n")
            else:
                _print_phase(out, event.event, data, elapsed)
            out.flush()
            if event.event == "done":
                break
    return 1 if failed else 0
