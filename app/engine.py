"""The loaded snapshot and its rankers, and the synchronous work of each phase.

Loading does no work proportional to the corpus: arrays are memory-mapped and the store is
opened lazily. The query encoder loads on a background thread; until it is ready the
semantic phase reports `warming_up`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from app.params import SearchParams
from app.payloads import SNIPPET_CHARS, corrected_query, hits_payload, phase_payload, query_payload
from index.snapshot import Snapshot, load_snapshot
from rankers.keyword import KeywordRanker, QueryPlan
from rankers.types import KeywordResult

if TYPE_CHECKING:
    # Imported where the encoder loads, on its thread: FAISS and the rest of the semantic
    # stack stay out of the start-up path, which answers keyword queries at once.
    from rankers.enhance import EnhancedRanker
    from rankers.semantic import SemanticRanker

__all__ = ["Engine", "KeywordState", "SemanticState"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class SemanticState:
    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


@dataclass(frozen=True)
class KeywordState:
    """The keyword phase's candidates, kept for the semantic phase of the same request."""

    plan: QueryPlan
    result: KeywordResult


class Engine:
    def __init__(self, snapshot: Snapshot, *, encoder: str = "int8", encoder_threads: int = 1,
                 candidates: int = 100) -> None:
        self.snapshot = snapshot
        self.keyword = KeywordRanker(snapshot)
        self.encoder_kind = encoder
        self.encoder_threads = encoder_threads
        self.candidates = candidates
        self.semantic: SemanticRanker | None = None
        self.enhanced: EnhancedRanker | None = None
        self.has_passages = bool((snapshot.manifest.get("vectors") or {}).get("passages"))
        self.semantic_state = (
            SemanticState.LOADING if snapshot.has_vectors else SemanticState.UNAVAILABLE
        )
        self.semantic_error = "" if snapshot.has_vectors else "this index has no vectors"
        self.encoder_fingerprint = ""
        self.started = time.monotonic()

    @classmethod
    def open(cls, path: Path, **kwargs: Any) -> Engine:
        return cls(load_snapshot(path), **kwargs)

    @property
    def version(self) -> str:
        return self.snapshot.version

    @property
    def n_docs(self) -> int:
        return self.snapshot.n_docs

    # -- semantic warm-up ---------------------------------------------------------------
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
            from rankers.encoder import Encoder, EncoderConfig
            from rankers.enhance import EnhancedRanker
            from rankers.semantic import FusionSettings, SemanticRanker

            encoder = Encoder.load(
                EncoderConfig(kind=self.encoder_kind, threads=self.encoder_threads)  # type: ignore[arg-type]
            )
            self.semantic = SemanticRanker(
                self.snapshot, self.keyword, encoder,
                FusionSettings(candidates=self.candidates),
            )
            if self.has_passages:
                self.enhanced = EnhancedRanker(self.snapshot, self.keyword)
            self.encoder_fingerprint = str(encoder.fingerprint)
            self.semantic_state = SemanticState.READY
            log.info("semantic phase ready after %.1f s", time.monotonic() - self.started)
        except Exception as exc:  # the service goes on with the keyword phase alone
            log.exception("semantic phase failed to load")
            self.semantic_error = f"{type(exc).__name__}: {exc}"
            self.semantic_state = SemanticState.FAILED

    # -- phases -------------------------------------------------------------------------
    def _hits(self, docs: npt.NDArray[np.int64], scores: F32,
              previous: npt.NDArray[np.int64] | None = None) -> list[dict[str, Any]]:
        stored = self.snapshot.docs.get_display([int(d) for d in docs], SNIPPET_CHARS + 64)
        return hits_payload(docs, scores, stored, previous)

    def keyword_state(self, params: SearchParams, depth: int) -> KeywordState:
        plan = self.keyword.plan(params.q, prefix=params.prefix)
        return KeywordState(plan, self.keyword.run(plan, max(depth, params.k)))

    def keyword_payload(self, params: SearchParams, state: KeywordState) -> dict[str, Any]:
        r = state.result
        k = params.k
        return phase_payload(
            "keyword", self.version, params.q, k,
            self._hits(r.docs[:k], r.scores[:k]),
            **query_payload(r.corrections, r.expansion, r.unknown),
            corrected_query=corrected_query(params.q, r.corrections),
        )

    def encode(self, text: str) -> F32:
        ranker = self.semantic
        assert ranker is not None
        vector: F32 = ranker.encoder.encode_query(text)
        return vector

    def semantic_payload(self, params: SearchParams, state: KeywordState,
                         query_vector: F32) -> dict[str, Any]:
        ranker = self.semantic
        assert ranker is not None
        if not self.keyword.analyzer.words(params.q):
            docs = np.empty(0, dtype=np.int64)
            res_docs, scores, previous = docs, np.empty(0, np.float32), docs
        else:
            res = ranker.fuse(state.plan, state.result, query_vector, params.k)
            res_docs, scores, previous = res.docs, res.scores, res.previous
        return phase_payload(
            "semantic", self.version, params.q, params.k,
            self._hits(res_docs, scores, previous),
        )

    def enhanced_payload(self, params: SearchParams, query_vector: F32) -> dict[str, Any]:
        """The enhanced phase: the semantic phase's candidates re-ranked by their passages.

        It starts from the query and its vector alone (the keyword and semantic steps it needs
        cost about a millisecond), so it can run in another process."""
        semantic, enhanced = self.semantic, self.enhanced
        assert semantic is not None and enhanced is not None
        vector = np.asarray(query_vector, dtype=np.float32)
        hits: list[dict[str, Any]] = []
        if self.keyword.analyzer.words(params.q):
            state = self.keyword_state(params, self.candidates)
            fused = semantic.fuse(state.plan, state.result, vector, self.candidates)
            res = enhanced.rerank(params.q, state.plan, state.result, vector, fused, params.k)
            hits = self._hits(res.docs, res.scores, res.previous)
            for hit, highlight in zip(hits, res.highlights, strict=True):
                hit["highlight"] = highlight
        return phase_payload("enhanced", self.version, params.q, params.k, hits)
