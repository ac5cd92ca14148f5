"""Student pools (docs/architecture.md §2): run jobs on N students, stream reports back as they finish.

Three pools share one contract: `inprocess` (one Student in this process: tests and tiny runs), `local`
(spawned processes, one per device) and `ray` (actors on any Ray cluster); they live in `student/pools/`,
and `student.pools.make_pool` builds one. This module is their shared contract and imports none of them.

Every job gets `ATTEMPTS` tries. An attempt fails when the student raises, when its worker process dies
(OOM kill, segfault, `os._exit`) or when it exceeds the job timeout; a dead or timed-out worker is
replaced. A job whose every attempt failed comes back as a report with ok=False and the last error, so
no job is ever silently lost. Reports carry the attempt that produced them and the worker that ran it.

Workers are built by a `worker_factory` called as `factory(model, device=..., threads=...)`; the
default is `student.student.Student`. Tests pass a Student subclass whose jobs can crash or hang on
purpose, so the pools are tested against real failures without a test-only branch in Student.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from student.messages import Job, Report, StudentJob, StudentReport, TrainJob, TrainReport

ATTEMPTS = 2


class Worker(Protocol):
    """What a pool runs jobs on: a Student, or anything with its two methods."""

    def run(self, job: StudentJob) -> StudentReport: ...

    def train(self, job: TrainJob) -> TrainReport: ...


WorkerFactory = Callable[..., Worker]


class Pool(Protocol):
    def run(self, jobs: Iterable[Job]) -> Iterator[Report]:
        """Yield one report per job, in completion order. A job that fails (twice, where the pool
        retries) yields a report with ok=False and the error text, never nothing. `jobs` may be a
        generator: it is read as workers free up, so jobs can be written while earlier ones run."""
        ...

    def close(self) -> None: ...


class PoolError(RuntimeError):
    """The pool cannot run jobs at all, e.g. its workers cannot load the model. Not a job's failure."""


def worker_name(pid: int, host: str | None = None) -> str:
    """The same `host:pid` a Student puts in its reports, so failed reports name workers alike."""
    return f"{host or socket.gethostname()}:{pid}"


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def stamped(report: Report, attempt: int, worker: str) -> Report:
    return dataclasses.replace(report, attempt=attempt, worker=worker)


def failed_report(job: Job, error: str, attempt: int, worker: str) -> Report:
    report_type = StudentReport if isinstance(job, StudentJob) else TrainReport
    return report_type(job_id=job.job_id, ok=False, attempt=attempt, error=error, worker=worker)
