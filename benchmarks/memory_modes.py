"""Single-model mode three ways, side by side in one run: peak memory and wall time of one quickstart-sized
ReST^EM round (`seal run`, N=4 passages × M=3 edits, held-out τ on 4 before and after), each mode a real
`seal run` in its own process tree:

  inline         one process, one network: the HF teacher generates on the student's model, the teacher
                 adapter stacked under each job's LoRA (configs/single-device.toml)
  in-process     one process, two copies: the HF teacher's model and the student's (the quickstart)
  local + vLLM   a managed vLLM server (merge-restart on CPU) and a local pool of student processes

Memory is sampled every 0.2 s over the whole process tree (the CLI, its children and theirs: the vLLM
API server, its engine core, pool workers): PSS, which splits shared pages (torch's libraries, a
forked parent's memory) between the processes that map them, so a sum counts each page once, and RSS,
which counts shared pages in every process. The peak of each sum is reported.

    python benchmarks/memory_modes.py [--modes inline,in-process,local-vllm] [--rounds 1]
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
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from orchestrator.journal import JOURNAL, read_journal

OUT = Path(__file__).parent / "results" / "memory_modes.json"
SEAL = str(Path(sys.executable).parent / "seal")
CONFIGS = Path(__file__).parent.parent / "configs"
MODES: dict[str, tuple[str, list[str]]] = {
    "inline": ("single-device.toml", []),
    "in-process": ("quickstart.toml", ["pool.kind=inprocess", "teacher.backend=hf"]),
    "local-vllm": ("quickstart.toml", ["pool.kind=local", "pool.workers=1", "teacher.backend=vllm"]),
}
COLUMNS = ("mode", "processes", "peak PSS GB", "peak RSS GB", "wall s", "τ before", "τ after", "exit")


@dataclass(frozen=True)
class Row:
    mode: str
    command: str
    exit_code: int
    wall_s: float
    peak_pss_gb: float
    peak_rss_gb: float
    max_processes: int
    tau: list[float]  # held-out τ after round 0, 1, ...

    def cells(self) -> list[str]:
        taus = [f"{t:.3f}" for t in self.tau] or ["-"]
        return [self.mode, str(self.max_processes), f"{self.peak_pss_gb:.2f}", f"{self.peak_rss_gb:.2f}",
                f"{self.wall_s:.0f}", taus[0], taus[-1] if len(taus) > 1 else "-", str(self.exit_code)]


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(PSS, RSS, processes) summed over `root` and all its descendants; processes that exit while
    being read are skipped."""
    pss = rss = count = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss, rss, count = pss + info.pss, rss + info.rss, count + 1
    return pss, rss, count


def measure(mode: str, runs: Path, rounds: int, console: Console) -> Row:
    config, overrides = MODES[mode]
    sets = [x for o in [*overrides, f"run.runs_dir={runs}", f"run.rounds={rounds}"] for x in ("--set", o)]
    command = [SEAL, "run", str(CONFIGS / config), "--name", mode, *sets]
    log = runs / f"{mode}.log"
    start, peak_pss, peak_rss, most = time.perf_counter(), 0, 0, 0
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            pss, rss, count = tree_memory(root)
            peak_pss, peak_rss, most = max(peak_pss, pss), max(peak_rss, rss), max(most, count)
            time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode:
        console.print(f"[red]{mode} failed[/red]; the last lines of {log}:\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-15:]), highlight=False)
    journal = runs / mode / JOURNAL
    records = read_journal(journal) if journal.exists() else []
    tau = [r["tau"] for r in sorted(records, key=lambda r: r.get("round", 0)) if r["type"] == "evaluation"]
    return Row(mode, " ".join(command[1:]), proc.returncode, wall, peak_pss / 2**30, peak_rss / 2**30, most, tau)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}")
    console, rows = Console(width=120), []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="memory-modes-") as tmp:
        for mode in modes:
            with console.status(f"{mode}: seal run, {args.rounds} round(s)"):
                rows.append(measure(mode, Path(tmp), args.rounds, console))
    machine = {"cpus": os.cpu_count(), "cpu": platform.processor(), "memory_gb": psutil.virtual_memory().total / 2**30,
               "load_avg_1m_before": load_before, "load_avg_5m_after": os.getloadavg()[1]}
    result = {"benchmark": "memory_modes", "machine": machine, "rounds": args.rounds,
              "rows": [asdict(r) for r in rows]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    title = f"single-model mode: quickstart-sized rounds ×{args.rounds}, CPU, {os.cpu_count()} cores"
    table = Table(*COLUMNS, title=title)
    for row in rows:
        table.add_row(*row.cells())
    console.print(table)
    console.print(f"τ: held-out token F1 (quickstart grader) · wrote {args.out}", highlight=False)


if __name__ == "__main__":
    main()
