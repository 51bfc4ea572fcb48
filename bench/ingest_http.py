"""Streaming ingestion over HTTP, against a real `progsearch serve` and a real Celery worker.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ingest_http --index /tmp/sfp \
        --data ../shared/data/scifact

The index (a SciFact snapshot with vectors and passages, from `progsearch index`) is copied to
a scratch folder, which the server serves live with `PROGSEARCH_BROKER_URL` set, and one
`progsearch worker` (Redis broker, a database this run flushes) does the embedding.

1. **Time to the semantic phase.** `--docs` SciFact abstracts, one at a time, are written under
   new ids with `POST /documents`; right after each answer the stream is asked, every
   `--poll-ms`, for the document's title until the `semantic` event lists the new id (each poll
   reads the keyword and semantic events, then closes). Reported: the time from sending the
   write to its answer, and to the arrival of the first keyword and semantic events that list
   the document.
2. **Write throughput.** `--batches` NDJSON bodies of `--batch` SciFact abstracts (about
   1.5 KB each) are posted back to back on one connection, while the worker embeds. Each answer
   comes after the batch is durable (one SQLite transaction, fsynced). The peer is the least a
   durable HTTP write costs: a Starlette app on the same uvicorn that appends the body to a
   file and fsyncs it.
3. **Writes faster than embedding** (`--sustain SECONDS`, 0 skips it). On a fresh copy, with
   `PROGSEARCH_COMPACT_CHANGES` and `PROGSEARCH_MAX_PENDING` at `--sustain-compact` and
   `--sustain-pending`: the worker's embedding rate is measured first (documents embedded in
   30 s), then documents are written at twice that rate for SECONDS, in batches of 10. Every
   10 s a row gives the delta's size (changes in the log since the current version), the
   documents waiting for vectors, the snapshot versions published, and the writes refused with
   429 so far: the delta stays bounded while writes outpace embedding.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

from bench.stream import Server, Servers, wait_ready, wait_worker
from bench.timing import print_table, summarize

KEY = "bench-key"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-ndjson"}

PEER_APP = '''
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

FILE = os.environ["PEER_FILE"]


async def write(request):
    body = await request.body()
    with open(FILE, "ab") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return JSONResponse({"written": body.count(b"\\n")})


async def ready(request):
    return JSONResponse({"phase": "peer"})


app = Starlette(routes=[Route("/documents", write, methods=["POST"]), Route("/readyz", ready)])
'''


def records(data: Path) -> list[dict[str, Any]]:
    name = "corpus.jsonl.gz" if (data / "corpus.jsonl.gz").exists() else "corpus.jsonl"
    opener = gzip.open if name.endswith(".gz") else open
    with opener(data / name, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def as_doc(record: dict[str, Any], new_id: str) -> dict[str, Any]:
    return {"id": new_id, "title": record.get("title", ""), "text": record.get("text", "")}


def first_events(client: httpx.Client, port: int, query: str) -> dict[str, tuple[float, list[str]]]:
    """The keyword and semantic events of one stream (arrival time, hit ids); the stream is
    closed after the semantic event, so a poll never waits for the enhanced phase."""
    url = f"http://127.0.0.1:{port}/search/stream?q={quote(query)}&k=10"
    out: dict[str, tuple[float, list[str]]] = {}
    with connect_sse(client, "GET", url) as source:
        for event in source.iter_sse():
            if event.event in ("keyword", "semantic"):
                hits = [h["id"] for h in orjson.loads(event.data)["hits"]]
                out[event.event] = (time.perf_counter(), hits)
            if event.event != "keyword":
                break
    return out


def time_to_phases(port: int, docs: list[dict[str, Any]], poll: float,
                   timeout: float) -> tuple[list[float], list[float], list[float], int]:
    """Per document: seconds from sending the write to its answer, to the first keyword event
    that lists it, and to the first semantic event that does."""
    written, keyword, semantic = [], [], []
    missed = 0
    with httpx.Client(timeout=30) as client:
        for doc in docs:
            query = doc["title"] or doc["text"][:200]
            sent = time.perf_counter()
            r = client.post(f"http://127.0.0.1:{port}/documents", content=orjson.dumps(doc),
                            headers={**HEADERS, "Content-Type": "application/json"})
            r.raise_for_status()
            written.append(time.perf_counter() - sent)
            seen_kw: float | None = None
            while True:
                events = first_events(client, port, query)
                at, ids = events.get("keyword", (0.0, []))
                if seen_kw is None and doc["id"] in ids:
                    seen_kw = at - sent
                at, ids = events.get("semantic", (0.0, []))
                if doc["id"] in ids:
                    semantic.append(at - sent)
                    break
                if time.perf_counter() - sent > timeout:
                    missed += 1
                    break
                time.sleep(poll)
            keyword.append(seen_kw if seen_kw is not None else float("nan"))
    return written, keyword, semantic, missed


def throughput(port: int, bodies: list[bytes], docs_per_body: int) -> dict[str, Any]:
    latencies = []
    errors = 0
    with httpx.Client(timeout=60) as client:
        url = f"http://127.0.0.1:{port}/documents"
        client.post(url, content=bodies[0], headers=HEADERS)  # connection and warm-up
        start = time.perf_counter()
        for body in bodies[1:]:
            t0 = time.perf_counter()
            r = client.post(url, content=body, headers=HEADERS)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200
        wall = time.perf_counter() - start
    n = docs_per_body * (len(bodies) - 1)
    return {"docs_per_s": n / wall, "latencies": latencies, "errors": errors, "docs": n}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_http", description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12",
                        help="broker and answers: a Redis database this run flushes")
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--sustain", type=float, default=0.0,
                        help="seconds of writes at twice the embedding rate (figure 3)")
    parser.add_argument("--sustain-compact", type=int, default=1000)
    parser.add_argument("--sustain-pending", type=int, default=1000)
    args = parser.parse_args()
    print("$ " + shlex.join([sys.executable, "-m", "bench.ingest_http", *sys.argv[1:]]))

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    corpus = records(args.data)
    with tempfile.TemporaryDirectory(dir=args.work, prefix="bench-ingest-http-") as tmp:
        work = Path(tmp)
        root = work / "index"
        shutil.copytree(args.index, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
        servers = Servers(work, root)
        (work / "ps_ingest_peer.py").write_text(PEER_APP)
        worker = servers.worker("worker", args.redis_url)
        try:
            wait_worker(worker)
            server = servers.spawn("progsearch", [
                *servers.progsearch_cmd, "serve", str(root), "--port", "{port}",
                "--log-level", "warning"], env={
                    "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_BROKER_URL": args.redis_url,
                    "PROGSEARCH_PRECOMPUTE_TOP": "0"})
            wait_ready(server)
            status = run(args, corpus, servers, server, work)
        finally:
            servers.close()
        if args.sustain > 0:
            redis.Redis.from_url(args.redis_url).flushdb()
            sustained(args, corpus, work)
        return status


def delta_state(log: Any, root: Path) -> tuple[int, int, str]:
    """Changes in the log since the current version, documents waiting for vectors, and the
    current version's name."""
    from index.snapshot import read_manifest, resolve_version

    folder = resolve_version(root)
    base = read_manifest(folder).delta_seq
    changes = log.changes_since(base)
    waiting = len(log.pending_embeddings(1_000_000))
    return sum(c.op != "vectors" for c in changes), waiting, folder.name


