"""The `progsearch` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.core.errors import ProgsearchError

if TYPE_CHECKING:
    from app.engine import Engine
    from app.params import SearchParams
    from app.phases import Phase
    from app.settings import Settings

__all__ = ["main"]

MAX_K = 10_000
"""The largest -k of `progsearch search` (the server's bound is `PROGSEARCH_MAX_K`)."""


def _structured_flags(p: argparse.ArgumentParser) -> None:
    """--filter, --facets, --sort: the server's `filter=`, `facets=`, `sort=`."""
    p.add_argument("--filter", metavar="EXPR",
                   help="keep to the documents this expression matches, e.g. "
                   "'category = jackets AND price < 100'")
    p.add_argument("--facets", metavar="F1,F2",
                   help="count these fields' values over the whole match set")
    p.add_argument("--sort", metavar="F:asc,F:desc",
                   help="order each phase's most relevant hits by these fields")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="progsearch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", help="build an index from a BEIR folder, JSONL/NDJSON or CSV")
    ix.add_argument("source", type=Path)
    ix.add_argument("--out", type=Path, required=True, help="index folder (created if missing)")
    ix.add_argument("--format", default="auto", choices=["auto", "beir", "jsonl", "csv"])
    ix.add_argument("--id-field", default=None, help="default: _id for BEIR, id otherwise")
    ix.add_argument("--title-field", default="title")
    ix.add_argument("--text-field", default="text")
    ix.add_argument(
        "--on-error",
        default="skip",
        choices=["skip", "stop"],
        help="skip a bad line with a warning, or stop at it",
    )
    ix.add_argument("--schema", type=Path,
                    help="TOML schema of the structured fields (default: inferred from the data)")
    ix.add_argument("--no-schema", action="store_true",
                    help="no structured fields: other fields are stored and returned only")
    ix.add_argument("--workers", type=int, default=2, help="analysis processes")
    ix.add_argument("--title-weight", type=float, default=2.0)
    ix.add_argument("--k1", type=float, default=1.2)
    ix.add_argument("--b", type=float, default=0.75)
    ix.add_argument("--quiet", action="store_true", help="no progress bar")
    ix.add_argument(
        "--no-vectors", action="store_true", help="keyword-only index: skip embedding the documents"
    )
    ix.add_argument(
        "--no-passages",
        action="store_true",
        help="skip the passages of the enhanced phase (embedding them costs about as much again)",
    )
    ix.add_argument("--embed-batch", type=int, default=32, help="documents per encoder batch")
    ix.add_argument(
        "--exact-max",
        type=int,
        default=200_000,
        help="exact vector search up to this many documents, HNSW above",
    )
    ix.add_argument(
        "--hnsw-storage",
        choices=["flat", "sq8"],
        help="what HNSW nodes hold: float vectors, or 8-bit codes re-scored exactly (sq8); "
        "default: see index.vector_stage.VectorOptions",
    )

    se = sub.add_parser("search", help="search an index from the command line")
    se.add_argument("index", type=Path)
    se.add_argument("query")
    se.add_argument("-k", type=int, default=10)
    se.add_argument(
        "--prefix",
        action="store_true",
        help="treat the last word as unfinished (search as you type)",
    )
    se.add_argument("--json", action="store_true")
    se.add_argument(
        "--semantic",
        action="store_true",
        help="also run the semantic phase (needs an index with vectors)",
    )
    se.add_argument(
        "--until",
        metavar="PHASE",
        help="run the phases up to this one (keyword, semantic, enhanced); default: keyword, "
        "or semantic with --semantic",
    )
    _structured_flags(se)

    ev = sub.add_parser("eval", help="nDCG@10, Recall@100 and MRR@10 of each phase on BEIR data")
    ev.add_argument("index", type=Path)
    ev.add_argument("--dataset", type=Path, required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--encoder",
        default="int8",
        choices=["int8", "fp32"],
        help="query encoder of the semantic phases",
    )

    tu = sub.add_parser("tune", help="fit the enhanced phase's ranking to BEIR judgements "
                        "(cross-validated by query; installed only when it beats the default)")
    tu.add_argument("index", type=Path, help="an index root (the model goes in ROOT/models)")
    tu.add_argument("--dataset", type=Path, required=True)
    tu.add_argument("--split", default="train")
    tu.add_argument("--model", default="linear", help="linear (default) or lambdamart")
    tu.add_argument("--folds", type=int, default=5)
    tu.add_argument("--seed", type=int, default=0)
    tu.add_argument("--dry-run", action="store_true",
                    help="cross-validate and report, install nothing")

    lc = sub.add_parser("learn-clicks", help="fit the enhanced phase's ranking to the click "
                        "log now (position-bias corrected; installed only when it does better "
                        "on held-out queries)")
    lc.add_argument("index", type=Path, help="an index root (its clicks.sqlite and models/)")
    lc.add_argument("--eta", type=float, default=None,
                    help="position-bias exponent, p(rank) = (1/rank)**eta (default: "
                    "$PROGSEARCH_CLICK_ETA, else 1; 0: no correction)")
    lc.add_argument("--model", default="both", help="linear, lambdamart or both (default)")
    lc.add_argument("--seed", type=int, default=0)
    lc.add_argument("--dry-run", action="store_true", help="fit and report, install nothing")

    sv = sub.add_parser("serve", help="serve an index over HTTP: JSON and the SSE stream")
    sv.add_argument("index", type=Path, nargs="?",
                    help="default: $PROGSEARCH_INDEX, else the built-in demo catalog")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    sv.add_argument("--redis-url", default=None, help="prediction cache in Redis")
    sv.add_argument("--graceful-timeout", type=int, default=5,
                    help="seconds open streams get to finish on SIGTERM")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])

    qu = sub.add_parser("query", help="stream a search from a running server, phase by phase")
    qu.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    qu.add_argument("query")
    qu.add_argument("-k", type=int, default=10)
    qu.add_argument("--json", action="store_true", help="one JSON object per event")
    qu.add_argument("--follow", action="store_true",
                    help="stay open after done and print updates as writes change the results")
    _structured_flags(qu)

    pc = sub.add_parser("precompute",
                        help="run the most frequent logged queries into the Redis cache")
    pc.add_argument("index", type=Path, nargs="?", help="default: $PROGSEARCH_INDEX")
    pc.add_argument("--top", type=int, default=100)
    pc.add_argument("--redis-url", default=None, help="default: $PROGSEARCH_REDIS_URL")

    wk = sub.add_parser("worker", help="run a Celery worker (enhanced phase, index work)")
    wk.add_argument("index", type=Path, nargs="?", help="default: $PROGSEARCH_INDEX")
    wk.add_argument("--concurrency", type=int, default=2,
                    help="worker processes (one can embed while another answers queries)")
    wk.add_argument("--queues", default=None, help="default: progsearch.query,progsearch.index")
    wk.add_argument("--broker-url", default=None,
                    help="default: $PROGSEARCH_BROKER_URL, else redis://127.0.0.1:6379/0")
    wk.add_argument("--redis-url", default=None, help="Redis for the answers (and the cache)")
    wk.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    wk.add_argument("--beat", action="store_true",
                    help="also run Celery beat (one worker in a deployment): it sends the "
                    "training from clicks every $PROGSEARCH_CLICK_TRAIN_SECONDS")

    ve = sub.add_parser("verify", help="check an index's files against its manifest checksums")
    ve.add_argument("index", type=Path)
    return p


