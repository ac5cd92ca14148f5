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

`held_out` re-grades a knowledge run's held-out evaluations from its journal in every metric, per
context, so each round's τ gets a 95% bootstrap interval over contexts (the results benchmark's tables).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator import evaluate, loop
from orchestrator.config import Mode, SealConfig, with_overrides
from orchestrator.domains.knowledge import Metric
from orchestrator.domains.knowledge import tau as knowledge_tau
from orchestrator.edits import baseline_key
from orchestrator.journal import JOURNAL, Journal, read_journal, trained_adapter
from orchestrator.report import RoundRow, modes_table, plot_modes, round_rows
from orchestrator.session import prepare_run_dir
from student.messages import StudentReport, from_dict

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
    old, new = json.dumps(str(single.run_dir))[1:-1], json.dumps(str(run_dir))[1:-1]  # as inside JSON strings
    records = [json.loads(json.dumps(r, ensure_ascii=False).replace(old, new)) for r in shared]
    for end in (r for r in records if r["type"] == "mstep_end" and not r.get("skipped")):
        shutil.copytree(end["adapter"].replace(new, old, 1), end["adapter"])
    with Journal(run_dir / JOURNAL) as journal:
        journal.append("fork", "0", source=str(single.run_dir), records=len(records))
        journal.append_many([(r["type"], r["key"], _fields(r)) for r in records])
    return len(records)


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("type", "key", "time")}


# --- held-out τ per round with intervals, re-graded from a run's journal ----------------------------------


@dataclass(frozen=True)
class HeldOut:
    """One round's held-out evaluation, per context, in every metric the students report: τ of the
    teacher's edits (mean over a context's edits and repeats; an unusable edit or a failed job is 0,
    as in the loop's rewards) and τ of the same round's student without training (its baseline)."""

    round: int
    tau: dict[str, dict[str, float]]  # metric → context id → τ
    baseline: dict[str, dict[str, float]]
    failed: int  # contexts with an unusable edit or a failed job

    def summaries(self, name: str, *, seed: int = 0) -> tuple[evaluate.RowSummary, evaluate.RowSummary]:
        """(edits, no adaptation) as table rows: the mean over contexts with its 95% bootstrap interval."""

        def row(label: str, taus: dict[str, dict[str, float]], failed: int) -> evaluate.RowSummary:
            scores = {m: evaluate.estimate(list(by_context.values()), seed=seed) for m, by_context in taus.items()}
            return evaluate.RowSummary(label, len(next(iter(taus.values()))), failed, scores)

        return row(name, self.tau, self.failed), row(f"{name}, no adaptation", self.baseline, 0)


def held_out(
    records: Sequence[dict[str, Any]], mode: Mode, metrics: Sequence[Metric] = evaluate.METRICS
) -> list[HeldOut]:
    """Every finished held-out evaluation of a knowledge run, read from its journal alone. With the
    domain's metric this reproduces the journaled `per_context` τ; the other metrics come from the same
    student answers, so no job is run again."""
    latest = {(r["type"], r["key"]): r for r in records}  # the journal's rule: the last record of a key wins
    reports = {key: from_dict(StudentReport, r["report"]) for (kind, key), r in latest.items() if kind == "report"}
    edits: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for (kind, _), r in latest.items():
        if kind == "edit" and r.get("phase") == "eval":
            edits.setdefault((r["round"], r["context_id"]), []).append(r)
    evaluations = sorted((r for (kind, _), r in latest.items() if kind == "evaluation"), key=lambda r: r["round"])
    out = []
    for evaluation in evaluations:
        k, contexts = evaluation["round"], list(evaluation["per_context"])
        base = trained_adapter(records, k) if mode == "single-model" else None
        runs = {cid: [_edit_jobs(e, reports) for e in edits[k, cid]] for cid in contexts}
        tau = {m: {cid: mean(_edit_tau(jobs, m) for jobs in runs[cid]) for cid in contexts} for m in metrics}
        baseline = {m: {cid: knowledge_tau(reports[baseline_key(base, cid)], m) for cid in contexts}
                    for m in metrics}
        failed = sum(any(not jobs or not all(r.ok for r in jobs) for jobs in runs[cid]) for cid in contexts)
        out.append(HeldOut(k, tau, baseline, failed))
    return out


def _edit_jobs(edit: dict[str, Any], reports: dict[str, StudentReport]) -> list[StudentReport]:
    """The reports of an edit's repeats (`{edit}/s{r}`); none for an unusable edit."""
    if edit.get("parse_error"):
        return []
    prefix = f"{edit['key']}/s"
    return [report for key, report in reports.items() if key.startswith(prefix)]


def _edit_tau(jobs: list[StudentReport], metric: Metric) -> float:
    return mean(knowledge_tau(r, metric) for r in jobs) if jobs else 0.0