def sustained(args: argparse.Namespace, corpus: list[dict[str, Any]], work: Path) -> None:
    from index.delta import DeltaLog

    root = work / "sustained"
    shutil.copytree(args.index, root, ignore=shutil.ignore_patterns("delta.sqlite*"))
    env = {"PROGSEARCH_COMPACT_CHANGES": str(args.sustain_compact),
           "PROGSEARCH_MAX_PENDING": str(args.sustain_pending)}
    os.environ.update(env)  # the worker reads them too
    servers = Servers(work, root)
    try:
        worker = servers.worker("worker-sustained", args.redis_url)
        wait_worker(worker)
        server = servers.spawn("progsearch-sustained", [
            *servers.progsearch_cmd, "serve", str(root), "--port", "{port}",
            "--log-level", "warning"], env={
                **env, "PROGSEARCH_API_KEY": KEY, "PROGSEARCH_BROKER_URL": args.redis_url,
                "PROGSEARCH_PRECOMPUTE_TOP": "0"})
        wait_ready(server)
        log = DeltaLog.open(root)
        url = f"http://127.0.0.1:{server.port}/documents"
        n = 0

        def body(count: int) -> bytes:
            nonlocal n
            lines = [orjson.dumps(as_doc(corpus[(n + i) % len(corpus)], f"sus-{n + i}"))
                     for i in range(count)]
            n += count
            return b"\n".join(lines) + b"\n"

        with httpx.Client(timeout=60) as client:
            client.post(url, content=body(200), headers=HEADERS).raise_for_status()
            time.sleep(5)  # the worker's first pass loads its encoder
            _, before, _ = delta_state(log, root)
            time.sleep(30)
            _, after, _ = delta_state(log, root)
            rate = max((before - after) / 30, 0.5)
            print(f"\n3. writes at twice the embedding rate for {args.sustain:g} s "
                  f"(embedding {rate:.1f} docs/s, so {2 * rate:.1f} docs/s written in batches of "
                  f"10; PROGSEARCH_COMPACT_CHANGES {args.sustain_compact}, "
                  f"PROGSEARCH_MAX_PENDING {args.sustain_pending})")
            rows = []
            refused = accepted = 0
            versions = {delta_state(log, root)[2]}
            start = time.perf_counter()
            next_row = 0.0
            while (elapsed := time.perf_counter() - start) < args.sustain:
                r = client.post(url, content=body(10), headers=HEADERS)
                if r.status_code == 429:
                    refused += 10
                    assert r.json()["error"]["code"] == "backlog"
                else:
                    r.raise_for_status()
                    accepted += 10
                if elapsed >= next_row:
                    size, waiting, version = delta_state(log, root)
                    versions.add(version)
                    rows.append([round(elapsed), size, waiting, len(versions) - 1, accepted,
                                 refused])
                    next_row += 10.0
                time.sleep(max(0.0, 10 / (2 * rate) - (time.perf_counter() - start - elapsed)))
        print_table(rows, ["s", "delta changes", "waiting", "versions published", "accepted",
                           "refused (429)"])
        most = max(r[1] for r in rows)
        print(f"   largest delta {most} changes (bound: compaction at {args.sustain_compact} "
              f"+ at most {args.sustain_pending} waiting)")
    finally:
        servers.close()