def _index(args: argparse.Namespace) -> int:
    from index.analyzer import AnalyzerSettings
    from index.core.bm25 import BM25Params
    from index.passages import PassageOptions
    from index.schema import Schema
    from index.snapshot import BuildOptions, read_manifest, write_snapshot
    from index.sources import open_source
    from index.vector_params import VectorOptions

    if args.workers < 1:
        raise ProgsearchError(f"--workers must be at least 1, got {args.workers}")
    source = open_source(
        args.source,
        fmt=args.format,
        id_field=args.id_field,
        title_field=args.title_field,
        text_field=args.text_field,
        on_error=args.on_error,
    )
    options = BuildOptions(
        analyzer=AnalyzerSettings(),
        bm25=BM25Params(k1=args.k1, b=args.b, title_weight=args.title_weight),
        workers=args.workers,
        progress=not args.quiet,
        schema=Schema.from_toml(args.schema) if args.schema else None,
        infer_schema=not args.no_schema,
        vectors=None
        if args.no_vectors
        else VectorOptions(
            batch_size=args.embed_batch,
            exact_max=args.exact_max,
            hnsw_storage=args.hnsw_storage or VectorOptions.hnsw_storage,
            passages=None if args.no_passages else PassageOptions(),
        ),
    )
    started = time.perf_counter()
    folder = write_snapshot(source, args.out, options)
    took = time.perf_counter() - started
    manifest = read_manifest(folder)
    n = manifest.n_docs
    kw = manifest.build_seconds.keyword
    print(
        f"indexed {n} documents into {folder} in {took:.1f} s "
        f"(keyword index and store: {kw:.1f} s, {n / max(kw, 1e-9):,.0f} docs/s)"
    )
    if manifest.schema:
        print("structured fields: " + ", ".join(
            f"{f.name} ({f.type})" for f in manifest.schema.fields))
    if source.problems:
        print(f"skipped {len(source.problems)} bad lines (see the warnings above)", file=sys.stderr)
    return 0


