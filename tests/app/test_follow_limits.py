"""Follow streams at their edges, against real servers: the limits, a Redis that goes away,
a compaction under open follows, and a server shutting down."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.app.follow_client import END, Follower, write
from tests.app.test_follow import KEY, keyword_root
from tests.redis_server import private_redis
from tests.server_process import running_server

pytestmark = [pytest.mark.integration]


def test_limits_answer_json_and_a_follow_ends_at_its_lifetime(
    tmp_path: Path, http: httpx.Client
) -> None:
    root = keyword_root(tmp_path / "index")
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_FOLLOW_PER_CLIENT": "2",
        "PROGSEARCH_FOLLOW_LIFETIME": "2", "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http, semantic=False)
        first, second = (Follower(s.url, {"q": q}) for q in ("jacket", "boots"))
        try:
            opened = time.monotonic()
            for follower in (first, second):
                follower.next("done")
            third = Follower(s.url, {"q": "tent"})
            assert third.status == 429
            assert third.body["error"]["code"] == "too_many_follows"
            assert "at most 2" in third.body["error"]["message"]
            # The lifetime ends the stream cleanly (the client would reconnect and resume).
            first.next(END, timeout=10)
            assert 1.5 < time.monotonic() - opened < 8
            second.next(END, timeout=10)
            # Their places are free again.
            fourth = Follower(s.url, {"q": "tent"})
            assert fourth.status == 200
            fourth.next("done")
            fourth.close()
        finally:
            first.close()
            second.close()
        bad = http.get(f"{s.url}/search/stream", params={"q": "tent", "follow": "2"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_follow"
        plain = http.get(f"{s.url}/search", params={"q": "tent", "follow": "1"})
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "invalid_follow"
    assert "Traceback" not in s.output(), s.output()


def test_with_redis_down_follows_keep_seeing_writes_and_readyz_says_so(
    tmp_path: Path, http: httpx.Client
) -> None:
    root = keyword_root(tmp_path / "index")
    with private_redis() as redis, running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_REDIS_URL": redis.url,
        "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http, semantic=False)
        follower = Follower(s.url, {"q": "headphones"})
        try:
            follower.next("done")
            redis.stop()
            answer = http.post(f"{s.url}/documents", headers={"X-API-Key": KEY}, json={
                "id": "h1", "title": "Studio headphones", "text": "Closed-back headphones."})
            assert answer.status_code == 201, answer.text
            update = follower.next("update", timeout=5)
            assert update.data["added"] == ["h1"]
            deadline = time.monotonic() + 10
            while http.get(f"{s.url}/readyz").json()["follows"]["announcements"] != "down":
                assert time.monotonic() < deadline, s.output()
                time.sleep(0.1)
            # Still following, now by polling the log.
            write(http, s.url, KEY, {"id": "h2", "title": "Headphones, headphones",
                                     "text": "Wireless headphones."})
            assert "h2" in follower.next("update", timeout=5).data["added"]
        finally:
            follower.close()
    log = s.output()
    assert "Traceback" not in log, log
    assert "write announcements failed" in log, log


def test_a_compaction_moves_follows_to_the_new_version_without_an_update(
    tmp_path: Path, http: httpx.Client
) -> None:
    root = keyword_root(tmp_path / "index")
    with running_server(root, tmp_path / "s.log", env={
        "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_COMPACT_CHANGES": "3",
        "PROGSEARCH_PRECOMPUTE_TOP": "0",
    }) as s:
        s.wait_ready(http, semantic=False)
        before = http.get(f"{s.url}/readyz").json()["index_version"]
        follower = Follower(s.url, {"q": "espresso"})
        try:
            follower.next("done")
            for i in range(3):  # writes the follow does not match, then the compaction
                write(http, s.url, KEY, {"id": f"y{i}", "title": "Yoga block", "text": "Cork."})
            deadline = time.monotonic() + 20
            while "+" in (now := http.get(f"{s.url}/readyz").json()["index_version"]) or (
                    now.split("+")[0] == before.split("+")[0]):
                assert time.monotonic() < deadline, s.output()
                time.sleep(0.1)
            assert follower.quiet(2.0) == []  # the results did not change: nothing is sent
            write(http, s.url, KEY, {"id": "e1", "title": "Espresso cups", "text": "Espresso."})
            update = follower.next("update", timeout=5)
            assert update.data["added"] == ["e1"]
            assert update.data["index_version"].split("+")[0] == now
        finally:
            follower.close()


def test_shutdown_ends_follows_cleanly(tmp_path: Path, http: httpx.Client) -> None:
    root = keyword_root(tmp_path / "index")
    with running_server(root, tmp_path / "s.log", env={"PROGSEARCH_PRECOMPUTE_TOP": "0"}) as s:
        s.wait_ready(http, semantic=False)
        follower = Follower(s.url, {"q": "kettle"})
        try:
            follower.next("done")
            start = time.monotonic()
            assert s.stop() in (0, -15)  # uvicorn re-raises SIGTERM once shut down
            follower.next(END, timeout=10)
            assert time.monotonic() - start < 8
        finally:
            follower.close()
    log = s.output()
    assert "Traceback" not in log and "ERROR" not in log, log
