"""Precomputed popular queries: the whole stream of a query the server precomputed, from the cache.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.precomputed --index /tmp/sfp \
        --data ../shared/data/scifact

A Redis database (flushed) gets a query log in which `--top` SciFact queries are the most
frequent. A `progsearch serve` with that Redis as its cache and `PROGSEARCH_PRECOMPUTE_TOP` set
claims the index version when its encoder is ready and runs those queries through every phase
into the cache. Then each of them is streamed once, interleaved with the floor (sse-starlette
on the same uvicorn sending three constant events): the time from sending the request to the
`done` event, whose `cached` must be true. The goal is the cache-hit budget, p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import redis

from app.params import parse_search
from app.search import QUERY_LOG
from app.settings import Settings
from bench.sse_client import fetch
from bench.stream import Servers, load_queries, stream_path, wait_ready
from bench.timing import print_table, summarize


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precomputed", description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13",
                        help="a Redis database this run flushes")
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("$ " + shlex.join([sys.executable, "-m", "bench.precomputed", *sys.argv[1:]]))

    queries = load_queries(args.data)[: args.top]
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    settings = Settings()
    for rank, q in enumerate(queries):
        params = parse_search(f"q={quote(q)}&k=10".encode(), settings)
        client.zincrby(QUERY_LOG, 1000 - rank, params.log_member)
    with tempfile.TemporaryDirectory(prefix="bench-precomputed-") as tmp:
        servers = Servers(Path(tmp), args.index)
        try:
            started = time.perf_counter()
            server = servers.spawn("progsearch", [
                *servers.progsearch_cmd, "serve", str(args.index), "--port", "{port}",
                "--redis-url", args.redis_url, "--log-level", "info"],
                env={"PROGSEARCH_PRECOMPUTE_TOP": str(args.top)})
            floor = servers.floor("floor")
            wait_ready(server)
            wait_ready(floor)
            deadline = time.monotonic() + 600
            while "precomputed" not in server.output():
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise RuntimeError(server.output())
                time.sleep(0.05)
            line = next(x for x in server.output().splitlines() if "precomputed" in x)
            print(f"{line.strip()} ({time.perf_counter() - started:.1f} s after the start)")
            ours: list[float] = []
            peer: list[float] = []
            not_cached = 0
            for _ in range(args.rounds):
                for q in queries:
                    reply = fetch(server.port, stream_path(q))
                    done = next(e for e in reply.events if e.name == "done")
                    not_cached += not json.loads(done.data)["cached"]
                    ours.append(done.at - reply.sent)
                    floor_reply = fetch(floor.port, stream_path(q))
                    peer.append(floor_reply.events[-1].at - floor_reply.sent)
        finally:
            servers.close()
    a, b = summarize(np.asarray(ours) * 1000), summarize(np.asarray(peer) * 1000)
    print(f"\nwhole stream of the {len(queries)} precomputed queries, request to done, "
          f"{args.rounds} rounds (the first round is each query's first request)")
    print_table([
        ["progsearch, precomputed into Redis", len(ours), a["p50"], a["p99"], not_cached,
         "p50 <= 2 ms", "yes" if a["p50"] <= 2 and not not_cached else "NO"],
        ["floor: sse-starlette, uvloop+httptools", len(peer), b["p50"], b["p99"], 0, "", ""],
    ], ["server", "n", "p50 ms", "p99 ms", "not from the cache", "goal", "met"])
    first = summarize(np.asarray(ours[: len(queries)]) * 1000)
    print(f"first round only: p50 {first['p50']:.3f} ms, p99 {first['p99']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
