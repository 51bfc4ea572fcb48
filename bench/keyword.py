"""Keyword phase benchmark: progsearch against bm25s and tantivy, same corpora, same queries.

    .venv/bin/python -m bench.keyword --data ../shared/data/scifact \
        [--big /tmp/gen1m/corpus.jsonl] [--work /tmp/progsearch-bench]

For each corpus it builds a progsearch index with `progsearch index` in a child process (wall
time and peak RSS of the process tree), then times the keyword phase in a fresh child process
that only loads the snapshot and serves (analysis, typo handling, BM25 top-10, external ids),
and reports that process's RSS. The peers are built and timed in this process on the same
queries. Latencies are per query, after a warm-up; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from app.beir import read_queries
from bench.peers import Bm25sPeer, TantivyPeer
from bench.timing import print_table, summarize, time_calls
from index.snapshot import read_manifest
from index.sources import open_source

K = 10
WARMUP = 50


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def build_index(source: Path, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "index",
        str(source),
        "--out",
        str(out),
        "--quiet",
        "--no-vectors",
    ]
    started = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"index build failed: {shlex.join(cmd)}")
    version = out / (out / "CURRENT").read_text().strip()
    n = read_manifest(version).n_docs
    # The whole command: reading and validating the source, analysis, postings, document store,
    # checksums and publication (keyword index only, no vectors).
    return {"docs": n, "seconds": seconds, "docs_per_s": n / seconds, "peak_rss_mb": peak / 2**20}


def serve_probe(index: Path, queries_file: Path, prefix: bool) -> dict[str, Any]:
    """Run in a child: load, time every query, report latencies and this process's RSS."""
    from index.snapshot import load_snapshot
    from rankers.keyword import KeywordRanker

    started = time.perf_counter()
    snapshot = load_snapshot(index)
    ranker = KeywordRanker(snapshot)
    load_s = time.perf_counter() - started
    queries = json.loads(queries_file.read_text())

    def run(q: str) -> list[str]:
        return snapshot.external_ids(ranker.search(q, K, prefix=prefix).docs)

    secs = time_calls(run, queries, warmup=WARMUP)
    rss = psutil.Process().memory_info()
    return {
        "ms": (secs * 1e3).tolist(),
        "load_s": load_s,
        "rss_mb": rss.rss / 2**20,
        "rss_anon_mb": (rss.rss - rss.shared) / 2**20,
    }


def probe(index: Path, queries_file: Path, prefix: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.keyword", "--probe", str(index), str(queries_file)]
    if prefix:
        cmd.append("--prefix")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def bench_corpus(
    name: str, source: Path, queries: list[str], work: Path, peers: bool
) -> list[list[Any]]:
    index = work / name
    build = build_index(source, index)
    qfile = work / f"{name}-queries.json"
    qfile.write_text(json.dumps(queries))
    ours = probe(index, qfile)
    typing = probe(index, qfile, prefix=True)
    ours_stats = summarize(ours["ms"])
    rows: list[list[Any]] = [
        [
            name,
            "progsearch",
            build["docs"],
            build["seconds"],
            build["docs_per_s"],
            build["peak_rss_mb"],
            ours_stats["p50"],
            ours_stats["p99"],
            1.0,
        ],
    ]
    t = summarize(typing["ms"])
    rows.append(
        [
            name,
            "progsearch (as you type)",
            "",
            "",
            "",
            "",
            t["p50"],
            t["p99"],
            t["p50"] / ours_stats["p50"],
        ]
    )
    print(
        f"[{name}] progsearch serving: load {ours['load_s'] * 1e3:.0f} ms, RSS "
        f"{ours['rss_mb']:.0f} MiB ({ours['rss_anon_mb']:.0f} MiB not file-backed)",
        flush=True,
    )
    if not peers:
        return rows
    docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in open_source(source)]
    for make in (Bm25sPeer, TantivyPeer):
        peer = make(docs)
        secs = time_calls(partial(peer.search, k=K), queries, warmup=WARMUP)
        s = summarize(secs * 1e3)
        rows.append(
            [
                name,
                peer.name,
                len(docs),
                peer.build_seconds,
                len(docs) / peer.build_seconds,
                "",
                s["p50"],
                s["p99"],
                s["p50"] / ours_stats["p50"],
            ]
        )
        print(f"[{name}] {peer.name}: p50 {s['p50']:.3f} ms", flush=True)
        if isinstance(peer, TantivyPeer):
            peer.close()
        del peer
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        prefix = "--prefix" in sys.argv
        print(json.dumps(serve_probe(Path(sys.argv[2]), Path(sys.argv[3]), prefix)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder (SciFact)")
    ap.add_argument("--big", type=Path, help="large corpus JSONL (bench.gen_corpus output)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/progsearch-bench"))
    ap.add_argument("--queries", type=int, default=0, help="use the first N queries (0: all)")
    ap.add_argument("--no-peers-big", action="store_true", help="skip peers on the big corpus")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    queries = list(read_queries(args.data / "queries.jsonl").values())
    if args.queries:
        queries = queries[: args.queries]
    print("command:", shlex.join([Path(sys.executable).name, "-m", "bench.keyword", *sys.argv[1:]]))
    rows = bench_corpus("scifact", args.data, queries, args.work, peers=True)
    if args.big:
        rows += bench_corpus("big", args.big, queries, args.work, peers=not args.no_peers_big)
    print()
    print(
        f"{len(queries)} queries, k={K}, warm-up {WARMUP}; latency in ms; ratio = p50 / "
        "progsearch p50 (above 1: slower than progsearch)"
    )
    print_table(
        rows,
        [
            "corpus",
            "engine",
            "docs",
            "build s",
            "docs/s",
            "build RSS MiB",
            "p50 ms",
            "p99 ms",
            "p50 ratio",
        ],
    )
    print(f"numpy {np.__version__}; cores {psutil.cpu_count()}")


if __name__ == "__main__":
    main()
