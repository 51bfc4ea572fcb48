"""The phases on bare rankers, without the service: `progsearch search` and `progsearch eval`.

No cache, no deadline, no job runner: each phase's `rank` runs on the snapshot's rankers and
returns document numbers with their raw scores, which `search` prints and `eval` scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from app.engine import Engine, SemanticState
from app.phases.types import Capabilities, Need, Phase
from index.core.errors import ProgsearchError

__all__ = ["open_engine", "ready_phases"]


def open_engine(index: Path, phases: Iterable[Phase], *, encoder: str = "int8") -> Engine:
    """The index as it is (a version folder, or a root's current one; no delta log applied
    and nothing written next to it), with the query encoder loaded when one of `phases`
    needs the query vector and the index has vectors."""
    from index.core.encoder import EncoderConfig

    # The encoder's own default thread count, which `search` and `eval` have always used.
    engine = Engine.open(index, live=False, encoder=encoder,
                         encoder_threads=EncoderConfig.threads)
    if any(Need.VECTOR in p.needs for p in phases) and \
            engine.semantic_state is SemanticState.LOADING:
        engine.load_encoder()
    return engine


def ready_phases(engine: Engine, phases: Iterable[Phase], *, strict: bool) -> list[Phase]:
    """The phases the loaded engine can run. `strict`: one that cannot is an error naming it
    (`search` asked for it); else it is left out (`eval` reports what the index serves),
    unless the encoder failed to load, which is always an error."""
    caps = Capabilities.of(engine)
    if caps.encoder.state is SemanticState.FAILED:
        raise ProgsearchError(caps.encoder.error)
    ready = []
    for phase in phases:
        readiness = phase.readiness(caps)
        if readiness.ok:
            ready.append(phase)
        elif strict:
            raise ProgsearchError(f"the {phase.name} phase is unavailable: {readiness.message}")
    return ready
