"""Search ids and `POST /events`, against real servers and a real Redis: the id on `done` and
on the JSON answer, a click stored in the root's click log, each refusal, a second server
behind the same Redis, and Redis down."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from httpx_sse import connect_sse

from app.click_log import ClickLog
from index.snapshot import CURRENT
from rankers.learned import LinearModel
from rankers.model_store import install_model
from tests.redis_server import PrivateRedis, private_redis
from tests.server_process import ServerProcess, running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

RATE = 6  # events a minute per client address on the servers below


def copy_root(sample_root: Path, folder: Path) -> Path:
    root = folder / "index"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return root


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    with private_redis() as r:
        yield r


@pytest.fixture(scope="module")
def root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_root(sample_root, tmp_path_factory.mktemp("events"))


def env(redis: PrivateRedis, **more: str) -> dict[str, str]:
    return {"PROGSEARCH_REDIS_URL": redis.url, "PROGSEARCH_EVENTS_RATE": f"{RATE}/minute",
            **more}


@pytest.fixture(scope="module")
def server(root: Path, redis: PrivateRedis, http: httpx.Client) -> Iterator[ServerProcess]:
    with running_server(root, root.parent / "a.log", env=env(redis)) as s:
        s.wait_ready(http)
        yield s


@pytest.fixture(scope="module")
def other(root: Path, redis: PrivateRedis, server: ServerProcess, http: httpx.Client
          ) -> Iterator[ServerProcess]:
    """A second server on the same root, behind the same Redis."""
    with running_server(root, root.parent / "b.log", env=env(redis)) as s:
        s.wait_ready(http, semantic=False)
        yield s


_clients = iter(range(1, 250))


def client_address() -> dict[str, str]:
    """A client address of its own (uvicorn takes X-Forwarded-For from 127.0.0.1, as from a
    proxy on the same host), so each test has its own rate limit."""
    return {"X-Forwarded-For": f"10.0.0.{next(_clients)}"}


def stream(http: httpx.Client, server: ServerProcess, q: str, extra: str = ""
           ) -> tuple[dict[str, Any], list[str]]:
    """The `done` event of a stream and the ids its last phase showed."""
    status, events = read_stream(http, f"{server.url}/search/stream?q={quote(q)}&k=5{extra}")
    assert status == 200
    hits = [e for e in events if "hits" in e.data]
    done = events[-1]
    assert done.event == "done", [e.event for e in events]
    return done.data, [h["id"] for h in hits[-1].data["hits"]]


def post(http: httpx.Client, server: ServerProcess, body: Any, headers: dict[str, str],
         content_type: str = "application/json") -> httpx.Response:
    return http.post(f"{server.url}/events", content=orjson.dumps(body),
                     headers={"Content-Type": content_type, **headers})


def click(search_id: str, doc_id: str) -> dict[str, Any]:
    return {"search_id": search_id, "doc_id": doc_id, "kind": "click"}


def sessions(root: Path) -> dict[str, Any]:
    log = ClickLog.open(root)
    try:
        return {s.shown.search_id: s for s in log.sessions()}
    finally:
        log.close()


def posted(http: httpx.Client, server: ServerProcess, body: Any, headers: dict[str, str]
           ) -> httpx.Response:
    """POST an event on a search just answered (remembering it runs after the answer)."""
    deadline = time.monotonic() + 5
    while True:
        r = post(http, server, body, headers)
        if r.status_code != 404 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_done_and_the_json_answer_carry_a_new_search_id(
        http: httpx.Client, server: ServerProcess) -> None:
    done, _ = stream(http, server, "rain jacket")
    again, _ = stream(http, server, "rain jacket")
    assert done["protocol"] == 1 and set(done["phases"]) == {"keyword", "semantic", "enhanced"}
    ids = {done["search_id"], again["search_id"]}
    assert len(ids) == 2 and all(isinstance(i, str) and len(i) >= 22 for i in ids)
    r = http.get(f"{server.url}/search", params={"q": "rain jacket"})
    assert r.status_code == 200 and r.json()["search_id"] not in ids
    assert r.headers["cache-control"].startswith("private")  # the id is this answer's
    url = f"{server.url}/search/stream?q=rain+jacket&k=5&follow=1"
    with connect_sse(http, "GET", url) as source:  # a follow: open after done
        follow = next(orjson.loads(e.data) for e in source.iter_sse() if e.event == "done")
    assert follow["search_id"] not in ids and len(follow["search_id"]) >= 22


def test_a_click_is_stored_in_the_click_log_with_its_search(
        http: httpx.Client, server: ServerProcess, root: Path) -> None:
    who = client_address()
    done, shown = stream(http, server, "waterproof boots",
                         "&filter=" + quote("category = footwear"))
    sid = done["search_id"]
    r = posted(http, server, click(sid, shown[1]), who)
    assert r.status_code == 202 and r.json() == {"accepted": 1, "repeated": 0}
    dwell = {"search_id": sid, "doc_id": shown[1], "kind": "dwell", "dwell_ms": 4200}
    r = post(http, server, [click(sid, shown[1]), dwell], who)  # a list: a repeat and a dwell
    assert r.status_code == 202 and r.json() == {"accepted": 1, "repeated": 1}
    session = sessions(root)[sid]
    assert session.shown.query == "waterproof boots"
    assert session.shown.filter == 'category = "footwear"'  # canonical, as the phases ran it
    assert session.shown.shown == tuple(shown)  # the enhanced phase's order
    assert session.shown.model == "default"
    assert [(e.doc_id, e.rank, e.kind, e.dwell_ms) for e in session.events] == [
        (shown[1], 2, "click", None), (shown[1], 2, "dwell", 4200)]
    metrics = http.get(f"{server.url}/metrics").text
    assert 'progsearch_events_accepted_total{kind="click"}' in metrics


def test_each_bad_event_gets_its_4xx_and_nothing_is_stored(
        http: httpx.Client, server: ServerProcess, root: Path) -> None:
    done, shown = stream(http, server, "espresso grinder")
    sid = done["search_id"]
    assert posted(http, server, click(sid, shown[0]), client_address()).status_code == 202
    before = sessions(root)[sid].events
    cases: list[tuple[Any, int, str]] = [
        (click("no-such-search", shown[0]), 404, "unknown_search"),
        (click(sid, "p-never-shown"), 422, "not_shown"),
        ([click(sid, shown[0]), click(sid, "p-never-shown")], 422, "not_shown"),
        ({"search_id": sid, "doc_id": shown[0]}, 422, "invalid_event"),
        ({"search_id": sid, "doc_id": shown[0], "kind": "like"}, 422, "invalid_event"),
        ({**click(sid, shown[0]), "dwell_ms": 10}, 422, "invalid_event"),
        ({"search_id": sid, "doc_id": shown[0], "kind": "dwell"}, 422, "invalid_event"),
        ({"search_id": sid, "doc_id": shown[0], "kind": "dwell", "dwell_ms": -1},
         422, "invalid_event"),
        ({"search_id": sid, "doc_id": shown[0], "kind": "dwell", "dwell_ms": 10**12},
         422, "invalid_event"),
        ({**click(sid, shown[0]), "extra": 1}, 422, "invalid_event"),
        ({"search_id": 5, "doc_id": shown[0], "kind": "click"}, 422, "invalid_event"),
        (click(sid, " "), 422, "invalid_event"),
        ([], 422, "invalid_event"),
        ([click(sid, shown[0])] * 33, 422, "invalid_event"),  # over PROGSEARCH_EVENTS_BATCH
        ("click", 422, "invalid_event"),
    ]
    for body, status, code in cases:
        r = post(http, server, body, client_address())
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
    who = client_address()
    r = http.post(f"{server.url}/events", content=b"{not json", headers={
        "Content-Type": "application/json", **who})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
    r = post(http, server, click(sid, shown[0]), who, content_type="text/plain")
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
    r = http.post(f"{server.url}/events", content=b" " * 20_000, headers={
        "Content-Type": "application/json", **who})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "body_too_large")
    assert sessions(root)[sid].events == before
    metrics = http.get(f"{server.url}/metrics").text
    for code in ("unknown_search", "not_shown", "invalid_event", "invalid_json",
                 "unsupported_media_type", "body_too_large"):
        assert f'progsearch_events_refused_total{{code="{code}"}}' in metrics, code


def test_the_rate_limit_is_per_client_and_holds_across_servers(
        http: httpx.Client, server: ServerProcess, other: ServerProcess) -> None:
    done, shown = stream(http, server, "rain jacket")
    sid = done["search_id"]
    assert posted(http, server, click(sid, shown[0]), client_address()).status_code == 202
    who = client_address()
    assert post(http, server, [click(sid, d) for d in shown[:RATE - 2]], who).status_code == 202
    assert post(http, other, click(sid, shown[0]), who).status_code == 202  # a repeat counts
    assert post(http, server, click(sid, shown[1]), who).status_code == 202
    r = post(http, other, click(sid, shown[2]), who)  # the other server knows this address
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_events"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert post(http, server, click(sid, shown[2]), who).status_code == 429
    assert post(http, server, click(sid, shown[2]), client_address()).status_code == 202


def test_a_second_server_behind_the_same_redis_accepts_a_click_on_the_first_ones_search(
        http: httpx.Client, server: ServerProcess, other: ServerProcess, root: Path) -> None:
    done, shown = stream(http, server, "down parka")
    r = posted(http, other, click(done["search_id"], shown[0]), client_address())
    assert r.status_code == 202 and r.json()["accepted"] == 1
    [event] = sessions(root)[done["search_id"]].events
    assert (event.doc_id, event.rank) == (shown[0], 1)
    answer = http.get(f"{other.url}/search", params={"q": "hiking"}).json()
    r = posted(http, server, click(answer["search_id"], answer["hits"][0]["id"]),
               client_address())
    assert r.status_code == 202


def test_a_search_ordered_by_an_installed_model_is_logged_with_its_version(
        http: httpx.Client, server: ServerProcess, root: Path) -> None:
    version = install_model(root, LinearModel({"title": 1.0}))
    time.sleep(0.3)  # the engine looks at the model's pointer every 50 ms
    done, shown = stream(http, server, "trail running")
    assert set(done["phases"]) == {"keyword", "semantic", "enhanced"}
    assert posted(http, server, click(done["search_id"], shown[0]), client_address()
                  ).status_code == 202
    assert sessions(root)[done["search_id"]].shown.model == version
    answer = http.get(f"{server.url}/search", params={"q": "trail running"}).json()
    assert posted(http, server, click(answer["search_id"], answer["hits"][0]["id"]),
                  client_address()).status_code == 202
    assert sessions(root)[answer["search_id"]].shown.model == "default"  # the keyword phase's


def test_a_search_expires_and_with_redis_down_searches_work_and_events_get_503(
        sample_root: Path, tmp_path: Path, http: httpx.Client) -> None:
    root = copy_root(sample_root, tmp_path)
    with private_redis() as redis, running_server(
            root, tmp_path / "s.log", env=env(redis, PROGSEARCH_CLICK_SEARCH_TTL="1")) as s:
        s.wait_ready(http, semantic=False)
        done, shown = stream(http, s, "rain jacket")
        assert posted(http, s, click(done["search_id"], shown[0]), client_address()
                      ).status_code == 202
        time.sleep(1.2)
        r = post(http, s, click(done["search_id"], shown[1]), client_address())
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_search")
        redis.stop()
        done, shown = stream(http, s, "rain jacket")
        assert done["search_id"] and shown
        assert http.get(f"{s.url}/search", params={"q": "boots"}).status_code == 200
        r = post(http, s, click(done["search_id"], shown[0]), client_address())
        assert (r.status_code, r.json()["error"]["code"]) == (503, "events_unavailable")
        assert "Traceback" not in s.output()


def test_a_snapshot_folder_has_no_click_log(sample_root: Path, tmp_path: Path,
                                            http: httpx.Client) -> None:
    version = (sample_root / CURRENT).read_text().strip()
    with running_server(sample_root / version, tmp_path / "s.log") as s:
        s.wait_ready(http, semantic=False)
        answer = http.get(f"{s.url}/search", params={"q": "jacket"}).json()
        r = post(http, s, click(answer["search_id"], answer["hits"][0]["id"]), {})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "no_click_log")
