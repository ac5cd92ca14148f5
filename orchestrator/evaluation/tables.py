"""The paper's knowledge table (single-passage setting): per passage, τ of the unadapted student, of
the student trained on the passage alone, and of the student trained on the passage plus a self-edit;
per row, the mean over passages with a 95% bootstrap interval. `seal eval-edits` and the results
benchmark build their tables here, so every table is computed the same way.

The flow is plan → run → summarise: `plan` turns rows × passages into cells (a StudentJob each, or the
reason a self-edit was unusable), anything that runs jobs (one Student, a pool) feeds its reports to
`collect`, and `summarise` grades the cells. Unusable edits and failed jobs count as τ = 0, as rewards do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.table import Table

from orchestrator.domains.base import ParsedEdit, ParseFailure
from orchestrator.domains.knowledge import (
    METRICS,
    EditFormat,
    KnowledgeDomain,
    Metric,
    Passage,
    tau,
)
from orchestrator.errors import DataError
from orchestrator.progress import Phases
from student.messages import LoRASpec, StudentJob, StudentReport, TrainSpec, to_dict

Training = Literal["none", "passage", "edits"]


@dataclass(frozen=True)
class Row:
    """One line of the table: what each passage's student trains on. With `train="edits"`, `edits`
    holds one self-edit per passage, in passage order."""

    name: str
    train: Training
    edits: tuple[str, ...] = ()
    edit_format: EditFormat = "implications"  # how `edits` are parsed into training examples


@dataclass(frozen=True)
class Cell:
    """One passage under one row: its student job, or why its self-edit was unusable."""

    row: str
    passage: int
    context_id: str
    job: StudentJob | None
    parse_error: str | None = None


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float  # 95% bootstrap interval over passages
    high: float


@dataclass(frozen=True)
class RowSummary:
    name: str
    passages: int
    failed: int  # unusable self-edits and failed jobs, scored 0
    scores: dict[str, Estimate]


def paper_rows(passages: Sequence[Passage], edit_index: int, source: str,
               edit_format: EditFormat = "implications") -> tuple[Row, ...]:
    """No adaptation, passage only, and passage + each passage's `edit_index`-th existing self-edit."""
    return (
        Row("no adaptation", "none"),
        Row("passage only", "passage"),
        Row("passage + edits", "edits", edits_at(passages, edit_index, source), edit_format),
    )


def edits_at(passages: Sequence[Passage], index: int, source: str) -> tuple[str, ...]:
    for i, passage in enumerate(passages):
        if index >= len(passage.completions):
            raise DataError(
                f"{source}: record {i} has no self-edit number {index} in field 'completions' "
                f"(it has {len(passage.completions)})"
            )
    return tuple(passage.completions[index] for passage in passages)


def plan(
    domain: KnowledgeDomain,
    passages: Sequence[Passage],
    rows: Sequence[Row],
    *,
    seed: int,
    lora: LoRASpec,
    train: TrainSpec,
) -> list[Cell]:
    """Every passage under every row. A passage's jobs share one seed (the same fresh LoRA), so its rows
    differ only in what they train on."""
    return [
        _cell(domain, row, i, passage, seed + i, lora, train)
        for row in rows
        for i, passage in enumerate(passages)
    ]


def _cell(
    domain: KnowledgeDomain, row: Row, i: int, passage: Passage, seed: int, lora: LoRASpec, train: TrainSpec
) -> Cell:
    cid = domain.context_id(passage)
    try:
        parsed = _training(domain, row, i, passage, train)
    except ParseFailure as e:
        return Cell(row.name, i, cid, job=None, parse_error=str(e))
    probes = domain.probes(passage)
    job = StudentJob(f"{row.name}/{i}/{cid}", seed, parsed.examples, probes, lora, parsed.train)
    return Cell(row.name, i, cid, job)


def _training(domain: KnowledgeDomain, row: Row, i: int, passage: Passage, train: TrainSpec) -> ParsedEdit:
    if row.train == "none":
        return ParsedEdit(examples=(), train=train)
    if row.train == "passage":
        return ParsedEdit(examples=(domain.fact_example(passage, passage.context),), train=train)
    return dataclasses.replace(domain, edit_format=row.edit_format).parse_edit(passage, row.edits[i], train)


def jobs(cells: Iterable[Cell]) -> list[StudentJob]:
    return [cell.job for cell in cells if cell.job is not None]


def collect(reports: Iterable[StudentReport], total: int, console: Console) -> dict[str, StudentReport]:
    """Drain `reports` (a Student loop, or a pool's stream) under a progress bar; reports by job id."""
    done: dict[str, StudentReport] = {}
    with Phases(console).phase("student jobs", total, "jobs") as advance:
        for report in reports:
            done[report.job_id] = report
            advance(1)
    return done


def cell_tau(cell: Cell, reports: Mapping[str, StudentReport], metric: Metric) -> float:
    return 0.0 if cell.job is None else tau(reports[cell.job.job_id], metric)


