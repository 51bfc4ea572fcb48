"""Single flight: concurrent callers asking for the same key share one computation.

The first caller runs the work in its own task, so a caller that goes away (a dropped client,
or a phase past its deadline) does not cancel the result the others are waiting for. When
every caller has gone, nobody awaits the task any more: its exception is retrieved here, or
asyncio would log "Task exception was never retrieved" when it is collected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight", "consume"]

T = TypeVar("T")


def consume(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's exception as retrieved (whoever awaits it still gets it)."""
    if not task.cancelled():
        task.exception()


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of `work`, and whether this caller shared another caller's run."""
        task = self._running.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda _t: self._running.pop(key, None))
            task.add_done_callback(consume)
        # shield: cancelling one waiter must not cancel the work the others await.
        return await asyncio.shield(task), shared

    async def drain(self) -> None:
        """Cancel what is still running (at shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
