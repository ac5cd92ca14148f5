"""Student pools (DESIGN §2): run jobs, stream reports back as they finish."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from student.messages import Job, Report


class Pool(Protocol):
    def run(self, jobs: Sequence[Job]) -> Iterator[Report]:
        """Yield one report per job, in completion order. A job that fails (twice, where the pool
        retries) yields a report with ok=False and the error text, never nothing."""
        ...

    def close(self) -> None: ...
