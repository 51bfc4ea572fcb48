"""Follow streams shown by the semantic or enhanced phase: write to the `update` that places
the new document by its meaning, with one worker embedding.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.follow_ranked --data ../shared/data/scifact \\
        [--docs 1000] [--follows 100] [--writes 40] [--rate 2] [--celery]

An index with vectors (and passages, so the enhanced phase runs; `--no-passages` for the
semantic phase alone) is built with `progsearch index` from the first `--docs` SciFact
abstracts; the next `--writes` abstracts are the writes. A real `progsearch serve` with Redis
serves it, with its embedded pool (one index thread), or with `--celery` one
`progsearch worker --concurrency 1` over the RabbitMQ broker. `--follows` follow streams over
distinct SciFact queries are opened; each is shown by the last phase its stream sent.
Then, after one warm-up write (the worker loads its encoder), the writes arrive at `--rate`
documents a second.

A follow ranked by a semantic phase takes in a written document once it has its vectors (the
fusion needs both scores), so the figure is, for every (follow, document) pair where the
document enters the follow's list: the time from the acknowledgement of the write to the
arrival of the update that adds it, p50 and p99. Embedding included: that is what a user waits
for. The time the worker took to embed each document (ack to `embedded` in `GET
/documents/{id}`, polled every 10 ms on its own connection) is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bench.follow import KEY, distinct_queries
from bench.stream import free_port, revision
from bench.timing import print_table, summarize

PHASES = ("semantic", "enhanced")


def build(data: Path, folder: Path, n_docs: int, n_writes: int, passages: bool
          ) -> tuple[Path, list[dict[str, str]]]:
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for _, line in zip(range(n_docs + n_writes), fh, strict=False)]
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records[:n_docs]))
    root = folder / "index"
    cmd = [sys.executable, "-m", "app.cli", "index", str(corpus), "--out", str(root), "--quiet"]
    subprocess.run([*cmd, *([] if passages else ["--no-passages"])], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    writes = [{"id": f"w{i}-{r['_id']}", "title": r.get("title", ""), "text": r.get("text", "")}
              for i, r in enumerate(records[n_docs:])]
    return root, writes


def start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, phases: tuple[str, ...]
               ) -> None:
    """Until /readyz says each of `phases` is ready (the encoder loaded, a worker up)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            states = answer.json().get("phases", {})
            if answer.status_code == 200 and all(states.get(p) == "ready" for p in phases):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(log.read_text()[-4000:])


async def follow(client: httpx.AsyncClient, url: str, q: str, k: int, opened: asyncio.Event,
                 shown_by: list[str], added: list[tuple[str, str, float]]) -> None:
    async with aconnect_sse(client, "GET", f"{url}/search/stream",
                            params={"q": q, "k": k, "follow": 1}) as source:
        last = "keyword"
        async for event in source.aiter_sse():
            if event.event in PHASES:
                last = event.event
            elif event.event == "done":
                shown_by.append(last)
                opened.set()
            elif event.event == "update":
                data = json.loads(event.data)
                now = time.monotonic()
                if data["phase"] in PHASES:
                    added.extend((q, doc_id, now) for doc_id in data["added"])


async def embedded_at(client: httpx.AsyncClient, url: str, doc_id: str, since: float,
                      times: dict[str, float]) -> None:
    while time.monotonic() - since < 120:
        answer = await client.get(f"{url}/documents/{doc_id}")
        if answer.status_code == 200 and answer.json().get("embedded"):
            times[doc_id] = time.monotonic()
            return
        await asyncio.sleep(0.01)


