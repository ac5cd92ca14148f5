"""Tiny ReST^EM runs for the orchestrator tests: the tiny random model as teacher and student, the HF
teacher, an in-process student pool, N=2 contexts × M=2 edits, one round."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import loop
from orchestrator.config import SealConfig, load_config

TinyConfig = Callable[..., SealConfig]


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: str) -> TinyConfig:
    def make(runs: Path, name: str, **overrides: Any) -> SealConfig:
        settings = {
            "run.name": name, "run.runs_dir": str(runs), "run.rounds": 1, "data.n_train": 2, "data.n_eval": 2,
            "teacher.model": tiny_model_dir, "teacher.sampling.n": 2, "teacher.sampling.max_tokens": 12,
            "student.train.epochs": 1, "student.train.max_new_tokens": 4, "restem.train.epochs": 1,
            "restem.keep_non_improving": True,  # a random model improves nothing; keep its best edits anyway
        }
        return load_config(None, settings | overrides)

    return make


@pytest.fixture(scope="session")
def tiny_run(tiny_config: TinyConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run, shared: never change its journal."""
    cfg = tiny_config(tmp_path_factory.mktemp("runs"), "whole")
    loop.main(cfg, False, Console(quiet=True))
    return cfg.run_dir
