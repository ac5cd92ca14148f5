"""Students in spawned processes on this machine: one per GPU, or N sharing the CPU cores.

Each worker owns a duplex pipe to the parent, so the parent knows which job a dead worker had, and a
worker killed mid-write corrupts only its own pipe (a shared multiprocessing.Queue would be left locked).
The parent waits on every pipe and every process sentinel at once, so a death is seen when it happens.
If the parent dies, each worker gets SIGKILL from the kernel (parent-death signal), even mid-job: no orphans.

This module must not import torch: a child imports it to start, and CUDA_VISIBLE_DEVICES (the GPU the
worker may see) and the OpenMP thread count have to be set before torch loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from runtime.devices import usable_cores, visible_gpus
from student.messages import Job
from student.pool import PoolError, WorkerFactory, error_text, worker_name
from student.pools.slots import Outcome, Ready, SlotPool

SHUTDOWN_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class _Process:
    process: BaseProcess
    conn: Connection
    name: str
    ready: bool = False


class LocalPool(SlotPool):
    def __init__(
        self,
        model: str,
        workers: int,
        *,
        threads_per_worker: int | None = None,
        job_timeout: float | None = None,
        device: str = "auto",
        gpus: Sequence[str] | None = None,
        worker_factory: WorkerFactory | None = None,
    ) -> None:
        """`device`: "auto" (every visible GPU, else the CPU), "cuda" or "cpu". `gpus`: the GPUs to use
        instead, as CUDA_VISIBLE_DEVICES names them (orchestrator/placement.py; empty = the CPU). Worker i
        gets GPU i mod #GPUs; on the CPU the cores are split evenly between the workers."""
        super().__init__(workers, job_timeout)
        self.model = model
        self.gpus = list(gpus) if gpus is not None else visible_gpus(device)
        self.threads = threads_per_worker or max(1, usable_cores() // workers)
        self._factory = pickle.dumps(worker_factory)  # unpickled in the child after its environment is set
        self._context = get_context("spawn")
        self._workers = [self._spawn(slot) for slot in range(workers)]
        self._start()

    def _spawn(self, slot: int) -> _Process:
        env = worker_env(slot, self.gpus, self.threads)
        ours, theirs = self._context.Pipe()
        device = "cuda" if self.gpus else "cpu"
        process = self._context.Process(
            target=serve, args=(theirs, self.model, self._factory, device, self.threads, env, os.getpid()),
            name=f"seal-student-{slot}", daemon=True,
        )
        process.start()
        theirs.close()  # only the child holds its end, so its death shows as EOF here
        return _Process(process, ours, worker_name(process.pid or 0))

    def _submit(self, slot: int, job: Job) -> str:
        worker = self._workers[slot]
        with contextlib.suppress(OSError):  # it just died: its sentinel says so at the next wait
            worker.conn.send(job)
        return worker.name

    def _wait(self, timeout: float | None) -> list[Ready | Outcome]:
        handles: dict[Any, int] = {}
        for slot, worker in enumerate(self._workers):
            handles[worker.conn] = handles[worker.process.sentinel] = slot
        slots = sorted({handles[h] for h in wait(list(handles), timeout)})
        return [self._receive(slot) for slot in slots]

    def _receive(self, slot: int) -> Ready | Outcome:
        worker = self._workers[slot]
        try:
            if worker.conn.poll():
                kind, payload = worker.conn.recv()
                if kind == "fatal":
                    raise PoolError(f"student worker could not load {self.model}: {payload}")
                if kind == "ready":
                    worker.ready = True
                    return Ready(slot)
                return Outcome(slot, payload)
        except (EOFError, OSError):
            pass
        return self._lost(slot)

    def _lost(self, slot: int) -> Outcome:
        worker = self._workers[slot]
        worker.process.join(SHUTDOWN_GRACE_S)
        how = exit_text(worker.process.exitcode)
        if not worker.ready:
            raise PoolError(f"student worker {worker.name} died while loading {self.model} ({how})")
        self._restart(slot)
        return Outcome(slot, f"worker {worker.name} died ({how})", worker_lost=True)

    def _restart(self, slot: int) -> None:
        _stop(self._workers[slot])
        self._workers[slot] = self._spawn(slot)

    def _shutdown(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S  # then kill what still works on a job
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            _stop(worker)


def serve(
    conn: Connection, model: str, factory: bytes, device: str, threads: int, env: dict[str, str], parent: int
) -> None:
    """A worker process: build the student once, then run jobs from the pipe until None or EOF."""
    _end_with(parent)
    os.environ.update(env)
    try:
        from student.student import Student, run_job

        student = (pickle.loads(factory) or Student)(model, device=device, threads=threads)
    except Exception as e:
        conn.send(("fatal", error_text(e)))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        try:
            message = ("report", run_job(student, job))
        except Exception as e:
            message = ("error", error_text(e))
        conn.send(message)


def worker_env(slot: int, gpus: Sequence[str], threads: int) -> dict[str, str]:
    """What worker `slot` sets before torch loads: its thread count, and its one GPU (slot mod #GPUs)."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def _end_with(parent: int) -> None:
    """Die with the orchestrator even mid-job (EOF on the pipe is only read between jobs): Linux's
    parent-death signal, and a check for a parent that died before it was set."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def _stop(worker: _Process) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.conn.close()


def exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
