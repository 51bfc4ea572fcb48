"""Benchmark of the semantic building blocks on this machine (a script, not a test).

Measures query-encoding latency, document-embedding throughput, and ANN search latency and
recall@10 against exact search.

Query encoding: progsearch's direct path (its fused int8 model, and fp32 ONNX), and as peers
in the same run sentence-transformers' own int8 ONNX model (its session run directly, as
``Encoder`` did before, and through ``SentenceTransformer.encode``) and plain
``SentenceTransformer.encode`` (torch fp32). The methods take turns over ``--rounds`` rounds,
since the machine is shared; also timed: a fresh process loading the int8 encoder (which must
not import torch).

ANN:

- SciFact size (5,183 vectors): the real SciFact document vectors (fp32, embedded once with
  ``index.embedding.embed_corpus`` into ``--work-dir`` and reused), in the exact index the
  project builds at that size;
- ``--ann-size`` vectors (default 1,000,000) in HNSW, made from those real vectors
  (``--ann-data``): "perturbed" copies of them plus noise shaped like their spread (default),
  or a "gaussian" with their mean and covariance (no cluster structure: a worst case).

Queries are the real SciFact query vectors (int8 encoder). Building HNSW at 1M takes half an
hour on 2 busy cores, so the built index is cached in ``--work-dir`` and reused.

    .venv/bin/python bench/semantic.py --data ../shared/data/scifact [--skip-ann-1m] [--json]
    .venv/bin/python -m bench.semantic --data ../shared/data/scifact --encoder-only
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import print_table, summarize, time_calls
from index.core.encoder import Encoder, EncoderConfig, exported_model_dir, model_source_dir
from index.core.onnx_export import ST_INT8_FILE
from index.core.onnx_session import QueryModel, load_tokenizer, onnx_forward
from index.embedding import document_text, embed_corpus
from index.vector_params import IndexParams
from index.vectors import VectorIndex, build_vector_index

Vectors = npt.NDArray[np.float32]
SCIFACT_DOCS = 5_183
INT8_DIRECT = "int8 ONNX direct (Encoder.encode_query)"
OLD_PATH = "sentence-transformers' int8 ONNX, its session run directly (old path)"
ST_ONNX = "sentence-transformers' int8 ONNX, SentenceTransformer.encode"
TORCH = "torch fp32 (SentenceTransformer.encode)"


def read_queries(data: Path, limit: int) -> list[str]:
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:limit]


def read_docs(data: Path, limit: int) -> list[str]:
    docs: list[str] = []
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append(document_text(row.get("title", ""), row.get("text", "")))
            if len(docs) >= limit:
                break
    return docs


def timed(fn: Callable[[Any], object], items: Sequence[Any], warmup: int) -> dict[str, float]:
    """p50, p99 and mean in milliseconds of ``fn`` over ``items``, after ``warmup`` calls."""
    stats = summarize(time_calls(fn, items, warmup=warmup) * 1e3)
    return {f"{name}_ms": value for name, value in stats.items()}


LOAD_SCRIPT = """
import sys, time
start = time.perf_counter()
from index.core.encoder import Encoder, EncoderConfig
encoder = Encoder.load(EncoderConfig(kind="int8", threads=int(sys.argv[1])))
loaded = time.perf_counter() - start
encoder.encode_query("warm")
print(loaded, "torch" in sys.modules)
"""


def bench_load(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from interpreter start to a loaded int8 query encoder (export already made)."""
    root = Path(__file__).resolve().parents[1]
    runs = []
    for _ in range(args.rounds):
        done = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT, str(args.threads)],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, torch_loaded = done.stdout.split()
        runs.append(float(seconds))
    return {"median_s": float(np.median(runs)), "max_s": max(runs), "torch": torch_loaded}


