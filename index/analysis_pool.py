"""Documents in, analyzed chunks out: worker processes do the reading, parsing and analysis.

A JSON Lines source travels as blocks of raw lines (`index.sources.Block`): a worker reads its
block, parses and checks the records, analyzes them and writes them to a block file of the
document store, so the main process only numbers lines, drops duplicate ids
(`SourceReader.accept`), has the store copy the block in and merges postings; the documents'
text never reaches it. Any other source (CSV, or any iterable of `Document`) is read here and
sent as titles and bodies.

Each worker keeps one `ChunkAnalyzer` for the whole build, so a word is stemmed once per
process. Results come back in source order whatever the number of workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.analyzer import AnalyzerSettings
from index.chunk import AnalyzedChunk, ChunkAnalyzer
from index.core.types import Document
from index.docstore import read_block, write_block
from index.sources import BLOCK_BYTES, Block, RecordParser, Records, SourceReader

__all__ = ["Batch", "analyzed_batches"]


@dataclass(frozen=True)
class Batch:
    """The documents of one chunk, for the document store: as columns, or as a block file that
    a worker wrote (`index.docstore.write_block`) and the positions in it to keep."""

    ids: list[str]
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    """The other fields of each document as JSON text."""
    block: Path | None = None
    block_docs: int = 0
    keep: list[int] | None = None

    @classmethod
    def from_documents(cls, docs: list[Document]) -> Batch:
        return cls(
            [d.id for d in docs],
            [d.title for d in docs],
            [d.text for d in docs],
            [json.dumps(d.fields) for d in docs],
        )

    def __len__(self) -> int:
        return len(self.ids)


# The analyzer of a worker process, made once by its initializer: the process-pool way of giving
# tasks a state that lives as long as the process (never set in the main process).
_worker: ChunkAnalyzer | None = None


def _init_worker(settings: AnalyzerSettings, title_weight: float) -> None:
    global _worker
    _worker = ChunkAnalyzer(settings, title_weight)


def _parse_and_analyze(
    parse: RecordParser, block: Block, store: Path, analyzer: ChunkAnalyzer | None = None
) -> tuple[Records, AnalyzedChunk]:
    """Parse a block, count its words and write its documents to the block file `store`; the
    records come back without their texts."""
    records = parse(block.read())
    analyzer = analyzer or _worker
    assert analyzer is not None, "worker not initialized"
    chunk = analyzer.analyze(records.titles, records.texts)
    write_block(store, records.ids, records.titles, records.texts, records.fields)
    return Records(records.n_lines, records.lines, records.ids, problems=records.problems), chunk


def _analyze(
    titles: list[str], bodies: list[str], analyzer: ChunkAnalyzer | None = None
) -> AnalyzedChunk:
    analyzer = analyzer or _worker
    assert analyzer is not None, "worker not initialized"
    return analyzer.analyze(titles, bodies)


def _chunked(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# A job: what the main process keeps (the documents, when it read them), and what a worker runs.
_Job = tuple[list[Document] | None, Callable[..., Any], tuple[Any, ...]]


def _jobs(
    docs: Iterable[Document],
    plan: tuple[RecordParser, Iterator[Block]] | None,
    chunk_size: int,
    scratch: Path,
) -> Iterator[_Job]:
    if plan is not None:
        parse, blocks = plan
        for n, block in enumerate(blocks):
            yield None, _parse_and_analyze, (parse, block, scratch / f"block-{n}.sqlite")
        return
    for chunk in _chunked(docs, chunk_size):
        yield chunk, _analyze, ([d.title for d in chunk], [d.text for d in chunk])


def _run(
    jobs: Iterator[_Job], pool: cf.ProcessPoolExecutor | ChunkAnalyzer, workers: int
) -> Iterator[tuple[list[Document] | None, Any]]:
    """Results in job order, run in this process when `pool` is an analyzer. At most
    `2 * workers` jobs are in flight: memory stays bounded, and a worker that finishes early
    finds its next job waiting."""
    if isinstance(pool, ChunkAnalyzer):
        for kept, fn, args in jobs:
            yield kept, fn(*args, analyzer=pool)
        return
    pending: deque[tuple[list[Document] | None, cf.Future[Any]]] = deque()
    for kept, fn, args in jobs:
        pending.append((kept, pool.submit(fn, *args)))
        if len(pending) >= 2 * workers:
            kept, fut = pending.popleft()
            yield kept, fut.result()
    while pending:
        kept, fut = pending.popleft()
        yield kept, fut.result()


def analyzed_batches(
    docs: Iterable[Document],
    settings: AnalyzerSettings,
    title_weight: float,
    scratch: Path,
    *,
    workers: int = 2,
    chunk_size: int = 20_000,
    block_bytes: int = BLOCK_BYTES,
) -> Generator[tuple[Batch, AnalyzedChunk], None, None]:
    """The documents with their postings, chunk by chunk, in source order. Block files go to
    the folder `scratch`; the document store removes each once it has copied it."""
    reader = docs if isinstance(docs, SourceReader) else None
    plan = reader.blocks(block_bytes) if reader is not None else None
    jobs = _jobs(docs, plan, chunk_size, scratch)
    with contextlib.ExitStack() as stack:
        local: ChunkAnalyzer | None = None
        pool: cf.ProcessPoolExecutor | ChunkAnalyzer
        if workers > 1:
            pool = stack.enter_context(
                cf.ProcessPoolExecutor(
                    max_workers=workers,
                    initializer=_init_worker,
                    initargs=(settings, title_weight),
                    # Not fork: a build can run inside a process with threads (a server's
                    # compaction, the tests), and a forked child inherits their locks held.
                    mp_context=multiprocessing.get_context("forkserver"),
                )
            )
        else:
            pool = local = ChunkAnalyzer(settings, title_weight)
        for n, (kept, out) in enumerate(_run(jobs, pool, workers)):
            if kept is not None:
                yield Batch.from_documents(kept), out
                continue
            assert reader is not None
            records, postings = out
            keep = reader.accept(records)
            store = scratch / f"block-{n}.sqlite"
            ids = records.ids if keep is None else [records.ids[i] for i in keep]
            batch = Batch(ids, block=store, block_docs=len(records.ids), keep=keep)
            if keep is not None:
                # Rare (duplicate ids): the postings counted documents that are now dropped.
                # Count again without them, after the words the first count numbered.
                yield Batch([]), postings.words_only()
                local = local or ChunkAnalyzer(settings, title_weight)
                postings = local.analyze(*read_block(store, keep))
            yield batch, postings
