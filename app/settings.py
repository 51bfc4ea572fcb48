"""Service settings, read once from `PROGSEARCH_*` environment variables into a frozen object.

Every variable is documented in the README's configuration table. A bad value stops the
service at start with a message naming the variable, rather than surfacing per request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from limits import parse as parse_rate

from index.core.errors import ProgsearchError

__all__ = ["PREFIX", "Settings", "SettingsError"]

PREFIX = "PROGSEARCH_"
T = TypeVar("T")


class SettingsError(ProgsearchError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    index: Path | None = None
    """Snapshot root to serve (`PROGSEARCH_INDEX`)."""
    redis_url: str | None = None
    """Prediction cache in Redis; the in-process LRU when unset."""
    broker_url: str | None = None
    """Celery broker for the enhanced phase and index work; the embedded pool when unset."""
    publish_timeout: float = 1.0
    """Longest wait to hand a task to the broker, seconds."""
    embedded_threads: int = 2
    precompute_top: int = 100
    """Most frequent logged queries precomputed into the cache after each index change."""
    precompute_interval: float = 30.0
    """Seconds between looks for an index change to precompute for (writes change it)."""
    cors_origins: tuple[str, ...] = ()
    max_query_chars: int = 1024
    max_k: int = 100
    default_k: int = 10
    keyword_timeout: float = 1.0
    semantic_timeout: float = 2.0
    enhanced_timeout: float = 1.0
    cache_ttl: float = 3600.0
    cache_size: int = 20_000
    """Entries kept by the in-process cache."""
    redis_timeout: float = 0.05
    """Socket timeout of every Redis call, in seconds: a slow cache must not slow a search."""
    redis_backoff: float = 1.0
    """After a Redis failure, skip Redis for this many seconds."""
    encoder: str = "int8"
    encoder_threads: int = 2
    """Threads of one query encoding."""
    encoder_concurrency: int = 2
    """Query encodings run at once per process (more wait their turn)."""
    candidates: int = 100
    """Depth of the keyword and nearest-neighbour lists fused by the semantic phase."""
    send_timeout: float = 10.0
    """A stream whose client does not take an event within this many seconds is dropped."""
    ping_seconds: float = 15.0
    retry_ms: int = 2000
    shutdown_grace: float = 1.0
    cache_max_age: int = 60
    """`Cache-Control: max-age` of `GET /search` answers."""
    api_key: str | None = field(default=None, repr=False)
    """Key that `POST` and `DELETE /documents` need; writes are refused when unset."""
    max_body_bytes: int = 32 << 20
    """Largest `POST /documents` body; a larger one gets 413."""
    compact_changes: int = 50_000
    """Changes in the delta log that trigger a compaction into a new snapshot (0: never)."""
    max_pending: int = 20_000
    """Written documents waiting for their vectors past which writes get 429 (0: no bound)."""
    max_header_bytes: int = 16_384
    """Header names and values of one request, in all (4 bytes a line added); 431 beyond."""
    max_headers: int = 100
    """Headers of one request; 431 beyond."""
    follow_lifetime: float = 3600.0
    """Seconds a follow stream stays open; its client then reconnects and resumes."""
    follow_per_client: int = 16
    """Follow streams open at once per client address; 429 beyond."""
    header_timeout: float = 5.0
    """Seconds for a request's head to arrive, from the connection's opening (or the first
    byte of the next request on it); the connection is closed after a 408 past it."""
    click_train_seconds: float = 600.0
    """Seconds between looks at the click log: retention, and training when due (0: off)."""
    click_train_min: int = 200
    """Clicks since the last training that make the next one due."""
    click_max_age_days: float = 30.0
    """Searches in the click log older than this are removed with their events."""
    click_max_searches: int = 1_000_000
    """Searches the click log keeps at most (the oldest go first)."""
    click_eta: float = 1.0
    """Exponent of the position-based model, p(rank) = (1 / rank) ** eta (`rankers.propensity`)."""
    click_search_ttl: float = 3600.0
    """Seconds an answered search is remembered: `POST /events` on it is accepted that long."""
    events_searches: int = 20_000
    """Answered searches remembered in process (without Redis); the oldest go first."""
    events_rate: str = "120/minute"
    """Events accepted per client address (`limits` notation: "120/minute", "10/second")."""
    events_max_bytes: int = 16_384
    """Largest `POST /events` body; a larger one gets 413."""
    events_batch: int = 32
    """Most events in one `POST /events` list."""
    explore_share: float = 0.0
    """Share of fresh streams explored: a deeper candidate shown in the final top k (0: off,
    the default: it showed no gain in the simulation at the shares a user would accept)."""
    explore_depth: int = 20
    """Ranks below k an explored candidate is drawn from (0: off)."""

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool]] = [
            ("max_query_chars", self.max_query_chars >= 1),
            ("max_k", self.max_k >= 1),
            ("default_k", 1 <= self.default_k <= self.max_k),
            ("encoder", self.encoder in ("int8", "fp32")),
            ("encoder_threads", self.encoder_threads >= 1),
            ("encoder_concurrency", self.encoder_concurrency >= 1),
            ("candidates", self.candidates >= 1),
            ("cache_size", self.cache_size >= 1),
            ("max_body_bytes", self.max_body_bytes >= 1),
            ("compact_changes", self.compact_changes >= 0),
            ("max_pending", self.max_pending >= 0),
            ("max_header_bytes", self.max_header_bytes >= 1024),
            ("max_headers", self.max_headers >= 1),
            ("follow_per_client", self.follow_per_client >= 1),
            ("click_train_seconds", self.click_train_seconds >= 0),
            ("click_train_min", self.click_train_min >= 1),
            ("click_max_age_days", self.click_max_age_days > 0),
            ("click_max_searches", self.click_max_searches >= 1),
            ("click_eta", 0 <= self.click_eta <= 4),
            ("events_searches", self.events_searches >= 1),
            ("events_rate", _rate_ok(self.events_rate)),
            ("events_max_bytes", self.events_max_bytes >= 64),
            ("events_batch", self.events_batch >= 1),
            ("explore_share", 0 <= self.explore_share <= 1),
            ("explore_depth", 0 <= self.explore_depth <= 100),
        ]
        for name in ("keyword_timeout", "semantic_timeout", "enhanced_timeout", "cache_ttl",
                     "redis_timeout", "send_timeout", "ping_seconds", "publish_timeout",
                     "precompute_interval", "header_timeout", "follow_lifetime",
                     "click_search_ttl"):
            checks.append((name, getattr(self, name) > 0))
        for name, ok in checks:
            if not ok:
                value = getattr(self, name)
                raise SettingsError(f"{PREFIX}{name.upper()}={value!r} is not allowed")

    @property
    def reply_url(self) -> str | None:
        """Redis that carries workers' answers back: the cache's, else a Redis broker."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f.name, raw.strip(), _PARSERS[f.name])
        return cls(**values)