def query_methods(
    args: argparse.Namespace,
) -> tuple[dict[str, Callable[[str], object]], Any, Any]:
    """The query encoders to time by row name, and the sentence-transformers torch and int8
    ONNX models (the peers)."""
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    methods: dict[str, Callable[[str], object]] = {}
    for threads in thread_counts(args):
        int8 = Encoder.load(EncoderConfig(kind="int8", threads=threads))
        methods[f"{INT8_DIRECT}, {threads} thread(s)"] = int8.encode_query
    if args.threads > 1:  # idle threads busy-wait: quicker on free cores, slower on busy ones
        spinning = Encoder.load(EncoderConfig(kind="int8", threads=args.threads, spin=True))
        methods[f"{INT8_DIRECT}, {args.threads} spinning threads"] = spinning.encode_query
    fp32 = Encoder.load(EncoderConfig(kind="fp32", threads=args.threads))
    methods[f"fp32 ONNX direct, {args.threads} thread(s)"] = fp32.encode_query
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    st_onnx = SentenceTransformer(
        str(exported_model_dir()),
        backend="onnx",
        device="cpu",
        model_kwargs={"file_name": ST_INT8_FILE, "session_options": options},
    )
    st_onnx.max_seq_length = fp32.config.max_query_tokens
    # What Encoder.encode_query did before the direct path: sentence-transformers' int8 model
    # in the session it opened (its default options), run on word pieces, pooled in numpy.
    old = QueryModel(
        load_tokenizer(exported_model_dir(), fp32.config.max_query_tokens),
        onnx_forward(st_onnx.transformers_model.session),
        fp32.dim,
    )
    methods[OLD_PATH] = lambda text: old.encode([text])
    methods[ST_ONNX] = st_onnx.encode
    plain = SentenceTransformer(str(model_source_dir()), device="cpu")
    for threads in thread_counts(args):
        methods[f"{TORCH}, {threads} thread(s)"] = partial(_torch_encode, plain, threads)
    return methods, plain, st_onnx


def thread_counts(args: argparse.Namespace) -> list[int]:
    return list(dict.fromkeys([args.threads, *args.int8_threads]))


def _torch_encode(model: Any, threads: int, text: str) -> object:
    import torch

    if torch.get_num_threads() != threads:  # process-wide, so set per call (cheap)
        torch.set_num_threads(threads)
    return model.encode(text)


def bench_queries(
    args: argparse.Namespace, queries: list[str], int8: Encoder
) -> tuple[dict[str, Any], Vectors]:
    """Single-query latency of each method, in ``--rounds`` interleaved rounds.

    The machine is shared, so every round times each method on all queries in turn; a burst
    of other work then hits all methods alike. Reported: the median over rounds of each
    round's p50 and p99, and of the per-round ratio torch p50 / int8 p50 at equal threads.
    """
    methods, plain, st_onnx = query_methods(args)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, fn in methods.items():
            ms = time_calls(fn, queries, warmup=args.warmup) * 1e3
            stats = {f"{k}_ms": v for k, v in summarize(ms).items()}
            # The quickest calls show the cost on a free CPU, which a busy machine hides.
            rounds[name].append(stats | {"p1_ms": float(np.percentile(ms, 1))})
        loads.append(os.getloadavg()[0])
    latency = {
        name: {
            key: float(np.median([r[key] for r in runs]))
            for key in ("p1_ms", "p50_ms", "p99_ms", "mean_ms")
        }
        | {
            "p50_ms_rounds": [r["p50_ms"] for r in runs],
            "p99_ms_rounds": [r["p99_ms"] for r in runs],
        }
        for name, runs in rounds.items()
    }
    speedups = {}
    for threads in thread_counts(args):
        torch_rounds = rounds[f"{TORCH}, {threads} thread(s)"]
        int8_rounds = rounds[f"{INT8_DIRECT}, {threads} thread(s)"]
        ratios = [t["p50_ms"] / i["p50_ms"] for t, i in zip(torch_rounds, int8_rounds, strict=True)]
        speedups[threads] = {
            "median": float(np.median(ratios)),
            "min": min(ratios),
            "max": max(ratios),
        }
    vectors = int8.encode_queries(queries)
    reference = np.asarray(plain.encode(queries, batch_size=1, normalize_embeddings=True))
    st_vectors = np.vstack([st_onnx.encode([q], normalize_embeddings=True) for q in queries])
    cosines = np.sum(vectors * reference, axis=1)
    st_cosines = np.sum(st_vectors * reference, axis=1)
    summary = {
        "rounds": args.rounds,
        "load_average_1min": loads,
        "latency": latency,
        "speedup_p50_torch_over_int8_by_threads": speedups,
        "cosine_int8_vs_torch_fp32": {"mean": float(cosines.mean()), "min": float(cosines.min())},
        "cosine_st_int8_vs_torch_fp32": {
            "mean": float(st_cosines.mean()),
            "min": float(st_cosines.min()),
        },
    }
    return summary, vectors


