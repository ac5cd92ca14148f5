"""Golden numbers (torchtune's habit): a seeded tiny run pins what it computes (every self-edit, every
student's losses and score, the rewards, the kept edits, the M-steps' losses, held-out τ) to the values in
golden_tiny_run.json. It runs in fp32 on one thread (SEAL_PRECISION, SEAL_THREADS), so that any CPU
computes the same numbers to within rounding (measured here: 2 threads instead of 1 stays within 1e-4);
bf16 would differ in its last bits between kernels.

A change that moves numerics (a default, a seed's derivation, the loss, the sampler, the selection) fails
here and shows in review as a change to the JSON. When the move is intended, rewrite it with
`SEAL_WRITE_GOLDEN=1 .venv/bin/pytest tests/orchestrator/test_golden.py` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import loop
from orchestrator.config import SealConfig
from orchestrator.journal import JOURNAL, read_journal

GOLDEN = Path(__file__).with_name("golden_tiny_run.json")
RELATIVE = 1e-4  # fp32 on another CPU or BLAS: ~1e-6; a changed default moves these by far more
# One local worker: the students and M-steps run in a process of their own, where fp32 is possible
# (accelerate fixes one precision per process, and the test session's in-process students run bf16).
SETTINGS = {"run.rounds": 2, "student.train.epochs": 2, "restem.train.epochs": 2, "pool.kind": "local",
            "pool.workers": 1}


def numbers(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What a run computed, by journal key; times, workers and paths left out."""
    latest = {(r["type"], r["key"]): r for r in records}

    def of(kind: str) -> dict[str, dict[str, Any]]:
        return {key: r for (t, key), r in sorted(latest.items()) if t == kind}

    return {
        "edits": {k: hashlib.sha256(r["text"].encode()).hexdigest()[:16] for k, r in of("edit").items()},
        "students": {k: {"score": r["score"], "losses": r["report"]["epoch_losses"]} for k, r in of("report").items()},
        "rewards": {k: r["reward"] for k, r in of("reward").items()},
        "kept": {k: r["kept"] for k, r in of("selection").items()},
        "m_steps": {k: r["report"]["epoch_losses"] if r.get("report") else None for k, r in of("mstep_end").items()},
        "tau": {k: [r["tau"], r["baseline_tau"]] for k, r in of("evaluation").items()},
    }


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where `got` departs from `want`: floats beyond RELATIVE, anything else unequal."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for k in sorted(set(want) | set(got))
                for d in (differences(got.get(k), want.get(k), f"{where}/{k}") if k in got and k in want
                          else [f"{where}/{k}: {'missing' if k in want else 'unexpected'}"])]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        return [] if math.isclose(got, want, rel_tol=RELATIVE, abs_tol=1e-9) else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def tiny_run_numbers(tiny_config: Any, runs: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
                     ) -> dict[str, Any]:
    monkeypatch.setenv("SEAL_PRECISION", "fp32")
    monkeypatch.setenv("SEAL_THREADS", "1")
    cfg: SealConfig = tiny_config(runs, "golden", **SETTINGS, **overrides)
    loop.main(cfg, False, Console(quiet=True))
    return numbers(read_journal(cfg.run_dir / JOURNAL))


def test_a_seeded_tiny_run_computes_its_golden_numbers(
    tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = tiny_run_numbers(tiny_config, tmp_path, monkeypatch)
    if os.environ.get("SEAL_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert sum(len(v) for v in want.values()) > 40  # the run is pinned whole, not a few numbers of it
    assert differences(got, want) == []


def test_a_changed_default_moves_the_golden_numbers(
    tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The golden test can fail: the student's learning rate, from its default to 1.5× it, changes the
    students' second-epoch losses and the rewards."""
    from orchestrator.config import load_config

    lr = load_config(None).student.train.lr
    found = differences(tiny_run_numbers(tiny_config, tmp_path, monkeypatch, **{"student.train.lr": 1.5 * lr}),
                        json.loads(GOLDEN.read_text()))
    assert any(d.startswith("/students/") and "losses[1]" in d for d in found)
    assert any(d.startswith("/rewards/") for d in found)
