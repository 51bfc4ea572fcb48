"""The phases of a search, in stream order.

Adding a phase is one class and one entry here: the stream, the cache, `/readyz`,
precomputation, `progsearch search` and `progsearch eval` iterate the registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from app.phases.enhanced import EnhancedPhase
from app.phases.keyword import KeywordPhase
from app.phases.semantic import SemanticPhase
from app.phases.types import Need, Phase

__all__ = ["ENHANCED", "KEYWORD", "PHASES", "SEMANTIC", "Registry"]


class Registry:
    """An immutable, ordered list of phases whose sequence numbers run 1, 2, ... n;
    `done` is n + 1."""

    def __init__(self, phases: Sequence[Phase]) -> None:
        names = [p.name for p in phases]
        if not phases:
            raise ValueError("a registry needs at least one phase")
        if len(set(names)) != len(names):
            raise ValueError(f"phase names repeat: {names}")
        if "done" in names or "error" in names:
            raise ValueError(f"'done' and 'error' are stream events, not phase names: {names}")
        seqs = [p.seq for p in phases]
        if seqs != list(range(1, len(phases) + 1)):
            raise ValueError(f"phase sequence numbers must be 1..{len(phases)} in order, "
                             f"got {dict(zip(names, seqs, strict=True))}")
        if phases[0].needs:
            raise ValueError(f"the first phase answers at once and `GET /search`: it cannot "
                             f"need {sorted(n.value for n in phases[0].needs)}")
        self._phases = tuple(phases)
        self._by_name = {p.name: p for p in phases}

    def __iter__(self) -> Iterator[Phase]:
        return iter(self._phases)

    def __len__(self) -> int:
        return len(self._phases)

    def __getitem__(self, name: str) -> Phase:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no phase {name!r}; the phases are {self.names}") from None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._phases]

    @property
    def first(self) -> Phase:
        return self._phases[0]

    @property
    def done(self) -> int:
        """The sequence number of the `done` event."""
        return self._phases[-1].seq + 1

    def after(self, seen: int) -> list[Phase]:
        """The phases a client that saw sequence number `seen` has yet to get."""
        return [p for p in self._phases if p.seq > seen]

    def until(self, name: str) -> list[Phase]:
        """The phases up to and including `name`."""
        last = self[name].seq
        return [p for p in self._phases if p.seq <= last]

    def needs(self, need: Need) -> bool:
        return any(need in p.needs for p in self._phases)

    def adding(self, phase: Phase) -> Registry:
        """A registry with `phase` after the others."""
        return Registry([*self._phases, phase])


KEYWORD: Phase = KeywordPhase()
SEMANTIC: Phase = SemanticPhase()
ENHANCED: Phase = EnhancedPhase()
PHASES = Registry([KEYWORD, SEMANTIC, ENHANCED])
