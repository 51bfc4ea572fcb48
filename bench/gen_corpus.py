"""Generate a large synthetic BEIR corpus by resampling SciFact sentences and titles.

Each generated document ``g{n}`` gets a title drawn from the pool of real titles and a
body of k sentences drawn from the pool of all real abstract sentences, where k is drawn
from the empirical distribution of sentences per real abstract. The expected body length
therefore equals the real mean. Output is deterministic for a given ``--seed`` and ``--n``.

    .venv/bin/python -m bench.gen_corpus --data ../shared/data/scifact --n 1000000 \
        --out /tmp/gen1m/corpus.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from index.core.errors import SourceError
from index.sources import open_source

__all__ = ["Pools", "build_pools", "generate_chunks", "main", "split_sentences"]

# A boundary is ". ", "? " or "! " followed by an uppercase letter.
_SENTENCE_BOUNDARY = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
# Fixed so that a given (seed, n) always yields the same file.
_CHUNK_DOCS = 100_000


@dataclass(frozen=True)
class Pools:
    """Resampling pools; strings are pre-escaped JSON string contents (no quotes)."""

    sentences: npt.NDArray[np.object_]
    sentence_tokens: npt.NDArray[np.int64]
    titles: npt.NDArray[np.object_]
    counts: npt.NDArray[np.int64]  # sentences per real abstract
    source_mean_tokens: float


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences on ./?/! followed by whitespace and an uppercase."""
    return [s for s in _SENTENCE_BOUNDARY.split(text.strip()) if s]


def _escape(s: str) -> str:
    # Escaping once per pool entry lets documents be assembled by plain concatenation.
    return json.dumps(s, ensure_ascii=False)[1:-1]


def _object_array(items: Sequence[str]) -> npt.NDArray[np.object_]:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def build_pools(docs: Sequence[Mapping[str, str]]) -> Pools:
    """Pool the sentences and titles of a corpus of ``{_id, title, text}`` documents."""
    sentences: list[str] = []
    counts: list[int] = []
    titles: list[str] = []
    total_tokens = 0
    for doc in docs:
        sents = split_sentences(doc["text"])
        sentences.extend(sents)
        counts.append(len(sents))
        titles.append(doc["title"])
        total_tokens += len(doc["text"].split())
    if not sentences:
        raise SourceError(f"no sentences found in {len(docs)} source documents; need at least 1")
    return Pools(
        sentences=_object_array([_escape(s) for s in sentences]),
        sentence_tokens=np.array([len(s.split()) for s in sentences], dtype=np.int64),
        titles=_object_array([_escape(t) for t in titles]),
        counts=np.array(counts, dtype=np.int64),
        source_mean_tokens=total_tokens / len(docs),
    )


def generate_chunks(pools: Pools, n: int, seed: int) -> Iterator[tuple[str, int]]:
    """Yield (JSON-lines text, body token total) for successive chunks of ``n`` documents."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, _CHUNK_DOCS):
        m = min(_CHUNK_DOCS, n - start)
        counts = rng.choice(pools.counts, size=m)
        sent_idx = rng.integers(0, len(pools.sentences), size=int(counts.sum()))
        title_idx = rng.integers(0, len(pools.titles), size=m)
        sents: list[str] = pools.sentences[sent_idx].tolist()
        titles: list[str] = pools.titles[title_idx].tolist()
        offsets: list[int] = np.concatenate(([0], np.cumsum(counts))).tolist()
        lines = [
            f'{{"_id": "g{start + j}", "title": "{titles[j]}", '
            f'"text": "{" ".join(sents[offsets[j] : offsets[j + 1]])}"}}'
            for j in range(m)
        ]
        lines.append("")  # trailing newline
        yield "\n".join(lines), int(pools.sentence_tokens[sent_idx].sum())


def _open_out(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        # Level 1: the file is a scratch artefact and speed matters more than size.
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=1)
    return path.open("w", encoding="utf-8", buffering=1 << 22)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder with corpus.jsonl")
    parser.add_argument("--n", type=int, default=1_000_000, help="documents to generate")
    parser.add_argument("--out", type=Path, required=True, help="output corpus.jsonl path")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--gzip", action="store_true", help="gzip the output (appends .gz to --out if missing)"
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    out: Path = args.out
    if args.gzip and out.suffix != ".gz":
        out = out.with_name(out.name + ".gz")

    t0 = time.perf_counter()
    docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in open_source(args.data)]
    pools = build_pools(docs)
    body_tokens = 0
    with _open_out(out) as fh:
        for text, tokens in generate_chunks(pools, args.n, args.seed):
            fh.write(text)
            body_tokens += tokens
    elapsed = time.perf_counter() - t0

    print(f"docs: {args.n}")
    print(
        f"mean body tokens: {body_tokens / args.n:.1f} "
        f"(source: {pools.source_mean_tokens:.1f} over {len(pools.counts)} abstracts, "
        f"{len(pools.sentences)} sentences)"
    )
    print(f"size: {out.stat().st_size / 1e6:.1f} MB at {out}")
    print(f"time: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
