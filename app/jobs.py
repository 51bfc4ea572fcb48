"""Where the server sends heavy work: Celery workers, or its own embedded pool.

    EmbeddedJobs  no broker configured: the task bodies run on a small thread pool inside
                  the server, so `make demo` needs nothing else
    CeleryJobs    `PROGSEARCH_BROKER_URL` set: tasks are published to the broker and workers
                  (`progsearch worker`, on any machine) publish each answer on a Redis
                  channel this server process listens to

Both raise `JobError` with a stable code when the work cannot be done in time, so the stream
can say which phase failed and why, and go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import anyio
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.celery_app import QUERY_QUEUE, send_index_work
from app.engine import Engine
from app.index_work import IndexWork
from app.tasks import enhance_body

__all__ = ["CeleryJobs", "EmbeddedJobs", "JobError", "Jobs"]

log = logging.getLogger(__name__)


class JobError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Jobs(Protocol):
    mode: str

    async def start(self) -> None: ...

    async def enhance(self, request: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    async def available(self) -> bool:
        """Whether index work can be scheduled now (writes are refused when not)."""
        ...

    async def index_work(self) -> None:
        """Schedule `IndexWork.run` (embedding written documents, compaction when due);
        never raises: work not scheduled now is picked up by a later run."""
        ...

    async def close(self) -> None: ...


class EmbeddedJobs:
    mode = "embedded"

    def __init__(self, engine: Engine, threads: int = 2, work: IndexWork | None = None) -> None:
        self.engine = engine
        self.work = work
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="progsearch-job")
        # Index work has its own thread: an embedding pass never delays a query's phase.
        self._index = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progsearch-index")
        self._queued = False

    async def start(self) -> None:
        return None

    async def enhance(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, enhance_body, self.engine, request)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise JobError("timeout", "the enhanced phase passed its deadline") from None
        except LookupError as exc:
            raise JobError("unavailable", str(exc)) from None

    async def available(self) -> bool:
        return True

    async def index_work(self) -> None:
        if self.work is None or self._queued:
            return  # a run is queued and has not started: it will see this write too
        self._queued = True
        self._index.submit(self._run_index_work)

    def _run_index_work(self) -> None:
        self._queued = False
        assert self.work is not None
        try:
            self.work.run()
        except Exception:
            log.exception("index work failed; the next write retries it")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._index.shutdown(wait=False, cancel_futures=True)


class CeleryJobs:
    """Publishes to the broker on a thread (kombu blocks), with a hard timeout around it, and
    waits for the answer on this process's reply channel. After a failed publish the broker
    is skipped for `backoff` seconds: a dead broker costs one timeout, not one per request."""

    mode = "celery"

    def __init__(self, broker_url: str, reply_url: str, *, publish_timeout: float = 1.0,
                 backoff: float = 2.0) -> None:
        from app.celery_app import make_celery  # Celery loads only where a broker is used

        self.celery = make_celery(broker_url)
        self.reply_url = reply_url
        self.publish_timeout = publish_timeout
        self.backoff = backoff
        self.channel = f"ps1:reply:{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._down_until = 0.0
        self._up_until = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._redis = aioredis.Redis.from_url(reply_url, socket_connect_timeout=1.0)
        self._pubsub: Any = None

    async def start(self) -> None:
        self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Deliver each reply to its waiting request; reconnect if Redis goes away."""
        while True:
            try:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.channel)
                async for message in self._pubsub.listen():
                    self._deliver(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("reply channel lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)

    def _deliver(self, data: Any) -> None:
        if not isinstance(data, bytes):
            return
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        future = self._waiting.get(str(reply.get("id")))
        if future is not None and not future.done():
            future.set_result(reply)

    def _publish(self, request: dict[str, Any], expires: float) -> None:
        self.celery.send_task("progsearch.enhance", args=[request], queue=QUERY_QUEUE,
                              expires=expires)

    async def available(self) -> bool:
        """A connection to the broker, checked at most once a second while it is up."""
        now = time.monotonic()
        if now < self._down_until:
            return False
        if now < self._up_until:
            return True
        try:
            with anyio.fail_after(self.publish_timeout):
                await anyio.to_thread.run_sync(self._connect, abandon_on_cancel=True)
        except Exception as exc:
            self._down_until = time.monotonic() + self.backoff
            log.warning("the broker is unreachable: %s: %s", type(exc).__name__, exc)
            return False
        self._up_until = time.monotonic() + 1.0
        return True

    def _connect(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1,
                                   timeout=self.publish_timeout)

    async def index_work(self) -> None:
        try:
            with anyio.fail_after(self.publish_timeout):
                await anyio.to_thread.run_sync(self._publish_index_work, abandon_on_cancel=True)
        except Exception as exc:
            self._down_until = time.monotonic() + self.backoff
            log.warning("index work not published (%s: %s); a later run catches up",
                        type(exc).__name__, exc)

    def _publish_index_work(self) -> None:
        send_index_work(self.celery)

    async def enhance(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if time.monotonic() < self._down_until:
            raise JobError("unavailable", "the task broker is unreachable")
        deadline = time.monotonic() + timeout
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            message = {**request, "id": request_id, "reply_to": self.channel}
            try:
                with anyio.fail_after(min(self.publish_timeout, timeout)):
                    await anyio.to_thread.run_sync(self._publish, message, timeout,
                                                   abandon_on_cancel=True)
            except Exception as exc:  # kombu raises many kinds; all mean "not published"
                self._down_until = time.monotonic() + self.backoff
                log.warning("publishing to the broker failed: %s: %s", type(exc).__name__, exc)
                raise JobError("unavailable", "the task broker is unreachable") from None
            try:
                reply = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise JobError("timeout", "the enhanced phase passed its deadline") from None
        finally:
            self._waiting.pop(request_id, None)
        if reply.get("error"):
            raise JobError("failed", str(reply["error"]))
        payload: dict[str, Any] = reply["payload"]
        return payload

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        try:
            if self._pubsub is not None:
                await self._pubsub.aclose()
            await self._redis.aclose()
        except (RedisError, OSError):
            pass