def _hits(snapshot: Any, docs: Any, scores: Any, previous: Any = None) -> list[dict[str, Any]]:
    stored = snapshot.docs.get_many([int(d) for d in docs])
    hits: list[dict[str, Any]] = []
    for i, (d, s) in enumerate(zip(stored, scores, strict=True)):
        hit = {
            "rank": i + 1,
            "id": d.id if d else "",
            "score": round(float(s), 4),
            "title": d.title if d else "",
        }
        if previous is not None:
            hit["previous_rank"] = int(previous[i]) + 1 if previous[i] >= 0 else None
        hits.append(hit)
    return hits


def _print_hits(title: str, hits: list[dict[str, Any]], took_ms: float, moves: bool) -> None:
    from app.cli_format import fields_text

    print(f"{title} ({len(hits)} hits in {took_ms:.2f} ms)")
    for h in hits:
        move = ""
        if moves:
            move = "  new" if h.get("previous_rank") is None else f"  was {h['previous_rank']}"
        print(f"{h['rank']:>3}  {h['score']:8.3f}  {h['id']}  {h['title'][:70]}{move}")
        if "fields" in h:
            print(f"{'':15}{fields_text(h['fields'])}")


def _notes(read: dict[str, Any]) -> list[str]:
    """How the query was read: its corrections and the completion of its last word."""
    notes = []
    if read.get("corrections"):
        notes.append("showing results for: " + ", ".join(
            f"{c['original']} -> {c['corrected']}" for c in read["corrections"]))
    if read.get("expansion"):
        e = read["expansion"]
        notes.append(f"completed {e['prefix']!r} to {', '.join(e['completions'])}")
    return notes


def _search(args: argparse.Namespace) -> int:
    from app.errors import ApiError
    from app.params import search_params
    from app.phases import PHASES, SEMANTIC, BareQuery
    from app.phases.bare import open_engine, ready_phases
    from app.phases.local import local_settings

    # The server's checks of its parameters, from the flags instead of a query string.
    settings = local_settings(MAX_K)
    given = {"q": args.query, "k": str(args.k), "prefix": "1" if args.prefix else "0"}
    given |= {name: value for name in ("filter", "facets", "sort")
              if (value := getattr(args, name)) is not None}
    try:
        params = search_params(given, settings)
    except ApiError as exc:
        raise ProgsearchError(exc.message) from None
    until = args.until or (SEMANTIC.name if args.semantic else PHASES.first.name)
    try:
        wanted = PHASES.until(until)
    except KeyError:
        raise ProgsearchError(f"--until {until!r}: the phases are {PHASES.names}") from None
    engine = open_engine(args.index, wanted)
    phases = ready_phases(engine, wanted, strict=True)
    if params.structured:
        return _search_structured(args, engine, engine.check(params), phases, settings)
    snapshot = engine.snapshot
    query = BareQuery(engine.rankers, params.q, params.k, engine.encode, prefix=params.prefix)
    out: dict[str, Any] = {"query": params.q}
    shown: list[str] = []
    for phase in phases:
        started = time.perf_counter()
        ranking = phase.rank(query)
        took_ms = (time.perf_counter() - started) * 1e3
        if ranking is None:  # no bare form
            continue
        shown.append(phase.name)
        out[phase.name] = {
            "took_ms": round(took_ms, 3),
            "hits": _hits(snapshot, ranking.docs, ranking.scores, ranking.previous),
        }
        result = ranking.keyword
        if result is not None:  # how the query was read, next to the phase that read it
            out["corrections"] = [c.__dict__ for c in result.corrections]
            out["expansion"] = result.expansion.__dict__ if result.expansion else None
            out["unknown"] = list(result.unknown)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for note in _notes(out):
        print(note)
    for name in shown:
        _print_hits(name, out[name]["hits"], out[name]["took_ms"], moves=name != shown[0])
    return 0


