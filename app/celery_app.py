"""The Celery application, configured for a real deployment.

- JSON only, both ways: nothing is unpickled from the broker.
- `acks_late` with `reject_on_worker_lost`: a task whose worker dies is delivered again, so
  every task is written to be idempotent.
- Prefetch 1: a long task (embedding) never holds queued work hostage behind it.
- Soft and hard time limits per task, results that expire, and publishing that fails fast
  when the broker is down (short connect timeout, one quick retry), so a dead broker costs a
  request a bounded delay, never a hang.

Query-time work (`progsearch.enhance`) goes to its own queue, so index work never delays an
answer a user is waiting for. Training from clicks (`progsearch.learn_clicks`) goes with the
index work; Celery beat sends it when a worker runs with ``--beat``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["INDEX_QUEUE", "INDEX_WORK_EXPIRES", "LEARN_CLICKS", "QUERY_QUEUE", "make_celery",
           "send_index_work"]

QUERY_QUEUE = "progsearch.query"
INDEX_QUEUE = "progsearch.index"
CONNECT_TIMEOUT = 1.0
INDEX_WORK_EXPIRES = 60.0
"""Seconds an unread `progsearch.index_work` message stays in the queue."""
LEARN_CLICKS = "progsearch.learn_clicks"


def make_celery(broker_url: str, result_url: str | None = None,
                learn_every: float = 0.0) -> Celery:
    """The app; ``learn_every`` > 0 adds the beat schedule entry that sends
    `LEARN_CLICKS` every so many seconds (run by a worker started with ``--beat``)."""
    from celery import Celery

    app = Celery("progsearch", broker=broker_url, backend=result_url, set_as_current=False)
    transport: dict[str, Any] = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.1,
        "interval_max": 0.2,
    }
    if broker_url.startswith(("redis://", "rediss://")):
        transport.update(socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=60,
        task_time_limit=90,
        result_expires=3600,
        task_ignore_result=result_url is None,
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        broker_pool_limit=4,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2,
        },
        task_default_queue=INDEX_QUEUE,
        task_routes={"progsearch.enhance": {"queue": QUERY_QUEUE}},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    if learn_every > 0:
        # A late message is worth nothing: the next one comes a period later.
        app.conf.beat_schedule = {LEARN_CLICKS: {
            "task": LEARN_CLICKS, "schedule": learn_every,
            "options": {"queue": INDEX_QUEUE, "expires": learn_every}}}
    return app


def send_index_work(app: Celery) -> None:
    """Publish one `progsearch.index_work` run. Any run catches up with all the work, and
    servers publish again every few seconds while documents wait: an old message is worth
    nothing, so messages expire and none piles up unread."""
    app.send_task("progsearch.index_work", queue=INDEX_QUEUE, expires=INDEX_WORK_EXPIRES)
