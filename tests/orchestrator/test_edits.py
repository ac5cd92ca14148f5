"""The streamed E-step (edits.sample_and_apply): on a CPU, a run whose self-edits go to the students as soon
as they are written journals the same edits, reports, rewards, selection and τ as the sequential run
under the same seeds; only the order of the journal's lines differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import loop
from orchestrator.config import SealConfig
from orchestrator.journal import JOURNAL, read_journal

# What each record type decides; times and the workers' timings are left out.
OUTCOMES = {"edit": ("text",), "report": ("score",), "reward": ("reward", "baseline", "parsed"),
            "selection": ("kept",), "evaluation": ("tau", "baseline_tau")}


def outcomes(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["type"], r["key"]): {f: r[f] for f in OUTCOMES[r["type"]]} for r in records if r["type"] in OUTCOMES}


@pytest.mark.parametrize("pool", ["inprocess", "local"])
def test_a_streamed_run_equals_the_sequential_one(tiny_config: Any, tmp_path: Path, pool: str) -> None:
    """In-process, the teacher and the students take turns (so reports and edits interleave in the journal);
    with local workers they run at once."""
    journals = {}
    for stream in (False, True):
        sets = {"pool.stream": stream, "pool.kind": pool, "pool.workers": 2 if pool == "local" else None}
        cfg: SealConfig = tiny_config(tmp_path, f"stream-{stream}", **sets)
        loop.main(cfg, False, Console(quiet=True))
        journals[stream] = read_journal(cfg.run_dir / JOURNAL)
    assert outcomes(journals[True]) == outcomes(journals[False])
    assert sum(k[0] == "reward" for k in outcomes(journals[True])) == 4 + 4  # round 1's 2×2, 2 held-out × 2 rounds

    def first_report_before_last_edit(records: list[dict[str, Any]]) -> bool:
        keys = [(r["type"], r["key"]) for r in records]
        edits = [i for i, (t, k) in enumerate(keys) if t == "edit" and k.startswith("train/r1/")]
        reports = [i for i, (t, k) in enumerate(keys) if t == "report" and k.startswith("train/r1/")]
        return reports[0] < edits[-1]

    assert not first_report_before_last_edit(journals[False])
    if pool == "inprocess":  # it reads one job at a time; local workers are handed jobs ahead of their reports
        assert first_report_before_last_edit(journals[True])
