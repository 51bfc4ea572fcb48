"""Follow streams: write-to-update latency, matching cost against the naive baseline, memory.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.follow --data ../shared/data/scifact

A keyword-only SciFact index (the same build as `progsearch index --no-vectors`) is made from
all but `--held-out` abstracts; the held-out ones are the writes. Follows are SciFact queries,
each text once, made distinct past the 809 queries by adding a word of another query.

With `--topics N` (default 10) every document, indexed or written, has a keyword field
``topic`` (one of N values, in turn), and follow i filters on ``topic = "t{i mod N}"``: as in a
catalog where each open search is inside a category, a write passes the filter of 1/N of the
follows (10 % by default), and it is matched against those only where it shares a query word.
The share a write passes the filter of, and the share it actually updates (it entered, left or
moved in the top k), are both printed. `--topics 0`: no field, no filter.

1. **Write to keyword update** (a real `progsearch serve` with Redis): `--follows` SSE follow
   streams open at once, then `--rate` writes a second for `--seconds`. For every update that
   arrives, the time from the acknowledgement of the write it reports (`seq`) to its arrival
   at the client, p50 and p99; and the share of follows a write updated.
2. **CPU per write against open follows** (in process, no HTTP): for each count, the process
   CPU time of `FollowHub.match_once` per write (refreshing the delta included), next to the
   naive baseline on the same index and writes: refresh, then re-run every open query.
3. **Memory per open follow**: traced allocations of opening and arming `--follows` follows
   in process, divided by their count; and the server's RSS growth per open follow stream in
   part 1 (the connection, its task and buffers included); both past the first tenth, which
   pays one-time costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from httpx_sse import aconnect_sse

from app.engine import Engine
from app.follow_hub import FollowHub
from app.metrics import Metrics
from app.params import SearchParams
from app.settings import Settings
from bench.stream import free_port, load_queries, revision
from bench.timing import print_table, summarize
from index.core.types import Document
from index.snapshot import BuildOptions, write_snapshot
from index.sources import open_source

KEY = "bench-follow"


def distinct_queries(data: Path, n: int) -> list[str]:
    base = load_queries(data)
    out = list(base[:n])
    i = 0
    while len(out) < n:
        words = base[(i * 7 + 3) % len(base)].split()
        out.append(f"{base[i % len(base)]} {words[i % len(words)]}")
        i += 1
    return out


def topic(i: int, topics: int) -> str:
    return f"t{i % topics}"


def topic_filter(i: int, topics: int) -> str:
    return f'topic = "{topic(i, topics)}"' if topics else ""


def build(data: Path, folder: Path, held_out: int, topics: int
          ) -> tuple[Path, list[Document]]:
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    if topics:
        for i, r in enumerate(records):
            r["topic"] = topic(i, topics)
    kept, writes = records[:-held_out], records[-held_out:]
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in kept))
    root = folder / "index"
    write_snapshot(open_source(corpus), root, BuildOptions(workers=2))
    docs = [Document(f"w{i}-{r['_id']}", r.get("title", ""), r.get("text", ""),
                     {"topic": r["topic"]} if topics else {})
            for i, r in enumerate(writes)]
    return root, docs


def fresh_copy(root: Path, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(root, folder, ignore=shutil.ignore_patterns("delta.sqlite*"))
    return folder


# -- 2 and 3: in process -------------------------------------------------------------------
def follow_params(engine: Engine, queries: list[str], k: int, topics: int
                  ) -> list[SearchParams]:
    """The follows' parameters as the server checks them (the filter in canonical form)."""
    return [engine.check(SearchParams(q, k, False, topic_filter(i, topics)))
            for i, q in enumerate(queries)]


async def open_follows(engine: Engine, params: list[SearchParams],
                       hub: FollowHub | None = None) -> FollowHub:
    if hub is None:
        hub = FollowHub(engine, Settings(follow_per_client=1 << 30), Metrics())
    for p in params:
        follow = hub.open(p, "bench", engine.version)
        hub.arm(follow, (), (), 4)
    await hub.match_once()  # every new follow's first ranking
    for follow in hub:
        follow.take()  # as a stream would: the slot holds nothing between writes
    return hub


