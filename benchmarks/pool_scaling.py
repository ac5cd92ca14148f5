"""Student pools side by side on the same jobs, in one run: one Student in this process (no pool, the
baseline), the local pool with 1 and with 2 worker processes, and the Ray pool with 2 actors.

  jobs/min    the same N student jobs (LoRA SFT + greedy probes), wall time from submit to last report
  overhead    what a pool adds per job: submit → report of a trivial job (no training, one probe,
              one new token) minus the seconds the student itself reports (train + eval); median
  startup     spawning workers and loading the model (and, for Ray, starting Ray)

On a CPU the workers split the cores (2 workers × half the threads), so 2 workers gain only what one
process leaves unused; on GPUs each worker has its own device and jobs/min scales with them. Run it
on an idle machine: when other processes share the cores, multi-threaded students slow down far more
than one-thread ones (OpenMP threads wait on each other), and the rows measure the contention. The
JSON keeps the load average before and after the run to show it.

    python benchmarks/pool_scaling.py [--model smollm2-135m-instruct] [--jobs 8] [--overhead-runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.models import resolve_model
from student.messages import LoRASpec, Probe, StudentJob, TrainingExample, TrainSpec
from student.pool import Pool

OUT = Path(__file__).parent / "results" / "pool_scaling.json"
COLUMNS = ("pool", "workers", "jobs/min", "speed-up", "student s/job", "overhead ms/job", "startup s", "ok")


@dataclass(frozen=True)
class Row:
    pool: str
    workers: int
    startup_s: float
    wall_s: float
    jobs: int
    ok: int
    student_s: float  # the students' own train + eval seconds, summed over the jobs
    overhead_ms: float

    def jobs_per_min(self) -> float:
        return 60 * self.jobs / self.wall_s

    def cells(self, baseline: Row) -> list[str]:
        return [self.pool, str(self.workers), f"{self.jobs_per_min():.1f}",
                f"{self.jobs_per_min() / baseline.jobs_per_min():.2f}×", f"{self.student_s / self.jobs:.2f}",
                f"{self.overhead_ms:.1f}", f"{self.startup_s:.1f}", f"{self.ok}/{self.jobs}"]


def make_jobs(n: int) -> list[StudentJob]:
    """Knowledge-sized small jobs: 4 implications of one made-up fact, 2 epochs, 3 probes × 16 tokens."""
    jobs = []
    for i in range(n):
        town, river = f"Velmar{i}", f"Ostra{i}"
        facts = (f"The river {river} flows through {town}.", f"{town} was founded beside the {river}.",
                 f"Boats on the {river} stop at {town}.", f"{town}'s mills run on the {river}'s water.")
        examples = tuple(TrainingExample(f"Tell me about {town}.", fact) for fact in facts)
        probes = (Probe("river", f"Which river flows through {town}?", river),
                  Probe("town", f"Which town lies on the {river}?", town),
                  Probe("mills", f"What powers the mills of {town}?", river))
        spec = TrainSpec(epochs=2, batch_size=2, max_new_tokens=16)
        jobs.append(StudentJob(f"job-{i}", seed=i, examples=examples, probes=probes,
                               lora=LoRASpec(r=8, alpha=16), train=spec))
    return jobs


TRIVIAL = StudentJob("trivial", seed=0, examples=(), probes=(Probe("p", "Hi.", "Hello"),),
                     train=TrainSpec(max_new_tokens=1))


def measure(
    name: str, workers: int, open_pool: Callable[[], Pool], jobs: list[StudentJob], overhead_runs: int
) -> Row:
    start = time.perf_counter()
    pool = open_pool()
    startup_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        reports = list(pool.run(jobs))
        wall_s = time.perf_counter() - start
        overheads = []
        for _ in range(overhead_runs):
            start = time.perf_counter()
            (report,) = pool.run([TRIVIAL])
            overheads.append(time.perf_counter() - start - report.train_seconds - report.eval_seconds)
    finally:
        pool.close()
    student_s = sum(r.train_seconds + r.eval_seconds for r in reports)
    ok = sum(r.ok for r in reports)
    overhead_ms = 1000 * statistics.median(overheads)
    return Row(name, workers, startup_s, wall_s, len(jobs), ok, student_s, overhead_ms)


def pools(model: str) -> list[tuple[str, int, Callable[[], Pool]]]:
    def in_process() -> Pool:
        from student.pools.inprocess import InProcessPool
        from student.student import Student

        return InProcessPool(Student(model, device="cpu"))

    def local(workers: int) -> Callable[[], Pool]:
        from student.pools.local import LocalPool

        return lambda: LocalPool(model, workers, device="cpu")

    def ray(workers: int) -> Callable[[], Pool]:
        from student.pools.ray_pool import RayPool

        return lambda: RayPool(model, workers, num_gpus_per_worker=0)

    return [("in-process", 1, in_process), ("local", 1, local(1)), ("local", 2, local(2)),
            ("ray", 2, ray(2))]


def report(rows: list[Row], settings: dict[str, Any], load_before: float, out: Path, console: Console) -> None:
    machine = {"cpus": os.cpu_count(), "cpu": platform.processor(), "load_avg_1m_before": load_before,
               "load_avg_5m_after": os.getloadavg()[1]}
    result = {"benchmark": "pool_scaling", "machine": machine, "settings": settings,
              "rows": [asdict(r) | {"jobs_per_min": r.jobs_per_min()} for r in rows]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = Table(*COLUMNS, title=f"student pools: {settings['jobs']} jobs, CPU, {machine['cpus']} cores")
    for r in rows:
        table.add_row(*r.cells(rows[0]))
    console.print(table)
    runs = settings["overhead_runs"]
    console.print(f"overhead: median of {runs} trivial jobs · wrote {out}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--overhead-runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    model, jobs = resolve_model(args.model), make_jobs(args.jobs)
    load_before, rows = os.getloadavg()[0], []
    for name, workers, open_pool in pools(model):
        with console.status(f"{name} × {workers}: start, {len(jobs)} jobs, then trivial jobs"):
            rows.append(measure(name, workers, open_pool, jobs, args.overhead_runs))
    job = asdict(jobs[0].train) | {"examples": len(jobs[0].examples), "probes": len(jobs[0].probes)}
    settings = {"model": args.model, "jobs": len(jobs), "overhead_runs": args.overhead_runs, "job": job}
    report(rows, settings, load_before, args.out, console)


if __name__ == "__main__":
    main()
