"""Task bodies, shared by Celery workers and the server's embedded pool.

A task body is a plain function of a loaded `Engine` and JSON-able arguments; `register`
binds the bodies to a Celery app for worker processes. A worker loads its engine once per
process; the engine follows the index root live (new documents, new snapshot versions).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import redis

from app.announce import channel_for
from app.celery_app import LEARN_CLICKS, send_index_work
from app.click_schedule import ClickSchedule, tick
from app.engine import Engine, SemanticState
from app.index_work import IndexWork
from app.params import SearchParams

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["WorkerContext", "enhance_body", "register", "reply_message"]

log = logging.getLogger(__name__)


def enhance_body(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    """The enhanced phase's payload for one request (`q`, `k`, `prefix`, `vector`)."""
    if engine.semantic_state != SemanticState.READY or engine.enhanced is None:
        raise LookupError(f"enhanced phase unavailable: {engine.semantic_error or 'no passages'}")
    params = SearchParams.from_request(request)
    vector = np.asarray(request["vector"], dtype=np.float32)
    return engine.enhanced_payload(params, vector)


def reply_message(request_id: str, payload: dict[str, Any] | None, error: str = "") -> bytes:
    return orjson.dumps({"id": request_id, "payload": payload, "error": error})


@dataclass
class WorkerContext:
    """What one worker process has loaded: the engine of the index it serves."""

    index: Path
    reply_url: str | None
    compact_changes: int = 50_000
    clicks: ClickSchedule = field(default_factory=ClickSchedule)
    _engine: Engine | None = None
    _work: IndexWork | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _redis: redis.Redis | None = None

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = Engine.open(self.index)
                engine.load_encoder()
                self._engine = engine
                log.info("worker loaded index version %s", engine.version)
            return self._engine

    def index_work(self) -> IndexWork:
        with self._lock:
            if self._work is None:
                self._work = IndexWork(self.index, self.compact_changes,
                                       embedded=self.announce)
            return self._work

    def reply(self, channel: str, message: bytes) -> None:
        if self.reply_url is None:
            raise RuntimeError("no Redis to reply to: set PROGSEARCH_REDIS_URL")
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.reply_url, socket_timeout=1.0,
                                               socket_connect_timeout=1.0)
        self._redis.publish(channel, message)

    def announce(self, seq: int) -> None:
        """Tell the servers' follow hubs that vectors were stored through `seq` (the channel
        their writes are announced on, `app.announce`); without Redis they poll the log."""
        if self.reply_url is not None:
            self.reply(channel_for(self.index), str(seq).encode())


def register(app: Celery, context: WorkerContext) -> None:
    from celery.signals import worker_process_init, worker_ready

    @worker_process_init.connect(weak=False)
    def _warm(**_: Any) -> None:  # pragma: no cover - runs in worker children
        try:
            context.engine()
        except Exception:
            log.exception("worker could not load the index; tasks will retry loading it")

    @app.task(name="progsearch.enhance", soft_time_limit=5, time_limit=10,
              ignore_result=True, acks_late=False)
    def enhance(request: dict[str, Any]) -> None:
        # Not acks_late: a query's answer is worth nothing after its deadline, so a task lost
        # with its worker is not run again. Messages also expire at that deadline.
        request_id, channel = str(request["id"]), str(request["reply_to"])
        try:
            payload = enhance_body(context.engine(), request)
        except Exception as exc:
            log.exception("enhance failed")
            # The reply reaches the client. enhance_body's own LookupError says in plain words
            # why the phase is unavailable; any other exception may name paths or internals,
            # which stay in the worker's log.
            error = str(exc) if type(exc) is LookupError else "the enhanced phase failed"
            context.reply(channel, reply_message(request_id, None, error))
            return
        context.reply(channel, reply_message(request_id, payload))

    @app.task(name="progsearch.index_work", soft_time_limit=3600, time_limit=3660,
              ignore_result=True)
    def index_work() -> None:
        # acks_late (the app's default): a worker killed mid-run has the message delivered
        # again; the run is idempotent and resumes where the stored vectors stop.
        context.index_work().run()

    @app.task(name=LEARN_CLICKS, soft_time_limit=3000, time_limit=3060, ignore_result=True,
              acks_late=False)
    def learn_clicks() -> None:
        # Not acks_late: beat sends the next one a period later, and `tick` (retention, then
        # training when due, under the root's lock) is the servers' embedded task body.
        tick(context.index, context.engine(), context.clicks)

    @worker_ready.connect(weak=False)
    def _catch_up(sender: Any = None, **_: Any) -> None:  # pragma: no cover - worker main
        # Work left by a worker that died (its message may only come back much later) or
        # written while no worker ran: one run on start picks it all up.
        try:
            send_index_work(app)
        except Exception:
            log.exception("could not schedule the start-up index work")
