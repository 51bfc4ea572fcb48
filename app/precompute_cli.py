"""`progsearch precompute`: load an index and its encoder here, and fill the Redis cache."""

from __future__ import annotations

from pathlib import Path

from app.cache import RedisCache
from app.engine import Engine
from app.jobs import EmbeddedJobs
from app.metrics import Metrics
from app.precompute import precompute
from app.search import Searcher
from app.settings import Settings

__all__ = ["run_precompute"]


async def run_precompute(index: Path, redis_url: str, top: int) -> int:
    settings = Settings.from_env()
    engine = Engine.open(index, encoder=settings.encoder, candidates=settings.candidates)
    engine.load_encoder()
    metrics = Metrics()
    cache = RedisCache(redis_url, settings.cache_ttl, timeout=1.0, backoff=0.0, metrics=metrics)
    jobs = EmbeddedJobs(engine)
    # Generous deadlines: nobody is waiting on this run.
    relaxed = Settings(**{**settings.__dict__, "semantic_timeout": 30.0,
                          "enhanced_timeout": 30.0, "keyword_timeout": 30.0})
    searcher = Searcher(engine, cache, metrics, relaxed, jobs)
    try:
        return await precompute(searcher, top)
    finally:
        await searcher.close()
        await jobs.close()
        await cache.close()
