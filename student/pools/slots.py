"""The scheduling policy shared by the process pool and the Ray pool.

A pool has a fixed number of worker slots and gives each slot one job at a time, so it always knows
which job a dead worker had and when each attempt started (its timeout runs from there, not from a
queue). A backend (LocalPool, RayPool) only starts workers, hands them jobs, kills them, and says what
happened; this class decides where each job goes, retries failed attempts (`ATTEMPTS` in all), turns
the last failure into a failed report, and streams reports in completion order.
"""

from __future__ import annotations

import atexit
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

from student.messages import Job, Report
from student.pool import ATTEMPTS, failed_report, stamped


@dataclass(frozen=True)
class Ready:
    """A slot's worker has loaded its model and takes jobs."""

    slot: int


@dataclass(frozen=True)
class Outcome:
    """A slot's job ended: its report, or the error text of an exception or of the worker's death."""

    slot: int
    result: Report | str
    worker_lost: bool = False  # the backend is replacing the worker; a Ready follows


@dataclass(frozen=True)
class _Attempt:
    job: Job
    number: int
    worker: str = ""
    deadline: float = math.inf


class SlotPool(ABC):
    def __init__(self, size: int, job_timeout: float | None) -> None:
        if size < 1:
            raise ValueError(f"workers must be at least 1, got {size}")
        if job_timeout is not None and job_timeout <= 0:
            raise ValueError(f"job_timeout must be positive seconds or None, got {job_timeout}")
        self.size = size
        self.job_timeout = job_timeout
        self._idle: set[int] = set()
        self._running: dict[int, _Attempt] = {}
        self._closed = False

    # The backend: subclasses start their workers in __init__, then call _start().
    @abstractmethod
    def _submit(self, slot: int, job: Job) -> str:
        """Hand the job to the slot's worker; return the worker's name."""

    @abstractmethod
    def _wait(self, timeout: float | None) -> list[Ready | Outcome]:
        """Block until something happens (or the timeout passes). Raise PoolError if a worker cannot start."""

    @abstractmethod
    def _restart(self, slot: int) -> None:
        """Kill the slot's worker, whatever it is doing, and start a fresh one (a Ready follows)."""

    @abstractmethod
    def _shutdown(self) -> None:
        """Stop every worker, leaving no process behind."""

    def _start(self) -> None:
        """Wait until every worker is ready; on failure stop them all before raising."""
        atexit.register(self.close)
        try:
            while len(self._idle) < self.size:
                for event in self._wait(None):
                    self._track_idle(event)
        except BaseException:
            self.close()
            raise

    def run(self, jobs: Iterable[Job]) -> Iterator[Report]:
        """`jobs` is read lazily, one job ahead of the idle workers: a generator that writes jobs while
        earlier ones run (a streamed E-step) keeps the workers busy, and is asked for more before they idle."""
        if self._closed:
            raise RuntimeError("this pool is closed")
        source, queue = iter(jobs), deque[_Attempt]()
        try:
            while self._pull(source, queue) or queue or self._running:
                self._dispatch(queue)
                for event in self._wait(self._time_to_next_deadline()):
                    yield from self._handle(event, queue)
                yield from self._expire(queue)
        finally:
            # The caller stopped early: kill what still runs so no stale report reaches the next run().
            for slot in list(self._running):
                del self._running[slot]
                if not self._closed:
                    self._restart(slot)

    def _pull(self, source: Iterator[Job], queue: deque[_Attempt]) -> bool:
        """Queue jobs until there is one more than idle workers; False once `source` is exhausted."""
        while len(queue) <= len(self._idle):
            job = next(source, None)
            if job is None:
                return False
            queue.append(_Attempt(job, 1))
        return True

    def _dispatch(self, queue: deque[_Attempt]) -> None:
        while queue and self._idle:
            slot, attempt = self._idle.pop(), queue.popleft()
            worker = self._submit(slot, attempt.job)
            deadline = time.monotonic() + self.job_timeout if self.job_timeout else math.inf
            self._running[slot] = _Attempt(attempt.job, attempt.number, worker, deadline)

    def _handle(self, event: Ready | Outcome, queue: deque[_Attempt]) -> Iterator[Report]:
        self._track_idle(event)
        attempt = self._running.pop(event.slot, None) if isinstance(event, Outcome) else None
        if attempt is None:  # a Ready, or an idle worker died (its replacement will say Ready)
            return
        if isinstance(event.result, str):
            yield from self._retry_or_fail(attempt, event.result, queue)
        else:
            yield stamped(event.result, attempt.number, attempt.worker)

    def _track_idle(self, event: Ready | Outcome) -> None:
        if isinstance(event, Outcome) and event.worker_lost:
            self._idle.discard(event.slot)
        else:
            self._idle.add(event.slot)

    def _expire(self, queue: deque[_Attempt]) -> Iterator[Report]:
        now = time.monotonic()
        for slot, attempt in list(self._running.items()):
            if now >= attempt.deadline:
                del self._running[slot]
                self._restart(slot)
                yield from self._retry_or_fail(attempt, f"timed out after {self.job_timeout:g} s", queue)

    def _retry_or_fail(self, attempt: _Attempt, error: str, queue: deque[_Attempt]) -> Iterator[Report]:
        if attempt.number < ATTEMPTS:
            queue.appendleft(_Attempt(attempt.job, attempt.number + 1))
        else:
            yield failed_report(attempt.job, error, attempt.number, attempt.worker)

    def _time_to_next_deadline(self) -> float | None:
        deadline = min((a.deadline for a in self._running.values()), default=math.inf)
        return None if deadline == math.inf else max(0.0, deadline - time.monotonic())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._shutdown()

    def __enter__(self) -> SlotPool:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
