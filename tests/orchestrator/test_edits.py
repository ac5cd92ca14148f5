"""The E-step's two halves (orchestrator/edits.py). Streamed: on a CPU, a run whose self-edits go to the
students as soon as they are written journals the same edits, reports, rewards, selection and τ as the
sequential run under the same seeds; only the order of the journal's lines differs. Batched: the teacher
writes for several contexts per call, and a run cut between two calls resumes to the same edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import edits, loop
from orchestrator.config import SealConfig, config_toml
from orchestrator.journal import CONFIG, JOURNAL, read_journal

# What each record type decides; times and the workers' timings are left out.
OUTCOMES = {"edit": ("text",), "report": ("score",), "reward": ("reward", "baseline", "parsed"),
            "selection": ("kept",), "evaluation": ("tau", "baseline_tau")}


def outcomes(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["type"], r["key"]): {f: r[f] for f in OUTCOMES[r["type"]]} for r in records if r["type"] in OUTCOMES}


@pytest.mark.parametrize("pool", ["inprocess", "local"])
def test_a_streamed_run_equals_the_sequential_one(
    tiny_config: Any, tmp_path: Path, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, the teacher and the students take turns (so reports and edits interleave in the journal);
    with local workers they run at once. One context per teacher call, so that there is something to stream."""
    monkeypatch.setattr(edits, "CONTEXTS_PER_CALL", 1)
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


def test_the_teacher_writes_a_round_s_contexts_in_one_call(tiny_config: Any, tmp_path: Path) -> None:
    """Streamed, in-process: students start only after the teacher's one call for both contexts."""
    cfg: SealConfig = tiny_config(tmp_path, "batched", **{"pool.stream": True})
    loop.main(cfg, False, Console(quiet=True))
    records = read_journal(cfg.run_dir / JOURNAL)
    keys = [(r["type"], r["key"]) for r in records]
    edits_r1 = [i for i, (t, k) in enumerate(keys) if t == "edit" and k.startswith("train/r1/")]
    reports_r1 = [i for i, (t, k) in enumerate(keys) if t == "report" and k.startswith("train/r1/")]
    assert len(edits_r1) == 4 and edits_r1[-1] < reports_r1[0]
    assert len({records[i]["time"] for i in edits_r1}) == 1  # journaled in one write


def test_a_phase_cut_between_teacher_calls_resumes_to_the_same_edits(
    tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's sample depends on every context in it, so batches are fixed slices seeded by their contexts:
    a run cut after round 1's first teacher call resamples only the second call, as the whole run did."""
    monkeypatch.setattr(edits, "CONTEXTS_PER_CALL", 1)
    whole: SealConfig = tiny_config(tmp_path, "whole")
    loop.main(whole, False, Console(quiet=True))
    records = read_journal(whole.run_dir / JOURNAL)
    calls = [i for i, r in enumerate(records) if r["type"] == "edit" and r["key"].startswith("train/r1/")]
    at = calls[2]  # the first context's 2 edits are journaled, the second context's are not
    cut: SealConfig = tiny_config(tmp_path, "cut")
    cut.run_dir.mkdir(parents=True)
    (cut.run_dir / CONFIG).write_text(config_toml(cut))
    (cut.run_dir / JOURNAL).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:at]))

    loop.main(cut, True, Console(quiet=True))

    resumed = read_journal(cut.run_dir / JOURNAL)
    assert outcomes(resumed) == outcomes(records)
    assert sum(r["type"] == "edit" for r in resumed) == sum(r["type"] == "edit" for r in records)  # none twice
