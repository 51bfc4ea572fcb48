"""`progsearch serve`: run the app under uvicorn, with one or several worker processes.

Settings travel to the workers through the `PROGSEARCH_*` environment: each worker builds
its own app from it, and all of them memory-map the same snapshot, so the operating system
keeps one copy of the index in memory however many workers there are.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import uvicorn

from app.settings import PREFIX, Settings
from app.uvicorn_protocol import HeadLimits, JsonErrorProtocol

__all__ = ["serve"]


def serve(index: Path | None, *, host: str, port: int, workers: int, redis_url: str | None,
          graceful_timeout: int, log_level: str) -> int:
    if index is not None:
        os.environ[PREFIX + "INDEX"] = str(index)
    if redis_url is not None:
        os.environ[PREFIX + "REDIS_URL"] = redis_url
    settings = Settings.from_env()  # fail here, once, on a bad setting, not in every worker
    limits = HeadLimits(settings.max_header_bytes, settings.max_headers, settings.header_timeout)
    logging.getLogger("app").setLevel(log_level.upper())
    uvicorn.run(
        "app.server:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # uvicorn calls its `http` class as a factory of protocols (keyword arguments only), so
        # a partial binds the limits; it pickles, for the worker processes uvicorn spawns.
        http=functools.partial(JsonErrorProtocol, limits=limits),  # type: ignore[arg-type]
        timeout_graceful_shutdown=max(1, graceful_timeout),
        log_level=log_level,
        access_log=False,
    )
    return 0
