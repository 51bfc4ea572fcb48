"""The defaults of a phase: readiness from its needs, a thread or task of its own, no bare
form. A new phase subclasses `BasePhase` and sets what differs."""

from __future__ import annotations

from app.engine import Engine, SemanticState, SemanticStatus
from app.phases.types import (
    READY,
    BareQuery,
    Capabilities,
    Computed,
    Context,
    Need,
    PhaseError,
    Ranking,
    Readiness,
)
from app.settings import Settings

__all__ = ["NO_PASSAGES", "BasePhase", "encoder_readiness"]

NO_PASSAGES = "this index has no passages; rebuild it without --no-passages"


def encoder_readiness(status: SemanticStatus) -> Readiness:
    """What the query encoder's state means for a phase that needs the query vector."""
    if status.state is SemanticState.READY:
        return READY
    if status.state is SemanticState.LOADING:
        return Readiness(status.state.value, "warming_up", "the query encoder is still loading")
    return Readiness(status.state.value, "unavailable", status.error)


class BasePhase:
    name: str
    seq: int
    needs: frozenset[Need] = frozenset()

    def readiness(self, caps: Capabilities) -> Readiness:
        # Passages first: without them the phase can never run, whatever the encoder does.
        if Need.PASSAGES in self.needs and not caps.has_passages:
            return Readiness(SemanticState.UNAVAILABLE.value, "unavailable", NO_PASSAGES)
        if Need.VECTOR in self.needs:
            return encoder_readiness(caps.encoder)
        return READY

    def deadline(self, settings: Settings) -> float:
        return settings.semantic_timeout

    def cache_version(self, engine: Engine) -> str:
        return engine.version

    def ranking(self, engine: Engine) -> str:
        return "default"

    def inline(self, engine: Engine) -> bool:
        return False

    def refuse(self, ctx: Context) -> PhaseError | None:
        return None

    async def compute(self, ctx: Context) -> Computed:
        raise NotImplementedError

    def rank(self, query: BareQuery) -> Ranking | None:
        return None

    def references(self, query: BareQuery) -> dict[str, Ranking]:
        return {}

    def __repr__(self) -> str:
        return f"<phase {self.seq} {self.name}>"