async def cpu_per_write(root: Path, queries: list[str], writes: list[Document], k: int,
                        naive_writes: int, topics: int) -> tuple[float, float, float]:
    """(hub CPU ms per write, naive CPU ms per write, follows re-run per write)."""
    engine = Engine.open(root)
    assert engine.source is not None
    log = engine.source.log
    params = follow_params(engine, queries, k, topics)
    hub = await open_follows(engine, params)
    hub.matched = 0
    cpu = []
    for doc in writes:
        log.append([doc])
        start = time.process_time()
        await hub.match_once()
        cpu.append(time.process_time() - start)
    reran = hub.matched / len(writes)
    naive = []
    for doc in writes[len(writes) - naive_writes:]:
        log.append([Document(doc.id + "-again", doc.title, doc.text, doc.fields)])
        start = time.process_time()
        rankers = engine.refresh()
        for p in params:
            engine.keyword_state(p, k, rankers)
        naive.append(time.process_time() - start)
    return float(np.mean(cpu)) * 1000, float(np.mean(naive)) * 1000, reran


async def memory_per_follow(root: Path, queries: list[str], k: int, topics: int) -> float:
    """Traced bytes per follow, past the first tenth (which pays for one-time allocations:
    scratch arrays, caches)."""
    engine = Engine.open(root)
    params = follow_params(engine, queries, k, topics)
    first = max(1, len(queries) // 10)
    tracemalloc.start()
    hub = await open_follows(engine, params[:first])
    before = tracemalloc.take_snapshot()
    await open_follows(engine, params[first:], hub)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(hub) == len(queries)
    return grown / (len(queries) - first)


# -- 1: a real server ----------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def follow_stream(client: httpx.AsyncClient, url: str, q: str, k: int, where: str,
                        opened: asyncio.Event, arrivals: list[tuple[int, float]]) -> None:
    params: dict[str, Any] = {"q": q, "k": k, "follow": 1}
    if where:
        params["filter"] = where
    async with aconnect_sse(client, "GET", f"{url}/search/stream", params=params) as source:
        async for event in source.aiter_sse():
            if event.event == "done":
                opened.set()
            elif event.event == "update":
                arrivals.append((json.loads(event.data)["seq"], time.monotonic()))


