"""The simplest pool: jobs run one after another on one Student in this process.

For tests and tiny runs, and the base of the `inline` single-model pool (docs/architecture.md §3), whose student
shares the teacher's network. It has no timeout: a process cannot kill the job it is running itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from types import TracebackType

from student.messages import Job, Report
from student.pool import ATTEMPTS, Worker, error_text, failed_report, stamped, worker_name
from student.student import run_job


class InProcessPool:
    def __init__(self, student: Worker) -> None:
        self.student = student
        self.worker = worker_name(os.getpid())

    def run(self, jobs: Iterable[Job]) -> Iterator[Report]:
        for job in jobs:
            yield self._run(job)

    def _run(self, job: Job) -> Report:
        error = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return stamped(run_job(self.student, job), attempt, self.worker)
            except Exception as e:
                error = error_text(e)
        return failed_report(job, error, ATTEMPTS, self.worker)

    def close(self) -> None:
        """Nothing to stop: the caller owns the student."""

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
