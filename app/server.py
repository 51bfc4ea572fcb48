"""The Starlette application and its lifespan.

The lifespan loads the snapshot once (memory-mapped, no work proportional to its size),
starts the encoder loading in the background, opens the cache, the store of recent searches
and the click log, and yields the loaded state,
which Starlette copies into every request. Nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette

from app.announce import Announcer, channel_for
from app.cache import make_cache
from app.documents import Writer
from app.engine import Engine, SemanticState
from app.errors import exception_handlers
from app.events import Events
from app.follow_hub import FollowHub
from app.index_work import IndexWork
from app.jobs import CeleryJobs, EmbeddedJobs, Jobs
from app.metrics import Metrics
from app.middleware import middleware
from app.phases import PHASES, Registry
from app.precompute import claim_version, precompute
from app.routes import routes
from app.search import Searcher
from app.searches import make_searches
from app.settings import Settings, SettingsError
from app.stream import DroppedStreamFilter
from index.snapshot import sweep_staging

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0


def create_app(settings: Settings, engine: Engine | None = None,
               phases: Registry = PHASES) -> Starlette:
    """An app serving `settings.index`, or the given already-loaded engine, with these
    phases."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        loaded = engine
        if loaded is None:
            if settings.index is None:
                raise SettingsError("no index to serve: set PROGSEARCH_INDEX")
            loaded = Engine.open(
                settings.index, encoder=settings.encoder,
                encoder_threads=settings.encoder_threads, candidates=settings.candidates,
            )
        loaded.start_encoder()
        metrics = Metrics()
        cache = make_cache(
            settings.redis_url, size=settings.cache_size, ttl=settings.cache_ttl,
            timeout=settings.redis_timeout, backoff=settings.redis_backoff, metrics=metrics,
        )
        follows, announcer = make_follows(settings, loaded, metrics)
        jobs = make_jobs(settings, loaded, _from_thread(follows.announce)
                         if follows is not None else None)
        await jobs.start()
        searches = make_searches(settings)
        searcher = Searcher(loaded, cache, metrics, settings, jobs, phases, searches)
        events = Events.make(settings, loaded, searches, metrics)
        writer = Writer.make(loaded, jobs, settings,
                             follows.announce if follows is not None else None)
        warmer = asyncio.ensure_future(_precompute_when_ready(searcher, settings))
        sweeper = asyncio.ensure_future(_sweep(writer)) if writer is not None else None
        matcher = asyncio.ensure_future(follows.run()) if follows is not None else None
        listener = (asyncio.ensure_future(announcer.listen(follows.heard))
                    if follows is not None and announcer is not None else None)
        learner = _click_learner(settings, loaded)
        log.info("serving %s (%d documents, version %s, cache %s, jobs %s)",
                 loaded.snapshot.folder, loaded.n_docs, loaded.version, cache.backend, jobs.mode)
        # A stream dropped for its frozen client ends with its response unfinished, by design
        # and logged once already: uvicorn's error about it is filtered for those requests.
        dropped = DroppedStreamFilter()
        logging.getLogger("uvicorn.error").addFilter(dropped)
        try:
            yield {"engine": loaded, "searcher": searcher, "metrics": metrics,
                   "settings": settings, "writer": writer, "follows": follows,
                   "events": events}
        finally:
            if follows is not None:
                follows.close_all()
            tasks = [t for t in (warmer, sweeper, matcher, listener, learner) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logging.getLogger("uvicorn.error").removeFilter(dropped)
            await searcher.close()
            await events.close()
            await jobs.close()
            await cache.close()
            if announcer is not None:
                await announcer.close()

    return Starlette(routes=routes, middleware=middleware(settings),
                     exception_handlers=exception_handlers, lifespan=lifespan)


def _click_learner(settings: Settings, engine: Engine) -> asyncio.Future[None] | None:
    """Retention of the click log and training from it (`app.click_schedule`), for an index
    root served live; off with `PROGSEARCH_CLICK_TRAIN_SECONDS=0`."""
    if engine.source is None or settings.click_train_seconds <= 0:
        return None
    from app.click_schedule import ClickSchedule, run_periodically

    return asyncio.ensure_future(
        run_periodically(engine.source.root, engine, ClickSchedule.of(settings)))


async def _sweep(writer: Writer, every: float = SWEEP_SECONDS) -> None:
    """Schedule index work while documents wait for vectors: after a lost message, a broker
    outage, or a restart, they are embedded without waiting for the next write. First, remove
    the folders of builds that died (a compaction killed midway), never a live build's."""
    try:
        for folder in await anyio.to_thread.run_sync(sweep_staging, writer.log.path.parent):
            log.info("removed %s, left by a build that died", folder)
    except OSError:
        log.exception("removing the folders of dead builds failed")
    while True:
        try:
            if await anyio.to_thread.run_sync(writer.pending):
                await writer.jobs.index_work()
        except Exception:  # the next round tries again
            log.exception("checking for pending index work failed")
        await asyncio.sleep(every)


async def _precompute_when_ready(searcher: Searcher, settings: Settings) -> None:
    """After each index change (a new snapshot, or writes: looked at every
    `precompute_interval` seconds), one server, the first to claim the new version, fills the
    shared cache with the most frequent queries' phases."""
    if searcher.cache.backend != "redis" or settings.precompute_top <= 0:
        return
    while searcher.engine.semantic_state == SemanticState.LOADING:
        await asyncio.sleep(0.2)
    done = ""
    while True:
        version = (await searcher.engine.refresh_async()).version
        if version != done:
            try:
                if await claim_version(searcher):
                    await precompute(searcher, settings.precompute_top)
            except Exception:  # warming the cache is an optimisation: log it, never crash
                log.exception("precomputing popular queries failed")
            done = version
        await asyncio.sleep(settings.precompute_interval)


def make_follows(settings: Settings, engine: Engine, metrics: Metrics
                 ) -> tuple[FollowHub | None, Announcer | None]:
    """The follow hub of an index served live (None for a snapshot folder: nothing changes),
    and the Redis announcer of writes between processes when Redis is configured."""
    if engine.source is None:
        return None, None
    announcer = None
    if settings.redis_url:
        announcer = Announcer(settings.redis_url, channel_for(engine.source.root),
                              timeout=settings.redis_timeout, backoff=settings.redis_backoff)
    return FollowHub(engine, settings, metrics, announcer), announcer


def _from_thread(announce: Callable[[int], Coroutine[Any, Any, None]]) -> Callable[[int], None]:
    """`announce(seq)` run on this event loop, callable from the index work's thread."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def start(seq: int) -> None:
        task = loop.create_task(announce(seq))
        running.add(task)
        task.add_done_callback(running.discard)

    def call(seq: int) -> None:
        # The coroutine is made on the loop, so a loop that has closed meanwhile (the server
        # stopped while the index work ran) leaves none unawaited.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(start, seq)

    return call


def make_jobs(settings: Settings, engine: Engine,
              embedded: Callable[[int], None] | None = None) -> Jobs:
    """The embedded pool, or Celery with a broker; `embedded(seq)` hears of vectors the
    embedded pool stored (a Celery worker announces them over Redis itself)."""
    if not settings.broker_url:
        work = None
        if engine.source is not None:
            work = IndexWork(engine.source.root, settings.compact_changes, engine.source.log,
                             embedded)
        return EmbeddedJobs(engine, settings.embedded_threads, work)
    if settings.reply_url is None:
        raise SettingsError(
            "PROGSEARCH_BROKER_URL is not Redis: set PROGSEARCH_REDIS_URL too, for the answers"
        )
    return CeleryJobs(settings.broker_url, settings.reply_url,
                      publish_timeout=settings.publish_timeout)


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` and for each worker of `progsearch serve --workers N`."""
    return create_app(Settings.from_env())
