"""Faults survived, counted (issue 17, item 4). A tiny seeded `seal run` (a 2-layer random model with
SmolLM2's tokenizer, 2 rounds, N=2 × M=2, the HF teacher) is run whole once per pool kind, then broken:

  kill after <kind>  SIGKILL to the run's process group right after its journal gains its first record of
                     that kind (edit, report, reward, selection, mstep_start, mstep_end, evaluation), then
                     `seal run --resume` with the same command;
  worker killed      SIGKILL to the local pool's worker while it runs a job; the run goes on by itself;
  torn last line     a finished run's journal cut in the middle of its last line, then `--resume`;
  vLLM killed        SIGKILL to the managed vLLM server mid-run (SmolLM2 teaching the tiny model); the run goes on;
  disk full          the run directory on a small tmpfs filled to the last byte after round 1's M-step: one
                     error line and exit 1, the journal whole; space freed, then `--resume`.

For each fault: did the run finish, is every held-out evaluation recorded exactly once (none lost, none
doubled), and are its outcomes (every edit's text, reward and score, the kept edits, τ per round) the
uninterrupted run's. `SEAL_THREADS=1` so that a resumed computation is bit-identical to an uninterrupted one.

    .venv/bin/python benchmarks/faults.py   (about 12 min on 2 cores; nothing else running)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.journal import JOURNAL, read_journal
from orchestrator.models import SMOLLM2, resolve_model
from orchestrator.prepare import tiny_random_model

OUT = Path(__file__).parent / "results" / "faults.json"
SEAL = str(Path(sys.executable).parent / "seal")  # the installed command, as a user runs it
KINDS = ("edit", "report", "reward", "selection", "mstep_start", "mstep_end", "evaluation")
ROUNDS = 2
SETTINGS = {"run.rounds": ROUNDS, "data.n_train": 2, "data.n_eval": 2, "teacher.sampling.n": 2,
            "teacher.sampling.max_tokens": 12, "student.train.epochs": 1, "student.train.max_new_tokens": 4,
            "restem.train.epochs": 1, "restem.keep_non_improving": True}
ENV = os.environ | {"SEAL_THREADS": "1"}  # one thread: a resumed computation is bit-identical
OUTCOMES = {"edit": ("text",), "report": ("score",), "reward": ("reward", "baseline", "parsed"),
            "selection": ("kept",), "evaluation": ("tau", "baseline_tau")}


def seal_args(runs: Path, name: str, model: str, pool: str, resume: bool = False,
              more: dict[str, Any] | None = None) -> list[str]:
    sets = SETTINGS | {"run.runs_dir": str(runs), "teacher.model": model, "pool.kind": pool,
                       "pool.workers": 1 if pool == "local" else None} | (more or {})
    args = [SEAL, "run", "--name", name, "--resume" if resume else "--no-resume"]
    for key, value in sets.items():
        if value is not None:
            args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def seal_run(runs: Path, name: str, model: str, pool: str, resume: bool = False,
             more: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(seal_args(runs, name, model, pool, resume, more), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # a kill reaches every child


def vllm_killed(runs: Path, tiny: str) -> dict[str, Any] | None:
    """The managed vLLM server SIGKILLed while the run is under way (right after its first edit record): the
    teacher restarts it once and the run goes on by itself. SmolLM2 teaches the tiny model (vLLM's CPU attention
    has no kernel for the tiny model's 16-wide heads), against the same run uninterrupted. None without vLLM."""
    if importlib.util.find_spec("vllm") is None:
        return None
    more = {"run.mode": "teacher-student", "teacher.backend": "vllm", "student.model": tiny}
    smollm2 = str(resolve_model(SMOLLM2))
    if not finish(seal_run(runs, "whole-vllm", smollm2, "inprocess", more=more)):
        raise SystemExit(f"the uninterrupted vLLM run failed; see {runs / 'whole-vllm'}")
    name, start = "vllm-killed", time.perf_counter()
    process = seal_run(runs, name, smollm2, "inprocess", more=more)
    reached = wait_for(runs / name / JOURNAL, "edit", process)
    servers = [kid for kid in children(process.pid) if b"vllm" in _cmdline(kid)]
    for server in servers:
        os.kill(server, signal.SIGKILL)
    at_fault = lines(runs / name / JOURNAL)
    finished = finish(process)
    return verdict(f"SIGKILL to the managed vLLM server mid-run ({len(servers) if reached else 0} killed)",
                   runs / name, finished, outcomes(runs / "whole-vllm"), time.perf_counter() - start, at_fault)


def disk_full(root: Path, model: str, reference: dict[str, Any]) -> dict[str, Any] | None:
    """The run directory on a small tmpfs in a private mount namespace (`unshare`; no root needed where user
    namespaces are enabled), filled to the last byte right after round 1's M-step: the run must stop with one
    line; then the filler is removed and the same command with --resume must finish. None where no mount
    namespace can be made."""
    mount, out, name = root / "small-disk", root / "small-disk-out", "disk-full"
    mount.mkdir()
    out.mkdir()
    journal, q = mount / name / JOURNAL, shlex.quote
    first, again = (shlex.join(seal_args(mount, name, model, "inprocess", resume)) for resume in (False, True))
    script = f"""
mount -t tmpfs -o size=32m tmpfs {q(str(mount))} || exit 90
{first} > {q(str(out / "first.txt"))} 2>&1 &
run=$!
until grep -q '"type": "mstep_end"' {q(str(journal))} 2>/dev/null || ! kill -0 $run 2>/dev/null; do sleep 0.01; done
dd if=/dev/zero of={q(str(mount / "filler"))} bs=4k 2>/dev/null
wait $run; echo $? > {q(str(out / "first.rc"))}
cp {q(str(journal))} {q(str(out / "at-fault.jsonl"))}
rm {q(str(mount / "filler"))}
{again} > /dev/null 2>&1; echo $? > {q(str(out / "again.rc"))}
cp -r {q(str(mount / name))} {q(str(out / name))}
"""
    start = time.perf_counter()
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=ENV)
    except FileNotFoundError:
        return None
    if done.returncode == 90 or not (out / "again.rc").exists():
        return None
    printed = (out / "first.txt").read_text().splitlines()
    errors = [line for line in printed if "error" in line.lower() or "Traceback" in line]
    at_fault = (out / "at-fault.jsonl").read_bytes()
    row = verdict("disk full after round 1's M-step, then space freed and --resume", out / name,
                  (out / "again.rc").read_text().strip() == "0", reference, time.perf_counter() - start,
                  at_fault.count(b"\n"))
    return row | {"first_exit_code": int((out / "first.rc").read_text()), "error_lines": errors,
                  "journal_whole_at_fault": at_fault.endswith(b"\n") and len(read_journal(out / "at-fault.jsonl"))
                  == at_fault.count(b"\n")}


