"""`progsearch worker`: a Celery worker for the enhanced phase and index work.

Run one or more on any machine that can reach the broker and Redis and read the index (a
shared or replicated folder); they share the work of every server publishing to that broker.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.celery_app import INDEX_QUEUE, QUERY_QUEUE, make_celery
from app.click_schedule import ClickSchedule
from app.settings import PREFIX, Settings, SettingsError
from app.tasks import WorkerContext, register

__all__ = ["DEFAULT_BROKER", "run_worker"]

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
BEAT_SCHEDULE = ".celerybeat-schedule"
"""Where Celery beat keeps when it last sent each task, in the index root."""


def run_worker(index: Path | None, *, concurrency: int, queues: str | None, log_level: str,
               broker_url: str | None, redis_url: str | None, beat: bool = False) -> int:
    """``beat``: also run Celery beat in this worker (one in the deployment), which sends
    `progsearch.learn_clicks` every `PROGSEARCH_CLICK_TRAIN_SECONDS`."""
    if broker_url:
        os.environ[PREFIX + "BROKER_URL"] = broker_url
    if redis_url:
        os.environ[PREFIX + "REDIS_URL"] = redis_url
    settings = Settings.from_env()
    root = index or settings.index
    if root is None:
        raise SettingsError("no index for the worker: pass DIR or set PROGSEARCH_INDEX")
    broker = settings.broker_url or DEFAULT_BROKER
    reply = settings.reply_url or (broker if broker.startswith("redis") else None)
    app = make_celery(broker, learn_every=settings.click_train_seconds if beat else 0.0)
    register(app, WorkerContext(Path(root), reply, settings.compact_changes,
                                ClickSchedule.of(settings)))
    argv = ["--beat", f"--schedule={Path(root) / BEAT_SCHEDULE}"] if beat else []
    app.worker_main([
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={queues or f'{QUERY_QUEUE},{INDEX_QUEUE}'}",
        f"--loglevel={log_level.upper()}",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
        "--hostname=progsearch@%h",
        *argv,
    ])
    return 0