def summarise(
    cells: Sequence[Cell],
    reports: Mapping[str, StudentReport],
    metrics: Sequence[Metric] | None = None,
    *,
    seed: int = 0,
) -> list[RowSummary]:
    """One summary per row, in the order rows first appear in `cells`; every metric the reports have
    by default."""
    metrics = metrics or measured(reports.values())
    by_row: dict[str, list[Cell]] = {}
    for cell in cells:
        by_row.setdefault(cell.row, []).append(cell)
    return [
        RowSummary(
            name=name,
            passages=len(row_cells),
            failed=sum(cell.job is None or not reports[cell.job.job_id].ok for cell in row_cells),
            scores={m: estimate([cell_tau(c, reports, m) for c in row_cells], seed=seed) for m in metrics},
        )
        for name, row_cells in by_row.items()
    ]


def paper_gains(cells: Sequence[Cell], reports: Mapping[str, StudentReport], *, seed: int = 0) -> list[RowSummary]:
    """The paper's comparisons, paired: every row minus no adaptation, every edit row minus passage only."""
    edit_cells = [c for c in cells if c.row != "no adaptation"]
    return [*paired_gains(cells, reports, "no adaptation", seed=seed),
            *paired_gains(edit_cells, reports, "passage only", seed=seed)]


def measured(reports: Iterable[StudentReport]) -> tuple[Metric, ...]:
    """The metrics every report with results can be graded in: the generated answers' unless a job only
    scored likelihoods, and gold_prob where every job scored them."""
    keys = [set(r.results[0].scores) for r in reports if r.ok and r.results]
    common = set.intersection(*keys) if keys else {"exact_match", "f1", "contains"}
    return tuple(m for m in METRICS if (m if m != "gold_prob" else "gold_logprob") in common)


def estimate(values: Sequence[float], *, seed: int = 0) -> Estimate:
    low, high = bootstrap_ci(values, seed=seed)
    return Estimate(float(np.mean(values)), low, high)


def paired_gains(
    cells: Sequence[Cell],
    reports: Mapping[str, StudentReport],
    against: str,
    metrics: Sequence[Metric] | None = None,
    *,
    seed: int = 0,
) -> list[RowSummary]:
    """Each other row minus `against`, passage by passage, as "row − against": the mean difference with
    a bootstrap interval over passages (paired: the same passages, the same LoRA seed, so what the
    passages share cancels, and the interval is far tighter than two rows' intervals suggest)."""
    metrics = metrics or measured(reports.values())
    taus: dict[str, dict[int, dict[str, float]]] = {}
    for cell in cells:
        taus.setdefault(cell.row, {})[cell.passage] = {m: cell_tau(cell, reports, m) for m in metrics}
    if against not in taus:
        raise ValueError(f"no row named '{against}' to compare against")
    base = taus[against]
    return [
        RowSummary(
            name=f"{name} − {against}",
            passages=len(by_passage),
            failed=0,
            scores={m: estimate([by_passage[p][m] - base[p][m] for p in by_passage], seed=seed) for m in metrics},
        )
        for name, by_passage in taus.items() if name != against
    ]


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the passages with replacement."""
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


_METRIC_LABELS = {"exact_match": "exact match", "f1": "token F1", "contains": "contains gold",
                  "gold_prob": "gold prob"}


def render(summaries: Sequence[RowSummary], title: str, signed: bool | None = None) -> Table:
    """Mean τ in percent with its 95% interval, one column per metric, as the paper reports accuracy
    (`gold_prob`, the per-token probability of the gold answer, in percent too). Differences are signed:
    rows named "a − b", or every row with `signed=True`."""
    metrics = list(summaries[0].scores) if summaries else []
    table = Table(title=title, caption="mean over passages, % (95% bootstrap CI)")
    table.add_column("row", no_wrap=True)
    table.add_column("failed", justify="right")
    for metric in metrics:
        table.add_column(_METRIC_LABELS.get(metric, metric), justify="right", no_wrap=True)
    for s in summaries:
        cells = (f"{100 * e.mean:+.1f} ({100 * e.low:+.1f}…{100 * e.high:+.1f})" if signed or "−" in s.name
                 else f"{100 * e.mean:.1f} ({100 * e.low:.1f}–{100 * e.high:.1f})" for e in s.scores.values())
        table.add_row(s.name, str(s.failed), *cells)
    return table


def results(
    cells: Sequence[Cell], reports: Mapping[str, StudentReport], summaries: Sequence[RowSummary], **meta: Any
) -> dict[str, Any]:
    """Everything needed to check the table: settings, rows, and every cell's τ, answers and timings."""
    return {
        **meta,
        "rows": [dataclasses.asdict(s) for s in summaries],
        "cells": [
            {
                "row": cell.row,
                "passage": cell.passage,
                "context_id": cell.context_id,
                "parse_error": cell.parse_error,
                "tau": {m: cell_tau(cell, reports, m) for m in measured(reports.values())},
                "report": None if cell.job is None else to_dict(reports[cell.job.job_id]),
            }
            for cell in cells
        ],
    }


def write(out: Path, data: dict[str, Any]) -> None:
    """A table's JSON (`results`, and whatever a command adds) to `out`, in a folder that exists (the CLI
    checks --out before the work)."""
    out.write_text(json.dumps(data, indent=1) + "\n")
