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
SealCli = Callable[..., tuple[int, str]]


@pytest.fixture(scope="session")
def seal_cli() -> SealCli:
    """`seal ARGS`' exit code and output, less the resolved-config block `seal run` prints once its config
    has loaded (a mistake found later, in the data, comes after it)."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    def invoke(*args: str | Path) -> tuple[int, str]:
        result = CliRunner().invoke(app, [str(a) for a in args])
        lines = result.output.strip().splitlines()
        if lines and lines[0].startswith("config"):
            lines = lines[1:]
            while lines and lines[0].startswith("  "):
                lines = lines[1:]
        return result.exit_code, "\n".join(lines)

    return invoke


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
