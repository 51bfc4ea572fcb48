"""`progsearch query URL "q"`: print each phase of a stream as it arrives, with its timing.

With `--follow` the stream stays open after `done` and each `update` is printed as it
arrives; when the server ends the stream (its follow lifetime, a restart) the client
reconnects with the last event's id, so it resumes without losing or repeating an update.
"""

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

RECONNECT_SECONDS = 1.0


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
    _print_hits(out, data["hits"], moves=name != "keyword")
    if data.get("facets"):
        out.write("   facets\n")
        for line in facet_lines(data["facets"]):
            out.write(f"     {line}\n")


def _print_hits(out: TextIO, hits: list[dict[str, Any]], moves: bool) -> None:
    for hit in hits:
        prev = hit.get("previous_rank")
        move = "" if not moves else (" (new)" if prev is None else f" (was {prev})")
        out.write(f"   {hit['rank']:>2}. {hit['title'] or hit['id']}  [{hit['score']:.3f}]{move}\n")
        if "fields" in hit:
            out.write(f"       {fields_text(hit['fields'])}\n")
        if hit.get("highlight"):
            out.write(f"       {hit['highlight']}\n")


def _print_update(out: TextIO, data: dict[str, Any]) -> None:
    parts = [f"+{', +'.join(data['added'])}" if data["added"] else "",
             f"-{', -'.join(data['removed'])}" if data["removed"] else "",
             f"~{', ~'.join(data['changed'])}" if data["changed"] else ""]
    what = " ".join(p for p in parts if p) or "moved"
    out.write(f"== update after write {data['seq']} ({data['phase']}): {what}\n")
    _print_hits(out, data["hits"], moves=True)


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
          params: Mapping[str, str] | None = None, follow: bool = False,
          out: TextIO | None = None) -> int:
    """Stream one search from a running server; returns 0, or 1 when a phase failed.
    `params`: more query parameters (`filter`, `facets`, `sort`). A refused request is a
    `ProgsearchError` with the server's message. With `follow`, print updates until
    interrupted, reconnecting with the last event's id when the stream ends."""
    out = out or sys.stdout
    failed = False
    start = time.perf_counter()
    given: dict[str, Any] = {"q": q, "k": k, **(params or {}), **({"follow": 1} if follow else {})}
    last_id = ""
    # A follow waits for updates as long as it takes: no read timeout (pings keep it alive).
    limits = httpx.Timeout(timeout, read=None if follow else timeout)
    with httpx.Client(timeout=limits) as client:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(client, "GET", url.rstrip("/") + "/search/stream",
                                 params=given, headers=headers) as source:
                    if source.response.status_code != 200:
                        source.response.read()
                        raise refusal(source.response)
                    for event in source.iter_sse():
                        if not event.data:  # httpx-sse's empty event after each ping
                            continue
                        last_id = event.id or last_id
                        failed = _print_event(out, event.event, event.id, event.data, start,
                                              as_json) or failed
                        if event.event == "done" and not follow:
                            return 1 if failed else 0
            except httpx.TransportError:
                if not follow or not last_id:
                    raise
            if not follow:
                return 1 if failed else 0
            time.sleep(RECONNECT_SECONDS)  # the stream ended: resume from the last id


def _print_event(out: TextIO, name: str, event_id: str, raw: str, start: float,
                 as_json: bool) -> bool:
    """Print one event; whether it reports a failed phase."""
    elapsed = (time.perf_counter() - start) * 1000
    data = json.loads(raw)
    if as_json:
        out.write(json.dumps({"event": name, "id": event_id,
                              "elapsed_ms": round(elapsed, 3), "data": data}) + "\n")
    elif name == "error":
        out.write(f"== {data['phase']} failed ({data['code']}): {data['message']}\n")
    elif name == "done":
        out.write(f"== done in {data['total_ms']} ms server, {elapsed:.1f} ms here\n")
    elif name == "update":
        _print_update(out, data)
    else:
        _print_phase(out, name, data, elapsed)
    out.flush()
    return name == "error"
