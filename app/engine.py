"""The loaded index and its rankers, and the synchronous work of each phase.

Loading does no work proportional to the corpus: arrays are memory-mapped and the store is
opened lazily. The query encoder loads on a background thread; until it is ready the
semantic phase reports `warming_up`.

An index root (a folder with ``CURRENT``) is served live: documents written since its
snapshot (`index.delta`) are a second segment that every phase searches with the snapshot
(`rankers.segment`), and the
index version becomes ``{snapshot}+{seq}``, so cache keys and ETags move with every write.
`Engine.refresh` catches up with the log (about 15 us when nothing changed) and, after a
compaction, moves to the new snapshot; callers take the `Rankers` it returns and use them
for the whole request, so one answer never mixes two snapshots' document numbers.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt

from app.params import SearchParams
from app.payloads import (
    SNIPPET_CHARS,
    corrected_query,
    facets_payload,
    hits_payload,
    phase_payload,
    query_payload,
    structured_payload,
)
from index.core.errors import ModelError, QueryError
from index.core.types import B, Document
from index.snapshot import CURRENT, Snapshot, load_snapshot
from rankers.delta_segment import live_view
from rankers.facets import FacetCounts, count_facets
from rankers.fusion import previous_ranks
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.live import LiveIndex
from rankers.model_store import InstalledModel, load_model, pointer_mtime
from rankers.segment import SegmentView
from rankers.structured import (
    Structured,
    StructuredQueries,
    browse,
    field_values,
    in_order,
)
from rankers.types import KeywordResult

if TYPE_CHECKING:
    # Imported where the encoder loads, on its thread: FAISS and the rest of the semantic
    # stack stay out of the start-up path, which answers keyword queries at once.
    from index.core.encoder import Encoder
    from rankers.enhance import EnhancedRanker, EnhanceSettings
    from rankers.live_source import LiveSource
    from rankers.semantic import SemanticRanker

__all__ = ["Engine", "KeywordState", "Rankers", "SemanticState", "SemanticStatus"]

log = logging.getLogger(__name__)

SORT_DEPTH = 1000
"""With a sort, the keyword event orders this many of the most relevant matches by it."""

MODEL_POLL = 0.05
"""Seconds between two looks at the enhanced model's pointer (``ROOT/models/CURRENT``)."""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class SemanticState(enum.Enum):
    """Where the semantic (and enhanced) phases stand; `.value` is what JSON shows."""

    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


ENCODER_FAILED = "the query encoder failed to load"
"""What clients are told; the exception, which may name server paths, goes to the log only."""


@dataclass(frozen=True)
class SemanticStatus:
    """The state and its reason, replaced together under the engine's lock, so a reader
    never sees a failed state without its message."""

    state: SemanticState
    error: str = ""
    """A plain sentence for clients: never a path, an exception type or its text."""


@dataclass(frozen=True)
class Rankers:
    """What the queries of one snapshot use; replaced whole when a new snapshot is served."""

    snapshot: Snapshot
    keyword: KeywordRanker
    live: LiveIndex | None = None
    """The snapshot plus the delta log (None: a snapshot served as it is)."""
    semantic: SemanticRanker | None = None
    enhanced: EnhancedRanker | None = None
    queries: StructuredQueries | None = None
    """Filters, facets and sorting over the snapshot's schema (None: it has no fields)."""

    @property
    def version(self) -> str:
        return self.live.version if self.live is not None else self.snapshot.version

    @property
    def n_docs(self) -> int:
        return self.live.view().n_docs if self.live is not None else self.snapshot.n_docs

    def view(self, query: Structured | None = None) -> SegmentView | None:
        """The segments a query searches now: the snapshot and the documents written since,
        or None when nothing was and the query has no structured part (each ranker then
        searches the snapshot alone, at no extra cost); with a filter, limited to it."""
        if query is None:
            if self.live is None:
                return None
            return live_view(self.live, self.keyword, self.semantic, self.enhanced)
        assert self.queries is not None
        view, versions = self._segments()
        return self.queries.limit(view, query, versions)

    def admits(self, params: SearchParams, docs: I64) -> B:
        """Which of ``docs`` (current numbers) pass the query's filter: all without one."""
        query = self.structured(params)
        if query is None or query.filter is None:
            return np.ones(docs.size, dtype=bool)
        assert self.queries is not None
        view, versions = self._segments()
        return self.queries.admits(view, query, versions, docs)

    def _segments(self) -> tuple[SegmentView, list[str]]:
        """Every segment, the snapshot's alone too, and each one's version (a filter's masks
        are cached by it)."""
        view = live_view(self.live, self.keyword, self.semantic, self.enhanced, always=True)
        assert view is not None
        return view, [self.snapshot.version, self.version][: len(view.segments)]

    def structured(self, params: SearchParams) -> Structured | None:
        """The checked structured part of a query (None: it has none); `QueryError` (400)."""
        if not params.structured:
            return None
        if self.queries is None:
            raise QueryError("this index has no structured fields to filter, count or sort "
                             "by (see progsearch index --schema)")
        return self.queries.parse(params.filter, params.facets, params.sort)

    @classmethod
    def build(cls, snapshot: Snapshot, keyword: KeywordRanker,
              live: LiveIndex | None) -> Rankers:
        schema = snapshot.manifest.schema
        queries = StructuredQueries(schema.fields) if schema else None
        return cls(snapshot, keyword, live, queries=queries)