def bench_documents(
    args: argparse.Namespace, docs: list[str], encoders: dict[str, Encoder]
) -> dict[str, Any]:
    from tokenizers import Tokenizer  # type: ignore[import-untyped, unused-ignore]

    tokenizer = Tokenizer.from_file(str(model_source_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(docs)]
    rates: dict[str, float] = {}
    results: dict[str, Any] = {
        "docs": len(docs),
        "mean_tokens": float(np.mean(lengths)),
        "docs_at_256_tokens": sum(n == 256 for n in lengths),
        "docs_per_s": rates,
    }
    for name, encoder in encoders.items():
        encoder.encode_documents(docs[:8])
        best = min(
            _seconds(partial(encoder.encode_documents, docs, batch_size=32))
            for _ in range(args.repeats)
        )
        rates[name] = len(docs) / best
    return results


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class GaussianLike:
    """Unit vectors from a Gaussian with the mean and covariance of real embeddings.

    A worst case for ANN: the spread of real data, but none of its cluster structure.
    """

    def __init__(self, real: Vectors, seed: int) -> None:
        self.mean = real.mean(axis=0, dtype=np.float64)
        cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
        self.factor = np.linalg.cholesky(cov)
        self.rng = np.random.default_rng(seed)

    def describe(self) -> str:
        return "Gaussian with the mean and covariance of the real vectors"

    def noise(self, count: int) -> npt.NDArray[np.float64]:
        z: npt.NDArray[np.float64] = self.rng.standard_normal((count, self.mean.size))
        return z @ self.factor.T

    def sample(self, count: int, chunk: int = 100_000) -> Vectors:
        out = np.empty((count, self.mean.size), dtype=np.float32)
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            z = self.noise(n) + self.mean
            out[start : start + n] = z / np.linalg.norm(z, axis=1, keepdims=True)
        return out


class PerturbedCopies(GaussianLike):
    """Copies of real vectors plus noise shaped like the real spread, re-normalized.

    The noise is scaled so a copy's cosine to its source is the real vectors' median cosine
    to their nearest real neighbour: a copy is as far from its source as real neighbours are.
    """

    def __init__(self, real: Vectors, seed: int) -> None:
        super().__init__(real, seed)
        self.real = real
        sims = real @ real.T
        np.fill_diagonal(sims, -1.0)
        self.target = float(np.median(sims.max(axis=1)))
        spread = float(np.mean(np.sum(self.noise(10_000) ** 2, axis=1)))
        # cos(copy, source) ~ 1 / sqrt(1 + scale^2 * spread) for noise roughly orthogonal to it
        self.scale = float(np.sqrt((1 / self.target**2 - 1) / spread))

    def describe(self) -> str:
        return (
            f"copies of {len(self.real)} real vectors + covariance-shaped noise "
            f"(cosine to source ~{self.target:.3f}, the real median nearest-neighbour cosine)"
        )

    def sample(self, count: int, chunk: int = 100_000) -> Vectors:
        out = np.empty((count, self.mean.size), dtype=np.float32)
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            sources = self.real[self.rng.integers(0, len(self.real), n)]
            z = sources + self.scale * self.noise(n)
            out[start : start + n] = z / np.linalg.norm(z, axis=1, keepdims=True)
        return out


def search_stats(
    index: VectorIndex, queries: Vectors, exact_top10: npt.NDArray[np.int64], warmup: int
) -> dict[str, float]:
    """Single-query k=100 latency, and recall@10 of those results against exact search."""
    results: list[npt.NDArray[np.int64]] = []

    def one(query: Vectors) -> None:
        results.append(index.search(query, 100)[0])

    stats = timed(one, list(queries), warmup)
    found = results[warmup:]
    overlaps = [
        len(set(f[:10].tolist()) & set(e.tolist())) / 10
        for f, e in zip(found, exact_top10, strict=True)
    ]
    return {**stats, "recall_at_10": float(np.mean(overlaps))}


def real_vectors(work_dir: Path, data: Path, count: int, threads: int) -> tuple[Vectors, str]:
    """The first `count` SciFact documents embedded with the fp32 encoder (cached in
    `work_dir`), and that encoder's fingerprint."""
    fp32 = Encoder.load(EncoderConfig(kind="fp32", threads=threads))
    path = work_dir / f"scifact-first{count}.npy"
    return np.asarray(embed_corpus(read_docs(data, count), fp32, path)), fp32.fingerprint


def cached_hnsw(
    work_dir: Path, key: str, vectors: Vectors, hnsw_m: int, ef_construction: int, storage: str
) -> tuple[faiss.Index, float | str]:
    """The HNSW index of `vectors` (described by `key`, which names the cached file), read
    from `work_dir` or built and written there; and its build time, or "cached: NAME"."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    suffix = "" if storage == "flat" else f"-{storage}"
    name = f"hnsw-{len(vectors)}-m{hnsw_m}-efc{ef_construction}{suffix}-{digest}.faiss"
    path = work_dir / name
    if path.is_file():
        return faiss.read_index(str(path)), "cached: " + path.name
    start = time.perf_counter()
    hnsw, _ = build_vector_index(
        vectors, exact_max=0, hnsw_m=hnsw_m, ef_construction=ef_construction,
        storage=storage,  # type: ignore[arg-type]
    )
    took = time.perf_counter() - start
    faiss.write_index(hnsw, str(path))
    return hnsw, took


def bench_ann(args: argparse.Namespace, data: Path, queries: Vectors) -> dict[str, Any]:
    real, fingerprint = real_vectors(args.work_dir, data, args.real_docs, args.threads)
    search: dict[str, Any] = {}
    results: dict[str, Any] = {"search": search}

    if len(real) >= SCIFACT_DOCS:
        scifact, what = real[:SCIFACT_DOCS], "real SciFact document vectors (fp32)"
    else:
        scifact, what = GaussianLike(real, seed=0).sample(SCIFACT_DOCS), "Gaussian-like"
    results["scifact_size_data"] = what
    small, params = build_vector_index(scifact)
    exact = small.search(queries, 10)[1]
    small_index = VectorIndex(small, params, threads=1)
    search[f"{SCIFACT_DOCS} {params.kind}"] = search_stats(small_index, queries, exact, args.warmup)
    if args.skip_ann_1m:
        return results

    n = args.ann_size
    gen = (PerturbedCopies if args.ann_data == "perturbed" else GaussianLike)(real, seed=1)
    results["large_data"] = gen.describe()
    vectors = gen.sample(n)
    faiss.omp_set_num_threads(args.threads)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    exact = flat.search(queries, 10)[1]
    del flat
    builds: dict[str, Any] = {}
    results["hnsw_build_s"] = builds
    for storage in args.hnsw_storage:
        faiss.omp_set_num_threads(args.threads)
        hnsw, builds[storage] = cached_hnsw(
            args.work_dir, f"{fingerprint}|{len(real)}|{n}|{args.ann_data}", vectors,
            args.hnsw_m, args.ef_construction, storage,
        )
        for ef in args.ef_search:
            params = IndexParams(
                "hnsw",
                n,
                hnsw.d,
                hnsw_m=args.hnsw_m,
                ef_construction=args.ef_construction,
                ef_search=ef,
                storage=storage,
                refine=args.refine,
            )
            label = f"{n} hnsw {storage} M={args.hnsw_m} efC={args.ef_construction} efSearch={ef}"
            if storage != "flat":
                label += f" refine={args.refine}"
            search[label] = search_stats(
                VectorIndex(hnsw, params, threads=1, vectors=vectors), queries, exact, args.warmup
            )
        del hnsw
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries timed")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=64, help="documents for throughput")
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs (best kept)")
    parser.add_argument(
        "--real-docs", type=int, default=SCIFACT_DOCS, help="SciFact docs embedded (cached)"
    )
    parser.add_argument("--ann-size", type=int, default=1_000_000)
    parser.add_argument("--skip-ann-1m", action="store_true", help="skip the --ann-size part")
    parser.add_argument(
        "--ann-data",
        choices=["perturbed", "gaussian"],
        default="perturbed",
        help="how the --ann-size vectors are made from the real ones",
    )
    parser.add_argument("--ann-only", action="store_true", help="skip encoder timings")
    parser.add_argument(
        "--encoder-only",
        action="store_true",
        help="only query encoding (and encoder load time): no document embedding, no ANN",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved query-timing rounds")
    parser.add_argument(
        "--int8-threads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1],
        help="comma-separated thread counts timed for int8, besides --threads",
    )
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument(
        "--hnsw-storage",
        type=lambda s: s.split(","),
        default=["flat", "sq8"],
        help="comma-separated HNSW node storages to build and time: flat, sq8",
    )
    parser.add_argument(
        "--refine", type=int, default=100, help="sq8: candidates re-scored exactly"
    )
    parser.add_argument(
        "--ef-search",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 128, 192, 256, 384],
        help="comma-separated efSearch values to sweep",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path.home() / ".cache" / "progsearch" / "bench"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser.parse_args(argv)


def print_report(report: dict[str, Any]) -> None:
    print(f"command: {report['command']}\nthreads: {report['threads']}\n")
    if "queries" in report:
        q = report["queries"]
        load = report["load"]
        print(
            f"int8 query encoder, fresh process to loaded: median {load['median_s']:.2f} s, "
            f"max {load['max_s']:.2f} s; torch imported: {load['torch']}"
        )
        loads = ", ".join(f"{x:.1f}" for x in q["load_average_1min"])
        print(f"{q['rounds']} interleaved rounds; 1-minute load average: {loads}")
        rows = [
            [name, v["p1_ms"], v["p50_ms"], v["p99_ms"], " ".join(f"{x:.1f}" for x in rounds)]
            for name, v in q["latency"].items()
            for rounds in [v["p50_ms_rounds"]]
        ]
        headers = ["query encoding (single query)", "p1 ms", "p50 ms", "p99 ms", "p50 by round"]
        print("medians over rounds:")
        print_table(rows, headers)
        for threads, ratio in q["speedup_p50_torch_over_int8_by_threads"].items():
            print(
                f"p50 ratio torch fp32 / int8 direct, {threads} thread(s) each: median "
                f"{ratio['median']:.2f}x (rounds {ratio['min']:.2f}-{ratio['max']:.2f})"
            )
        cos = q["cosine_int8_vs_torch_fp32"]
        st = q["cosine_st_int8_vs_torch_fp32"]
        print(f"cosine int8 vs torch fp32: mean {cos['mean']:.4f}, min {cos['min']:.4f}")
        print(
            f"cosine sentence-transformers' int8 vs torch fp32: mean {st['mean']:.4f}, "
            f"min {st['min']:.4f}\n"
        )
    if "documents" in report:
        d = report["documents"]
        print_table(
            [[name, rate] for name, rate in d["docs_per_s"].items()],
            [f"embedding {d['docs']} docs ({d['mean_tokens']:.0f} tokens avg)", "docs/s"],
        )
        print()
    if "ann" not in report:
        return
    ann = report["ann"]
    print(f"ANN at SciFact size: {ann['scifact_size_data']}")
    if "large_data" in ann:
        print(f"ANN at --ann-size: {ann['large_data']}")
    print("queries: real SciFact query vectors (int8); k=100, one at a time, faiss threads=1")
    if "hnsw_build_s" in ann:
        for storage, took in ann["hnsw_build_s"].items():
            print(f"HNSW build, {storage}: {took if isinstance(took, str) else f'{took:.0f} s'}")
    rows = [
        [name, v["p50_ms"], v["p99_ms"], v["mean_ms"], v["recall_at_10"]]
        for name, v in ann["search"].items()
    ]
    print_table(rows, ["index", "p50 ms", "p99 ms", "mean ms", "recall@10"])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    report: dict[str, Any] = {"command": command, "threads": args.threads}
    queries = read_queries(args.data, args.queries)
    int8 = Encoder.load(EncoderConfig(kind="int8", threads=args.threads))
    if args.ann_only:
        query_vectors = int8.encode_queries(queries)
    else:
        report["load"] = bench_load(args)
        report["queries"], query_vectors = bench_queries(args, queries, int8)
    if not args.ann_only and not args.encoder_only:
        encoders = {
            "int8 onnx": int8,
            "fp32 onnx": Encoder.load(EncoderConfig(kind="fp32", threads=args.threads)),
            "fp32 torch": Encoder.load(
                EncoderConfig(kind="fp32", backend="torch", threads=args.threads)
            ),
        }
        report["documents"] = bench_documents(args, read_docs(args.data, args.docs), encoders)
    if not args.encoder_only:
        report["ann"] = bench_ann(args, args.data, query_vectors)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
