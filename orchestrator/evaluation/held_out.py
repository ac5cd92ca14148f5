"""Held-out τ of a run's rounds, re-graded from its journal alone: per context and in every metric the students
report, so each round's τ gets a 95% bootstrap interval over contexts (`seal report`'s page, the results
benchmark). The loop measures the same τ live (`loop.held_out_tau`, the domain's metric only) and journals
what this reads back; no job runs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

from orchestrator.config import Mode
from orchestrator.domains.knowledge import Metric
from orchestrator.domains.knowledge import tau as knowledge_tau
from orchestrator.edits import baseline_key
from orchestrator.evaluation import tables
from orchestrator.journal import trained_adapter
from student.messages import StudentReport, from_dict


@dataclass(frozen=True)
class HeldOut:
    """One round's held-out evaluation, per context, in every metric the students report: τ of the
    teacher's edits (mean over a context's edits and repeats; an unusable edit or a failed job is 0,
    as in the loop's rewards) and τ of the same round's student without training (its baseline)."""

    round: int
    tau: dict[str, dict[str, float]]  # metric → context id → τ
    baseline: dict[str, dict[str, float]]
    failed: int  # contexts with an unusable edit or a failed job

    def summaries(self, name: str, *, seed: int = 0) -> tuple[tables.RowSummary, tables.RowSummary]:
        """(edits, no adaptation) as table rows: the mean over contexts with its 95% bootstrap interval."""

        def row(label: str, taus: dict[str, dict[str, float]], failed: int) -> tables.RowSummary:
            scores = {m: tables.estimate(list(by_context.values()), seed=seed) for m, by_context in taus.items()}
            return tables.RowSummary(label, len(next(iter(taus.values()))), failed, scores)

        return row(name, self.tau, self.failed), row(f"{name}, no adaptation", self.baseline, 0)


def regrade(
    records: Sequence[dict[str, Any]], mode: Mode, metrics: Sequence[Metric] = tables.METRICS
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
