"""The pure parts of click events: the shape of a POST /events body, the order a search is
remembered with, and a remembered search's encoding."""

from __future__ import annotations

import orjson
import pytest

from app.click_log import Shown
from app.errors import ApiError
from app.events import MAX_DWELL_MS, EventIn, parse_events
from app.searches import decode_shown, encode_shown, new_search_id, shown_order
from app.settings import Settings, SettingsError

CLICK = {"search_id": "s1", "doc_id": "p01", "kind": "click"}
DWELL = {"search_id": "s1", "doc_id": "p01", "kind": "dwell", "dwell_ms": 1500}


@pytest.mark.parametrize(("body", "events"), [
    (CLICK, [EventIn("s1", "p01", "click")]),
    (DWELL, [EventIn("s1", "p01", "dwell", 1500)]),
    ({**DWELL, "dwell_ms": 0}, [EventIn("s1", "p01", "dwell", 0)]),
    ({**DWELL, "dwell_ms": MAX_DWELL_MS}, [EventIn("s1", "p01", "dwell", MAX_DWELL_MS)]),
    ({**CLICK, "doc_id": "  p01 "}, [EventIn("s1", "p01", "click")]),  # the id rule's strip
    ({**CLICK, "dwell_ms": None}, [EventIn("s1", "p01", "click")]),
    ([CLICK, DWELL], [EventIn("s1", "p01", "click"), EventIn("s1", "p01", "dwell", 1500)]),
])
def test_accepted_shapes(body: object, events: list[EventIn]) -> None:
    assert parse_events(orjson.dumps(body), batch=4) == events


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{", 400, "not JSON"),
    (b'"click"', 422, "JSON object"),
    (b"[]", 422, "1 to 4 events, not 0"),
    (orjson.dumps([CLICK] * 5), 422, "1 to 4 events, not 5"),
    (orjson.dumps([CLICK, {**CLICK, "kind": "view"}]), 422, "event 1: 'kind'"),
    (orjson.dumps({**CLICK, "extra": 1}), 422, "unknown field 'extra'"),
    (orjson.dumps({**CLICK, "search_id": ""}), 422, "'search_id'"),
    (orjson.dumps({**CLICK, "search_id": "x" * 65}), 422, "'search_id'"),
    (orjson.dumps({**CLICK, "doc_id": 7}), 422, "'doc_id' must be a string"),
    (orjson.dumps({**CLICK, "doc_id": "a\nb"}), 422, "control character"),
    (orjson.dumps({**CLICK, "doc_id": "x" * 513}), 422, "longer than"),
    (orjson.dumps({**CLICK, "dwell_ms": 5}), 422, "for kind 'dwell' only"),
    (orjson.dumps({**DWELL, "dwell_ms": None}), 422, "'dwell_ms' must be an integer"),
    (orjson.dumps({**DWELL, "dwell_ms": 1.5}), 422, "'dwell_ms' must be an integer"),
    (orjson.dumps({**DWELL, "dwell_ms": True}), 422, "'dwell_ms' must be an integer"),
    (orjson.dumps({**DWELL, "dwell_ms": -1}), 422, "'dwell_ms' must be an integer"),
    (orjson.dumps({**DWELL, "dwell_ms": MAX_DWELL_MS + 1}), 422, "'dwell_ms'"),
])
def test_refused_shapes_name_what_is_wrong(body: bytes, status: int, says: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_events(body, batch=4)
    assert caught.value.status == status and says in caught.value.message


@pytest.mark.parametrize(("sent", "expected"), [
    ([("keyword", ["a", "b"])], ("keyword", ("a", "b"))),
    ([("keyword", ["a", "b"]), ("semantic", ["b", "a"]), ("enhanced", ["c", "b"])],
     ("enhanced", ("c", "b"))),
    ([("keyword", ["a", "b"]), ("semantic", []), ("enhanced", [])], ("keyword", ("a", "b"))),
    ([("keyword", []), ("semantic", ["x"])], ("semantic", ("x",))),
    ([("semantic", ["b"]), ("enhanced", ["c"])], ("enhanced", ("c",))),  # a resumed stream
    ([("keyword", []), ("semantic", [])], ("semantic", ())),
])
def test_the_order_remembered_is_the_one_shown_at_the_end(
        sent: list[tuple[str, list[str]]], expected: tuple[str, tuple[str, ...]]) -> None:
    assert shown_order(sent) == expected


def test_a_remembered_search_reads_back_as_it_was() -> None:
    shown = Shown(new_search_id(), "rain jacket", 'category = "outdoor"', ("p01", "p02"),
                  "enhanced-abc", 1234.5)
    assert decode_shown(shown.search_id, encode_shown(shown)) == shown
    assert decode_shown("x", b"not json") is None
    assert decode_shown("x", b'{"query": "q"}') is None


def test_search_ids_are_unguessable_and_url_safe() -> None:
    ids = {new_search_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


@pytest.mark.parametrize(("env", "ok"), [
    ({"PROGSEARCH_EVENTS_RATE": "10/second"}, True),
    ({"PROGSEARCH_EVENTS_RATE": "5 per minute"}, True),
    ({"PROGSEARCH_EVENTS_RATE": "often"}, False),
    ({"PROGSEARCH_CLICK_SEARCH_TTL": "0"}, False),
    ({"PROGSEARCH_EVENTS_BATCH": "0"}, False),
    ({"PROGSEARCH_EVENTS_MAX_BYTES": "10"}, False),
])
def test_event_settings_are_checked_at_start(env: dict[str, str], ok: bool) -> None:
    if ok:
        assert Settings.from_env(env).events_rate == env["PROGSEARCH_EVENTS_RATE"]
    else:
        with pytest.raises(SettingsError, match=next(iter(env))):
            Settings.from_env(env)
