"""Read a whole SSE response into a list of events, with httpx-sse."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import connect_sse

__all__ = ["Event", "read_stream"]


@dataclass(frozen=True)
class Event:
    event: str
    id: str
    data: dict[str, Any]
    retry: int | None


def read_stream(client: httpx.Client, url: str, headers: dict[str, str] | None = None,
                ) -> tuple[int, list[Event]]:
    with connect_sse(client, "GET", url, headers=headers or {}) as source:
        status = source.response.status_code
        if status != 200:
            source.response.read()
            return status, []
        events = [
            Event(e.event, e.id, json.loads(e.data), e.retry) for e in source.iter_sse()
            if e.data  # httpx-sse hands over an empty event after each ping
        ]
    return status, events
