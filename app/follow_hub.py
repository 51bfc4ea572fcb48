"""The open follows of one server process, and the matching of writes to them.

`FollowHub.run` (a task of the lifespan) wakes on every write announced (this process's own,
or another's over Redis, `app.announce`), or every `POLL_SECONDS` while Redis is down. It
refreshes the engine's view of the delta log, reads the changes it has not matched yet, and
on a thread asks the `rankers.percolate.Percolator` which follows they can change:

- a follow sharing an analyzed term with a new document is re-run only when the document's
  BM25 score for its query passes its current k-th score (`QueryWeights`), or when it is sorted
  or lists every document (a filter or sort with no words);
- a follow showing a rewritten or deleted id is re-run;
- after a compaction (a new snapshot) every follow is re-run once.

A re-run is the keyword phase itself (`Engine.keyword_state`, filter, sort and facets
included), so an update ranks exactly as a new search would. When its ids differ from the
follow's last ranking, or a shown document was rewritten, the ranking goes to the follow's
slot (`app.follow.Follow.offer`). The hub never waits for a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from app.announce import Announcer
from app.engine import Engine, Rankers
from app.errors import ApiError
from app.follow import Follow, Ranked
from app.metrics import Metrics
from app.params import SearchParams
from app.settings import Settings
from index.core.errors import QueryError
from index.core.types import F32, I64, Document
from index.delta import Change, DeltaTruncatedError
from rankers.delta_segment import live_view
from rankers.percolate import Percolator, QueryVectors, QueryWeights, term_scores

if TYPE_CHECKING:
    from index.analyzer import Analyzer

__all__ = ["POLL_SECONDS", "FollowHub", "query_terms"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
"""How often the log is polled while write announcements are down."""
CHECK_SECONDS = 0.2
"""How often the hub looks for a change nobody announced while Redis is up: a compaction, or
vectors stored by the index work (about 15 us a look)."""
RANKED_PHASES = ("semantic", "enhanced")
"""The phases besides the keyword one that a follow's updates can be ranked by."""
UNARMED_SECONDS = 120.0
"""A follow whose phases have not all been sent after this long is released."""


def query_terms(rankers: Rankers, params: SearchParams) -> set[str]:
    """The index terms a follow can ever match: its words as typed, stemmed, plus what the
    plan searches for them now (corrections, completions)."""
    analyzer = rankers.keyword.analyzer
    terms = {token.term for token in analyzer.tokens(params.q)}
    plan = rankers.keyword.plan(params.q, prefix=params.prefix, view=rankers.view())
    terms.update(word for word, _ in plan.words)
    return terms


def _numbers(rankers: Rankers, ids: Iterable[str]) -> I64:
    """The current numbers of `ids`, those deleted or unknown left out."""
    lookup = rankers.live.lookup if rankers.live is not None else rankers.snapshot.docs.lookup
    found = (lookup(doc_id) for doc_id in ids)
    return np.asarray([n for n in found if n is not None], dtype=np.int64)


def _written(rankers: Rankers, write: _Write) -> I64:
    """The current numbers of the documents a write stored (none without a delta)."""
    return _numbers(rankers, write.terms) if rankers.live is not None else np.empty(0, np.int64)


def _admitted(rankers: Rankers, follows: dict[int, Follow], docs: I64, keys: set[int]
              ) -> set[int]:
    """Of the follows `keys` a gate let through for the new documents `docs`, those whose
    filter one of them passes: a document outside a follow's filter cannot enter it. Each
    distinct filter is evaluated once (its masks are the ones the re-run search reads)."""
    if rankers.queries is None or docs.size == 0:
        return keys
    passes: dict[str, bool] = {}
    out = set()
    for key in keys:
        params = follows[key].params
        if params.filter and params.filter not in passes:
            try:
                passes[params.filter] = bool(rankers.admits(params, docs).any())
            except QueryError:  # the schema changed under it: let the re-run say so
                passes[params.filter] = True
        if not params.filter or passes[params.filter]:
            out.add(key)
    return out


def _model_of(rankers: Rankers) -> str:
    """What ranks the enhanced phase now (``default`` without one, or without the phase)."""
    return rankers.enhanced.version if rankers.enhanced is not None else "default"


def _terms(analyzer: Analyzer, doc: Document) -> frozenset[str]:
    """A document's index terms, as the matcher compares them with the follows' queries."""
    return frozenset(analyzer.terms(f"{doc.title} {doc.text}"))


