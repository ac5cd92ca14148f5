"""Which GPUs seal's processes may use, and how many CPU cores. Imports no torch until it must count GPUs:
a spawned pool worker reads CUDA_VISIBLE_DEVICES before torch starts."""

from __future__ import annotations

import os


class DeviceError(RuntimeError):
    """A device asked for that this machine does not have; the message says what to use instead."""


def visible_gpus(device: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES entries, one per GPU the pool may use; empty on the CPU."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"unknown device '{device}': use auto, cuda or cpu")
    if device == "cpu":
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        import torch  # counting GPUs does not create a CUDA context here, and children are spawned anyway

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    if device == "cuda" and not gpus:
        raise DeviceError("device 'cuda' asked for, but no GPU is visible: use device 'cpu' or 'auto'")
    return gpus


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fixed_threads(value: str) -> int:
    """The thread count SEAL_THREADS fixes (runtime/cores.py); checked at every command's start (seal's CLI)."""
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"SEAL_THREADS={value!r}: give a whole number of threads, 1 or more, or unset it")
    return int(value)