def finish(process: subprocess.Popen[bytes]) -> bool:
    return process.wait() == 0


def wait_for(journal: Path, kind: str, process: subprocess.Popen[bytes]) -> bool:
    """Poll the journal until a record of `kind` is in it; False if the run ended first."""
    needle = f'"type": "{kind}"'.encode()
    while process.poll() is None:
        if journal.exists() and needle in journal.read_bytes():
            return True
        time.sleep(0.01)
    return False


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pool_workers(pid: int) -> list[int]:
    """The spawned worker processes among `pid`'s children (not multiprocessing's resource tracker)."""
    return [kid for kid in children(pid) if b"spawn_main" in _cmdline(kid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def outcomes(run_dir: Path) -> dict[str, Any]:
    """What the run decided, by (type, key): the last record of a key wins, as when the journal is read."""
    latest = {(r["type"], r["key"]): r for r in read_journal(run_dir / JOURNAL)}
    return {f"{t}/{k}": {f: r[f] for f in OUTCOMES[t]} for (t, k), r in sorted(latest.items()) if t in OUTCOMES}


def verdict(fault: str, run_dir: Path, finished: bool, reference: dict[str, Any], seconds: float,
            records_at_fault: int) -> dict[str, Any]:
    records = read_journal(run_dir / JOURNAL) if (run_dir / JOURNAL).exists() else []
    counts = Counter(r["key"] for r in records if r["type"] == "evaluation")
    expected = [f"r{k}" for k in range(ROUNDS + 1)]
    retried = sum(1 for r in records if r["type"] == "report" and r["report"].get("attempt", 1) > 1)
    return {"fault": fault, "finished": finished, "seconds": seconds, "records_at_fault": records_at_fault,
            "records_at_end": len(records), "jobs_retried": retried,
            "evaluations_lost": sum(1 for k in expected if counts[k] == 0),
            "evaluations_doubled": sum(1 for k in expected if counts[k] > 1),
            "same_outcomes": finished and outcomes(run_dir) == reference}


def lines(journal: Path) -> int:
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="seal-faults-") as tmp:
        root = Path(tmp)
        model = str(tiny_random_model(resolve_model(SMOLLM2), root / "tiny-model"))
        runs = root / "runs"
        references = {}
        for pool in ("inprocess", "local"):
            start = time.perf_counter()
            if not finish(seal_run(runs, f"whole-{pool}", model, pool)):
                raise SystemExit(f"the uninterrupted {pool} run failed; see {runs / f'whole-{pool}'}")
            references[pool] = outcomes(runs / f"whole-{pool}")
            console.print(f"uninterrupted ({pool} pool): {time.perf_counter() - start:.1f} s", highlight=False)
        for kind in KINDS:
            name, start = f"kill-{kind}", time.perf_counter()
            process = seal_run(runs, name, model, "inprocess")
            reached = wait_for(runs / name / JOURNAL, kind, process)
            if reached:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            at_fault = lines(runs / name / JOURNAL)
            finished = finish(seal_run(runs, name, model, "inprocess", resume=True))
            rows.append(verdict(f"SIGKILL after the first {kind} record" + ("" if reached else " (never reached)"),
                                runs / name, finished, references["inprocess"], time.perf_counter() - start,
                                at_fault))
            console.print(rows[-1], highlight=False)
        name, start = "worker-killed", time.perf_counter()
        process = seal_run(runs, name, model, "local")
        killed = wait_for(runs / name / JOURNAL, "report", process)
        workers = pool_workers(process.pid)
        for worker in workers:  # the pool's worker, mid-way through its next job
            os.kill(worker, signal.SIGKILL)
        at_fault = lines(runs / name / JOURNAL)
        finished = finish(process)
        rows.append(verdict(f"SIGKILL to the local pool's worker mid-run ({len(workers) if killed else 0} killed)",
                            runs / name, finished, references["local"], time.perf_counter() - start, at_fault))
        console.print(rows[-1], highlight=False)
        name, start = "torn-line", time.perf_counter()
        finish(seal_run(runs, name, model, "inprocess"))
        journal = runs / name / JOURNAL
        data = journal.read_bytes()
        last = data.rstrip(b"\n").rfind(b"\n") + 1
        journal.write_bytes(data[: last + (len(data) - last) // 2])  # half of the last record
        at_fault = lines(journal)
        finished = finish(seal_run(runs, name, model, "inprocess", resume=True))
        rows.append(verdict("the journal's last line torn in half", runs / name, finished, references["inprocess"],
                            time.perf_counter() - start, at_fault))
        console.print(rows[-1], highlight=False)
        killed_server = vllm_killed(runs, model)
        if killed_server is None:
            console.print("[yellow]vLLM server killed: not run (vLLM is not installed)[/yellow]")
        else:
            rows.append(killed_server)
            console.print(rows[-1], highlight=False)
        full = disk_full(root, model, references["inprocess"])
        if full is None:
            console.print("[yellow]disk full: not run (no mount namespace: `unshare --user --mount` failed)[/yellow]")
        else:
            rows.append(full)
            console.print(rows[-1], highlight=False)
    totals = {"faults": len(rows), "finished": sum(r["finished"] for r in rows),
              "evaluations_lost": sum(r["evaluations_lost"] for r in rows),
              "evaluations_doubled": sum(r["evaluations_doubled"] for r in rows),
              "same_outcomes": sum(r["same_outcomes"] for r in rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": SETTINGS, "rows": rows, "totals": totals}, indent=1) + "\n")
    table = Table("fault", "journal lines at fault / end", "jobs retried", "run finished", "evaluations lost",
                  "doubled", "outcomes = uninterrupted", title="faults survived (tiny seeded run, SEAL_THREADS=1)")
    for r in rows:
        table.add_row(r["fault"], f"{r['records_at_fault']} / {r['records_at_end']}", str(r["jobs_retried"]),
                      str(r["finished"]), str(r["evaluations_lost"]), str(r["evaluations_doubled"]),
                      str(r["same_outcomes"]))
    console.print(table)
    console.print(f"totals: {totals}\nwrote {args.out}", highlight=False)


if __name__ == "__main__":
    main()
