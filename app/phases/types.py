"""The vocabulary of phases: what a phase is, what it needs, what it computes from.

A phase is an object (`Phase`), not a name that code branches on. The service (`app.search`)
wraps every phase in the same cache lookup, single flight, deadline, metrics and cache write;
what differs between phases is said by the phase itself: what it `needs`, whether it is
ready (`readiness`, also what `/readyz` shows), its `deadline`, whether it runs `inline` on the
event loop, when it gives way (`refuse`), how it `compute`s its payload for the service, and
how it `rank`s on bare rankers for `progsearch search` and `progsearch eval`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from app.engine import Engine, Rankers, SemanticState, SemanticStatus
from app.params import SearchParams
from app.settings import Settings
from index.core.types import F32, I64
from rankers.types import KeywordResult

if TYPE_CHECKING:
    from app.jobs import Jobs

__all__ = [
    "READY", "BareQuery", "Capabilities", "Computed", "Context", "KeptStates", "Need", "Phase",
    "PhaseError",
    "Ranking", "Readiness",
]

S = TypeVar("S")


class Need(enum.Enum):
    """What a phase reads besides the query and the keyword index."""

    VECTOR = "vector"
    """The query vector: the encoder must be ready, and the service starts encoding before
    the first phase so the encoder runs while earlier phases are answered."""
    PASSAGES = "passages"
    """The index's passages (an index built with `--no-passages` has none)."""


class PhaseError(Exception):
    """A phase that cannot answer: it becomes the stream's `error` event for that phase."""

    def __init__(self, phase: str, code: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.code = code
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"phase": self.phase, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Capabilities:
    """What the loaded index and encoder allow, read once so that every phase (and
    `/readyz`) judges the same state."""

    encoder: SemanticStatus
    has_passages: bool

    @classmethod
    def of(cls, engine: Engine) -> Capabilities:
        return cls(engine.semantic_status, engine.has_passages)


@dataclass(frozen=True)
class Readiness:
    """Whether a phase can run now, and what a stream is told when it cannot."""

    state: str
    """What `/readyz` shows: `ready`, `loading`, `unavailable` or `failed`."""
    code: str = ""
    """The `error` event's code when the phase is asked anyway: `warming_up`, `unavailable`."""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state == SemanticState.READY.value


READY = Readiness(SemanticState.READY.value)


@dataclass(frozen=True)
class Computed:
    """A phase's payload as the service caches and sends it, and what later phases of the
    same request may reuse."""

    payload: dict[str, Any]
    state: object | None = None


class KeptStates:
    """The states one request's phases keep for the later ones, one per type: the part of a
    `Context` that the service and an in-process search share."""

    def __init__(self) -> None:
        self._states: dict[type, object] = {}

    def previous(self, kind: type[S]) -> S | None:
        state = self._states.get(kind)
        return state if isinstance(state, kind) else None

    def keep(self, state: object | None) -> None:
        if state is not None:
            self._states[type(state)] = state


class Context(Protocol):
    """What a phase computes from in the service: the request, the loaded index, the
    services, and the request's shared work (query vector, earlier phases' state)."""

    @property
    def params(self) -> SearchParams: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def jobs(self) -> Jobs: ...

    async def vector(self) -> F32:
        """The query vector: started once per request, cached across requests."""
        ...

    def previous(self, kind: type[S]) -> S | None:
        """The state an earlier phase of this request kept, of this type (None when that
        phase came from the cache)."""
        ...

    def overloaded(self) -> bool:
        """Query encodings are waiting for the encoder: the cores are saturated."""
        ...


@dataclass(frozen=True)
class Ranking:
    """A phase's bare result: document numbers and raw scores, best first."""

    docs: I64
    scores: F32
    previous: I64 | None = None
    """Each hit's 0-based rank in the phase before, -1 when it was not there."""
    keyword: KeywordResult | None = None
    """The keyword result, when this phase made one: how the query was read (corrections,
    completion, unknown words)."""


@dataclass
class BareQuery:
    """A query run on a snapshot's rankers directly, without the service (no cache, no
    deadline): `progsearch search` and `progsearch eval`."""

    rankers: Rankers
    text: str
    k: int
    encode: Callable[[str], F32]
    prefix: bool = False
    _vector: F32 | None = field(default=None, repr=False)

    def vector(self) -> F32:
        """The query's vector, encoded once however many phases read it."""
        if self._vector is None:
            self._vector = self.encode(self.text)
        return self._vector


class Phase(Protocol):
    """One phase of a search. `app.phases.base.BasePhase` gives the defaults."""

    name: str
    """The SSE event, the cache key's part and the metrics label."""
    seq: int
    """Its place in the stream: the `n` of event ids `{version}.{n}` (keyword 1, ...)."""
    needs: frozenset[Need]

    def readiness(self, caps: Capabilities) -> Readiness: ...

    def deadline(self, settings: Settings) -> float:
        """Seconds the phase may take in the service before it becomes a `timeout` error."""
        ...

    def cache_version(self, engine: Engine) -> str:
        """What the phase's cached payloads are valid for: the index version, and whatever
        else its ranking depends on (the enhanced phase's installed model)."""
        ...

    def ranking(self, engine: Engine) -> str:
        """What orders its hits, as the click log records a search it ended: ``default``, or
        the enhanced phase's installed model's version."""
        ...

    def inline(self, engine: Engine) -> bool:
        """Computed on the event loop without yielding: then neither a deadline nor single
        flight could act on it, and the service calls it directly."""
        ...

    def refuse(self, ctx: Context) -> PhaseError | None:
        """A reason to give way for this request although the phase is ready (`overloaded`)."""
        ...

    async def compute(self, ctx: Context) -> Computed: ...

    def rank(self, query: BareQuery) -> Ranking | None:
        """The phase on bare rankers (None: this phase has no bare form, and `progsearch
        search` and `eval` leave it out)."""
        ...

    def references(self, query: BareQuery) -> dict[str, Ranking]:
        """Rankings `progsearch eval` reports next to this phase, to compare it with."""
        ...
