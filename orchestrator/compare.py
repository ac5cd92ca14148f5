"""`seal compare`: the paper's single-model setting against a teacher–student split, same budget.

Both runs come from one config and differ only in `run.mode` (and in teacher–student mode the student
is `student.model`, or the teacher's starting weights kept fixed when that is empty): the same seed,
so the same held-out contexts and the same training contexts per round, the same N, M, repeats and
rounds. Each run lives in its own directory (`<name>-single-model`, `<name>-teacher-student`) and is
resumed if it exists, so an interrupted comparison picks up where it stopped.

The two runs compute the same things until a student first trains on an adapted teacher: with the
student fixed to the teacher's starting weights, round 0's evaluation, round 1's E-step and M-step and
round 1's held-out edits are the same seeded work on the same weights. So a new teacher–student run
starts as a fork of the single-model run's journal up to that point (`fork_shared_prefix`), which
halves what a comparison costs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator import loop
from orchestrator.config import Mode, SealConfig, with_overrides
from orchestrator.journal import JOURNAL, Journal, in_run, read_journal, relocated
from orchestrator.report import RoundRow, modes_table, plot_modes, round_rows
from orchestrator.session import prepare_run_dir

MODES: tuple[Mode, ...] = ("single-model", "teacher-student")


def mode_config(cfg: SealConfig, mode: Mode) -> SealConfig:
    student = cfg.student.model if mode == "teacher-student" else None
    name = f"{cfg.run.name}-{mode}"
    return with_overrides(cfg, {"run.mode": mode, "run.name": name, "student.model": student})


def compare(cfg: SealConfig, console: Console) -> tuple[Table, Path]:
    rows: dict[Mode, list[RoundRow]] = {}
    for mode in MODES:
        console.rule(f"{mode}")
        if mode == "teacher-student":
            copied = fork_shared_prefix(mode_config(cfg, "single-model"), mode_config(cfg, mode))
            if copied:
                console.print(f"forked {copied} journal records the two modes share from the single-model run")
        run_dir = loop.main(mode_config(cfg, mode), resume=True, console=console)
        rows[mode] = round_rows(read_journal(run_dir / JOURNAL))
    plot = plot_modes(rows, cfg.run.runs_dir / f"{cfg.run.name}-compare.png")
    return modes_table(rows, f"held-out τ per round ({cfg.data.n_eval} contexts, seed {cfg.run.seed})"), plot


def fork_shared_prefix(single: SealConfig, teacher_student: SealConfig) -> int:
    """Start a new teacher–student run with the single-model run's records (and teacher adapters) from
    before its first student job on an adapted teacher; returns how many were copied. Nothing is copied
    when the teacher–student run exists or its student is not the teacher's starting weights."""
    if teacher_student.run_dir.exists() or teacher_student.student_model != single.student_model:
        return 0
    shared = []
    adapted = False
    for r in read_journal(single.run_dir / JOURNAL):
        adapted = adapted or (r["type"] == "mstep_end" and not r.get("skipped"))
        if adapted and r["type"] == "report":
            break
        if r["type"] != "session":
            shared.append(r)
    run_dir = prepare_run_dir(teacher_student, resume=False)
    for end in (r for r in shared if r["type"] == "mstep_end" and not r.get("skipped")):
        adapter = Path(in_run(single.run_dir, end["adapter"]))
        shutil.copytree(adapter, run_dir / adapter.relative_to(single.run_dir))
    records = [relocated(r, single.run_dir, Path()) for r in shared]  # paths in the run: stored relative to it
    with Journal(run_dir / JOURNAL) as journal:
        journal.append("fork", "0", source=str(single.run_dir), records=len(records))
        journal.append_many([(r["type"], r["key"], _fields(r)) for r in records])
    return len(records)


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("type", "key", "time")}
