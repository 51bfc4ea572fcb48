"""What exploring a stream costs its user: first event and `done` of explored and plain
streams, one request at a time, on two servers of the same index.

    python -m bench.explore_latency --index /tmp/demo-shipped --dataset /tmp/demo-beir

One server explores every stream (`PROGSEARCH_EXPLORE_SHARE=1`, its phases computed for
k + `PROGSEARCH_EXPLORE_DEPTH`), the other none (share 0); each query goes once to each, the
order of the servers alternating, so every answer is computed (no cache hit). The queries: the
dataset's, then word pairs from them, after a warm-up on other pairs.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from bench.sse_client import fetch, order_problem, phase_errors
from bench.stream import (
    Server,
    Servers,
    done_ms,
    first_event_ms,
    load_queries,
    stream_path,
    wait_ready,
    warmup_queries,
)
from bench.timing import print_table, summarize


def explored_count(server: Server) -> float:
    """The server's count of explored streams (its `/metrics`)."""
    text = fetch(server.port, "/metrics").body.decode()
    found = re.search(r"^progsearch_explored_searches_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True, help="a folder with queries.jsonl")
    p.add_argument("--work", type=Path, default=Path("/tmp/explore-latency"))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    base = load_queries(args.dataset)
    pairs = warmup_queries(base, args.queries + 40)
    queries = (base + pairs[40:])[: args.queries]
    servers = Servers(args.work, args.index)
    try:
        run = {label: servers.progsearch(label, env={
            "PROGSEARCH_EXPLORE_SHARE": share, "PROGSEARCH_EXPLORE_DEPTH": str(args.depth),
            "PROGSEARCH_CLICK_TRAIN_SECONDS": "0", "PROGSEARCH_PRECOMPUTE_TOP": "0"})
            for label, share in (("explored", "1"), ("plain", "0"))}
        for server in run.values():
            wait_ready(server)
        for q in pairs[:40]:
            for server in run.values():
                fetch(server.port, stream_path(q, args.k))
        first: dict[str, list[float]] = {label: [] for label in run}
        done: dict[str, list[float]] = {label: [] for label in run}
        problems = dict.fromkeys(run, 0)
        errors = dict.fromkeys(run, 0)
        labels = list(run)
        for i, q in enumerate(queries):
            for j in range(len(labels)):
                label = labels[(i + j) % len(labels)]
                reply = fetch(run[label].port, stream_path(q, args.k))
                if order_problem(reply, ("keyword", "semantic", "enhanced")) is not None:
                    problems[label] += 1
                    continue
                errors[label] += bool(phase_errors(reply))
                first[label].append(first_event_ms(reply))
                done[label].append(done_ms(reply))
        counted = {label: explored_count(server) for label, server in run.items()}
    finally:
        servers.close()
    print(f"$ python -m bench.explore_latency {shlex.join(sys.argv[1:])}")
    print(f"{len(queries)} queries, k {args.k}, depth {args.depth}, one request at a time, "
          "each computed (no cache hit)")
    rows = []
    for label in labels:
        f, d = summarize(first[label]), summarize(done[label])
        rows.append([label, len(first[label]), f["p50"], f["p99"], d["p50"], d["p99"],
                     errors[label], problems[label], counted[label]])
    print_table(rows, ["streams", "n", "first event p50 ms", "p99", "done p50 ms", "p99",
                       "with an error event", "incomplete",
                       "progsearch_explored_searches_total"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
