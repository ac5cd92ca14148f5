"""`seal eval`: the paper's knowledge-incorporation table (Table 2, single passage) for our teacher.

Rows, on the config's held-out passages: no adaptation; passage only; passage + edits written by the
untrained teacher; passage + edits by a trained run's teacher (`--run`); passage + edits by any
OpenAI-compatible model (`--external`, the paper's GPT-4.1 row). Each teacher writes one edit per
passage, seeded per passage. In single-model mode the trained row's student is the trained teacher
itself, as in the paper (the model that writes the edits is the one they update). Scores: exact match,
token F1, gold-contained, and with `--judge` an LLM's yes/no against the gold answer, as the paper graded.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.config import ConfigError, SealConfig
from orchestrator.domains.knowledge import KnowledgeDomain, Passage
from orchestrator.edits import one_edit_each
from orchestrator.evaluation import tables
from orchestrator.judge import Judge, Question, parse_target
from orchestrator.models import seal_home
from orchestrator.roles import attached_teacher, build_pool, build_teacher, teacher_api_key
from orchestrator.session import Inputs
from student.messages import ProbeResult, StudentJob, StudentReport
from teacher.base import Teacher


@dataclass(frozen=True)
class Writer:
    """Where a row's edits come from: a teacher, with an adapter or none, and the row's student base."""

    row: str
    teacher: Teacher
    adapter: str | None = None
    student_base: str | None = None


def table(
    cfg: SealConfig, inputs: Inputs, adapter: str | None, external: str | None, judge: str | None,
    console: Console,
) -> tuple[Table, dict[str, Any]]:
    """The rendered table and everything behind it (settings, every cell's τ and answers)."""
    domain = inputs.domain
    if not isinstance(domain, KnowledgeDomain):
        raise ConfigError(f"data.domain: seal eval builds the knowledge table; not {domain.name}'s")
    grader = _judge(judge) if judge else None  # a bad --judge fails before any model loads
    writers = _writers(cfg, inputs, adapter, external, console)
    try:
        with console.status("the teachers write one self-edit per passage"):
            edits = [tables.Row(w.row, "edits", _edits(w, domain, inputs.eval, cfg)) for w in writers]
    finally:
        for teacher in {id(w.teacher): w.teacher for w in writers}.values():
            teacher.close()
    rows = [tables.Row("no adaptation", "none"), tables.Row("passage only", "passage"), *edits]
    cells = tables.plan(domain, inputs.eval, rows, seed=cfg.run.seed, lora=cfg.student.lora,
                          train=cfg.student.train)
    bases = {w.row: w.student_base for w in writers}
    cells = [_on_base(cell, bases.get(cell.row)) for cell in cells]
    reports = _run(cfg, inputs, tables.jobs(cells), console)
    metrics = tables.METRICS
    if grader:
        with console.status(f"the judge grades {sum(len(r.results) for r in reports.values())} answers"):
            reports = judged(grader, cells, reports)
        metrics = (*metrics, "judge")
    summaries = tables.summarise(cells, reports, metrics, seed=cfg.run.seed)
    title = f"{len(inputs.eval)} held-out passages, student {cfg.student_model}, teacher {cfg.teacher.model}"
    return tables.render(summaries, title), tables.results(cells, reports, summaries, adapter=adapter)


def _writers(cfg: SealConfig, inputs: Inputs, adapter: str | None, external: str | None,
             console: Console) -> list[Writer]:
    with console.status(f"starting the teacher ({cfg.teacher.backend}: {cfg.teacher.model})"):
        logs = Path(tempfile.mkdtemp(prefix="seal-eval-"))  # a managed vLLM server's log
        teacher = build_teacher(cfg, inputs.teacher_model, logs, teacher_api_key(cfg), inputs.placement)
    writers = [Writer("base edits", teacher)]
    if adapter:
        student_base = adapter if cfg.run.mode == "single-model" else None  # the paper's single model
        writers.append(Writer("trained edits", teacher, adapter, student_base))
    if external:
        writers.append(Writer(f"external edits ({external})", _external(external)))
    return writers


def _edits(
    writer: Writer, domain: KnowledgeDomain, passages: Sequence[Passage], cfg: SealConfig
) -> tuple[str, ...]:
    writer.teacher.use_adapter(writer.adapter)
    edits = one_edit_each(writer.teacher, domain, passages, cfg.teacher.sampling, cfg.run.seed, "eval table")
    return tuple(edits)


def _on_base(cell: tables.Cell, base: str | None) -> tables.Cell:
    if cell.job is None or base is None:
        return cell
    return dataclasses.replace(cell, job=dataclasses.replace(cell.job, base_adapter=base))


def _run(
    cfg: SealConfig, inputs: Inputs, jobs: list[StudentJob], console: Console
) -> dict[str, StudentReport]:
    pool = build_pool(cfg, inputs.student_model, placement=inputs.placement)
    try:
        return tables.collect(pool.run(jobs), len(jobs), console)
    finally:
        pool.close()


def judged(
    grader: Judge, cells: Sequence[tables.Cell], reports: dict[str, StudentReport]
) -> dict[str, StudentReport]:
    """The reports with a `judge` score (1 = the judge says correct) on every answer, graded in one
    concurrent batch."""
    graded = [(c.job, reports[c.job.job_id]) for c in cells if c.job and reports[c.job.job_id].ok]
    questions = []
    for job, report in graded:
        probes = {p.probe_id: p for p in job.probes}
        for r in report.results:
            questions.append(Question(probes[r.probe_id].prompt, probes[r.probe_id].gold, r.answer))
    verdicts = iter(grader.grade(questions))
    out = dict(reports)
    for job, report in graded:
        results = tuple(ProbeResult(r.probe_id, r.answer, {**r.scores, "judge": next(verdicts)})
                        for r in report.results)
        out[job.job_id] = dataclasses.replace(report, results=results)
    return out


def _judge(target: str) -> Judge:
    url, model = parse_target(target)
    key = os.environ.get("SEAL_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
    return Judge(url, model, key, seal_home() / "judge-cache.jsonl")


def _external(target: str) -> Teacher:
    url, model = parse_target(target)
    return attached_teacher(url, os.environ.get("SEAL_EXTERNAL_API_KEY") or os.environ.get("OPENAI_API_KEY"), model)


