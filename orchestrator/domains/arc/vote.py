"""Voting over predictions made under different views of a task (marc/SEAL evaluation).

Each probe asks the same test input under an invertible map; its answer, mapped back, is one vote.
The two most frequent grids are the task's two attempts (ARC's pass@2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from orchestrator.domains.arc.grids import Grid

ATTEMPTS = 2


def vote(predictions: Iterable[Grid], attempts: int = ATTEMPTS) -> tuple[Grid, ...]:
    """The `attempts` most frequent grids; ties go to the grid predicted first (probes put identity first)."""
    return tuple(grid for grid, _ in Counter(predictions).most_common(attempts))


def solved(attempts: Sequence[Sequence[Grid]], outputs: Sequence[Grid]) -> bool:
    """A task counts only if every test output is among its test input's attempts."""
    return all(out in tries for tries, out in zip(attempts, outputs, strict=True))