def run(args: argparse.Namespace, corpus: list[dict[str, Any]], servers: Servers,
        server: Server, work: Path) -> int:
    rng = np.random.default_rng(3)
    picks = rng.choice(len(corpus), size=args.docs, replace=False)
    docs = [as_doc(corpus[int(i)], f"live-{n}") for n, i in enumerate(picks)]
    written, keyword, semantic, missed = time_to_phases(server.port, docs,
                                                        args.poll_ms / 1000, 30.0)
    wr = summarize(np.asarray(written) * 1000)
    kw = summarize(np.asarray(keyword) * 1000)
    sem = summarize(np.asarray(semantic) * 1000) if semantic else {"p50": np.nan, "p99": np.nan}
    print(f"\n1. write to found, one document at a time, {args.docs} SciFact abstracts, "
          f"stream polled every {args.poll_ms:g} ms (one worker, concurrency 1)")
    print_table([
        ["write answered (201)", wr["p50"], wr["p99"], max(written) * 1000, len(written)],
        ["keyword", kw["p50"], kw["p99"], float(np.nanmax(keyword)) * 1000, len(keyword)],
        ["semantic", sem["p50"], sem["p99"],
         float(np.max(semantic)) * 1000 if semantic else np.nan, len(semantic)],
    ], ["from sending the write to", "p50 ms", "p99 ms", "max ms", "n"])
    if missed:
        print(f"   {missed} documents not found by the semantic phase within 30 s")

    bodies = []
    for b in range(args.batches + 1):
        lines = [orjson.dumps(as_doc(corpus[(b * args.batch + i) % len(corpus)], f"bulk-{b}-{i}"))
                 for i in range(args.batch)]
        bodies.append(b"\n".join(lines) + b"\n")
    size = sum(map(len, bodies)) / len(bodies) / args.batch
    ours = throughput(server.port, bodies, args.batch)
    servers.stop(server)
    peer = servers.spawn("peer", [
        sys.executable, "-m", "uvicorn", "ps_ingest_peer:app", "--app-dir", str(work),
        "--port", "{port}", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning"], env={"PEER_FILE": str(work / "peer.ndjson")})
    wait_ready(peer)
    floor = throughput(peer.port, bodies, args.batch)
    print(f"\n2. NDJSON batches of {args.batch} SciFact abstracts ({size:.0f} bytes each), "
          f"{args.batches} batches on one connection, the worker embedding meanwhile")
    rows = []
    for name, r in (("progsearch POST /documents", ours), ("peer: append + fsync", floor)):
        lat = summarize(np.asarray(r["latencies"]) * 1000)
        rows.append([name, r["docs_per_s"], lat["p50"], lat["p99"], r["docs"], r["errors"]])
    print_table(rows, ["server", "docs/s", "batch p50 ms", "batch p99 ms", "docs", "errors"])
    print(f"   progsearch / peer throughput: {ours['docs_per_s'] / floor['docs_per_s']:.2f}")
    print(f"   1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
