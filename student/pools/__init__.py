"""Pool implementations (in-process, local processes, Ray actors) and `make_pool`, which picks one.
Each implementation imports only the contract in `student.pool`, and is imported here only when asked for."""

from __future__ import annotations

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
) -> Pool:
    """The pool the config names. `inprocess` ignores `workers` and `job_timeout`: it cannot kill itself."""
    if kind == "inprocess":
        from student.pools.inprocess import InProcessPool
        from student.student import Student

        return InProcessPool((worker_factory or Student)(model))
    if kind == "local":
        from student.pools.local import LocalPool

        return LocalPool(model, workers, job_timeout=job_timeout, worker_factory=worker_factory)
    if kind == "ray":
        from student.pools.ray_pool import RayPool

        return RayPool(
            model, workers, ray_address=ray_address, job_timeout=job_timeout, worker_factory=worker_factory
        )
    raise ValueError(f"unknown pool '{kind}': use one of {', '.join(POOL_KINDS)}")
