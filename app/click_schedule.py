"""When the enhanced phase is trained from clicks: retention, the threshold, one trainer.

`tick` is one look at an index root's click log: apply the retention limits, and when at
least ``min_clicks`` clicks arrived since the last training, train (`app.click_train`). It is
run two ways, with the same body:

- embedded: `run_periodically`, an asyncio task of each server's lifespan, every
  `PROGSEARCH_CLICK_TRAIN_SECONDS`, the work on a thread (never on the event loop);
- distributed: the Celery task ``progsearch.learn_clicks`` (`app.tasks`), which Celery beat
  sends on the same period when a worker runs with ``--beat``.

Several servers (and workers) share one root: training holds ``ROOT/.clicks-train.lock``
(`index.filelock`, not waiting), and what the last training saw is in
``ROOT/clicks-trained.json`` (the log's last event number and the time it started), so
whoever takes the lock next knows whether enough clicks arrived since, whichever process
trained before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from app.click_log import ClickLog
from app.engine import Engine, SemanticState
from app.settings import Settings
from index.core.atomic import write_atomic
from index.filelock import file_lock

if TYPE_CHECKING:
    # The training imports the enhanced stack; servers and workers load it only to train.
    from app.click_train import ClickReport

__all__ = ["LOCK", "MARKER", "ClickSchedule", "Marker", "clicks_since", "read_marker",
           "run_periodically", "tick"]

log = logging.getLogger(__name__)

LOCK = ".clicks-train.lock"
MARKER = "clicks-trained.json"
LATE_CLICK_S = 24 * 3600.0
"""How long after its search a click is still counted as new (a click comes within minutes)."""


@dataclass(frozen=True)
class ClickSchedule:
    every_s: float = 600.0
    min_clicks: int = 200
    max_age_s: float = 30 * 86400.0
    max_searches: int = 1_000_000
    eta: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> ClickSchedule:
        return cls(settings.click_train_seconds, settings.click_train_min,
                   settings.click_max_age_days * 86400.0, settings.click_max_searches,
                   settings.click_eta)


@dataclass(frozen=True)
class Marker:
    """What the last training saw: the log's newest event number and when it started."""

    seq: int = 0
    at: float = 0.0


def read_marker(root: Path) -> Marker:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
        return Marker(int(data["seq"]), float(data["at"]))
    except FileNotFoundError:
        return Marker()
    except (ValueError, KeyError, TypeError):
        log.warning("%s is unreadable: counting every click as new", MARKER)
        return Marker()


def _write_marker(root: Path, marker: Marker, report: ClickReport) -> None:
    text = json.dumps({"seq": marker.seq, "at": marker.at, "installed": report.installed,
                       "report": report.lines()}, indent=1)
    write_atomic(root / MARKER, text)


def clicks_since(clicks: ClickLog, marker: Marker, at_least: int) -> int:
    """The clicks that arrived after ``marker``, counted exactly only when the events since
    (clicks and dwells: a bound that costs one read) reach ``at_least``."""
    last = clicks.last_seq()
    if last < marker.seq:  # a new log (the old one removed): every click in it is new
        marker = Marker()
    bound = last - marker.seq
    if bound < at_least:
        return bound
    sessions = clicks.sessions(since=marker.at - LATE_CLICK_S)
    return sum(1 for s in sessions for e in s.events if e.kind == "click" and e.at >= marker.at)


def tick(root: Path, engine: Engine, schedule: ClickSchedule) -> ClickReport | None:
    """Retention, then one training if it is due and no other process is training; the
    report, None when nothing was trained."""
    from app.click_train import learn_from_clicks

    clicks = ClickLog.open(root)
    try:
        removed = clicks.prune(schedule.max_age_s, schedule.max_searches)
        if removed:
            log.info("click log: removed %d searches past the retention limits", removed)
        if engine.semantic_state is not SemanticState.READY or engine.rankers.enhanced is None:
            return None  # the encoder still loading, or no passages: nothing to train
        with file_lock(root / LOCK, wait=False) as held:
            if not held:
                return None
            marker = read_marker(root)  # under the lock: another process may just have trained
            if clicks_since(clicks, marker, schedule.min_clicks) < schedule.min_clicks:
                return None
            started = Marker(clicks.last_seq(), time.time())
            report = learn_from_clicks(root, engine, eta=schedule.eta, clicks=clicks)
            _write_marker(root, started, report)
        for line in report.lines():
            log.info("learning from clicks: %s", line)
        return report
    finally:
        clicks.close()


async def run_periodically(root: Path, engine: Engine, schedule: ClickSchedule) -> None:
    """The embedded schedule: `tick` on a thread every ``schedule.every_s`` seconds."""
    while True:
        await asyncio.sleep(schedule.every_s)
        try:
            # Abandoned on cancel: a server shutting down does not wait for a training (the
            # lock is released when the process exits, and the marker is only written after).
            await anyio.to_thread.run_sync(tick, root, engine, schedule, abandon_on_cancel=True)
        except Exception:  # the next round tries again
            log.exception("learning from clicks failed")