def _search_structured(args: argparse.Namespace, engine: Engine, params: SearchParams,
                       phases: list[Phase], settings: Settings) -> int:
    """A search with a filter, facets or a sort: the phases as the service computes them,
    so hits, fields and facet counts are the server's."""
    import asyncio

    from app.cli_format import facet_lines, structured_text
    from app.phases.local import local_payloads

    payloads = asyncio.run(local_payloads(engine, params, phases, settings))
    if args.json:
        print(json.dumps({"query": params.q, **{p["phase"]: p for p in payloads}},
                         ensure_ascii=False))
        return 0
    first = payloads[0]
    for note in [*_notes(first), structured_text(first)]:
        if note:
            print(note)
    for payload in payloads:
        _print_hits(payload["phase"], payload["hits"], payload["took_ms"],
                    moves=payload is not first)
        if payload.get("facets"):
            print("facets")
            for line in facet_lines(payload["facets"]):
                print(f"  {line}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from app.evaluate import METRICS, evaluate_engine
    from app.phases import PHASES
    from app.phases.bare import open_engine, ready_phases

    engine = open_engine(args.index, PHASES, encoder=args.encoder)
    phases = ready_phases(engine, PHASES, strict=False)
    results = evaluate_engine(engine, args.dataset, args.split, phases)
    if args.json:
        print(json.dumps(results))
        return 0
    width = max(10, *(len(p) + 2 for p in results))
    print(f"{'phase':<{width}}" + "".join(f"{m:>12}" for m in METRICS))
    for phase, metrics in results.items():
        print(f"{phase:<{width}}" + "".join(f"{metrics[m]:>12.4f}" for m in METRICS))
    if engine.model is not None:
        print(f"enhanced: installed model {engine.model_version}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    import numpy as np

    from app.beir import split_queries
    from app.phases import ENHANCED, PHASES
    from app.phases.bare import open_engine, ready_phases
    from app.tune import check_folds, check_ids, check_options, collect, needs_root, tune
    from rankers.model_store import install_model

    check_options(args.model, args.folds)
    if not args.dry_run:
        needs_root(args.index)
    queries, qrels = split_queries(args.dataset, args.split)
    judged_ids = [q for q in queries if any(g > 0 for g in qrels[q].values())]
    check_folds(args.folds, len(judged_ids))
    engine = open_engine(args.index, PHASES.until(ENHANCED.name))
    ready_phases(engine, [ENHANCED], strict=True)
    check_ids(engine, qrels)
    started = time.perf_counter()
    judged = collect(engine, {q: queries[q] for q in judged_ids}, qrels)
    print(f"{len(judged)} judged queries, features in {time.perf_counter() - started:.1f} s; "
          f"{args.model}, {args.folds} folds, seed {args.seed}")
    report = tune(judged, args.model, args.folds, args.seed)
    print(f"{'fold':<6}{'default':>10}{args.model:>12}  fitted")
    for i, (d, f, note) in enumerate(zip(report.default, report.fitted, report.notes,
                                         strict=True)):
        print(f"{i + 1:<6}{d:>10.4f}{f:>12.4f}  {note}")
    mean_d, mean_f = float(np.mean(report.default)), float(np.mean(report.fitted))
    print(f"{'mean':<6}{mean_d:>10.4f}{mean_f:>12.4f}  held-out nDCG@10")
    print(f"{'MRR@10':<6}{np.mean(report.default_mrr):>10.4f}{np.mean(report.fitted_mrr):>12.4f}"
          "  held-out mean")
    if report.chosen:
        print(f"the model fitted on every query: {report.chosen}")
    if not report.better:
        print(f"not installed: {args.model} ({mean_f:.4f}) does not beat the default "
              f"({mean_d:.4f}) on the held-out folds; the default stays")
        return 0
    if args.dry_run:
        print(f"{args.model} beats the default by {mean_f - mean_d:+.4f}; --dry-run: not installed")
        return 0
    version = install_model(args.index, report.model)
    print(f"installed {version} (fitted on all {len(judged)} queries) in {args.index}/models; "
          f"it beats the default by {mean_f - mean_d:+.4f}")
    return 0


def _learn_clicks(args: argparse.Namespace) -> int:
    from app.click_train import KINDS, learn_from_clicks
    from app.engine import Engine
    from app.phases import ENHANCED
    from app.phases.bare import ready_phases
    from app.settings import Settings
    from index.snapshot import CURRENT

    kinds = KINDS if args.model == "both" else (args.model,)
    if not set(kinds) <= set(KINDS):
        raise ProgsearchError(f"--model {args.model!r}: use one of {', '.join(KINDS)}, both")
    eta = Settings.from_env().click_eta if args.eta is None else args.eta
    if not 0 <= eta <= 4:
        raise ProgsearchError(f"--eta {eta:g}: use a value from 0 to 4")
    if not (args.index / CURRENT).is_file():
        raise ProgsearchError(f"{args.index} is not an index root (no {CURRENT}): the click "
                              "log and the installed model live in the root")
    engine = Engine.open(args.index)  # live: the documents written since the snapshot too
    engine.load_encoder()
    ready_phases(engine, [ENHANCED], strict=True)
    report = learn_from_clicks(args.index, engine, eta=eta, seed=args.seed, kinds=kinds,
                               install=not args.dry_run)
    for line in report.lines():
        print(line)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from index.snapshot import load_snapshot

    snapshot = load_snapshot(args.index, verify=True)
    print(f"{snapshot.folder}: {snapshot.n_docs} documents, every checksum matches")
    return 0


def _single_blas_thread() -> None:
    """Query-time matrix products are small: OpenBLAS threads cost more to wake than they
    save (the enhanced phase is 2.5x slower with them), and requests run concurrently anyway.
    Set before numpy loads; an explicit setting wins."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _serve(args: argparse.Namespace) -> int:
    import os

    _single_blas_thread()
    from app.serve import serve

    if args.index is None and not os.environ.get("PROGSEARCH_INDEX"):
        from app.demo import ensure_demo_index

        args.index = ensure_demo_index(progress=True)
    if args.workers < 1:
        raise ProgsearchError(f"--workers must be at least 1, got {args.workers}")
    return serve(args.index, host=args.host, port=args.port, workers=args.workers,
                 redis_url=args.redis_url, graceful_timeout=args.graceful_timeout,
                 log_level=args.log_level)


def _query(args: argparse.Namespace) -> int:
    import httpx

    from app.stream_client import query

    structured = {name: value for name in ("filter", "facets", "sort")
                  if (value := getattr(args, name)) is not None}
    try:
        return query(args.url, args.query, k=args.k, as_json=args.json, params=structured,
                     follow=args.follow)
    except httpx.HTTPError as exc:
        raise ProgsearchError(f"cannot reach {args.url}: {exc}") from exc


def _precompute(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from app.precompute_cli import run_precompute

    redis_url = args.redis_url or os.environ.get("PROGSEARCH_REDIS_URL")
    index = args.index or os.environ.get("PROGSEARCH_INDEX")
    if not redis_url or not index:
        raise ProgsearchError("precompute needs an index and a Redis (--redis-url)")
    done = asyncio.run(run_precompute(Path(index), redis_url, args.top))
    print(f"precomputed {done} queries")
    return 0


def _worker(args: argparse.Namespace) -> int:
    _single_blas_thread()
    from app.worker import run_worker

    if args.concurrency < 1:
        raise ProgsearchError(f"--concurrency must be at least 1, got {args.concurrency}")
    return run_worker(args.index, concurrency=args.concurrency, queues=args.queues,
                      log_level=args.log_level, broker_url=args.broker_url,
                      redis_url=args.redis_url, beat=args.beat)


COMMANDS = {
    "index": _index, "search": _search, "eval": _eval, "tune": _tune, "verify": _verify,
    "serve": _serve, "worker": _worker, "query": _query, "precompute": _precompute,
    "learn-clicks": _learn_clicks,
}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="progsearch: %(levelname)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ProgsearchError as exc:
        print(f"progsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