@dataclass(frozen=True)
class _Write:
    """What a batch of changes wrote: the new documents' terms, every id touched, and the
    documents whose vectors were stored."""

    terms: dict[str, frozenset[str]]
    """Upserted id -> its document's index terms."""
    ids: frozenset[str]
    embedded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, changes: list[Change], rankers: Rankers) -> _Write:
        analyzer = rankers.keyword.analyzer
        terms: dict[str, frozenset[str]] = {}
        ids: set[str] = set()
        embedded: set[str] = set()
        for change in changes:
            if change.op == "vectors":
                embedded.add(change.id)
                continue
            ids.add(change.id)
            terms.pop(change.id, None)
            doc: Document | None = change.document
            if change.op == "upsert" and doc is not None:
                terms[change.id] = _terms(analyzer, doc)
        return cls(terms, frozenset(ids), frozenset(embedded))

    @property
    def all_terms(self) -> set[str]:
        out: set[str] = set()
        for terms in self.terms.values():
            out |= terms
        return out


class FollowHub:
    def __init__(self, engine: Engine, settings: Settings, metrics: Metrics,
                 announcer: Announcer | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.announcer = announcer
        self.percolator: Percolator[int] = Percolator()
        self.vectors: QueryVectors[int] = QueryVectors()
        self.weights: QueryWeights[int] = QueryWeights()
        self._follows: dict[int, Follow] = {}
        self._clients: Counter[str] = Counter()
        self._next = 0
        self._dirty: set[int] = set()
        self._held: dict[int, set[str]] = {}
        """Per follow ranked by a semantic phase, shown ids rewritten and waiting for their
        vectors (`_touched`)."""
        self._wake = asyncio.Event()
        live = engine.rankers.live
        self._seen = live.seq if live is not None else 0
        self._snapshot = engine.snapshot.version
        self._model = _model_of(engine.rankers)
        """The enhanced phase's model the follows were last ranked with."""
        self._closed = False
        self._swept = 0.0
        self.matched = 0
        """Follows re-run so far (benchmarks read it)."""

    def __len__(self) -> int:
        return len(self._follows)

    def __iter__(self) -> Iterator[Follow]:
        return iter(list(self._follows.values()))

    @property
    def announcements(self) -> str:
        """How writes of other processes reach this one: `redis`, `down` (polling the log) or
        `local` (no Redis configured: this process's writes only, and polling)."""
        if self.announcer is None:
            return "local"
        return "redis" if self.announcer.up else "down"

    # -- follows -------------------------------------------------------------------------
    def open(self, params: SearchParams, client: str, stream_version: str) -> Follow:
        """Reserve a follow for a stream about to start (429 past the per-client limit, so
        the refusal comes before any byte of the stream); `arm` it once its phases are sent."""
        limit = self.settings.follow_per_client
        if self._closed:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        if self._clients[client] >= limit:
            raise ApiError(429, "too_many_follows",
                           f"this client has {self._clients[client]} open follows (at most "
                           f"{limit}); close one first", headers={"Retry-After": "5"})
        self._next += 1
        follow = Follow(self._next, params, client, stream_version, (), (), 0)
        self._follows[follow.key] = follow
        self._clients[client] += 1
        self.metrics.open_follows.inc()
        return follow

    def arm(self, follow: Follow, ranked: tuple[str, ...], sent: tuple[str, ...],
            last_n: int, phase: str = "keyword", vector: F32 | None = None) -> None:
        """Start matching writes to a follow whose client shows `sent` and whose keyword
        ranking was `ranked`. It is re-run once at once, so a write between its phases and
        now is not missed (and sends nothing when the ranking is the same)."""
        if follow.key not in self._follows:
            return
        follow.ranked, follow.sent, follow.shown, follow.last_n = ranked, sent, sent, last_n
        follow.phase = phase if phase in RANKED_PHASES and vector is not None else "keyword"
        follow.vector = vector if follow.phase != "keyword" else None
        if follow.vector is not None:
            self.vectors.add(follow.key, follow.vector)
        follow.take()
        rankers = self.engine.rankers
        every = not rankers.keyword.analyzer.words(follow.params.q)
        self.percolator.add(follow.key, query_terms(rankers, follow.params), every=every)
        self.percolator.show(follow.key, {*ranked, *sent})
        follow.armed = True
        self._dirty.add(follow.key)
        self._wake.set()

    def close(self, follow: Follow) -> None:
        if self._follows.pop(follow.key, None) is None:
            return
        self.percolator.remove(follow.key)
        self.vectors.remove(follow.key)
        self.weights.remove(follow.key)
        self._dirty.discard(follow.key)
        self._held.pop(follow.key, None)
        self._clients[follow.client] -= 1
        if self._clients[follow.client] <= 0:
            del self._clients[follow.client]
        self.metrics.open_follows.dec()

    async def announce(self, seq: int) -> None:
        """This process wrote `seq`: match it here, and tell the other processes."""
        self.heard(seq)
        if self.announcer is not None:
            await self.announcer.publish(seq)

    def heard(self, seq: int | None = None) -> None:
        """A write was announced (None: some may have been missed): match what is new. This
        process hears its own announcements too, usually matched by then: those are skipped."""
        if seq is None or seq > self._seen:
            self._wake.set()

    # -- matching ------------------------------------------------------------------------
    async def run(self) -> None:
        """Match writes to follows until cancelled."""
        while not self._closed:
            polling = self.announcer is None or not self.announcer.up
            with anyio.move_on_after(POLL_SECONDS if polling else CHECK_SECONDS):
                await self._wake.wait()
            woken = self._wake.is_set()
            self._wake.clear()
            if not woken and not self._behind():
                continue
            try:
                await self.match_once()
            except Exception:  # the next write tries again
                log.exception("matching writes to follows failed")

    def _behind(self) -> bool:
        """Something changed that the follows were not matched with (about 15 us): a write,
        a new snapshot, or a newly installed model of the enhanced phase."""
        source = self.engine.source
        if self._dirty or (source is not None and source.stale()):
            return True
        rankers = self.engine.refresh()  # looks at the model's pointer when due (a stat)
        live = rankers.live
        return (live is not None and live.seq > self._seen) or (
            rankers.snapshot.version != self._snapshot) or _model_of(rankers) != self._model

    async def match_once(self) -> None:
        self._drop_unarmed()
        rankers = await self.engine.refresh_async()
        follows = {k: f for k, f in self._follows.items() if f.armed}
        dirty, self._dirty = self._dirty, set()
        offers = await anyio.to_thread.run_sync(self._match, rankers, follows, dirty)
        for key, ranked in offers:
            follow = self._follows.get(key)
            if follow is None or not follow.armed:
                continue
            follow.kth, follow.words, follow.unplanned = ranked.kth, ranked.words, ranked.unplanned
            follow.floor = ranked.floor
            follow.known = True
            self.weights.weigh(key, ranked.words, ranked.kth)
            follow.ranked = ranked.keyword_ids
            if follow.vector is not None:
                self.vectors.set_bar(key, ranked.bar)
            self.percolator.show(key, {*ranked.keyword_ids, *ranked.ids})
            if ranked.ids != follow.shown or ranked.rewritten:
                follow.shown = ranked.ids
                follow.offer(ranked)

    def _match(self, rankers: Rankers, follows: dict[int, Follow], dirty: set[int]
               ) -> list[tuple[int, Ranked]]:
        live = rankers.live
        seq = live.seq if live is not None else 0
        rerun = {k for k in dirty if k in follows}
        gated: set[int] = set()
        write = _Write({}, frozenset())
        if rankers.snapshot.version != self._snapshot:  # a compaction: re-run every follow
            self._snapshot = rankers.snapshot.version
            rerun = set(follows)
        if _model_of(rankers) != self._model:  # a new model: re-rank every enhanced follow
            self._model = _model_of(rankers)
            rerun |= {k for k, f in follows.items() if f.phase == "enhanced"}
        if seq > self._seen and self.engine.source is not None and follows:
            # With no follow open, a write (of thousands of documents, maybe) is not read
            # again nor analyzed: nothing can be matched to it.
            try:
                changes = [c for c in self.engine.source.log.changes_since(self._seen)
                           if c.seq <= seq]
            except DeltaTruncatedError:  # folded into the new snapshot: re-run them all
                changes, rerun = [], set(follows)
            write = _Write.of(changes, rankers)
            by_term, by_id = self.percolator.candidates(write.all_terms, write.ids)
            rerun |= self._touched(rankers, follows, by_id, write)
            # A follow ranked by a semantic phase takes a document in once it has vectors:
            # its words are matched then (`_embedded_by_words`), not now.
            gated = {k for k in by_term if k in follows and follows[k].vector is None} - rerun
        self._seen = max(self._seen, seq)
        written = _written(rankers, write)
        rerun |= _admitted(rankers, follows, written,
                           self._gate(rankers, {k: follows[k] for k in gated}, write, written))
        embedded = self._embedded_rows(rankers, write.embedded)
        rerun |= _admitted(rankers, follows, embedded, {
            *(k for k in self._near(rankers, embedded) if k in follows),
            *self._embedded_by_words(rankers, follows, write, embedded)})
        embedded_again: dict[int, set[str]] = {}
        for key, ids in list(self._held.items()):
            done = ids & write.embedded
            if done and key in follows:
                embedded_again[key] = done
                rerun.add(key)
                ids -= done
            if not ids or key not in self._follows:
                self._held.pop(key, None)  # (`close` may pop it meanwhile, on the loop)
        self.matched += len(rerun)
        out = []
        for key in rerun:
            follow = follows[key]
            ranked = self._rank(rankers, follow, seq)
            again = embedded_again.get(key, set())
            rewritten = frozenset(
                ((set(write.terms) & set(follow.shown)) | again) & set(ranked.ids))
            if rewritten:
                ranked = replace(ranked, rewritten=rewritten)
            out.append((key, ranked))
        return out

    def _touched(self, rankers: Rankers, follows: dict[int, Follow], by_id: set[int],
                 write: _Write) -> set[int]:
        """The follows to re-run because a write touched an id they show. A keyword follow is
        re-run at once. One ranked by a semantic phase is re-run when a shown document was
        deleted, or rewritten with its vectors already; a shown document rewritten without
        them is held (`_held`) until they are stored, then re-run and marked `changed`, so it
        does not leave the list and come back as new meanwhile."""
        live, view = rankers.live, rankers.view()
        out: set[int] = set()
        for key in by_id:
            follow = follows.get(key)
            if follow is None:
                continue
            if follow.vector is None or live is None or view is None:
                out.add(key)
                continue
            shown = write.ids & set(follow.shown)
            rewritten = shown & set(write.terms)
            if shown - rewritten:  # deleted
                out.add(key)
            ready = {i for i in rewritten
                     if (row := _numbers(rankers, (i,))).size and bool(view.embedded(row)[0])}
            if ready:
                out.add(key)
            if rewritten - ready:
                self._held.setdefault(key, set()).update(rewritten - ready)
        return out

    def _gate(self, rankers: Rankers, follows: dict[int, Follow], write: _Write, docs: I64
              ) -> set[int]:
        """The follows sharing a term with a new document that it can enter: the documents are
        scored exactly for every follow's query at once (each document term's BM25
        contribution once, `term_scores`, then added into every follow holding the term,
        `QueryWeights.entering`), against each follow's k-th score. A sorted or browsing
        follow, or one whose query had words it could not search, is re-run whenever a term
        is shared. `docs`: the write's documents' numbers (`_written`)."""
        view = rankers.view()
        if view is None:
            return set(follows)
        if docs.size == 0:
            return set()
        terms = write.all_terms
        plain: dict[int, Follow] = {}
        rerun: set[int] = set()
        for key, follow in follows.items():
            params = follow.params
            if not follow.known or params.sort or not follow.words or follow.unplanned & terms:
                rerun.add(key)
            else:
                plain[key] = follow
        scores = term_scores(view, self.percolator.indexed(terms), docs)
        entering = self.weights.entering(scores, int(docs.size))
        rerun |= set(plain) & entering
        return rerun

    def _embedded_by_words(self, rankers: Rankers, follows: dict[int, Follow], write: _Write,
                           docs: I64) -> set[int]:
        """The follows ranked by a semantic phase that a newly embedded document can enter by
        its words as well as its meaning (their fusion counts its BM25 too, so one whose
        cosine stays under the bar may still come in). A follow of the semantic phase, whose
        fused score is BM25 beyond a bar plus a scaled cosine, is re-run when the document's
        whole BM25 for its query plus its scaled cosine passes its k-th fused score (`floor`);
        an enhanced one when the document enters its keyword top k (`_gate`). `docs`: the
        embedded documents' numbers (`_embedded_rows`)."""
        view = rankers.view()
        if not write.embedded or not len(self.vectors) or view is None:
            return set()
        analyzer = rankers.keyword.analyzer
        terms: dict[str, frozenset[str]] = {}
        for doc_id in write.embedded:
            doc = self.engine.document(doc_id)
            if doc is not None:
                terms[doc_id] = _terms(analyzer, doc)
        words = _Write(terms, frozenset())
        by_term, _ = self.percolator.candidates(words.all_terms, ())
        ranked = {k: follows[k] for k in by_term if k in follows and follows[k].vector is not None}
        fusion = rankers.semantic.fusion if rankers.semantic is not None else None
        fused = {k: f for k, f in ranked.items()
                 if f.phase == "semantic" and f.floor is not None and f.known
                 and not f.params.sort and not f.unplanned and fusion is not None
                 and fusion.method == "evidence"}
        rerun = self._gate(rankers, {k: f for k, f in ranked.items() if k not in fused}, words,
                           _written(rankers, words))
        if not fused or docs.size == 0 or fusion is None:
            return rerun
        scores = term_scores(view, self.percolator.indexed(words.all_terms), docs)
        dim = self.vectors.dim
        vectors = view.vectors(docs, dim)
        totals = self.weights.totals(fused, scores, int(docs.size))
        for key, follow in fused.items():
            assert follow.vector is not None and follow.floor is not None
            bm25 = totals.get(key, np.zeros(docs.size, dtype=np.float32))
            best = bm25 + fusion.dense_scale * (vectors @ follow.vector)
            if float(best.max()) * (1 + 1e-4) > follow.floor:
                rerun.add(key)
        return rerun

    def _embedded_rows(self, rankers: Rankers, embedded: frozenset[str]) -> I64:
        """The numbers of the newly embedded documents that are current and have vectors in
        the view (none when no follow is ranked by a semantic phase)."""
        live, view = rankers.live, rankers.view()
        if not embedded or not len(self.vectors) or live is None or view is None:
            return np.empty(0, np.int64)
        docs = _numbers(rankers, embedded)
        return docs[view.embedded(docs)] if docs.size else docs

    def _near(self, rankers: Rankers, docs: I64) -> set[int]:
        """The follows ranked by a semantic phase that one of the newly embedded `docs` can
        enter: its vector against every open query vector, in one product (`QueryVectors`)."""
        view = rankers.view()
        if docs.size == 0 or view is None or self.vectors.dim == 0:
            return set()
        return self.vectors.near(view.vectors(docs, self.vectors.dim))

    def _bar(self, rankers: Rankers, ids: tuple[str, ...], vector: F32, k: int) -> float:
        """The lowest cosine between the query and the documents shown (-1 when fewer than
        k are shown with vectors: any embedded document may enter)."""
        view = live_view(rankers.live, rankers.keyword, rankers.semantic, rankers.enhanced,
                         always=True)  # with nothing written yet too: the snapshot alone
        if view is None or len(ids) < k:
            return -1.0
        docs = _numbers(rankers, ids)
        if docs.size < k or not bool(view.embedded(docs).all()):
            return -1.0
        return float((view.vectors(docs, vector.size) @ vector).min())

    def _rank(self, rankers: Rankers, follow: Follow, seq: int) -> Ranked:
        """The follow re-run: its keyword ranking (the bar for keyword matches), and for a
        follow shown by a semantic phase, that phase's ranking, which the update shows."""
        params = follow.params
        state = self.engine.keyword_state(params, params.k, rankers)
        payload: dict[str, Any] = self.engine.keyword_payload(params, state)
        hits = [{k: v for k, v in hit.items() if k != "previous_rank"} for hit in payload["hits"]]
        scores = state.result.scores
        kth = float(scores[params.k - 1]) if scores.size >= params.k else None
        words = state.plan.words
        typed = {token.term for token in rankers.keyword.analyzer.tokens(params.q)}
        unplanned = frozenset(typed - {w for w, _ in words})
        ids = tuple(h["id"] for h in hits)
        ranked = Ranked(seq, rankers.version, ids, hits, kth, words=words, unplanned=unplanned,
                        keyword_ids=ids)
        vector = follow.vector
        if vector is None or rankers.semantic is None:
            return ranked
        if follow.phase == "enhanced" and rankers.enhanced is not None:
            payload = self.engine.enhanced_payload(params, vector)
        else:
            deep = self.engine.keyword_state(params, self.engine.candidates, rankers)
            payload = self.engine.semantic_payload(params, deep, vector)
        hits = [{k: v for k, v in hit.items() if k != "previous_rank"} for hit in payload["hits"]]
        ids = tuple(h["id"] for h in hits)
        floor = None
        if follow.phase == "semantic" and len(hits) >= params.k and not params.sort:
            floor = min(float(h["score"]) for h in hits)
        return replace(ranked, ids=ids, hits=hits, phase=follow.phase,
                       bar=self._bar(rankers, ids, vector, params.k), floor=floor)

    def _drop_unarmed(self) -> None:
        """Release follows reserved for a stream that never started (its client left before
        the response began), so they do not count against the client's limit forever.
        Looked for at most once a second: it walks every follow."""
        now = time.monotonic()
        if now - self._swept < 1.0:
            return
        self._swept = now
        for follow in list(self._follows.values()):
            if not follow.armed and now - follow.opened > UNARMED_SECONDS:
                self.close(follow)

    # -- shutdown ------------------------------------------------------------------------
    def close_all(self) -> None:
        """End every follow (their streams finish cleanly) and refuse new ones."""
        self._closed = True
        for follow in list(self._follows.values()):
            follow.end()
        self._wake.set()
