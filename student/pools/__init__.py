"""Pool implementations (in-process, local processes, Ray actors) and `make_pool`, which picks one.
Each implementation imports only the contract in `student.pool`, and is imported here only when asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from student.pool import Pool, WorkerFactory

PoolKind = Literal["inprocess", "local", "ray"]
POOL_KINDS: tuple[PoolKind, ...] = ("inprocess", "local", "ray")


def make_pool(
    kind: PoolKind,
    model: str,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    job_timeout: float | None = None,
    worker_factory: WorkerFactory | None = None,
    device: str | None = None,
    gpus: Sequence[str] | None = None,
    num_gpus_per_worker: float | None = None,
) -> Pool:
    """The pool the config names. `inprocess` ignores `workers` and `job_timeout`: it cannot kill itself.
    Where students run (orchestrator/placement.py): `device`, the in-process student's torch device;
    `gpus`, the local workers' GPUs or a private Ray's, as CUDA_VISIBLE_DEVICES names them; None = every
    visible one; `num_gpus_per_worker`, each Ray actor's share."""
    if kind == "inprocess":
        from student.pools.inprocess import InProcessPool
        from student.student import Student

        return InProcessPool((worker_factory or Student)(model, device=device))
    if kind == "local":
        from student.pools.local import LocalPool

        return LocalPool(model, workers, job_timeout=job_timeout, gpus=gpus, worker_factory=worker_factory)
    if kind == "ray":
        from student.pools.ray_pool import RayPool

        return RayPool(
            model, workers, ray_address=ray_address, job_timeout=job_timeout, num_gpus_per_worker=num_gpus_per_worker,
            gpus=gpus, worker_factory=worker_factory,
        )
    raise ValueError(f"unknown pool '{kind}': use one of {', '.join(POOL_KINDS)}")
