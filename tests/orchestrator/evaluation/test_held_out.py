"""`evaluation.held_out.regrade`: a run's held-out τ per round, re-graded from its journal in every metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.evaluation.held_out import regrade
from orchestrator.evaluation.tables import METRICS
from orchestrator.journal import JOURNAL, read_journal


def test_held_out_reproduces_the_journaled_tau_and_baselines(tiny_run: Path) -> None:
    records = read_journal(tiny_run / JOURNAL)
    evaluations = {r["round"]: r for r in records if r["type"] == "evaluation"}
    rounds = regrade(records, "single-model")
    assert [h.round for h in rounds] == sorted(evaluations) == [0, 1]
    for h in rounds:
        assert set(h.tau) == set(h.baseline) == set(METRICS)
        assert h.tau["f1"] == pytest.approx(evaluations[h.round]["per_context"])  # the domain's metric
        assert h.baseline["f1"] == pytest.approx(evaluations[h.round]["baselines"])
        edits, no_adaptation = h.summaries(f"round {h.round}")
        assert edits.passages == no_adaptation.passages == len(h.tau["f1"])
        assert edits.scores["f1"].mean == pytest.approx(evaluations[h.round]["tau"])
        assert all(e.low <= e.mean <= e.high for e in edits.scores.values())


def test_an_unusable_held_out_edit_scores_zero_and_counts_as_failed(tiny_run: Path) -> None:
    records = read_journal(tiny_run / JOURNAL)
    edit = next(r for r in records if r["type"] == "edit" and r["phase"] == "eval" and r["round"] == 0)
    unusable = {**edit, "parse_error": "no usable line"}
    jobs = {r["key"] for r in records if r["type"] == "report" and r["key"].startswith(edit["key"] + "/s")}
    changed = [r for r in records if not (r["type"] == "report" and r["key"] in jobs)] + [unusable]
    (h0, *_) = regrade(changed, "single-model")
    assert h0.failed == 1
    assert all(h0.tau[m][edit["context_id"]] == 0.0 for m in METRICS)