async def latency(url: str, pid: int, queries: list[str], writes: list[Document], k: int,
                  rate: float, topics: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=len(queries) + 16, max_keepalive_connections=32)
    timeout = httpx.Timeout(60, read=None)
    arrivals: list[tuple[int, float]] = []
    acked: dict[int, float] = {}
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        opened = [asyncio.Event() for _ in queries]
        tasks = []
        first = max(1, len(queries) // 10)  # RSS is measured past one-time costs
        rss_before = 0
        for i, (q, event) in enumerate(zip(queries, opened, strict=True)):
            if i == first:
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened[:i])), 300)
                await asyncio.sleep(1.0)
                rss_before = rss_kib(pid)
            tasks.append(asyncio.ensure_future(follow_stream(
                client, url, q, k, topic_filter(i, topics), event, arrivals)))
            await asyncio.sleep(0.002)  # opening 1,000 at once only measures the listen queue
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 300)
        await asyncio.sleep(1.0)
        rss_open = rss_kib(pid)
        async with httpx.AsyncClient(timeout=30) as writer:

            async def post(doc: Document) -> None:
                answer = await writer.post(
                    f"{url}/documents", headers={"X-API-Key": KEY},
                    json={"id": doc.id, "title": doc.title, "text": doc.text, **doc.fields})
                acked[answer.json()["seq"]] = time.monotonic()

            start = time.monotonic()
            posts = []
            for i, doc in enumerate(writes):  # on schedule, whatever the answers take
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                posts.append(asyncio.ensure_future(post(doc)))
            await asyncio.gather(*posts)
            elapsed = time.monotonic() - start
        await asyncio.sleep(2.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat = [(t - acked[seq]) * 1000 for seq, t in arrivals if seq in acked]
    return {"latency": lat, "updates": len(arrivals), "rate": len(writes) / elapsed,
            "rss_per_follow": (rss_open - rss_before) * 1024 / max(1, len(queries) - first)}


def serve(root: Path, log: Path, redis_url: str, follows: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROGSEARCH_API_KEY": KEY,
           "PROGSEARCH_REDIS_URL": redis_url, "PROGSEARCH_PRECOMPUTE_TOP": "0",
           "PROGSEARCH_FOLLOW_PER_CLIENT": str(follows + 10)}
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", str(root), "--port",
                                 str(port), "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    proc.port = port  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a SciFact folder (BEIR)")
    ap.add_argument("--follows", type=int, default=1000)
    ap.add_argument("--counts", default="100,1000,10000")
    ap.add_argument("--rate", type=float, default=100.0, help="writes per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cpu-writes", type=int, default=50)
    ap.add_argument("--naive-writes", type=int, default=5)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--held-out", type=int, default=1200)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--topics", type=int, default=10,
                    help="a topic field with this many values, one filter per follow (0: none)")
    args = ap.parse_args()
    print(f"# {' '.join(shlex.quote(a) for a in sys.argv)}  (revision {revision()})")
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        folder = Path(tmp)
        root, docs = build(args.data, folder, args.held_out, args.topics)
        n_writes = int(args.rate * args.seconds)
        counts = [int(c) for c in args.counts.split(",")]
        queries = distinct_queries(args.data, max([args.follows, *counts]))

        copy = fresh_copy(root, folder / "served")
        proc = serve(copy, folder / "server.log", args.redis_url, args.follows)
        try:
            got = asyncio.run(latency(f"http://127.0.0.1:{proc.port}",  # type: ignore[attr-defined]
                                      proc.pid, queries[: args.follows], docs[:n_writes],
                                      args.k, args.rate, args.topics))
        finally:
            proc.terminate()
            proc.wait(30)
        lat = summarize(got["latency"]) if got["latency"] else {"p50": 0.0, "p99": 0.0}
        print(f"\n## 1. Write to keyword update, {args.follows} open follows, "
              f"{got['rate']:.0f} writes/s for {args.seconds:.0f} s")
        print_table([["keyword update after the write's answer", len(got["latency"]),
                      lat["p50"], lat["p99"],
                      100 / args.topics if args.topics else 100.0,
                      100 * got["updates"] / max(1, n_writes) / args.follows]],
                    ["", "updates", "p50 ms", "p99 ms", "% of follows whose filter it passes",
                     "% of follows updated per write"])

        print("\n## 2. CPU time per write against open follows (in process)")
        rows = []
        for n in counts:
            scratch = fresh_copy(root, folder / f"cpu{n}")
            writes = docs[n_writes: n_writes + args.cpu_writes]
            hub_ms, naive_ms, reran = asyncio.run(cpu_per_write(
                scratch, queries[:n], writes, args.k, min(args.naive_writes, len(writes)),
                args.topics))
            rows.append([n, hub_ms, naive_ms, naive_ms / hub_ms if hub_ms else 0.0, reran])
        print_table(rows, ["open follows", "percolator ms/write", "naive ms/write",
                           "naive / percolator", "follows re-run/write"])

        print("\n## 3. Memory per open follow")
        traced = asyncio.run(memory_per_follow(fresh_copy(root, folder / "mem"),
                                               queries[: args.follows], args.k, args.topics))
        print_table([["in process (traced allocations: follow, percolator entries, ranking)",
                      traced / 1024],
                     ["server RSS growth per open SSE follow (connection included)",
                      got["rss_per_follow"] / 1024]],
                    ["", "KiB per follow"])


if __name__ == "__main__":
    main()
