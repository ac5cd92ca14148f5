"""`seal compare`: the paper's single-model setting against a teacher–student split, same budget.

Both runs come from one config and differ only in `run.mode` (and in teacher–student mode the student
is `student.model`, or the teacher's starting weights kept fixed when that is empty): the same seed,
so the same held-out contexts and the same training contexts per round, the same N, M, repeats and
rounds. Each run lives in its own directory (`<name>-single-model`, `<name>-teacher-student`) and is
resumed if it exists, so an interrupted comparison picks up where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator import loop
from orchestrator.config import Mode, SealConfig, with_overrides
from orchestrator.journal import JOURNAL, read_journal
from orchestrator.report import RoundRow, modes_table, plot_modes, round_rows

MODES: tuple[Mode, ...] = ("single-model", "teacher-student")


def mode_config(cfg: SealConfig, mode: Mode) -> SealConfig:
    student = cfg.student.model if mode == "teacher-student" else None
    name = f"{cfg.run.name}-{mode}"
    return with_overrides(cfg, {"run.mode": mode, "run.name": name, "student.model": student})


def compare(cfg: SealConfig, console: Console) -> tuple[Table, Path]:
    rows: dict[Mode, list[RoundRow]] = {}
    for mode in MODES:
        console.rule(f"{mode}")
        run_dir = loop.main(mode_config(cfg, mode), resume=True, console=console)
        rows[mode] = round_rows(read_journal(run_dir / JOURNAL))
    plot = plot_modes(rows, cfg.run.runs_dir / f"{cfg.run.name}-compare.png")
    return modes_table(rows, f"held-out τ per round ({cfg.data.n_eval} contexts, seed {cfg.run.seed})"), plot
