from __future__ import annotations

from pathlib import Path

import pytest

from app.click_log import CLICKS_FILE, ClickLog, Shown


def shown(sid: str, at: float, ids: tuple[str, ...] = ("a", "b", "c")) -> Shown:
    return Shown(sid, f"query {sid}", "", ids, "default", at)


def test_a_search_is_stored_with_its_first_event_and_events_keep_their_rank(
        tmp_path: Path) -> None:
    log = ClickLog.open(tmp_path)
    assert log.sessions() == [] and log.last_seq() == 0
    log.add(shown("s1", 10.0), "c", at=11.0)
    log.add(shown("s1", 10.0), "a", kind="dwell", dwell_ms=5000, at=12.0)
    again = ClickLog.open(tmp_path)  # another connection sees it: it is on disk
    [session] = again.sessions()
    assert session.shown == shown("s1", 10.0)
    assert [(e.doc_id, e.rank, e.kind, e.dwell_ms) for e in session.events] == [
        ("c", 3, "click", None), ("a", 1, "dwell", 5000)]
    assert session.clicked() == {"c": 3}
    assert again.last_seq() == 2 and again.count() == 1 and again.count("dwell") == 1
    assert (tmp_path / CLICKS_FILE).exists()


def test_an_event_on_a_document_not_shown_is_refused(tmp_path: Path) -> None:
    log = ClickLog.open(tmp_path)
    with pytest.raises(ValueError, match="not shown"):
        log.add(shown("s1", 10.0), "zzz")
    assert log.sessions() == []


def test_retention_drops_old_searches_then_the_oldest_past_the_count(tmp_path: Path) -> None:
    log = ClickLog.open(tmp_path)
    for i in range(6):
        log.add(shown(f"s{i}", 100.0 + i), "a", at=100.0 + i)
    assert log.prune(max_age_s=3.5, max_searches=100, now=105.0) == 2  # s0, s1 are too old
    assert log.prune(max_age_s=1e9, max_searches=2, now=105.0) == 2  # s2, s3 past the count
    assert [s.shown.search_id for s in log.sessions()] == ["s4", "s5"]
    assert log.count() == 2  # their events went with them
    assert [s.shown.search_id for s in log.sessions(since=104.5)] == ["s5"]


def test_a_repeated_click_is_stored_once_and_dwells_all(tmp_path: Path) -> None:
    log = ClickLog.open(tmp_path)
    s = shown("s1", 10.0)
    assert log.add_once(s, "b", at=11.0) is not None
    assert log.add_once(s, "b", at=12.0) is None  # a double click
    again = log.add(s, "b", at=13.0)  # add answers the event all the same
    assert (again.doc_id, again.rank, again.kind) == ("b", 2, "click")
    assert log.add_once(s, "a", at=14.0) is not None  # another document: a new click
    for ms in (1000, 1000):
        assert log.add_once(s, "b", kind="dwell", dwell_ms=ms) is not None
    assert log.count() == 2 and log.count("dwell") == 2 and log.last_seq() == 4
    [session] = log.sessions()
    assert session.clicked() == {"b": 2, "a": 1}
