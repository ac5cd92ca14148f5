"""Two seal commands at once on the same cores: each one's time beside the other against its time alone.

Real commands on the real SmolLM2, as a user runs them:
  student: `seal eval-edits` on one published SEAL edit (no adaptation, passage, passage + edit: 3 jobs)
  teacher: `seal propose --backend hf` (one passage × 2 self-edits of up to 128 tokens)
each alone, then two started together (the same command twice, and one of each), and each beside a
CPU-bound program that is not seal (a Python busy loop on one core, as a build or another user's script
would be), under two thread policies in the same run:
  shared: seal's default (runtime/cores.py): a process computing beside another takes its share of the
          cores, at every training and decoding step
  fixed:  `SEAL_THREADS=<all cores>` in both, torch's default of a thread per core each: the code path
          before core sharing (the baseline)
`--only neighbour` runs just the rows beside the non-seal program (and each command alone).
A command that runs past `--timeout-factor` × its time alone is killed and reported as at least that.
Nothing else may run on the machine meanwhile: the point is how two of ours share it.

    python benchmarks/contention.py [--repeats 1] [--only neighbour]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runtime.devices import usable_cores

DATA = Path(__file__).parents[2] / "shared/data/seal/general-knowledge/data/synthetic_data/eval/base_val.json"
OUT = Path(__file__).parent / "results" / "contention.json"
SEAL = str(Path(sys.executable).with_name("seal"))
POLICIES = ("shared", "fixed")
BUSY_LOOP = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass"  # dies with us at the latest


def command(kind: str, scratch: Path, tag: str) -> list[str]:
    if kind == "student":
        return [SEAL, "eval-edits", "--data", str(DATA), "--passages", "1"]
    return [SEAL, "propose", "--backend", "hf", "--data", str(DATA), "--passages", "1", "--n", "2",
            "--max-tokens", "128", "--out", str(scratch / f"{tag}.json")]


def timed(kinds: list[str], policy: str, timeout_s: float | None, scratch: Path, neighbour: bool = False
          ) -> list[float]:
    """Start one process per kind at the same moment (beside a running busy loop with `neighbour`); each
    one's seconds (timeout_s where it was killed)."""
    if neighbour:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            time.sleep(1.0)  # running before the commands start, as a neighbour would be
            return timed(kinds, policy, timeout_s, scratch)
        finally:
            busy.kill()
            busy.wait()
    env = {k: v for k, v in os.environ.items() if k != "SEAL_THREADS"}
    if policy == "fixed":
        env["SEAL_THREADS"] = str(usable_cores())
    logs = [scratch / f"{policy}-{i}.log" for i in range(len(kinds))]
    start = time.perf_counter()
    procs = []
    for i, (kind, log) in enumerate(zip(kinds, logs, strict=True)):
        with log.open("w") as err:  # the child keeps its own copy of the file descriptor
            procs.append(subprocess.Popen(command(kind, scratch, f"{policy}-{i}"), env=env,
                                          stdout=subprocess.DEVNULL, stderr=err))
    seconds: list[float | None] = [None] * len(procs)
    while None in seconds:  # each one's own end, whichever comes first
        elapsed = time.perf_counter() - start
        for i, proc in enumerate(procs):
            if seconds[i] is None and proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(proc.args)} failed:\n{logs[i].read_text()[-2000:]}")
                seconds[i] = elapsed
            elif seconds[i] is None and timeout_s is not None and elapsed > timeout_s:
                proc.kill()
                proc.wait()
                seconds[i] = timeout_s
        time.sleep(0.05)
    return [s for s in seconds if s is not None]


def measure(repeats: int, timeout_factor: float, console: Console, only: str | None) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for policy in POLICIES:
            alone = {}
            for kind in ("student", "teacher"):
                runs = [timed([kind], policy, None, scratch)[0] for _ in range(repeats)]
                alone[kind] = statistics.median(runs)
                rows.append({"policy": policy, "together": [kind], "seconds": runs, "alone_s": alone[kind]})
                console.print(f"{policy:6} {kind} alone: {', '.join(f'{s:.1f}' for s in runs)} s")
            pairs = [["student", "student"], ["teacher", "teacher"], ["student", "teacher"]] if only is None else []
            beside = [[kind] for kind in ("student", "teacher")]
            for group, neighbour in [(pair, False) for pair in pairs] + [(one, True) for one in beside]:
                limit = timeout_factor * max(alone[k] for k in group)
                seconds = timed(group, policy, limit, scratch, neighbour)
                together = group + (["busy loop (not seal)"] if neighbour else [])
                rows.append({"policy": policy, "together": together, "seconds": seconds, "killed_at_s": limit,
                             "times_alone": [s / alone[k] for s, k in zip(seconds, group, strict=True)]})
                console.print(f"{policy:6} {' + '.join(together)}: {', '.join(f'{s:.1f}' for s in seconds)} s")
    return rows


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def table(rows: list[dict[str, Any]], title: str) -> Table:
    out = Table("commands together", "policy", "seconds each", "× its time alone", title=title)
    for row in rows:
        if "times_alone" not in row:
            continue
        killed = [s >= row["killed_at_s"] for s in row["seconds"]]
        times = [f"{'≥ ' if k else ''}{t:.1f}×" for t, k in zip(row["times_alone"], killed, strict=True)]
        out.add_row(" + ".join(row["together"]), row["policy"], ", ".join(f"{s:.1f}" for s in row["seconds"]),
                    ", ".join(times))
    for row in rows:
        if "alone_s" in row:
            out.add_row(f"{row['together'][0]} alone", row["policy"], f"{row['alone_s']:.1f}", "1.0×")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command alone (median)")
    parser.add_argument("--timeout-factor", type=float, default=12.0)
    parser.add_argument("--only", choices=["neighbour"], help="only the rows beside a non-seal program")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    load_before = os.getloadavg()[0]
    rows = measure(args.repeats, args.timeout_factor, console, args.only)
    machine = {"cpu": cpu_model(), "usable_cores": usable_cores(), "load_avg_1m_before": load_before}
    result = {"machine": machine, "repeats": args.repeats, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    console.print(table(rows, f"two seal commands at once ({machine['cpu']}, {machine['usable_cores']} cores)"))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
