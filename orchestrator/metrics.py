"""Where round metrics go: `metrics.jsonl` always, plus TensorBoard or W&B when installed and asked for.

The loop calls `sink.log(step, values)` and never asks which tracker is behind it: an integration
that is not wanted, or not installed, is the null tracker (nanochat's DummyWandb), not a branch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config import SealConfig
from orchestrator.journal import METRICS


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    def log(self, step: int, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, cfg: SealConfig, run_dir: Path) -> None:
        import wandb

        self.run = wandb.init(
            project=cfg.metrics.project, name=cfg.run.name, dir=str(run_dir), id=_wandb_id(run_dir),
            resume="allow", config=cfg.model_dump(mode="json"),
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_dir: Path) -> str:
    """One W&B run per run directory, so a resumed run continues its curves."""
    return "seal-" + "".join(c if c.isalnum() else "-" for c in str(run_dir.resolve()))[-100:]


class MetricsSink:
    def __init__(self, run_dir: Path, tracker: Tracker) -> None:
        self.path = run_dir / METRICS
        self.tracker = tracker

    def log(self, step: int, values: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        self.tracker.log(step, values)

    def close(self) -> None:
        self.tracker.close()


def make_tracker(cfg: SealConfig, run_dir: Path, warn: Callable[[str], Any]) -> Tracker:
    kind = cfg.metrics.tracker
    try:
        if kind == "tensorboard":
            return TensorBoardTracker(run_dir / "tensorboard")
        if kind == "wandb":
            return WandbTracker(cfg, run_dir)
    except ImportError as e:
        warn(f"metrics.tracker = \"{kind}\" but {e.name} is not installed: writing metrics.jsonl only")
    return NullTracker()
