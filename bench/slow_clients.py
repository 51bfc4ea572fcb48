"""Slow clients: normal searches while 1,000 sockets hold half-sent requests (issue "Hardening",
item 2), on `progsearch serve` and, as the peer, the same app on uvicorn's stock httptools
protocol, which puts no deadline on a request head.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.slow_clients --index /tmp/sfp \
        --data ../shared/data/scifact [--slow 1000] [--seconds 15] [--quick]

Each server is its own process, with the in-process cache of one entry (every search is
computed). This process is the normal client (`bench.sse_client.fetch`: one fresh loopback
connection per `GET /search`, one at a time); a second process is the slow one: it keeps
`--slow` sockets that each sent `GET /search?q=rain HTTP/1.1\\r\\nHost: x\\r\\nX-a: b\\r\\n`
and then nothing, and opens a new one whenever the server closes one, so they all hang for
the whole pass. Rows:

- p50 / p99 of the normal searches during a pass of `--seconds` (three header timeouts by
  default) with no slow client, then with the slow ones hanging;
- closed / s: how many half-sent sockets the server closed per second during the pass
  (`PROGSEARCH_HEADER_TIMEOUT` of progsearch: 5 s by default; the peer closes none);
- open after: of `--slow` half-sent sockets opened at once and left alone, those the server
  still holds `--linger` seconds later (40 s in the issue; the default here is the header
  timeout plus 5 s);
- fds: the server's open files at the end of the pass (sockets included).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import resource
import selectors
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from urllib.parse import quote

from bench.sse_client import fetch
from bench.stream import Server, Servers, load_queries, revision, server_pool, wait_ready
from bench.timing import print_table, summarize

HALF_SENT = b"GET /search?q=rain HTTP/1.1\r\nHost: x\r\nX-a: b\r\n"
HEADER_TIMEOUT = 5.0
"""progsearch's default `PROGSEARCH_HEADER_TIMEOUT`, seconds."""


def open_half_sent(port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF_SENT)
        sock.setblocking(False)
        return sock
    except OSError:
        return None


