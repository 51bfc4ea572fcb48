"""Latency and memory measurement helpers for benchmark scripts."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from index.core.errors import QueryError

__all__ = ["peak_rss_mb", "print_table", "summarize", "time_calls"]

T = TypeVar("T")


def time_calls(
    fn: Callable[[T], object], inputs: Sequence[T], warmup: int = 10
) -> npt.NDArray[np.float64]:
    """Call ``fn`` on each input and return per-call wall times in seconds.

    The first ``warmup`` inputs (cycled if there are fewer) are run once beforehand
    and not recorded, so caches and lazy initialisation do not land in the figures.
    """
    if warmup < 0:
        raise QueryError(f"warmup must be >= 0, got {warmup}")
    if not inputs:
        raise QueryError("inputs must not be empty")
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    out = np.empty(len(inputs), dtype=np.float64)
    clock = time.perf_counter_ns
    for i, x in enumerate(inputs):
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out / 1e9


def summarize(ms: npt.ArrayLike) -> dict[str, float]:
    """Return p50, p99 and mean of an array of latencies (units are kept)."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise QueryError("cannot summarize an empty array of latencies")
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Print rows as a plain aligned text table; floats get 3 decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise QueryError(f"row has {len(row)} cells, headers have {len(headers)}: {row}")
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
