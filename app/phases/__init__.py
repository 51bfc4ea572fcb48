"""Phases as objects: each phase of a search is a `Phase`, and `PHASES` holds them in order.

    types.py      the vocabulary: Phase, Need, Readiness, Context, Computed, Ranking
    base.py       BasePhase: the defaults a phase overrides
    keyword.py    KeywordPhase     seq 1, inline on the loop below INLINE_DOCS documents
    semantic.py   SemanticPhase    seq 2, needs the query vector
    enhanced.py   EnhancedPhase    seq 3, needs the vector and passages, runs through Jobs
    registry.py   Registry, PHASES; `done` is the last phase's seq + 1
    bare.py       the phases on bare rankers (`rank`): `progsearch search` and `eval`
    local.py      `compute` in this process, no cache or deadline: `search` with a filter
"""

from __future__ import annotations

from app.phases.base import BasePhase
from app.phases.registry import ENHANCED, KEYWORD, PHASES, SEMANTIC, Registry
from app.phases.types import (
    READY,
    BareQuery,
    Capabilities,
    Computed,
    Context,
    Need,
    Phase,
    PhaseError,
    Ranking,
    Readiness,
)

__all__ = [
    "ENHANCED", "KEYWORD", "PHASES", "READY", "SEMANTIC", "BareQuery", "BasePhase",
    "Capabilities", "Computed", "Context", "Need", "Phase", "PhaseError", "Ranking",
    "Readiness", "Registry",
]
