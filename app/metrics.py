"""Prometheus metrics of one server process.

Each app owns its registry (no module-level collectors), so two apps in one process, as in
the tests, never share counts. With several uvicorn workers each worker reports its own
figures; a scraper sums them by instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Sub-millisecond resolution at the low end: the keyword phase lives there.
LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
    1.0, 2.0, 5.0,
)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.phase_seconds = Histogram(
            "progsearch_phase_seconds", "Time to produce one phase of a search, cache included",
            ["phase", "source"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cache_requests = Counter(
            "progsearch_cache_requests", "Prediction cache lookups by outcome",
            ["kind", "result"], registry=r,
        )
        self.cache_failures = Counter(
            "progsearch_cache_failures", "Cache backend calls that failed or timed out",
            ["backend"], registry=r,
        )
        self.open_streams = Gauge(
            "progsearch_open_streams", "SSE streams currently open", registry=r
        )
        self.open_follows = Gauge(
            "progsearch_open_follows", "Follow streams currently open", registry=r
        )
        self.follow_updates = Counter(
            "progsearch_follow_updates", "Update events sent to follow streams", registry=r
        )
        self.errors = Counter(
            "progsearch_errors", "Errors returned to clients, by code", ["code"], registry=r
        )
        self.events_accepted = Counter(
            "progsearch_events_accepted", "Click and dwell events stored in the click log",
            ["kind"], registry=r,
        )
        self.events_refused = Counter(
            "progsearch_events_refused", "POST /events requests refused, by error code",
            ["code"], registry=r,
        )
        self.explored = Counter(
            "progsearch_explored_searches",
            "Streams whose final phase showed a candidate from below rank k", registry=r,
        )
        self.requests = Counter(
            "progsearch_requests", "Requests by endpoint", ["endpoint"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