def _rate_ok(rate: str) -> bool:
    try:
        parse_rate(rate)
    except ValueError:
        return False
    return True


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in raw.split(",") if o.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "index": Path,
    "redis_url": str,
    "broker_url": str,
    "api_key": str,
    "cors_origins": _origins,
    "encoder": str,
    "events_rate": str,
    **{n: int for n in ("max_query_chars", "max_k", "default_k", "encoder_threads",
                        "encoder_concurrency", "candidates", "cache_size", "retry_ms",
                        "cache_max_age", "embedded_threads", "precompute_top", "max_body_bytes",
                        "compact_changes", "max_pending", "max_header_bytes", "max_headers",
                        "follow_per_client", "click_train_min", "click_max_searches",
                        "events_searches", "events_max_bytes", "events_batch",
                        "explore_depth")},
    **{n: float for n in ("keyword_timeout", "semantic_timeout", "enhanced_timeout",
                          "cache_ttl", "redis_timeout", "redis_backoff", "send_timeout",
                          "ping_seconds", "shutdown_grace", "publish_timeout",
                          "precompute_interval", "header_timeout", "follow_lifetime",
                          "click_train_seconds", "click_max_age_days", "click_eta",
                          "click_search_ttl", "explore_share")},
}


def _parse(name: str, raw: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from exc
