"""Peer keyword engines timed alongside progsearch in the same benchmark run.

Every peer is built from ``{_id, title, text}`` documents, takes raw user query strings,
and exposes ``name``, ``build_seconds`` (wall time of the whole build) and
``search(query, k) -> doc ids``. Only documents that match at least one query term are
returned, so a query with no indexed term yields ``[]`` from every peer.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import bm25s
import numpy as np
import Stemmer
import tantivy

from index.core.errors import QueryError

__all__ = ["Bm25sPeer", "Peer", "TantivyPeer", "tantivy_safe_query"]


class Peer(Protocol):
    """What a benchmark needs from a keyword engine."""

    @property
    def name(self) -> str: ...

    @property
    def build_seconds(self) -> float: ...

    def search(self, query: str, k: int = 10) -> list[str]: ...


def _check_k(k: int) -> None:
    if k < 1:
        raise QueryError(f"k must be >= 1, got {k}")


class Bm25sPeer:
    """bm25s, numpy backend, Lucene BM25 (k1=1.2, b=0.75) over ``title + " " + text``.

    Text is tokenized by bm25s itself with English stopwords and the PyStemmer English
    stemmer. ``search`` includes tokenizing the query, as a bm25s user would, and runs
    single-threaded.
    """

    name = "bm25s"

    def __init__(self, docs: Sequence[Mapping[str, str]]) -> None:
        t0 = time.perf_counter()
        self._stemmer = Stemmer.Stemmer("english")
        self._ids = [d["_id"] for d in docs]
        tokens = bm25s.tokenize(
            [f"{d['title']} {d['text']}" for d in docs],
            stopwords="en",
            stemmer=self._stemmer,
            show_progress=False,
        )
        self._retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75, backend="numpy")
        self._retriever.index(tokens, show_progress=False)
        self.build_seconds = time.perf_counter() - t0

    def search(self, query: str, k: int = 10) -> list[str]:
        """Return the ids of the top ``k`` documents for a raw query string."""
        _check_k(k)
        q_tokens = bm25s.tokenize(
            query, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        # bm25s refuses k larger than the corpus.
        hits, scores = self._retriever.retrieve(
            q_tokens,
            k=min(k, len(self._ids)),
            n_threads=0,
            backend_selection="numpy",
            show_progress=False,
        )
        # bm25s always fills k slots; zero-score slots are non-matching filler.
        keep = scores[0] > 0
        return [self._ids[i] for i in np.asarray(hits[0])[keep].tolist()]


# Anything that is not a letter or digit: this covers every character the tantivy query
# grammar treats specially (+ - : ( ) [ ] { } " ' ^ ~ * ! \ / < > = etc.).
_NON_ALNUM = re.compile(r"[\W_]+")


def tantivy_safe_query(query: str) -> str:
    """Reduce a raw query to lowercase alphanumeric words separated by spaces.

    Such a string always parses and becomes a plain OR of terms over the default fields:
    lowercasing keeps words like AND/OR/NOT/IN from acting as operators, and splitting
    where the ``en_stem`` tokenizer would split anyway keeps one word from turning into a
    phrase query (``covid-19`` becomes ``covid 19``, not the phrase "covid 19").
    """
    return _NON_ALNUM.sub(" ", query).strip().lower()


class TantivyPeer:
    """tantivy with ``title`` and ``text`` fields (``en_stem``) and a stored ``id`` field.

    The index lives in ``path`` or, if None, in a temporary directory owned by the peer
    and removed by ``close()``. Build time covers adding documents, the commit, waiting
    for segment merges, and opening the searcher, which is then reused for every query.
    Tantivy's BM25 defaults (k1=1.2, b=0.75) apply per field and the field scores add up.
    """

    name = "tantivy"

    def __init__(
        self,
        docs: Sequence[Mapping[str, Any]],
        path: str | Path | None = None,
        heap_bytes: int = 256_000_000,
        num_threads: int = 2,
        numbers: Sequence[str] = (),
    ) -> None:
        t0 = time.perf_counter()
        self._tmp = tempfile.TemporaryDirectory(prefix="tantivy-peer-") if path is None else None
        index_dir = Path(self._tmp.name if self._tmp is not None else str(path))
        index_dir.mkdir(parents=True, exist_ok=True)
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_text_field("title", tokenizer_name="en_stem")
        builder.add_text_field("text", tokenizer_name="en_stem")
        for name in numbers:  # float fast fields, for filters
            builder.add_float_field(name, indexed=True, fast=True)
        self._schema = builder.build()
        self._index = tantivy.Index(self._schema, path=str(index_dir), reuse=False)
        writer = self._index.writer(heap_bytes, num_threads)
        for d in docs:
            values = {name: float(d[name]) for name in numbers}
            writer.add_document(tantivy.Document(id=d["_id"], title=d["title"], text=d["text"],
                                                 **values))
        writer.commit()
        writer.wait_merging_threads()
        self._index.reload()
        self._searcher = self._index.searcher()
        self.build_seconds = time.perf_counter() - t0

    def search(self, query: str, k: int = 10) -> list[str]:
        """Return the ids of the top ``k`` documents for a raw query string."""
        _check_k(k)
        safe = tantivy_safe_query(query)
        if not safe:
            return []
        parsed = self._index.parse_query(safe, ["title", "text"])
        result = self._searcher.search(parsed, limit=k, count=False)
        return [str(self._searcher.doc(addr)["id"][0]) for _score, addr in result.hits]

    def parse(self, query: str, below: tuple[str, float] | None = None) -> tantivy.Query | None:
        """A raw query string as a tantivy query (None when nothing is left to search), with
        `below` = (number field, bound) as a filter: field < bound, applied by the fast field."""
        safe = tantivy_safe_query(query)
        if not safe:
            return None
        parsed = self._index.parse_query(safe, ["title", "text"])
        if below is None:
            return parsed
        field, bound = below
        where = tantivy.Query.range_query(self._schema, field, tantivy.FieldType.Float,
                                          float("-inf"), bound, include_upper=False)
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, parsed),
                                            (tantivy.Occur.Must, where)])

    def top(self, query: tantivy.Query, k: int = 10) -> int:
        """Run a parsed query for its top ``k`` and return how many hits it found, without
        reading their stored ids (what a ranker's own document numbers would give)."""
        _check_k(k)
        return len(self._searcher.search(query, limit=k, count=False).hits)

    def close(self) -> None:
        """Remove the temporary index directory, if the peer made one."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TantivyPeer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
