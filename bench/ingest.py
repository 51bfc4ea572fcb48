"""Streaming ingestion: durable writes of NDJSON batches, catching up, querying with a delta.

    .venv/bin/python -m bench.ingest --data ../shared/data/scifact [--batches 40] [--batch 500]

A keyword-only snapshot is built from the corpus, then `--batches` NDJSON bodies of `--batch`
documents (the corpus's documents again, under new ids, so SciFact-size: about 1.5 KB each) go
through what ``POST /documents`` does before it answers: `parse_documents` and
`DeltaLog.append` (one SQLite transaction, WAL, synchronous=FULL: an fsync per batch). The peer
is the least a durable write costs: the same bytes appended to a file and fsynced. Then what a
server process does to see the writes (`LiveIndex.refresh` per batch, through a connection of
its own), the keyword phase with the delta merged against the snapshot alone, and a compaction
of the whole delta.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from app.beir import read_queries
from bench.timing import print_table, summarize, time_calls
from index.compact import compact
from index.delta import DeltaLog
from index.ingest import parse_documents
from index.snapshot import BuildOptions, load_snapshot, write_snapshot
from index.sources import open_source
from rankers.delta_segment import live_view
from rankers.keyword import KeywordRanker
from rankers.live import LiveIndex


def _records(data: Path) -> list[dict[str, object]]:
    name = "corpus.jsonl.gz" if (data / "corpus.jsonl.gz").exists() else "corpus.jsonl"
    opener = gzip.open if name.endswith(".gz") else open
    with opener(data / name, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def _bodies(records: list[dict[str, object]], batches: int, size: int) -> list[bytes]:
    out = []
    for b in range(batches):
        lines = []
        for i in range(size):
            r = records[(b * size + i) % len(records)]
            lines.append(orjson.dumps({**r, "_id": f"new-{b}-{i}"}))
        out.append(b"\n".join(lines) + b"\n")
    return out


def _row(name: str, seconds: list[float] | np.ndarray, docs: int) -> list[object]:
    s = summarize(np.asarray(seconds) * 1000)
    rate = docs / (float(np.sum(seconds)) / len(seconds)) if docs else 0.0
    return [name, s["p50"], s["p99"], rate]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    print("$ " + shlex.join([sys.executable, "-m", "bench.ingest", *sys.argv[1:]]))

    records = _records(args.data)
    bodies = _bodies(records, args.batches, args.batch)
    size = sum(map(len, bodies)) / (args.batches * args.batch)
    with tempfile.TemporaryDirectory(dir=args.work, prefix="bench-ingest-") as tmp:
        root = Path(tmp) / "index"
        write_snapshot(open_source(args.data), root, BuildOptions(workers=1))
        snap = load_snapshot(root)
        print(f"snapshot: {snap.n_docs} documents; batches: {args.batches} x {args.batch} "
              f"documents of {size:.0f} bytes on average")  # fmt: skip

        parse_s, append_s, total_s, peer_s = [], [], [], []
        log = DeltaLog.open(root)
        peer = os.open(Path(tmp) / "peer.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        for body in bodies:
            t0 = time.perf_counter()
            docs = parse_documents(body, ndjson=True)
            t1 = time.perf_counter()
            log.append(docs)
            t2 = time.perf_counter()
            os.write(peer, body)
            os.fsync(peer)
            t3 = time.perf_counter()
            parse_s.append(t1 - t0)
            append_s.append(t2 - t1)
            total_s.append(t2 - t0)
            peer_s.append(t3 - t2)
        os.close(peer)

        # Another process's view: its own connection, catching up batch by batch.
        live = LiveIndex(snap)
        reader = DeltaLog.open(root)
        refresh_s = []
        for b in range(args.batches):
            changes = reader.changes_since(live.seq, limit=args.batch)
            t0 = time.perf_counter()
            live.apply(changes, reader.get_vectors([]), changes[-1].seq)
            refresh_s.append(time.perf_counter() - t0)
            assert live.seq == (b + 1) * args.batch
        live.wait_for_merge()
        poll = time_calls(lambda _: reader.last_seq(), list(range(2000)), warmup=100)

        queries = list(read_queries(args.data / "queries.jsonl").values())[: args.queries]
        keyword = KeywordRanker(snap)
        view = live_view(live, keyword)

        def merged_search(q: str) -> object:
            return keyword.run(keyword.plan(q, view=view), 10, view)

        alone = time_calls(lambda q: keyword.search(q, 10), queries)
        merged = time_calls(merged_search, queries)
        t0 = time.perf_counter()
        result = compact(root, log)
        compact_s = time.perf_counter() - t0
        assert result is not None

    n = args.batch
    print()
    print_table(
        [
            _row("parse NDJSON (parse_documents)", parse_s, n),
            _row("durable append (DeltaLog.append)", append_s, n),
            _row("POST /documents core: parse + append", total_s, n),
            _row("peer: append the body to a file + fsync", peer_s, n),
            _row("catch up one batch (LiveIndex.apply)", refresh_s, n),
        ],
        ["per batch", "p50 ms", "p99 ms", "docs/s"],
    )
    print()
    delta = args.batches * args.batch
    print_table(
        [
            ["poll the last seq (DeltaLog.last_seq)", *_ms(poll)],
            ["keyword top-10, snapshot alone", *_ms(alone)],
            [f"keyword top-10, snapshot + delta of {delta}", *_ms(merged)],
        ],
        ["per call", "p50 ms", "p99 ms"],
    )
    print()
    print(f"compaction of {delta} documents into {result.n_docs}: {compact_s:.1f} s "
          f"({result.n_docs / compact_s:.0f} docs/s of the new version)")  # fmt: skip
    print(json.dumps({"append_docs_per_s": n / float(np.mean(total_s))}))
    return 0


def _ms(seconds: np.ndarray) -> list[float]:
    s = summarize(seconds * 1000)
    return [s["p50"], s["p99"]]


if __name__ == "__main__":
    raise SystemExit(main())