def hold(port: int, count: int, seconds: float, closed: Synchronized[int]) -> None:
    """The slow client: `count` half-sent sockets for `seconds`, each one the server closes
    replaced at once; counts the closes in `closed`."""
    sel = selectors.DefaultSelector()
    for _ in range(count):
        sock = open_half_sent(port)
        if sock is not None:
            sel.register(sock, selectors.EVENT_READ)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for key, _ in sel.select(timeout=min(left, 0.5)):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                data = ready.recv(65536)
            except OSError:
                data = b""
            if data:
                continue  # the answer (408); the close follows
            sel.unregister(ready)
            ready.close()
            with closed.get_lock():
                closed.value += 1
            again = open_half_sent(port)
            if again is not None:
                sel.register(again, selectors.EVENT_READ)
    for key in list(sel.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()


def still_open_after(port: int, count: int, linger: float) -> int:
    """Open `count` half-sent sockets at once, wait `linger` seconds, count those the server
    has not closed (no EOF, no reset)."""
    socks = [s for s in (open_half_sent(port) for _ in range(count)) if s is not None]
    time.sleep(linger)
    open_ = 0
    for sock in socks:
        try:
            while data := sock.recv(65536):
                del data
            # b"": the server closed it
        except BlockingIOError:
            open_ += 1  # nothing to read and no EOF: the server still holds it
        except OSError:
            pass  # reset by the server
        sock.close()
    return open_


def searches(server: Server, queries: Sequence[str], seconds: float,
             least: int = 0) -> tuple[list[float], int]:
    """`GET /search` one after another for `seconds` (and at least `least` of them)."""
    latencies, errors = [], 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end or i < least:
        i += 1
        reply = fetch(server.port, f"/search?q={quote(queries[i % len(queries)])}&k=10")
        if reply.error or reply.status != 200:
            errors += 1
            continue
        latencies.append(reply.ms(reply.ended))
    return latencies, errors


def open_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def measure(server: Server, queries: list[str], args: argparse.Namespace) -> list[list[object]]:
    wait_ready(server)
    searches(server, queries, 0, least=50)  # warm up
    rows: list[list[object]] = []
    shuffled = random.Random(0).sample(queries, len(queries))
    base, base_errors = searches(server, shuffled, args.seconds)
    s = summarize(base)
    rows.append([server.label, "none", len(base), f"{s['p50']:.2f}", f"{s['p99']:.2f}",
                 base_errors, "", "", open_fds(server)])
    closed: Synchronized[int] = mp.Value("i", 0)
    seconds = 3600.0
    slow = mp.get_context("fork").Process(target=hold, args=(server.port, args.slow, seconds,
                                                            closed))
    slow.start()
    try:
        time.sleep(2.0)  # every slow socket is open and waiting
        started, before = time.monotonic(), closed.value
        loaded, loaded_errors = searches(server, shuffled, args.seconds)
        rate = (closed.value - before) / (time.monotonic() - started)
        fds = open_fds(server)
    finally:
        slow.terminate()
        slow.join()
    s = summarize(loaded)
    time.sleep(1.0)
    left = still_open_after(server.port, args.slow, args.linger)
    rows.append([server.label, f"{args.slow} hanging", len(loaded), f"{s['p50']:.2f}",
                 f"{s['p99']:.2f}", loaded_errors, f"{rate:.0f}", f"{left} of {args.slow}", fds])
    return rows


def progsearch(servers: Servers, index: Path) -> Server:
    return servers.progsearch("progsearch serve", cache_size=1)


def stock_peer(servers: Servers, index: Path) -> Server:
    """The same app on uvicorn's own httptools protocol: what progsearch ran before."""
    env = {"PROGSEARCH_CACHE_SIZE": "1", "PROGSEARCH_INDEX": str(index)}
    return servers.spawn("peer: stock httptools", [
        sys.executable, "-m", "uvicorn", "app.server:create_app_from_env", "--factory",
        "--port", "{port}", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning"], env)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="snapshot root (progsearch index)")
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder with queries.jsonl")
    ap.add_argument("--slow", type=int, default=1000, help="half-sent sockets held at once")
    ap.add_argument("--seconds", type=float, default=3 * HEADER_TIMEOUT,
                    help="length of each pass of normal searches")
    ap.add_argument("--linger", type=float, default=HEADER_TIMEOUT + 5,
                    help="seconds before counting the half-sent sockets still open")
    ap.add_argument("--quick", action="store_true", help="100 slow sockets, 6 s passes")
    ap.add_argument("--work", type=Path, default=Path("/tmp/progsearch-bench-slow"))
    args = ap.parse_args(argv)
    if args.quick:
        args.slow, args.seconds = min(args.slow, 100), min(args.seconds, HEADER_TIMEOUT + 1)
    args.work.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.slow + 512  # this process and the slow one; servers inherit the limit
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    queries = load_queries(args.data)
    print("command:", shlex.join([Path(sys.executable).name, "-m", "bench.slow_clients",
                                  *(sys.argv[1:] if argv is None else argv)]))
    print(f"code {revision()}; index {args.index}, {len(queries)} queries; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
          flush=True)
    rows: list[list[object]] = []
    with server_pool(args.work, args.index) as servers:
        for start in (progsearch, stock_peer):
            server = start(servers, args.index)
            try:
                rows += measure(server, queries, args)
            finally:
                with contextlib.suppress(OSError):
                    servers.stop(server)
    print("\nNormal GET /search (fresh connection each, nothing cached) with and without "
          "half-sent requests hanging")
    print_table(rows, ["server", "slow clients", "searches", "p50 ms", "p99 ms", "errors",
                       "closed / s", f"open after {args.linger:g} s", "fds"])
    print(f"   passes of {args.seconds:g} s; closed / s: half-sent sockets the server "
          "closed per second (each replaced at once);\n   open after: of "
          f"{args.slow} half-sent sockets left alone, those the server still held")


if __name__ == "__main__":
    main()
