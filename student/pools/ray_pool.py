"""Students as Ray actors (docs/architecture.md §8): one pool over every node of a Ray cluster.

Ray places the actors (`num_gpus` each where the cluster has GPUs) and restarts an actor whose process
dies, re-running its constructor (`max_restarts=-1`: the pool, not Ray, bounds how often one job may
kill a worker). So each actor loads the model itself from the model reference; no weights go through
the object store. Ray's task retry stays off (`max_task_retries=0`): the pool must see every attempt,
to number it in the report and to start its timeout when it starts, and it applies the same policy as
the local pool (student/pools/slots.py). A timed-out job's actor is killed with
`ray.kill(no_restart=False)`, so Ray brings it back.

A local start keeps Ray on the loopback interface. Ray binds its servers to the node IP, which on
Linux is the host's public address, even when `_node_ip_address="127.0.0.1"` is passed (Ray resolves
it back). With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when `ray` is imported, the node IP is
127.0.0.1 and nothing listens outside the machine. The dashboard is off. Token authentication, Ray's
default for a new local cluster (its token lives in ~/.ray/auth_token), is asked for explicitly, which
also silences Ray's notice; export RAY_AUTH_MODE=disabled to opt out. A cluster joined by address
(`ray start --head` elsewhere) keeps its own settings.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from runtime.devices import usable_cores
from student.messages import Job, Report
from student.pool import PoolError, WorkerFactory, error_text, worker_name
from student.pools.slots import Outcome, Ready, SlotPool


class StudentActor:
    """One Student in a Ray worker process."""

    def __init__(self, model: str, factory: WorkerFactory | None, device: str, threads: int) -> None:
        from student.student import Student

        self.student = (factory or Student)(model, device=device, threads=threads)

    def ready(self) -> str:
        return worker_name(os.getpid())

    def run(self, job: Job) -> Report:
        from student.student import run_job

        return run_job(self.student, job)


class RayPool(SlotPool):
    def __init__(
        self,
        model: str,
        workers: int,
        *,
        ray_address: str | None = None,
        job_timeout: float | None = None,
        num_gpus_per_worker: float | None = None,
        gpus: Sequence[str] | None = None,
        worker_factory: WorkerFactory | None = None,
    ) -> None:
        """`ray_address`: a cluster to join ("auto", "host:port"); None joins the Ray this process
        already runs, or starts a private one, on `gpus` only if given (CUDA_VISIBLE_DEVICES names; see
        orchestrator/placement.py). `num_gpus_per_worker`: None = 1 if the cluster has GPUs."""
        super().__init__(workers, job_timeout)
        self._owns_ray = connect_ray(ray_address, gpus=gpus)
        self._actors: list[Any] = []
        self._pending: dict[Any, tuple[int, bool]] = {}  # object ref → (slot, is it a job, not a ready check)
        try:
            import ray

            gpus, cpus = resources_per_worker(workers, num_gpus_per_worker)
            actor = ray.remote(StudentActor).options(
                num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0
            )
            device = "cuda" if gpus else "cpu"
            self._actors = [actor.remote(model, worker_factory, device, cpus) for _ in range(workers)]
        except BaseException:
            self._shutdown()
            raise
        self._names = [""] * workers
        for slot in range(workers):
            self._ask_ready(slot)
        self._start()

    def _ask_ready(self, slot: int) -> None:
        self._pending[self._actors[slot].ready.remote()] = (slot, False)

    def _submit(self, slot: int, job: Job) -> str:
        self._pending[self._actors[slot].run.remote(job)] = (slot, True)
        return self._names[slot]

    def _wait(self, timeout: float | None) -> list[Ready | Outcome]:
        import ray

        done, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        return [event for ref in done if (event := self._receive(ref)) is not None]

    def _receive(self, ref: Any) -> Ready | Outcome | None:
        import ray
        from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

        slot, is_job = self._pending.pop(ref)
        try:
            value = ray.get(ref)
        except RayTaskError as e:  # the job raised; the actor lives on
            return Outcome(slot, error_text(e.cause) if e.cause else str(e))
        except RayActorError as e:
            if not is_job and isinstance(e, ActorDiedError):  # its constructor failed: no restart helps
                raise PoolError(f"Ray student worker could not start: {_last_line(e)}") from None
            self._ask_ready(slot)  # Ray is restarting it
            if not is_job:
                return None
            return Outcome(slot, f"worker {self._names[slot]} died ({type(e).__name__})", worker_lost=True)
        if is_job:
            return Outcome(slot, value)
        self._names[slot] = value
        return Ready(slot)

    def _restart(self, slot: int) -> None:
        import ray

        ray.kill(self._actors[slot], no_restart=False)
        for ref, (owner, _) in list(self._pending.items()):
            if owner == slot:
                del self._pending[ref]
        self._ask_ready(slot)

    def _shutdown(self) -> None:
        import ray

        self._pending.clear()
        if ray.is_initialized():
            for actor in self._actors:
                ray.kill(actor, no_restart=True)
            if self._owns_ray:
                ray.shutdown()


def connect_ray(address: str | None, num_cpus: int | None = None, gpus: Sequence[str] | None = None) -> bool:
    """Join the Ray this process already uses, or the cluster at `address` (or $RAY_ADDRESS), or
    start a private one on loopback, which sees only `gpus` when given (so its actors stay off the
    teacher's). True when this call started Ray: its caller shuts it down."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address is None and "ray" not in sys.modules:  # both are read once, when ray is imported
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # node IP 127.0.0.1: see the module docstring
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, logging_level="WARNING")
        return False
    with _visible_gpus(gpus):  # read by the Ray processes ray.init starts, and only then
        ray.init(num_cpus=num_cpus or usable_cores(), num_gpus=None if gpus is None else len(gpus),
                 include_dashboard=False, logging_level="WARNING")
    if (ip := ray.util.get_node_ip_address()) != "127.0.0.1":
        warnings.warn(f"ray was imported before the pool started it, so Ray listens on {ip}", stacklevel=2)
    return True


@contextmanager
def _visible_gpus(gpus: Sequence[str] | None) -> Iterator[None]:
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def resources_per_worker(workers: int, num_gpus: float | None) -> tuple[float, int]:
    """(GPUs, CPUs) per actor: a GPU each where there are GPUs, and the CPUs split evenly, capped at
    the largest node's so that every actor fits on some node."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    total_gpus = sum(node.get("GPU", 0.0) for node in nodes)
    gpus = (1.0 if total_gpus else 0.0) if num_gpus is None else num_gpus
    if workers * gpus > total_gpus:
        raise PoolError(f"{workers} workers × {gpus:g} GPU exceed the Ray cluster's {total_gpus:g} GPUs")
    total_cpus = sum(node.get("CPU", 0.0) for node in nodes)
    largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    cpus = max(1, min(int(largest), int(total_cpus // workers)))
    if workers * cpus > total_cpus:
        raise PoolError(f"{workers} workers need a CPU each; the Ray cluster has {total_cpus:g}: use fewer")
    return gpus, cpus


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
