"""Progressive API benchmark: the SSE stream and the JSON endpoint of a real `progsearch serve`.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.stream --index /tmp/sfp \
        --data ../shared/data/scifact [--redis-url redis://127.0.0.1:6379/13] [--quick]

Every server is its own process (`progsearch serve`, or uvicorn serving the inline peer app
below); this process is the client: raw sockets, one fresh loopback connection per request,
every event stamped when its last byte arrives (`bench.sse_client`). The peer is the floor:
a trivial Starlette + sse-starlette app sending three constant events, measured in the same
run, interleaved request by request with the service.

Figures (p50 and p99 over n requests; goals from the design):
1. request to the first event (`keyword`), nothing cached; goal p50 <= 3 ms;
2. `keyword` event to `semantic` event, nothing cached (queries never seen by a fresh server
   with the in-process cache, and by one on a flushed Redis database); goal p50 <= 8 ms;
3. a whole stream from the cache (the same queries again), request to `done`; goal <= 2 ms;
4. `GET /search` throughput with `--workers 2`, wrk rotating through the queries; goal
   >= 2,500 requests/s with 0 errors (any status but 200 is one);
5. 500 concurrent streams (asyncio, one connection each); goal: all complete, 0 errors;
6. process start to the first answered `GET /search`; goal <= 1 s;
7. `semantic` event to `enhanced` event, nothing cached, with the enhanced phase on the
   server's embedded pool (goal p50 <= 20 ms) and on one Celery worker through a Redis broker
   (goal p50 <= 60 ms); `--broker-url` names the Redis database used, flushed first.

Beside latency, rows give the CPU time the server's processes spent per request (psutil),
which depends much less than latency on the load of shared cores. `error` events of phases after
`semantic` (enhanced, which needs passages and workers) are listed, not counted. The Redis
database given by `--redis-url` is flushed before use: give one nobody else uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from app.beir import read_queries
from bench.sse_client import Reply, fetch, fetch_async, order_problem, phase_errors
from bench.timing import print_table, summarize

# The floor: what sse-starlette on uvicorn costs with no work at all. Served by the uvicorn CLI
# from a file written at run time, so the peer imports nothing of progsearch.
FLOOR_APP = '''
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

DATA = '{"phase": "keyword", "hits": []}'


async def stream(request):
    async def events():
        for seq, name in enumerate(("keyword", "semantic", "done"), 1):
            yield ServerSentEvent(data=DATA, event=name, id=f"v.{seq}")
    return EventSourceResponse(events(), ping=15, send_timeout=10, shutdown_grace_period=0)


async def search(request):
    return JSONResponse({"phase": "keyword", "hits": []})


app = Starlette(routes=[Route("/search/stream", stream), Route("/search", search),
                        Route("/readyz", search)])
'''

# wrk: rotate through the request paths (one per line of PATHS), count every status but 200.
WRK_SCRIPT = '''
local paths = {}
for line in io.lines("PATHS") do paths[#paths + 1] = line end
local i = math.random(#paths)
non200 = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non200") end
  local e = summary.errors
  io.write(string.format('JSON {"requests": %d, "us": %d, "non200": %d, "socket": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration, bad,
    e.connect + e.read + e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
'''

# Errors of these phases count against a goal; those of later phases (the enhanced phase,
# which needs passages and workers) are reported beside the figures.
COUNTED = ("keyword", "semantic")
GOAL_FIRST_MS = 3.0
GOAL_GAP_MS = 8.0
GOAL_CACHED_MS = 2.0
GOAL_RPS = 2500.0
GOAL_START_S = 1.0
GOAL_ENHANCED_EMBEDDED_MS = 20.0
GOAL_ENHANCED_CELERY_MS = 60.0


@dataclass(frozen=True)
class Plan:
    queries: int
    warmup: int
    cached_rounds: int
    wrk_seconds: int
    wrk_runs: int
    streams: int
    burst_rounds: int
    starts: int


FULL = Plan(queries=0, warmup=30, cached_rounds=3, wrk_seconds=10, wrk_runs=3, streams=500,
            burst_rounds=3, starts=5)
QUICK = Plan(queries=40, warmup=5, cached_rounds=1, wrk_seconds=2, wrk_runs=1, streams=100,
             burst_rounds=1, starts=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to the server's process group (uvicorn's workers too), SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Servers:
    """Every server process this run starts; `close` stops those still running."""

    def __init__(self, work: Path, index: Path) -> None:
        self.work = work
        self.index = index
        self.running: list[Server] = []
        (work / "ps_sse_floor.py").write_text(FLOOR_APP)
        exe = Path(sys.executable).parent / "progsearch"
        self.progsearch_cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "app.cli"]

    def spawn(self, label: str, cmd: list[str], env: dict[str, str] | None = None) -> Server:
        port = free_port()
        cmd = [c.replace("{port}", str(port)) for c in cmd]
        log = self.work / f"{label.split()[0]}-{port}.log"
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        with open(log, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                    start_new_session=True)
        server = Server(label, proc, port, log, started)
        self.running.append(server)
        return server

    def progsearch(self, label: str, *, workers: int = 1, redis_url: str | None = None,
                   cache_size: int | None = None, env: dict[str, str] | None = None) -> Server:
        cmd = [*self.progsearch_cmd, "serve", str(self.index), "--port", "{port}",
               "--workers", str(workers), "--log-level", "warning"]
        if redis_url:
            cmd += ["--redis-url", redis_url]
        extra = {"PROGSEARCH_CACHE_SIZE": str(cache_size)} if cache_size else {}
        return self.spawn(label, cmd, {**extra, **(env or {})})

    def worker(self, label: str, broker_url: str, *, concurrency: int = 1) -> Server:
        """A `progsearch worker` on the index (its "port" is unused); ready once its engine
        has loaded (`wait_worker`)."""
        return self.spawn(label, [
            *self.progsearch_cmd, "worker", str(self.index), "--broker-url", broker_url,
            "--concurrency", str(concurrency), "--log-level", "info"])

    def floor(self, label: str, *, asyncio_h11: bool = False, workers: int = 1) -> Server:
        loop, http = ("asyncio", "h11") if asyncio_h11 else ("uvloop", "httptools")
        return self.spawn(label, [
            sys.executable, "-m", "uvicorn", "ps_sse_floor:app", "--app-dir", str(self.work),
            "--port", "{port}", "--loop", loop, "--http", http, "--workers", str(workers),
            "--no-access-log", "--log-level", "warning",
        ])

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.running:
            self.running.remove(server)

    def close(self) -> None:
        for server in list(self.running):
            self.stop(server)


def wait_ready(server: Server, timeout: float = 600.0, streak: int = 1) -> None:
    """Until `/readyz` says the semantic phase is settled, `streak` answers in a row (several
    for several workers: each answer comes from whichever worker accepted the connection)."""
    deadline = time.monotonic() + timeout
    good = 0
    while good < streak:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.label} exited:\n{server.output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.label} not ready after {timeout} s:\n{server.output()}")
        reply = fetch(server.port, "/readyz", timeout=5)
        if reply.status >= 500:
            raise RuntimeError(f"{server.label}: /readyz {reply.status}:\n{server.output()}")
        try:
            ok = reply.status == 200 and (
                reply.body.startswith(b'{"phase"')  # the floor
                or json.loads(reply.body)["phases"]["semantic"] != "loading"
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        good = good + 1 if ok else 0
        if not ok:
            time.sleep(0.1)


def wait_worker(worker: Server, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while "semantic phase ready" not in worker.log.read_text(errors="replace"):
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{worker.label} not ready:\n{worker.output()}")
        time.sleep(0.1)


def load_queries(data: Path) -> list[str]:
    """SciFact queries, each normalized form once (a repeat would be served from the cache)."""
    seen: set[str] = set()
    out = []
    for text in read_queries(data / "queries.jsonl").values():
        key = " ".join(text.casefold().split())
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


def warmup_queries(queries: Sequence[str], n: int) -> list[str]:
    """Word pairs from the queries that are not themselves queries: they warm a server without
    caching anything the measured passes ask."""
    words = sorted({w for q in queries for w in q.split() if w.isalpha() and len(w) > 3})
    rng = random.Random(7)
    taken = {" ".join(q.casefold().split()) for q in queries}
    out: list[str] = []
    while len(out) < n:
        q = f"{rng.choice(words)} {rng.choice(words)}"
        if q.casefold() not in taken:
            out.append(q)
    return out


def stream_path(q: str, k: int = 10) -> str:
    return f"/search/stream?q={quote(q)}&k={k}"


# -- figures 1-3: one request at a time, interleaved ----------------------------------------
def cpu_seconds(server: Server) -> float:
    """User + system CPU time of a server's process tree so far."""
    try:
        root = psutil.Process(server.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


@dataclass
class Samples:
    replies: list[Reply]
    problems: int = 0
    phase_errors: int = 0
    """Streams with an `error` event for the keyword or the semantic phase."""
    other_errors: Counter[str] = dataclasses.field(default_factory=Counter)
    """`error` events of later phases (enhanced), by phase and code: reported, not counted."""
    served: int = 0
    cpu_s: float = 0.0
    """CPU time the server spent over the passes: load-independent cost per request."""

    def cpu_ms(self) -> float | None:
        return self.cpu_s * 1000 / self.served if self.served else None


def sequential(servers: Sequence[Server], queries: Sequence[str],
               record: dict[str, Samples]) -> None:
    """Each query once to each server, the order of the servers rotating per query."""
    gc.collect()
    gc.disable()
    cpu = {s.label: cpu_seconds(s) for s in servers}
    try:
        for i, q in enumerate(queries):
            for j in range(len(servers)):
                server = servers[(i + j) % len(servers)]
                reply = fetch(server.port, stream_path(q))
                s = record.setdefault(server.label, Samples([]))
                s.served += 1
                if order_problem(reply) is not None:
                    s.problems += 1
                    if s.problems <= 3:
                        print(f"  [{server.label}] {q!r}: {order_problem(reply)}", flush=True)
                    continue
                errors = phase_errors(reply)
                s.phase_errors += any(e.split(":")[0] in COUNTED for e in errors)
                s.other_errors.update(e for e in errors if e.split(":")[0] not in COUNTED)
                s.replies.append(reply)
    finally:
        gc.enable()
        for server in servers:
            s = record.setdefault(server.label, Samples([]))
            s.cpu_s += cpu_seconds(server) - cpu[server.label]


def _met(value: float | None, goal: float, at_most: bool = True) -> str:
    if value is None:
        return "n/a"
    return "yes" if (value <= goal if at_most else value >= goal) else "NO"


def latency_row(label: str, values: Sequence[float], errors: int, goal: float | None,
                cpu_ms: float | None, extra: str = "") -> list[Any]:
    cpu = "" if cpu_ms is None else cpu_ms
    if not values:
        return [label, 0, "", "", errors, cpu, "" if goal is None else f"p50 <= {goal:g} ms",
                "n/a", extra]
    s = summarize(values)
    return [label, len(values), s["p50"], s["p99"], errors, cpu,
            "" if goal is None else f"p50 <= {goal:g} ms",
            "" if goal is None else _met(s["p50"] if errors == 0 else None, goal), extra]


LATENCY_HEADERS = ["server", "n", "p50 ms", "p99 ms", "errors", "CPU ms/req", "goal", "met",
                   "note"]


def first_event_ms(r: Reply) -> float:
    return r.ms(r.events[0].at)


def gap_ms(r: Reply) -> float | None:
    kw, sem = r.event("keyword"), r.event("semantic")
    if kw is None or sem is None or sem.json().get("cached"):
        return None
    return (sem.at - kw.at) * 1000


def done_ms(r: Reply) -> float:
    return r.ms(r.events[-1].at)


def from_cache(r: Reply) -> bool:
    """Every phase event of the stream says it came from the cache."""
    phases = [e for e in r.events if e.name in ("keyword", "semantic")]
    return bool(phases) and all(e.json().get("cached") for e in phases)


def took(r: Reply, phase: str) -> float | None:
    e = r.event(phase)
    return None if e is None else float(e.json()["took_ms"])


def figures_1_to_3(servers: Servers, queries: list[str], plan: Plan,
                   redis_url: str | None) -> None:
    mem = servers.progsearch("progsearch, in-process cache")
    targets = [mem]
    if redis_url:
        targets.append(servers.progsearch("progsearch, Redis", redis_url=redis_url))
    floors = [servers.floor("floor: sse-starlette, uvloop+httptools (as served)"),
              servers.floor("floor: sse-starlette, asyncio+h11", asyncio_h11=True)]
    everyone = targets + floors
    for s in everyone:
        wait_ready(s)
    sequential(everyone, warmup_queries(queries, plan.warmup), {})
    print(f"figures 1-3: {len(queries)} queries, each once to every server (nothing cached), "
          f"then {plan.cached_rounds} more rounds (cached)", flush=True)
    cold: dict[str, Samples] = {}
    sequential(everyone, queries, cold)
    warm: dict[str, Samples] = {}
    for _ in range(plan.cached_rounds):
        sequential(everyone, queries, warm)
    for s in everyone:
        servers.stop(s)

    def pick(rec: dict[str, Samples], label: str, fn: Callable[[Reply], float | None],
             ) -> tuple[list[float], int]:
        s = rec.get(label, Samples([]))
        values = [v for v in map(fn, s.replies) if v is not None]
        return values, s.problems

    floor_first, _ = pick(cold, floors[0].label, first_event_ms)
    floor_p50 = summarize(floor_first)["p50"] if floor_first else None
    rows1, rows2, rows3 = [], [], []
    for t in targets:
        label = t.label
        for rec, what in ((cold, "nothing cached"), (warm, "cached")):
            values, bad = pick(rec, label, first_event_ms)
            kw_took, _ = pick(rec, label, lambda r: took(r, "keyword"))
            notes = []
            if values and floor_p50 is not None:
                notes.append(f"floor +{summarize(values)['p50'] - floor_p50:.2f} ms")
            if kw_took:
                notes.append(f"server keyword took p50 {summarize(kw_took)['p50']:.2f} ms")
            rows1.append(latency_row(f"{label}, {what}", values, bad, GOAL_FIRST_MS,
                                     rec[label].cpu_ms(), "; ".join(notes)))
        gaps, bad = pick(cold, label, gap_ms)
        sem_took, _ = pick(cold, label, lambda r: took(r, "semantic"))
        c = cold.get(label, Samples([]))
        notes = []
        if sem_took:
            notes.append(f"server semantic took p50 {summarize(sem_took)['p50']:.2f} ms")
        if len(c.replies) > len(gaps):
            notes.append(f"{len(c.replies) - len(gaps)} streams without a computed semantic event")
        rows2.append(latency_row(f"{label}, nothing cached", gaps, bad + c.phase_errors,
                                 GOAL_GAP_MS, c.cpu_ms(), "; ".join(notes)))
        values, bad = pick(warm, label, done_ms)
        w = warm.get(label, Samples([]))
        not_cached = sum(not from_cache(r) for r in w.replies)
        rows3.append(latency_row(f"{label}, repeat query", values, bad + w.phase_errors,
                                 GOAL_CACHED_MS, w.cpu_ms(), f"{not_cached} not from the cache"))
    for f in floors:
        values, bad = pick(cold, f.label, first_event_ms)
        more, bad2 = pick(warm, f.label, first_event_ms)
        rows1.append(latency_row(f.label, values + more, bad + bad2, None, warm[f.label].cpu_ms(),
                                 "peer"))
        gaps = [(r.events[1].at - r.events[0].at) * 1000 for r in cold[f.label].replies]
        rows2.append(latency_row(f.label, gaps, cold[f.label].problems, None, None,
                                 "peer: two consecutive events"))
        values, bad = pick(warm, f.label, done_ms)
        rows3.append(latency_row(f.label, values, bad, None, warm[f.label].cpu_ms(),
                                 "peer: request to done"))
    print("\n1. Request to the first event (keyword), fresh loopback connection")
    print_table(rows1, LATENCY_HEADERS)
    print("\n2. keyword event to semantic event, nothing cached")
    print_table(rows2, LATENCY_HEADERS)
    print("\n3. Whole stream from the cache, request to done")
    print_table(rows3, LATENCY_HEADERS)
    print("   CPU ms/req: the server's CPU time (user + system, all its threads) over the pass,\n"
          "   per stream: what a stream costs whatever the load of the machine")
    for t in targets:
        later = cold.get(t.label, Samples([])).other_errors + warm.get(
            t.label, Samples([])).other_errors
        if later:
            print(f"   [{t.label}] error events of later phases, not counted: "
                  + ", ".join(f"{c} x{n}" for c, n in sorted(later.items())))


# -- figure 7: the enhanced phase, embedded and through Celery --------------------------------
def enhanced_gap_ms(r: Reply) -> float | None:
    sem, enh = r.event("semantic"), r.event("enhanced")
    if sem is None or enh is None or enh.json().get("cached"):
        return None
    return (enh.at - sem.at) * 1000


def figure_7(servers: Servers, queries: list[str], plan: Plan, broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url).flushdb()
    worker = servers.worker("worker", broker_url)
    embedded = servers.progsearch("progsearch, embedded jobs (no broker)")
    celery = servers.progsearch(
        "progsearch, 1 Celery worker (concurrency 1), Redis broker",
        env={"PROGSEARCH_BROKER_URL": broker_url, "PROGSEARCH_PRECOMPUTE_TOP": "0"})
    wait_worker(worker)
    targets = [embedded, celery]
    for t in targets:
        wait_ready(t)
    sequential(targets, warmup_queries(queries, plan.warmup), {})
    print(f"\nfigure 7: {len(queries)} queries, each once to each server (nothing cached)",
          flush=True)
    rec: dict[str, Samples] = {}
    sequential(targets, queries, rec)
    rows = []
    for t, goal in ((embedded, GOAL_ENHANCED_EMBEDDED_MS), (celery, GOAL_ENHANCED_CELERY_MS)):
        r = rec.get(t.label, Samples([]))
        gaps = [v for v in map(enhanced_gap_ms, r.replies) if v is not None]
        took_ms = [v for v in (took(x, "enhanced") for x in r.replies) if v is not None]
        errors = sum(e.startswith("enhanced") for x in r.replies for e in phase_errors(x))
        note = f"server enhanced took p50 {summarize(took_ms)['p50']:.2f} ms" if took_ms else ""
        rows.append(latency_row(t.label, gaps, r.problems + errors, goal, r.cpu_ms(), note))
    for server in (*targets, worker):
        servers.stop(server)
    print("\n7. semantic event to enhanced event, nothing cached")
    print_table(rows, LATENCY_HEADERS)
    print("   errors: broken streams and enhanced `error` events; CPU ms/req: the server "
          "process only (the worker's is not counted)")


# -- figure 4: throughput with wrk -----------------------------------------------------------
def wrk_run(port: int, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s",
           str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    line = next((x for x in out.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary from {shlex.join(cmd)}:\n{out}")
    result: dict[str, Any] = json.loads(line[5:])
    return result


def figure_4(servers: Servers, queries: list[str], plan: Plan, connections: int) -> None:
    if shutil.which("wrk") is None:
        print("\n4. skipped: wrk is not installed (apt-get install -y wrk)")
        return
    paths = servers.work / "search-paths.txt"
    paths.write_text("".join(f"/search?q={quote(q)}&k=10\n" for q in queries))
    script = servers.work / "rotate.lua"
    script.write_text(WRK_SCRIPT.replace("PATHS", str(paths)))
    targets = [
        servers.progsearch("progsearch --workers 2, cache warm", workers=2),
        servers.progsearch("progsearch --workers 2, nothing cached (cache size 1)", workers=2,
                           cache_size=1),
        servers.floor("floor: constant JSON, uvloop+httptools, --workers 2", workers=2),
    ]
    for t in targets:
        wait_ready(t, streak=10)
        wrk_run(t.port, script, max(2, plan.wrk_seconds // 2), connections)  # warm-up
    print(f"\nfigure 4: wrk, {connections} connections, 1 thread, {plan.wrk_seconds} s per run, "
          f"{plan.wrk_runs} runs per server, interleaved", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {t.label: [] for t in targets}
    for i in range(plan.wrk_runs):
        for j in range(len(targets)):
            t = targets[(i + j) % len(targets)]
            before = cpu_seconds(t)
            run = wrk_run(t.port, script, plan.wrk_seconds, connections)
            run["cpu_s"] = cpu_seconds(t) - before
            runs[t.label].append(run)
    for t in targets:
        servers.stop(t)
    rows = []
    for t in targets:
        rs = runs[t.label]
        rps = [r["requests"] / (r["us"] / 1e6) for r in rs]
        errors = sum(r["non200"] + r["socket"] + r["timeout"] for r in rs)
        med = summarize(rps)["p50"]
        cpu_ms = 1000 * sum(r["cpu_s"] for r in rs) / max(1, sum(r["requests"] for r in rs))
        peer = t.label.startswith("floor")
        rows.append([
            t.label, sum(r["requests"] for r in rs), len(rs), med,
            f"{min(rps):.0f}-{max(rps):.0f}", summarize([r["p50_us"] / 1e3 for r in rs])["p50"],
            summarize([r["p99_us"] / 1e3 for r in rs])["p50"], cpu_ms,
            2000 / cpu_ms if cpu_ms else "", errors,
            "" if peer else f">= {GOAL_RPS:g}/s, 0 errors",
            "" if peer else ("yes" if med >= GOAL_RPS and errors == 0 else "NO"),
        ])
    print("\n4. GET /search throughput (keyword phase as JSON), wrk on the same 2 cores")
    print_table(rows, ["server", "requests", "runs", "req/s p50", "req/s range",
                       "latency p50 ms", "latency p99 ms", "CPU ms/req", "2 cores bound",
                       "errors", "goal", "met"])
    print("   latency columns: the median over runs of wrk's per-run p50 and p99;\n"
          "   CPU ms/req: CPU time of the server's processes per request; 2 cores bound:\n"
          "   2 s of CPU per second / that, the rate two idle cores would allow (no wrk, no load)")


# -- figure 5: many streams at once ----------------------------------------------------------
async def burst(port: int, paths: Sequence[str]) -> tuple[list[Reply], float]:
    """Connect every stream, then send all the requests at once and read them to the end."""
    start = asyncio.Event()
    tasks = [asyncio.ensure_future(fetch_async(port, p, start)) for p in paths]
    await asyncio.sleep(0.5 + len(paths) / 500)  # let every connection open
    t0 = time.perf_counter()
    start.set()
    replies = await asyncio.gather(*tasks)
    return list(replies), time.perf_counter() - t0


def figure_5(servers: Servers, queries: list[str], plan: Plan) -> None:
    n = plan.streams
    picked = [queries[i % len(queries)] for i in range(n)]
    paths = [stream_path(q, k=10 if i < len(queries) else 11 + i // len(queries))
             for i, q in enumerate(picked)]
    cold = servers.progsearch("progsearch, nothing cached (cache size 1)", cache_size=1)
    warm = servers.progsearch("progsearch, cached (same streams before)")
    floor = servers.floor("floor: sse-starlette, uvloop+httptools")
    targets = [cold, warm, floor]
    for t in targets:
        wait_ready(t)
        asyncio.run(burst(t.port, paths[: min(n, 50)]))  # warm-up
    for p in paths:  # fill the cache one stream at a time: no phase may time out here
        fetch(warm.port, p)
    print(f"\nfigure 5: {n} concurrent streams, {plan.burst_rounds} rounds per server, "
          "interleaved", flush=True)
    rec: dict[str, list[tuple[list[Reply], float]]] = {t.label: [] for t in targets}
    cpu = {t.label: 0.0 for t in targets}
    for i in range(plan.burst_rounds):
        for j in range(len(targets)):
            t = targets[(i + j) % len(targets)]
            before = cpu_seconds(t)
            rec[t.label].append(asyncio.run(burst(t.port, paths)))
            cpu[t.label] += cpu_seconds(t) - before
    for t in targets:
        servers.stop(t)
    rows = []
    for t in targets:
        ok: list[Reply] = []
        problems, counted, walls = 0, 0, []
        codes: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for replies, wall in rec[t.label]:
            walls.append(wall)
            for r in replies:
                problem = order_problem(r)
                if problem is not None:
                    problems += 1
                    reasons[problem[:100]] += 1
                    continue
                ok.append(r)
                errors = phase_errors(r)
                counted += any(e.split(":")[0] in COUNTED for e in errors)
                codes.update(errors)
        for reason, count in reasons.most_common(3):
            print(f"  [{t.label}] {count} broken streams: {reason}")
        first = summarize([first_event_ms(r) for r in ok]) if ok else None
        done = summarize([done_ms(r) for r in ok]) if ok else None
        total = n * len(rec[t.label])
        peer = t.label.startswith("floor")
        rows.append([
            t.label, total, len(ok), problems, counted, first["p50"] if first else "",
            first["p99"] if first else "", done["p99"] if done else "", max(walls),
            1000 * cpu[t.label] / total,
            "" if peer else "all complete, 0 errors",
            "" if peer else ("yes" if len(ok) == total and counted == 0 else "NO"),
            ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())),
        ])
    print(f"\n5. {n} concurrent SSE streams, one connection each (asyncio client, this process)")
    print_table(rows, ["server", "streams", "complete", "broken", "error events",
                       "first p50 ms", "first p99 ms", "done p99 ms", "slowest round s",
                       "CPU ms/stream", "goal", "met", "error codes"])
    print("   complete: status 200, every phase once and in order, done last; broken: not so;\n"
          "   error events: complete streams with an `error` event for the keyword or semantic\n"
          "   phase (error codes lists every error event, later phases included)")


# -- figure 6: start-up ----------------------------------------------------------------------
def time_to_first_answer(server: Server, path: str, timeout: float = 120.0
                         ) -> tuple[float, float]:
    """Seconds from spawning to the first 200, and the CPU seconds the server had used by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.label} exited:\n{server.output()}")
        reply = fetch(server.port, path, timeout=5)
        if reply.status == 200:
            return reply.ended - server.started, cpu_seconds(server)
        if reply.status >= 500:
            raise RuntimeError(f"{server.label} answered {reply.status}:\n{server.output()}")
        time.sleep(0.002)
    raise RuntimeError(f"{server.label}: no answer after {timeout} s:\n{server.output()}")


def time_to_semantic(server: Server, timeout: float = 600.0) -> float:
    wait_ready(server, timeout)
    return time.perf_counter() - server.started


def figure_6(servers: Servers, queries: list[str], plan: Plan) -> None:
    path = f"/search?q={quote(queries[0])}&k=10"
    kinds: list[tuple[str, Callable[[], Server]]] = [
        ("progsearch serve", lambda: servers.progsearch("progsearch serve")),
        ("floor: uvicorn + trivial Starlette app",
         lambda: servers.floor("floor: uvicorn + trivial Starlette app")),
    ]
    first: dict[str, list[float]] = {k: [] for k, _ in kinds}
    cpu: dict[str, list[float]] = {k: [] for k, _ in kinds}
    semantic: list[float] = []
    print(f"\nfigure 6: {plan.starts} starts of each (after one unrecorded start each), "
          "interleaved", flush=True)
    for i in range(plan.starts + 1):
        for label, make in kinds:
            server = make()
            try:
                seconds, cpu_s = time_to_first_answer(server, path)
                if label == "progsearch serve":
                    ready = time_to_semantic(server)
                    if i:
                        semantic.append(ready)
            finally:
                servers.stop(server)
            if i:
                first[label].append(seconds)
                cpu[label].append(cpu_s)
    rows = []
    for label, _ in kinds:
        s = summarize(first[label])
        peer = label.startswith("floor")
        rows.append([label, len(first[label]), s["p50"], max(first[label]),
                     " ".join(f"{x:.2f}" for x in first[label]), summarize(cpu[label])["p50"],
                     "" if peer else f"<= {GOAL_START_S:g} s",
                     "" if peer else _met(max(first[label]), GOAL_START_S)])
    if semantic:
        rows.append(["progsearch serve, to semantic ready", len(semantic),
                     summarize(semantic)["p50"], max(semantic),
                     " ".join(f"{x:.2f}" for x in semantic), "", "", ""])
    print("\n6. Process start to the first answered GET /search (200)")
    print_table(rows, ["server", "runs", "p50 s", "max s", "each run s", "CPU s p50", "goal",
                       "met"])
    print("   CPU s: CPU time the server process had used when it answered (imports, loading)")


def redis_ready(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()  # nothing cached: a fresh database for every run
        return True
    except (redis.RedisError, OSError) as exc:
        print(f"Redis at {url} is not usable ({exc}): its rows are skipped")
        return False
    finally:
        client.close()


def revision() -> str:
    """The commit the servers run, `-dirty` when the working tree differs from it."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def server_pool(work: Path, index: Path) -> Iterator[Servers]:
    servers = Servers(work, index)
    old = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield servers
    finally:
        servers.close()
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="snapshot root (progsearch index)")
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder with queries.jsonl")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/13",
                    help="a Redis database this run may flush; '' to skip the Redis rows")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run: few of everything")
    ap.add_argument("--figures", default="1,2,3,4,5,6,7", help="which figures to run")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/11",
                    help="figure 7: a Redis database this run flushes, the Celery broker")
    ap.add_argument("--streams", type=int, help="concurrent streams of figure 5")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections, figure 4")
    ap.add_argument("--work", type=Path, default=Path("/tmp/progsearch-bench-stream"))
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.streams:
        plan = dataclasses.replace(plan, streams=args.streams)
    wanted = {int(f) for f in args.figures.split(",")}
    args.work.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * plan.streams:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * plan.streams + 256), hard))
    queries = load_queries(args.data)
    if plan.queries:
        queries = queries[: plan.queries]
    print("command:", shlex.join([Path(sys.executable).name, "-m", "bench.stream",
                                  *(sys.argv[1:] if argv is None else argv)]))
    print(f"code {revision()}; index {args.index}, {len(queries)} queries; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
          flush=True)
    redis_url = args.redis_url if args.redis_url and redis_ready(args.redis_url) else None
    steps: list[tuple[set[int], Callable[[Servers], None]]] = [
        ({1, 2, 3}, lambda servers: figures_1_to_3(servers, queries, plan, redis_url)),
        ({5}, lambda servers: figure_5(servers, queries, plan)),
        ({4}, lambda servers: figure_4(servers, queries, plan, args.connections)),
        ({6}, lambda servers: figure_6(servers, queries, plan)),
        ({7}, lambda servers: figure_7(servers, queries, plan, args.broker_url)),
    ]
    failed = []
    with server_pool(args.work, args.index) as servers:
        for figures, step in steps:
            if not figures & wanted:
                continue
            try:
                step(servers)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                # One broken figure must not hide the others; its servers are stopped here.
                failed.append(min(figures))
                print(f"\nfigure {min(figures)} failed: {exc}", flush=True)
                servers.close()
    print(f"\nload average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if failed:
        raise SystemExit(f"failed figures: {failed}")


if __name__ == "__main__":
    main()
