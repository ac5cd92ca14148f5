"""A whole quickstart-sized round (issue 16), the code before the throughput work against today's, in one run.

`seal run` with the embedded default (configs/quickstart.toml: SmolLM2-135M, single-model, N=4 passages ×
M=3 self-edits, held-out τ on 4 others) for one ReST^EM round, first by the code as it was when issue 16 was
filed (a git worktree of `--baseline`, run with this environment's Python), then by this tree, each into a
fresh runs folder, same seeds. Reported for each: the command's wall time, the journal's time per phase (as
`seal report --html` shows them), held-out τ before and after the round, and the bf16 matmul peak measured
beside it; then the speed-up, whole and per phase.

    .venv/bin/python benchmarks/round.py [--baseline ae45463^]   (about 15 min; run it alone)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quickstart import summarize  # benchmarks/, this script's folder, is first on sys.path
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "round.json"
BASELINE = "ae45463^"  # the commit before issue 16's first: the code the issue measured


def run_round(tree: Path, runs_dir: Path) -> tuple[Path, float]:
    """`seal run` for one round as that tree's CLI runs it; its wall time with start-up and loading."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from orchestrator.cli import app; app()", "run",
                    "--set", "run.rounds=1", "--set", f"run.runs_dir={json.dumps(str(runs_dir))}"],
                   cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    return runs_dir / "quickstart", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="the commit whose code is today's path")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", args.baseline], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    result: dict[str, Any] = {"benchmark": "round", "baseline_commit": commit}
    with tempfile.TemporaryDirectory(prefix="seal-round-") as tmp:
        old_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), commit], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for name, tree in (("baseline", old_tree), ("today", ROOT)):
                run_dir, wall = run_round(tree, Path(tmp) / f"runs-{name}")
                result[name] = summarize(run_dir, wall)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    result["speedup"] = result["baseline"]["command_wall_s"] / result["today"]["command_wall_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    show(result, Console())


def show(result: dict[str, Any], console: Console) -> None:
    old, new = result["baseline"], result["today"]
    table = Table("round", "phase", "units", "baseline s", "today s", "speed-up",
                  title=f"one quickstart round: the code at {result['baseline_commit'][:7]} against today's")
    for before, after in zip(old["phases"], new["phases"], strict=True):
        table.add_row(str(after["round"]), after["phase"], f"{after['units']} {after['unit']}",
                      f"{before['seconds']:.1f}", f"{after['seconds']:.1f}",
                      f"{before['seconds'] / after['seconds']:.2f}×")
    table.add_row("", "whole command", "", f"{old['command_wall_s']:.1f}", f"{new['command_wall_s']:.1f}",
                  f"{result['speedup']:.2f}×")
    console.print(table)
    for name, run in (("baseline", old), ("today", new)):
        taus = ", ".join(f"round {r['round']} {r['tau']:.3f}" for r in run["rounds"])
        console.print(f"{name}: held-out τ {taus}; bf16 matmul peak "
                      f"{run['machine']['bf16_matmul_peak_gflops']:.0f} GFLOP/s", highlight=False)


if __name__ == "__main__":
    main()