@dataclass(frozen=True)
class KeywordState:
    """The keyword phase's candidates, kept for the semantic phase of the same request."""

    plan: QueryPlan
    result: KeywordResult
    rankers: Rankers
    view: SegmentView | None
    """The segments the result numbers documents in (None: the snapshot alone)."""
    query: Structured | None = None
    shown: tuple[I64, F32] | None = None
    """The hits as the keyword event shows them, when a sort or browsing orders them."""

    @property
    def sorted(self) -> bool:
        """A sort orders what every phase shows."""
        return self.query is not None and bool(self.query.sort)

    def in_order(self, docs: I64, scores: F32, k: int) -> tuple[I64, F32]:
        """The top k of a phase's hits in the order they are shown."""
        if self.view is None:  # the snapshot alone, no structured part: relevance
            return docs[:k], scores[:k]
        return in_order(self.view, self.query, docs, scores, k)


class Engine:
    model_poll = MODEL_POLL

    def __init__(self, snapshot: Snapshot, *, encoder: str = "int8", encoder_threads: int = 1,
                 candidates: int = 100, source: LiveSource | None = None,
                 models: Path | None = None) -> None:
        self.source = source
        self.models = models
        """The index root whose ``models/`` holds the enhanced phase's model (None: none)."""
        self.model: InstalledModel | None = None
        self._model_mtime: int | None = None
        self._model_checked = time.monotonic()
        self._load_model()
        live = source.current() if source is not None else None
        if live is not None:
            snapshot = live.snapshot
        keyword = KeywordRanker(snapshot)
        self.rankers = Rankers.build(snapshot, keyword, live)
        self.encoder_kind = encoder
        self.encoder_threads = encoder_threads
        self.candidates = candidates
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()
        self.semantic_status = (
            SemanticStatus(SemanticState.LOADING)
            if snapshot.has_vectors
            else SemanticStatus(SemanticState.UNAVAILABLE, "this index has no vectors")
        )
        self.encoder_fingerprint = ""
        self.started = time.monotonic()

    @classmethod
    def open(cls, path: Path, *, live: bool = True, **kwargs: Any) -> Engine:
        """Serve `path`: an index root live (with its delta log, when the folder is writable),
        or a version folder as it is."""
        path = Path(path)
        root = path if (path / CURRENT).is_file() else None
        if live and root is not None and os.access(path, os.W_OK):
            from rankers.live_source import LiveSource

            snapshot = load_snapshot(path)
            return cls(snapshot, source=LiveSource(path, snapshot=snapshot), models=root,
                       **kwargs)
        return cls(load_snapshot(path), models=root, **kwargs)

    # -- the enhanced phase's model -------------------------------------------------------
    def _load_model(self) -> bool:
        """Load the installed model if its pointer moved since the last look (the first look
        included); whether it did. A broken model keeps the one loaded (`ModelError` at
        start, a logged error after)."""
        if self.models is None:
            return False
        mtime = pointer_mtime(self.models)
        if mtime == self._model_mtime:
            return False
        try:
            model = load_model(self.models)
        except ModelError:
            if self._model_mtime is None and mtime is not None and self.model is None:
                raise
            log.exception("the enhanced phase's new model failed to load; keeping the old one")
            self._model_mtime = mtime
            return False
        self._model_mtime = mtime
        self.model = model
        return True

    def _model_due(self) -> bool:
        """Whether it is time to look at the model's pointer again (every `MODEL_POLL` s,
        as `LiveSource` looks at ``CURRENT``: a stat, about 2 us)."""
        if self.models is None:
            return False
        now = time.monotonic()
        if now - self._model_checked < self.model_poll:
            return False
        self._model_checked = now
        return True

    def _model_moved(self) -> bool:
        assert self.models is not None
        return pointer_mtime(self.models) != self._model_mtime

    def _refresh_model(self) -> None:
        """A newly installed model, in the rankers of the next requests (a request that
        started keeps the rankers it took)."""
        with self._lock:
            if not self._load_model():
                return
            enhanced = self.rankers.enhanced
            if enhanced is not None:
                self.rankers = replace(
                    self.rankers, enhanced=enhanced.with_settings(self._enhance_settings()))
            log.info("enhanced phase ranking with %s", self.model_version)

    @property
    def model_version(self) -> str:
        """The enhanced phase's installed model (``default``: the default weights)."""
        return self.model.version if self.model is not None else "default"

    def _enhance_settings(self) -> EnhanceSettings:
        from rankers.enhance import EnhanceSettings

        if self.model is None:
            return EnhanceSettings()
        return EnhanceSettings(model=self.model.model, model_version=self.model.version)

    # -- the current index --------------------------------------------------------------
    def refresh(self) -> Rankers:
        """The rankers with every change logged so far applied, and the enhanced phase's
        model as installed now (call once per request)."""
        if self._model_due():
            self._refresh_model()
        source = self.source
        if source is None:
            return self.rankers
        live = source.current()
        current = self.rankers
        if live is not current.live:
            with self._lock:
                current = self.rankers
                if live is not current.live:
                    current = self._build(live)
                    self.rankers = current
                    log.info("serving index version %s", live.snapshot.version)
        return current

    async def refresh_async(self) -> Rankers:
        """`refresh` for the event loop: applying writes (analysis) or loading a new version
        (its rankers) runs on a thread, so other requests never wait for it."""
        if self._model_due() and self._model_moved():
            await anyio.to_thread.run_sync(self._refresh_model)
        source = self.source
        if source is None or not source.stale():
            return self.rankers
        return await anyio.to_thread.run_sync(self.refresh)

    def _build(self, live: LiveIndex) -> Rankers:
        """Rankers for a new snapshot (after a compaction); the encoder is kept."""
        snapshot = live.snapshot
        keyword = KeywordRanker(snapshot)
        rankers = Rankers.build(snapshot, keyword, live)
        if self._encoder is not None:
            rankers = self._with_semantic(rankers, self._encoder)
        return rankers

    def _with_semantic(self, rankers: Rankers, encoder: Encoder) -> Rankers:
        from rankers.enhance import EnhancedRanker
        from rankers.semantic import FusionSettings, SemanticRanker

        snapshot = rankers.snapshot
        if not snapshot.has_vectors:
            return rankers
        semantic = SemanticRanker(snapshot, rankers.keyword, encoder,
                                  FusionSettings(candidates=self.candidates))
        enhanced = (EnhancedRanker(snapshot, rankers.keyword, self._enhance_settings())
                    if snapshot.has_passages else None)
        return replace(rankers, semantic=semantic, enhanced=enhanced)

    @property
    def snapshot(self) -> Snapshot:
        return self.rankers.snapshot

    @property
    def version(self) -> str:
        return self.rankers.version

    @property
    def n_docs(self) -> int:
        return self.rankers.n_docs

    @property
    def has_passages(self) -> bool:
        return self.snapshot.has_passages

    @property
    def semantic(self) -> SemanticRanker | None:
        return self.rankers.semantic

    @property
    def enhanced(self) -> EnhancedRanker | None:
        return self.rankers.enhanced

    # -- semantic warm-up ---------------------------------------------------------------
    @property
    def semantic_state(self) -> SemanticState:
        return self.semantic_status.state

    @property
    def semantic_error(self) -> str:
        return self.semantic_status.error

    def start_encoder(self) -> threading.Thread | None:
        if self.semantic_state != SemanticState.LOADING:
            return None
        thread = threading.Thread(target=self._load_encoder, name="encoder-load", daemon=True)
        thread.start()
        return thread

    def load_encoder(self) -> None:
        """Load the encoder on this thread (a worker process wants it before its first task)."""
        self._load_encoder()

    def _load_encoder(self) -> None:
        try:
            from index.core.encoder import Encoder, EncoderConfig

            encoder = Encoder.load(
                EncoderConfig(kind=self.encoder_kind, threads=self.encoder_threads)  # type: ignore[arg-type]
            )
            with self._lock:
                self.rankers = self._with_semantic(self.rankers, encoder)
                self._encoder = encoder
                self.encoder_fingerprint = str(encoder.fingerprint)
                self.semantic_status = SemanticStatus(SemanticState.READY)
            log.info("semantic phase ready after %.1f s", time.monotonic() - self.started)
        except Exception:  # the service goes on with the keyword phase alone
            log.exception("semantic phase failed to load")
            with self._lock:
                self.semantic_status = SemanticStatus(SemanticState.FAILED, ENCODER_FAILED)

    # -- documents ----------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        """A stored document by id, as the current index holds it (None: deleted or unknown)."""
        rankers = self.refresh()
        if rankers.live is None:
            row = rankers.snapshot.docs.lookup(doc_id)
            return None if row is None else rankers.snapshot.docs.get_many([row])[0]
        number = rankers.live.lookup(doc_id)
        return None if number is None else rankers.live.documents([number])[0]

    def is_embedded(self, doc_id: str) -> bool:
        """Whether a current document takes part in the semantic and enhanced phases."""
        rankers = self.rankers
        if rankers.live is None:
            return rankers.snapshot.has_vectors
        number = rankers.live.lookup(doc_id)
        if number is None:
            return False
        view = rankers.live.view()
        slot = number - view.n_snapshot
        if slot < 0:
            return rankers.snapshot.has_vectors
        return slot < view.n_slots and bool(view.embedded[slot])

    # -- phases -------------------------------------------------------------------------
    @staticmethod
    def _hits(rankers: Rankers, docs: I64, scores: F32,
              previous: I64 | None = None) -> list[dict[str, Any]]:
        numbers = [int(d) for d in docs]
        n = rankers.snapshot.n_docs
        rows = [d for d in numbers if d < n]
        shown = iter(rankers.snapshot.docs.get_display(rows, SNIPPET_CHARS + 64))
        delta = rankers.live.view().docs if rankers.live is not None else ()
        stored = [next(shown) if d < n else delta[d - n] for d in numbers]
        return hits_payload(docs, scores, stored, previous)

    def check(self, params: SearchParams) -> SearchParams:
        """The parameters with their structured part checked (`QueryError`: 400) and in its
        canonical form, so that equivalent queries share their cache entries."""
        query = self.rankers.structured(params)
        if query is None:
            return params
        return replace(params, filter=query.filter_text, facets=query.facets,
                       sort=query.sort_text)

    def keyword_state(self, params: SearchParams, depth: int,
                      rankers: Rankers | None = None) -> KeywordState:
        r = rankers or self.rankers  # the request refreshed them as it began
        query = r.structured(params)
        view = r.view(query)
        plan = r.keyword.plan(params.q, prefix=params.prefix, view=view)
        depth = max(depth, params.k, SORT_DEPTH if query is not None and query.sort else 0)
        result = r.keyword.run(plan, depth, view)
        shown = None
        if query is not None:
            assert view is not None
            if not r.keyword.analyzer.words(params.q):
                # Browsing: every document that passes, in the sort order. Only a query with no
                # word browses: one whose words are all unknown matches nothing.
                docs = browse(view, query, params.k)
                shown = (docs, np.zeros(docs.size, dtype=np.float32))
            elif query.sort:
                shown = in_order(view, query, result.docs, result.scores, params.k)
        return KeywordState(plan, result, r, view, query, shown)

    def keyword_payload(self, params: SearchParams, state: KeywordState) -> dict[str, Any]:
        r = state.result
        k = params.k
        docs, scores = state.shown if state.shown is not None else (r.docs[:k], r.scores[:k])
        hits = self._hits(state.rankers, docs, scores)
        extra: dict[str, Any] = {}
        query = state.query
        if query is not None:
            assert state.view is not None
            self._add_fields(state.view, hits, docs)
            extra = structured_payload(query)
            if query.facets:
                words = [w for w, _ in state.plan.words]
                if words or not state.rankers.keyword.analyzer.words(params.q):
                    counts = count_facets(state.view, words, query.facets)
                else:  # words, none of them known: an empty match set, not the whole index
                    counts = [FacetCounts(f, 0) for f in query.facets]
                extra["facets"] = facets_payload(counts)
        return phase_payload(
            "keyword", state.rankers.version, params.q, k, hits,
            **query_payload(r.corrections, r.expansion, r.unknown),
            corrected_query=corrected_query(params.q, r.corrections), **extra,
        )

    @staticmethod
    def _add_fields(view: SegmentView, hits: list[dict[str, Any]], docs: I64) -> None:
        """Each hit's structured fields, read from the columns (what the page filters on)."""
        values = field_values(view, docs)
        for hit, fields in zip(hits, values, strict=True):
            hit["fields"] = fields

    @staticmethod
    def _shown(state: KeywordState, docs: I64, scores: F32, previous: I64, k: int,
               before: Callable[[], I64]) -> tuple[I64, F32, I64]:
        """A later phase's top k as shown, with each hit's rank in the previous phase as that
        one showed it: the phase's own order and previous ranks, or with a sort, the sort's
        order and ranks against `before()`, the previous phase's hits sorted alike."""
        if not state.sorted:
            return docs[:k], scores[:k], previous[:k]
        docs, scores = state.in_order(docs, scores, k)
        return docs, scores, previous_ranks(docs, before())

    def encode(self, text: str) -> F32:
        encoder = self._encoder
        assert encoder is not None
        vector: F32 = encoder.encode_query(text)
        return vector

    def semantic_payload(self, params: SearchParams, state: KeywordState,
                         query_vector: F32) -> dict[str, Any]:
        rankers = state.rankers
        ranker = rankers.semantic
        assert ranker is not None
        if not ranker.keyword.analyzer.words(params.q):
            docs = np.empty(0, dtype=np.int64)
            res_docs, scores, previous = docs, np.empty(0, np.float32), docs
        else:
            depth = self.candidates if state.sorted else params.k
            res = ranker.fuse(state.plan, state.result, query_vector, depth, state.view)
            shown = state.shown
            res_docs, scores, previous = self._shown(
                state, res.docs, res.scores, res.previous, params.k,
                lambda: shown[0] if shown is not None else state.result.docs[: params.k],
            )
        hits = self._hits(rankers, res_docs, scores, previous)
        if state.query is not None and state.view is not None:
            self._add_fields(state.view, hits, res_docs)
        return phase_payload("semantic", rankers.version, params.q, params.k, hits)

    def enhanced_payload(self, params: SearchParams, query_vector: F32) -> dict[str, Any]:
        """The enhanced phase: the semantic phase's candidates re-ranked by their passages.

        It starts from the query and its vector alone (the keyword and semantic steps it needs
        cost about a millisecond), so it can run in another process."""
        rankers = self.refresh()
        semantic, enhanced = rankers.semantic, rankers.enhanced
        if semantic is None or enhanced is None:
            raise LookupError("enhanced phase unavailable: no passages or no encoder")
        vector = np.asarray(query_vector, dtype=np.float32)
        hits: list[dict[str, Any]] = []
        if semantic.keyword.analyzer.words(params.q):
            state = self.keyword_state(params, self.candidates, rankers)
            view = state.view
            depth = self.candidates if state.sorted else params.k
            fused = semantic.fuse(state.plan, state.result, vector, self.candidates, view)
            res = enhanced.rerank(params.q, state.plan, state.result, vector, fused, depth, view)
            marks = dict(zip(res.docs.tolist(), res.highlights, strict=True))
            docs, scores, previous = self._shown(
                state, res.docs, res.scores, res.previous, params.k,
                lambda: state.in_order(fused.docs, fused.scores, params.k)[0],
            )
            hits = self._hits(rankers, docs, scores, previous)
            for hit, doc in zip(hits, docs.tolist(), strict=True):
                hit["highlight"] = marks[doc]
            if state.query is not None and view is not None:
                self._add_fields(view, hits, docs)
        return phase_payload("enhanced", rankers.version, params.q, params.k, hits)