async def run(url: str, queries: list[str], writes: list[dict[str, str]], k: int, rate: float
              ) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=len(queries) + 16, max_keepalive_connections=32)
    added: list[tuple[str, str, float]] = []
    shown_by: list[str] = []
    acked: dict[str, float] = {}
    embedded: dict[str, float] = {}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, read=None)) as client:
        # One document first, so that the worker has loaded its encoder before the figures.
        warm = {"id": "warm-up", "title": "Warm-up", "text": "Loads the document encoder."}
        (await client.post(f"{url}/documents", headers={"X-API-Key": KEY}, json=warm)
         ).raise_for_status()
        await embedded_at(client, url, warm["id"], time.monotonic(), {})
        opened = [asyncio.Event() for _ in queries]
        tasks = []
        for q, event in zip(queries, opened, strict=True):
            tasks.append(asyncio.ensure_future(follow(client, url, q, k, event, shown_by, added)))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 300)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(timeout=30) as writer, \
                httpx.AsyncClient(timeout=30) as poller:
            pollers = []

            async def post(doc: dict[str, str]) -> None:
                answer = await writer.post(f"{url}/documents", headers={"X-API-Key": KEY},
                                           json=doc)
                answer.raise_for_status()
                acked[doc["id"]] = time.monotonic()
                pollers.append(asyncio.ensure_future(
                    embedded_at(poller, url, doc["id"], acked[doc["id"]], embedded)))

            begin = time.monotonic()
            posts = []
            for i, doc in enumerate(writes):
                await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
                posts.append(asyncio.ensure_future(post(doc)))
            await asyncio.gather(*posts)
            await asyncio.gather(*pollers)
        await asyncio.sleep(3.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first: dict[tuple[str, str], float] = {}
    for q, doc_id, at in added:
        if doc_id in acked:
            first.setdefault((q, doc_id), at)
    return {
        "update": [(at - acked[d]) * 1000 for (_, d), at in first.items()],
        "embed": [(embedded[d] - acked[d]) * 1000 for d in embedded],
        "entered": len(first), "shown_by": shown_by,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a SciFact folder (BEIR)")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--follows", type=int, default=100)
    ap.add_argument("--writes", type=int, default=40)
    ap.add_argument("--rate", type=float, default=2.0, help="writes per second")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--no-passages", action="store_true", help="semantic phase only")
    ap.add_argument("--celery", action="store_true", help="one Celery worker embeds")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--broker-url", default="amqp://guest:guest@127.0.0.1:5672//")
    args = ap.parse_args()
    print(f"# {' '.join(shlex.quote(a) for a in sys.argv)}  (revision {revision()})")
    with tempfile.TemporaryDirectory(prefix="bench-follow-ranked-") as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        root, writes = build(args.data, folder, args.docs, args.writes, not args.no_passages)
        print(f"built {args.docs} documents with vectors"
              f"{'' if args.no_passages else ' and passages'} in {time.monotonic() - t0:.0f} s")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROGSEARCH_API_KEY": KEY,
               "PROGSEARCH_REDIS_URL": args.redis_url, "PROGSEARCH_PRECOMPUTE_TOP": "0",
               "PROGSEARCH_FOLLOW_PER_CLIENT": str(args.follows + 10)}
        procs = []
        if args.celery:
            env["PROGSEARCH_BROKER_URL"] = args.broker_url
            procs.append(start([sys.executable, "-m", "app.cli", "worker", str(root),
                                "--concurrency", "1", "--log-level", "info"],
                               folder / "worker.log", env))
            deadline = time.monotonic() + 120
            while b" ready." not in (folder / "worker.log").read_bytes():
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError((folder / "worker.log").read_text()[-4000:])
                time.sleep(0.2)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start([sys.executable, "-m", "app.cli", "serve", str(root), "--port",
                        str(port), "--log-level", "warning"], folder / "server.log", env)
        procs.append(server)
        try:
            wait_ready(url, server, folder / "server.log",
                       PHASES[:1] if args.no_passages else PHASES)
            got = asyncio.run(run(url, distinct_queries(args.data, args.follows),
                                  writes, args.k, args.rate))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        mode = "one Celery worker" if args.celery else "the embedded pool"
        shown = {p: got["shown_by"].count(p) for p in sorted(set(got["shown_by"]))}
        print(f"\n{args.follows} follows (shown by: {shown}), {args.writes} writes at "
              f"{args.rate:g}/s, embedded by {mode}")
        rows = []
        if got["update"]:
            u = summarize(got["update"])
            rows.append(["write answer -> update adding it (ranked by its vectors)",
                         len(got["update"]), u["p50"], u["p99"]])
        if got["embed"]:
            e = summarize(got["embed"])
            rows.append(["write answer -> GET /documents says embedded", len(got["embed"]),
                         e["p50"], e["p99"]])
        print_table(rows, ["", "n", "p50 ms", "p99 ms"])
        print(f"(follow, document) pairs entered: {got['entered']} "
              f"({100 * got['entered'] / max(1, args.follows * args.writes):.1f} % of pairs)")


if __name__ == "__main__":
    main()
