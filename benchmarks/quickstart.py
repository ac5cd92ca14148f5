"""The quickstart's wall time and held-out τ: `seal run` with no arguments, timed phase by phase.

Runs the embedded default (configs/quickstart.toml) into a fresh runs folder, or reads a finished run
(`--run-dir`), and writes its phase times (from the journal, as `seal report --html` shows them), its
held-out τ per round with the paired change since round 0, and the bf16 matmul peak (2048³) measured
in the same process, so a reader can tell a slower machine from a slower program.

    python benchmarks/quickstart.py [--run-dir runs/quickstart] [--out benchmarks/results/quickstart.json]

Run it alone: two CPU-heavy processes on 2 cores slow each other down many times over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from inner_loop import matmul_peak  # benchmarks/, this script's folder, is first on sys.path
from rich.console import Console
from rich.table import Table

from orchestrator.journal import JOURNAL, read_journal
from orchestrator.report import round_rows
from orchestrator.report_html import phase_times

OUT = Path(__file__).parent / "results" / "quickstart.json"
SEAL = str(Path(sys.executable).parent / "seal")


def run_quickstart(runs_dir: Path) -> tuple[Path, float]:
    """`seal run` as a user types it, its runs folder aside; its wall time with start-up and loading."""
    start = time.perf_counter()
    subprocess.run([SEAL, "run", "--set", f"run.runs_dir={json.dumps(str(runs_dir))}"], check=True)
    return runs_dir / "quickstart", time.perf_counter() - start


def summarize(run_dir: Path, wall_s: float | None) -> dict[str, Any]:
    records = read_journal(run_dir / JOURNAL)
    rows = round_rows(records)
    phases = phase_times(records)
    return {
        "benchmark": "quickstart", "run_dir": str(run_dir), "command_wall_s": wall_s,
        "journal_wall_s": sum(p.seconds for p in phases),
        "phases": [asdict(p) for p in phases],
        "rounds": [{"round": r.round, "tau": r.tau, "baseline_tau": r.baseline_tau,
                    "gain_over_round_0": asdict(r.tau_gain) if r.tau_gain else None} for r in rows],
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_avg_5m": os.getloadavg()[1],
                    "bf16_matmul_peak_gflops": matmul_peak(torch.bfloat16) / 1e9},
    }


def show(result: dict[str, Any], console: Console) -> None:
    table = Table("round", "phase", "seconds", "units", title="quickstart: wall time per phase (journal)")
    for p in result["phases"]:
        table.add_row(str(p["round"]), p["phase"], f"{p['seconds']:.1f}", f"{p['units']} {p['unit']}")
    console.print(table)
    for r in result["rounds"]:
        g = r["gain_over_round_0"]
        gain = f", paired change since round 0 {g['mean']:+.3f} ({g['low']:+.3f} … {g['high']:+.3f})" if g else ""
        console.print(f"round {r['round']}: held-out τ {r['tau']:.3f} (no adaptation {r['baseline_tau']:.3f}){gain}",
                      highlight=False)
    wall = result["command_wall_s"]
    console.print(f"phases {result['journal_wall_s'] / 60:.1f} min"
                  + (f", the whole command {wall / 60:.1f} min" if wall else "")
                  + f"; bf16 matmul peak now {result['machine']['bf16_matmul_peak_gflops']:.0f} GFLOP/s",
                  highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a finished quickstart run to read instead of running one")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seal-quickstart-") as tmp:
        run_dir, wall = (args.run_dir, None) if args.run_dir else run_quickstart(Path(tmp))
        result = summarize(run_dir, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    show(result, Console())


if __name__ == "__main__":
    main()
