"""Follow streams against real servers: two uvicorn processes on one index root and a real
Redis, writes through one, follows on the other."""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source
from tests.app.follow_client import Follower, write
from tests.app.test_server import metric
from tests.conftest import SAMPLE
from tests.redis_server import PrivateRedis, private_redis
from tests.server_process import ServerProcess, running_server

pytestmark = [pytest.mark.integration]

KEY = "follow-test-key"


def keyword_root(folder: Path) -> Path:
    """The sample catalog, keyword only (no model: the servers start in a second)."""
    write_snapshot(open_source(SAMPLE), folder, BuildOptions(workers=1))
    return folder


def env(redis: PrivateRedis, **extra: str) -> dict[str, str]:
    return {"PROGSEARCH_API_KEY": KEY, "PROGSEARCH_REDIS_URL": redis.url,
            "PROGSEARCH_PRECOMPUTE_TOP": "0", **extra}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, http: httpx.Client
         ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B on the same index root, announcing writes over one Redis."""
    folder = tmp_path_factory.mktemp("follow")
    root = keyword_root(folder / "index")
    with private_redis() as redis, \
            running_server(root, folder / "a.log",  # pings often: clients must skip them
                           env=env(redis, PROGSEARCH_PING_SECONDS="0.3")) as a, \
            running_server(root, folder / "b.log", env=env(redis)) as b:
        for server in (a, b):
            server.wait_ready(http, semantic=False)
        deadline = time.monotonic() + 10
        while any(http.get(f"{s.url}/readyz").json()["follows"]["announcements"] != "redis"
                  for s in (a, b)):
            assert time.monotonic() < deadline, a.output() + b.output()
            time.sleep(0.05)
        yield a, b


def ids(event_data: dict[str, object]) -> list[str]:
    hits = event_data["hits"]
    assert isinstance(hits, list)
    return [h["id"] for h in hits]


def fresh(http: httpx.Client, server: ServerProcess, q: str, k: int) -> list[str]:
    """The ids a new search gives now."""
    return ids(http.get(f"{server.url}/search", params={"q": q, "k": k}).json())


def test_a_write_through_b_reaches_a_follow_on_a_in_its_place(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    follower = Follower(a.url, {"q": "espresso coffee", "k": 5})
    try:
        done = follower.next("done")
        assert follower.quiet(0.5) == []  # nothing changed: no update
        start = time.monotonic()
        written = write(http, b.url, KEY, {"id": "n1", "title": "Espresso coffee grinder",
                                           "text": "Burr grinder for espresso coffee beans."})
        update = follower.next("update", timeout=5)
        took = time.monotonic() - start
        assert update.data["added"] == ["n1"] and update.data["removed"] == []
        assert update.data["phase"] == "keyword"
        assert update.data["seq"] == written["seq"]
        version, _, n = update.id.rpartition(".")
        assert version == done.id.rpartition(".")[0]
        assert int(n) == 4 + written["seq"]
        # In the place a new search gives it, with the ranks the client showed before.
        fresh = http.get(f"{a.url}/search", params={"q": "espresso coffee", "k": 5}).json()
        assert ids(update.data) == ids(fresh)
        new = next(h for h in update.data["hits"] if h["id"] == "n1")
        assert new["previous_rank"] is None
        assert took < 2.0
    finally:
        follower.close()


def test_delete_and_rewrite_remove_or_move_a_hit(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    follower = Follower(a.url, {"q": "kettle", "k": 5})
    try:
        first = follower.next("done")
        assert first
        write(http, b.url, KEY, {"id": "k1", "title": "Kettle, electric kettle",
                                 "text": "A kettle that boils a kettle of water fast."})
        added = follower.next("update", timeout=5)
        assert added.data["added"] == ["k1"]
        assert ids(added.data) == fresh(http, a, "kettle", 5)
        # Rewritten without the word: it leaves the list.
        write(http, b.url, KEY, {"id": "k1", "title": "Electric boiler",
                                 "text": "Boils water fast."})
        gone = follower.next("update", timeout=5)
        assert gone.data["removed"] == ["k1"] and "k1" not in ids(gone.data)
        # Rewritten with the word once: back, below the better match.
        like = "Boils water fast, like a kettle would, for tea and soup"
        write(http, b.url, KEY, {"id": "k1", "title": "Electric boiler", "text": like + "."})
        back = follower.next("update", timeout=5)
        assert back.data["added"] == ["k1"] and ids(back.data) == fresh(http, a, "kettle", 5)
        assert back.data["hits"][ids(back.data).index("k1")]["previous_rank"] is None
        # A rewrite of a shown document that keeps its place is reported as changed.
        write(http, b.url, KEY, {"id": "k1", "title": "Electric boiler", "text": like + "s."})
        changed = follower.next("update", timeout=5)
        assert changed.data["changed"] == ["k1"] and changed.data["added"] == []
        # Deleted: removed.
        deleted = http.delete(f"{b.url}/documents/k1", headers={"X-API-Key": KEY})
        assert deleted.status_code == 200, deleted.text
        removed = follower.next("update", timeout=5)
        assert removed.data["removed"] == ["k1"]
        assert removed.data["seq"] == deleted.json()["seq"]
    finally:
        follower.close()


def test_a_filtered_follow_ignores_writes_its_filter_refuses(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    follower = Follower(a.url, {"q": "tent", "filter": "category = outdoor"})
    try:
        follower.next("done")
        write(http, b.url, KEY, {"id": "f1", "title": "Kitchen tent", "text": "A tent tent.",
                                 "category": "kitchen"})
        assert [e.event for e in follower.quiet(1.5)] == []
        write(http, b.url, KEY, {"id": "f2", "title": "Camping tent", "text": "A tent tent.",
                                 "category": "outdoor"})
        update = follower.next("update", timeout=5)
        assert update.data["added"] == ["f2"]
        assert all(h["fields"]["category"] == "outdoor" for h in update.data["hits"])
    finally:
        follower.close()


def test_resume_with_last_event_id_loses_and_repeats_nothing(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    params = {"q": "skillet pan", "k": 5}
    follower = Follower(a.url, params)
    done = follower.next("done")
    follower.close()
    # Written while the client is away, through the other server.
    write(http, b.url, KEY, {"id": "r1", "title": "Carbon steel skillet pan", "text": "Pan."})
    # Resumed on B: no phase again, one update with what was missed.
    resumed = Follower(b.url, params, headers={"Last-Event-ID": done.id})
    try:
        first = resumed.events.get(timeout=10)
        assert not isinstance(first, BaseException)
        assert first.event == "update", first
        assert first.data["added"] == ["r1"]
        last = first.id
    finally:
        resumed.close()
    # Resumed again from that update with nothing new: nothing is sent again.
    again = Follower(a.url, params, headers={"Last-Event-ID": last})
    try:
        assert again.quiet(1.0) == []
        write(http, b.url, KEY, {"id": "r2", "title": "Skillet pan lid", "text": "A pan lid."})
        update = again.next("update", timeout=5)
        assert update.data["added"] == ["r2"]
        assert int(update.id.rpartition(".")[2]) > int(last.rpartition(".")[2])
    finally:
        again.close()


WRITES = 150


def frozen_follow(port: int, q: str) -> socket.socket:
    """A follow whose client never reads: a tiny receive window, so the server's sends to it
    soon block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /search/stream?q={q}&k=100&follow=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_a_frozen_follower_slows_neither_the_other_follows_nor_the_writes(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    frozen = [frozen_follow(a.port, "bottle") for _ in range(3)]
    other = Follower(a.url, {"q": "umbrella", "k": 3})
    try:
        other.next("done")
        padding = " ".join(["insulated bottle for hot and cold drinks"] * 40)  # 1.6 kB
        took = []
        for i in range(WRITES):  # an update to a frozen follow: up to 100 hits of 1.6 kB titles
            start = time.monotonic()
            write(http, a.url if i % 2 else b.url, KEY,
                  {"id": f"b{i}", "title": f"Bottle {i} {padding}", "text": padding})
            took.append(time.monotonic() - start)
        assert max(took) < 1.0, took
        # The frozen follows' sends blocked: their updates were coalesced, not one a write.
        assert metric(http, a, "progsearch_follow_updates_total") < WRITES * len(frozen) / 2
        start = time.monotonic()
        write(http, b.url, KEY, {"id": "u1", "title": "Umbrella umbrella", "text": "Umbrella."})
        update = other.next("update", timeout=5)
        assert update.data["added"] == ["u1"]
        assert time.monotonic() - start < 2.0
    finally:
        other.close()
        for sock in frozen:
            sock.close()


def test_progsearch_query_follow_prints_updates_as_they_arrive(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.Client
) -> None:
    a, b = pair
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "query", a.url, "headlamp", "-k", "3", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()],
                              daemon=True)
    reader.start()

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=0.5)
                if text in line:
                    return line
        raise AssertionError(f"{text!r} was not printed")

    try:
        wait_for("== done")
        # Regression: httpx-sse hands over an empty event after each ping (an SSE comment)
        # once an id was seen, and the client took it for an event and failed on its data.
        time.sleep(1.0)  # a few pings
        assert proc.poll() is None
        write(http, b.url, KEY, {"id": "hl1", "title": "Headlamp headlamp", "text": "Bright."})
        assert "+hl1" in wait_for("== update after write")
        assert "(new)" in wait_for("Headlamp headlamp")
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
