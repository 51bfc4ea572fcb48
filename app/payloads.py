"""Phase payloads: the JSON objects the API sends for each phase, built from ranker results.

Pure functions of their inputs; the documents are passed in already read from the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.types import Document
from rankers.facets import FacetCounts
from rankers.structured import Structured
from rankers.types import Correction, Expansion

__all__ = [
    "SNIPPET_CHARS",
    "corrected_query",
    "facets_payload",
    "hits_payload",
    "phase_payload",
    "query_payload",
    "snippet",
    "structured_payload",
]

SNIPPET_CHARS = 200


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a text, cut at a word boundary, with an ellipsis when it was cut. Only a
    bounded prefix is read: abstracts can be long and this runs for every hit."""
    head = " ".join(text[: limit + 64].split())
    if len(head) <= limit and len(text) <= limit + 64:
        return head
    cut = head.rfind(" ", 0, limit)
    return head[: cut if cut > limit // 2 else limit].rstrip(" ,;:.") + "…"


def hits_payload(
    docs: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    stored: Sequence[Document | None],
    previous: npt.NDArray[np.int64] | None = None,
) -> list[dict[str, Any]]:
    hits = []
    for rank, (doc, score, document) in enumerate(zip(docs, scores, stored, strict=True), 1):
        prev = None if previous is None or previous[rank - 1] < 0 else int(previous[rank - 1]) + 1
        hits.append({
            "id": document.id if document else str(int(doc)),
            "title": document.title if document else "",
            "snippet": snippet(document.text) if document else "",
            "score": round(float(score), 6),
            "rank": rank,
            "previous_rank": prev,
        })
    return hits


def corrected_query(query: str, corrections: Sequence[Correction]) -> str | None:
    """The query as the user typed it, with each corrected word replaced ("showing results
    for ..."); None when nothing was corrected."""
    if not corrections:
        return None
    out = query
    for c in corrections:
        pattern = re.compile(rf"(?<!\w){re.escape(c.original)}(?!\w)", re.IGNORECASE)
        out, n = pattern.subn(c.corrected, out, count=1)
        if n == 0:  # the analyzer saw the word differently (accents, apostrophes): append
            out = f"{out} {c.corrected}"
    return " ".join(out.split())


def query_payload(
    corrections: Sequence[Correction], expansion: Expansion | None, unknown: Sequence[str]
) -> dict[str, Any]:
    """What the service did to the query: typo corrections, completion of the last word."""
    return {
        "corrections": [
            {"original": c.original, "corrected": c.corrected, "distance": c.distance}
            for c in corrections
        ],
        "expansion": (
            {"prefix": expansion.prefix, "completions": list(expansion.completions)}
            if expansion else None
        ),
        "unknown": list(unknown),
    }


def phase_payload(phase: str, index_version: str, query: str, k: int,
                  hits: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A phase result as cached: `took_ms` and `cached` are added when it is sent."""
    return {
        "phase": phase,
        "index_version": index_version,
        "query": query,
        "k": k,
        "hits": hits,
        **extra,
    }


def structured_payload(query: Structured) -> dict[str, Any]:
    """The structured part of a query as the keyword event echoes it: its canonical forms."""
    return {"filter": query.filter_text or None, "sort": query.sort_text or None}


def facets_payload(counts: Sequence[FacetCounts]) -> dict[str, Any]:
    """`{field: {"matched", "values": [[value, count], ...], "min", "max"}}` (min and max for
    numbers and dates, null otherwise)."""
    return {
        c.field: {"matched": c.matched, "values": [list(v) for v in c.values],
                  "min": c.min, "max": c.max}
        for c in counts
    }
