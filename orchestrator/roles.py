"""Where teachers and student pools are built: the one module that constructs them, for `seal run`, `seal
eval`, `seal distill`, `seal propose`, `seal eval-edits`, `seal teacher serve` and the benchmarks.

A config's roles go where its placement puts them (orchestrator/placement.py); the commands that work
without a config (propose, teacher serve) get the same classes from their flags. Every role is closed by
whoever built it; a failure between building the teacher and the pool closes the teacher, so no managed
vLLM server is ever left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from orchestrator.config import ConfigError, SealConfig
from orchestrator.placement import Placement, place
from student.pool import Pool
from teacher.base import Teacher

if TYPE_CHECKING:
    from orchestrator.session import Inputs
    from teacher.vllm_process import ServerOptions
    from teacher.vllm_server import AdapterSync, VLLMTeacher


def place_roles(cfg: SealConfig, teacher_heads: int | None = None) -> Placement:
    """The placement on this machine's visible GPUs; `teacher_heads` checks the tensor-parallel size."""
    from runtime.devices import visible_gpus

    return place(cfg, visible_gpus("auto"), teacher_heads)


def api_key_from_env(env: str | None, setting: str) -> str | None:
    """The API key held in environment variable `env` (none named: None); `setting` is the config key or
    flag that named it, for the error."""
    if env and env not in os.environ:
        raise ConfigError(f"{setting}: environment variable {env} is not set")
    return os.environ[env] if env else None


def teacher_api_key(cfg: SealConfig) -> str | None:
    return api_key_from_env(cfg.teacher.api_key_env, "teacher.api_key_env")


def build_roles(
    cfg: SealConfig, inputs: Inputs, run_dir: Path, api_key: str | None, console: Console
) -> tuple[Teacher, Pool]:
    """The teacher and the student pool: two of them, or one network when the pool is inline."""
    placement = inputs.placement
    for note in placement.notes:
        console.print(f"note: {note}", highlight=False)
    if cfg.pool.kind == "inline":
        from student.pools.inline import InlinePool
        from teacher.hf import HFTeacher

        with console.status(f"loading {cfg.teacher.model} once for both roles (inline pool)"):
            pool = InlinePool(inputs.student_model, device=placement.student_device())
            return HFTeacher(inputs.teacher_model, network=pool.network), pool
    with console.status(f"starting the teacher ({cfg.teacher.backend}: {cfg.teacher.model})"):
        teacher = build_teacher(cfg, inputs.teacher_model, run_dir, api_key, placement)
    try:
        with console.status(f"starting the student pool ({cfg.pool.kind}, {placement.workers} worker(s))"):
            pool = build_pool(cfg, inputs.student_model, placement=placement)
    except BaseException:
        teacher.close()  # never leave a managed vLLM server behind
        raise
    return teacher, pool


def build_teacher(
    cfg: SealConfig, model: str, run_dir: Path, api_key: str | None, placement: Placement | None = None
) -> Teacher:
    """The config's teacher, on the placement's GPUs (none given: placed on this machine now)."""
    t = cfg.teacher
    placement = placement or place_roles(cfg)
    if t.backend == "hf":
        from teacher.hf import HFTeacher

        return HFTeacher(model, device=placement.teacher_device())
    if t.backend == "url":
        return attached_teacher(t.url or "", api_key)
    from teacher.vllm_process import ServerOptions

    options = placement.server_options(ServerOptions(max_lora_rank=t.max_lora_rank, max_model_len=t.max_model_len))
    return managed_teacher(model, run_dir, options, adapter_sync=t.adapter_sync)


def build_pool(cfg: SealConfig, model: str, workers: int | None = None, placement: Placement | None = None) -> Pool:
    """A pool of students of `model` on the placement's GPUs (none given: placed on this machine now), its
    first `workers` only if given; for a config whose pool is inline, where no teacher shares it
    (evaluation, distillation), the in-process pool."""
    from student.pools import make_pool

    p = cfg.pool
    placement = placement or place_roles(cfg)
    kind = "inprocess" if p.kind == "inline" else p.kind
    workers = workers or placement.workers
    gpus = placement.ray_node_gpus() if kind == "ray" else placement.student_gpus()[:workers]
    return make_pool(kind, model, workers=workers, ray_address=p.ray_address, job_timeout=p.job_timeout,
                     device=placement.student_device(), gpus=gpus if placement.on_gpu else None,
                     num_gpus_per_worker=placement.ray_gpus_per_actor() if placement.on_gpu else None)


# --- teachers from flags: seal propose, seal teacher serve, and the external rows of seal eval --------------


def flag_teacher(model: str, url: str | None, api_key: str | None, served_model: str | None, backend: str,
                 log_dir: Path) -> Teacher:
    """`seal propose`'s teacher: the server at `url` if given, else `model` (resolved) in-process (hf) or
    behind a vLLM server of our own (vllm) logging to `log_dir`."""
    if url:
        return attached_teacher(url, api_key, served_model)
    from orchestrator.models import resolve_model

    path = resolve_model(model)
    if backend == "hf":
        from teacher.hf import HFTeacher

        return HFTeacher(path)
    return managed_teacher(path, log_dir)


def managed_teacher(model: str, log_dir: Path, options: ServerOptions | None = None,
                    adapter_sync: AdapterSync | None = None, api_key: str | None = None) -> VLLMTeacher:
    """A vLLM server of our own for `model`, stopped when the teacher is closed; `api_key` None: a random
    one (`.server.api_key`)."""
    from teacher.vllm_server import VLLMTeacher

    return VLLMTeacher.launch(model, log_dir, options, adapter_sync=adapter_sync, api_key=api_key)


def attached_teacher(url: str, api_key: str | None, model: str | None = None) -> Teacher:
    """An OpenAI-compatible server someone else runs (its one model unless `model` is named)."""
    from teacher.vllm_server import VLLMTeacher

    return VLLMTeacher.attach(url, api_key or "EMPTY", model=model)
