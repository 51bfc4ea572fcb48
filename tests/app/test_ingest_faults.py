"""Streaming ingestion against real processes: a real Celery worker embedding written
documents, a worker killed with SIGKILL in the middle of it, a broker that is down, and a
server killed in the middle of a compaction."""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.engine import Engine
from index.delta import DeltaLog
from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source
from tests.app.test_worker import WorkerProcess
from tests.conftest import WORDS, make_corpus, write_jsonl
from tests.redis_server import PrivateRedis, private_redis
from tests.server_process import running_server
from tests.sse import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.model]

KEY = "fault-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def copy_index(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return dest


def long_docs(n: int, seed: int, prefix: str) -> list[dict[str, str]]:
    """Documents of about 200 words: each takes the encoder tens of milliseconds."""
    rng = random.Random(seed)
    return [
        {"id": f"{prefix}{i}", "title": f"{prefix} report {i} " + " ".join(rng.choices(WORDS, k=4)),
         "text": ". ".join(" ".join(rng.choices(WORDS, k=20)) for _ in range(10)) + "."}
        for i in range(n)
    ]


def ndjson(docs: list[dict[str, str]]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def vector_counts(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Per id: rows in the vectors table, and `vectors` entries in the log."""
    conn = sqlite3.connect(root / "delta.sqlite")
    try:
        rows = dict(conn.execute("SELECT id, count(*) FROM vectors GROUP BY id").fetchall())
        logged = dict(conn.execute(
            "SELECT id, count(*) FROM log WHERE op = 'vectors' GROUP BY id").fetchall())
    finally:
        conn.close()
    return rows, logged


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    with private_redis() as redis:
        yield redis


def serve_with_broker(root: Path, log: Path, broker: PrivateRedis, **env: str):  # type: ignore[no-untyped-def]
    return running_server(root, log, env={
        "PROGSEARCH_BROKER_URL": broker.url, "PROGSEARCH_API_KEY": KEY,
        "PROGSEARCH_PRECOMPUTE_TOP": "0", **env})


def test_worker_killed_while_embedding_embeds_each_document_exactly_once(
    sample_root: Path, broker: PrivateRedis, http: httpx.Client, tmp_path: Path
) -> None:
    root = copy_index(sample_root, tmp_path / "index")
    docs = long_docs(48, seed=1, prefix="k")
    worker = WorkerProcess(root, broker.url, tmp_path / "w1.log")
    try:
        worker.wait_ready()
        with serve_with_broker(root, tmp_path / "s.log", broker) as s:
            s.wait_ready(http)
            r = http.post(f"{s.url}/documents", content=ndjson(docs),
                          headers={**AUTH, "Content-Type": "application/x-ndjson"})
            assert r.status_code == 200, r.text
            # Every document is searchable by keyword before any is embedded.
            hits = http.get(f"{s.url}/search", params={"q": "k report 7", "k": 3}).json()["hits"]
            assert hits[0]["id"] == "k7"
            deadline = time.monotonic() + 120
            while not vector_counts(root)[0]:
                assert time.monotonic() < deadline, worker.log.read_text()
                time.sleep(0.01)
            worker.kill()
            done_before = len(vector_counts(root)[0])
            assert 0 < done_before < len(docs), "the kill did not land mid-way"
            worker = WorkerProcess(root, broker.url, tmp_path / "w2.log")
            worker.wait_ready()
            log = DeltaLog.open(root)
            deadline = time.monotonic() + 180
            while log.pending_embeddings(1):
                assert time.monotonic() < deadline, worker.log.read_text()
                time.sleep(0.1)
            rows, logged = vector_counts(root)
            assert rows == logged == {d["id"]: 1 for d in docs}
            for doc in (docs[0], docs[-1]):
                got = http.get(f"{s.url}/documents/{doc['id']}").json()
                assert got["text"] == doc["text"] and got["embedded"] is True
            # The semantic phase finds the embedded documents.
            q = docs[40]["title"].replace(" ", "+")
            _, events = read_stream(http, f"{s.url}/search/stream?q={q}&k=5")
            semantic = next(e for e in events if e.event == "semantic")
            assert "k40" in [h["id"] for h in semantic.data["hits"]]
            # The worker's enhanced phase sees the written documents too, with highlights.
            enhanced = next(e for e in events if e.event == "enhanced")
            hit = next(h for h in enhanced.data["hits"] if h["id"] == "k40")
            assert "<mark>" in hit["highlight"]
    finally:
        worker.stop()


def test_broker_down_means_503_within_2_seconds_and_nothing_written(
    sample_root: Path, http: httpx.Client, tmp_path: Path
) -> None:
    root = copy_index(sample_root, tmp_path / "index")
    with private_redis() as doomed, private_redis() as cache, serve_with_broker(
        root, tmp_path / "s.log", doomed, PROGSEARCH_REDIS_URL=cache.url
    ) as s:
        s.wait_ready(http)
        doomed.stop()
        doc = {"id": "late", "title": "Lantern for late walks", "text": "Bright and small."}
        for _ in range(3):
            start = time.monotonic()
            r = http.post(f"{s.url}/documents", json=doc, headers=AUTH)
            assert time.monotonic() - start < 2.0
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "broker_unavailable"
        assert http.get(f"{s.url}/documents/late").status_code == 404
        assert DeltaLog.open(root).last_seq() == 0
        # Searching goes on.
        r = http.get(f"{s.url}/search", params={"q": "hiking boots"})
        assert r.status_code == 200 and r.json()["hits"]
        assert "Traceback" not in s.output()


def test_server_killed_during_compaction_keeps_a_whole_snapshot_and_every_write(
    tmp_path: Path, http: httpx.Client
) -> None:
    """Keyword-only index, embedded jobs, a compaction every 4,000 changes: batches are
    written until the server is caught with a compaction under way, then it is killed."""
    src = write_jsonl(tmp_path / "corpus.jsonl", make_corpus(2000, seed=5))
    root = tmp_path / "index"
    write_snapshot(open_source(src), root, BuildOptions(workers=1))
    env = {"PROGSEARCH_API_KEY": KEY, "PROGSEARCH_COMPACT_CHANGES": "4000"}
    acknowledged: list[str] = []
    killed_mid_compaction = False
    with running_server(root, tmp_path / "s1.log", env=env) as s:
        s.wait_ready(http, semantic=False)
        for batch in range(40):
            docs = [{"id": f"w{batch}-{i}", "title": " ".join(random.choices(WORDS, k=3)),
                     "text": " ".join(random.choices(WORDS, k=40))} for i in range(1000)]
            r = http.post(f"{s.url}/documents", content=ndjson(docs),
                          headers={**AUTH, "Content-Type": "application/x-ndjson"})
            assert r.status_code == 200, r.text
            acknowledged += [d["id"] for d in docs]
            if list(root.glob(".tmp-*")) or list((root / ".work").glob("compact-*")):
                s.proc.send_signal(signal.SIGKILL)
                s.proc.wait()
                killed_mid_compaction = True
                break
            time.sleep(0.05)
    assert killed_mid_compaction, "no compaction was under way when the writes ended"
    # A restart serves a whole snapshot: the old or the new version, never a part of one.
    with running_server(root, tmp_path / "s2.log", env=env) as s:
        s.wait_ready(http, semantic=False)
        ready = http.get(f"{s.url}/readyz").json()
        assert ready["documents"] == 2000 + len(acknowledged)
    verify = subprocess.run([sys.executable, "-m", "app.cli", "verify", str(root)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    engine = Engine.open(root)
    missing = [i for i in acknowledged if engine.document(i) is None]
    assert missing == []
