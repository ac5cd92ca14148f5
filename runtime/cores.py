"""Share the CPU's cores with the other seal processes computing at the same moment (docs/architecture.md §7).

After each parallel region torch's OpenMP threads spin, waiting for the next one (libgomp: about
300,000 iterations). Two processes with a thread per core each then spend their time slices spinning
while the other's threads wait for a core: each ran 4× slower on an AMD EPYC with 2 cores and 37×
on an Intel Xeon, not 2×. A process with one thread has no team to wait for, so it never spins.

So a seal process marks itself in a shared folder while it computes on the CPU (`computing`), and in
its loops (`rebalance`: each training step, each decoding step) takes its share of the cores it may
run on: the cores that other programs leave free // seal processes marked, at least 1, never more than
it started with. Alone it keeps every thread, at no cost; beside another it gives up the extra ones
within a step. `SEAL_THREADS=N` fixes the count instead.

Other programs (a compiler, a test suite, someone's benchmark) carry no mark, so their load is read from
the kernel's counters: the CPU time spent on our cores since the last look, less what the marked seal
processes spent. Beside one CPU-bound program on 2 cores a teacher that kept both threads ran 2.4× its
time alone (68.8 s against 28.7 s, fp32, AVX2 AMD EPYC; the quickstart's phases ran 6.7–11× beside a C++
build), and on the one core left to it 1.3–1.5× (benchmarks/contention.py --only neighbour).

bf16 results depend on the thread count in their last bits (docs/performance.md, "Two seal commands on the same
cores"): alone, or with SEAL_THREADS set, a run is bit-reproducible; beside another seal process it is not.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria

from runtime.devices import fixed_threads, usable_cores

MARKS = Path(tempfile.gettempdir()) / f"seal-lm-cores-{os.getuid()}"
CHECK_EVERY_S = 0.25  # a look at the folder costs ~0.1 ms; a step 20 ms to seconds

_depth = 0  # nested `computing` blocks in this process
_mark: Path | None = None
_ceiling = 0  # the thread count this process started computing with: its share never exceeds it
_last_check = 0.0
_last_sample: tuple[float, int, dict[int, int]] | None = None  # (when, busy ticks on our cores, per seal pid)


@contextlib.contextmanager
def computing(on_cpu: bool = True) -> Iterator[None]:
    """Count this process among those computing on the CPU while the block runs, on its share of cores."""
    global _depth, _mark, _ceiling
    if not on_cpu or "SEAL_THREADS" in os.environ:
        if on_cpu:
            torch.set_num_threads(fixed_threads(os.environ["SEAL_THREADS"]))
        yield
        return
    if _depth == 0:
        _ceiling = torch.get_num_threads()
        try:
            MARKS.mkdir(mode=0o700, exist_ok=True)
            _mark = MARKS / _identity(os.getpid())
            _mark.touch()
        except OSError:  # no writable temp folder: compute unmarked rather than fail the job
            _mark = None
    _depth += 1
    try:
        rebalance(now=True)
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _mark is not None:
            _mark.unlink(missing_ok=True)
            torch.set_num_threads(_ceiling)
            _mark = None


def rebalance(now: bool = False) -> None:
    """Inside `computing`: set torch's thread count to this process's share (at most every CHECK_EVERY_S)."""
    global _last_check
    if _depth == 0 or (not now and time.monotonic() - _last_check < CHECK_EVERY_S):
        return
    _last_check = time.monotonic()
    free = max(1, usable_cores() - round_half_up(busy_elsewhere()))
    share = max(1, min(_ceiling, free // max(1, computing_processes())))
    if share != torch.get_num_threads():
        torch.set_num_threads(share)


def computing_processes() -> int:
    """Live seal processes marked as computing; marks of dead ones are removed."""
    alive = 0
    for mark in MARKS.glob("*") if MARKS.is_dir() else ():
        pid = int(mark.name.split("-")[0]) if mark.name.split("-")[0].isdigit() else 0
        if pid and _identity(pid) == mark.name:
            alive += 1
        else:
            mark.unlink(missing_ok=True)
    return alive


def busy_elsewhere() -> float:
    """Cores kept busy by programs that are not marked seal processes, on average since the last call
    (0.0 at the first call, or where Linux's /proc cannot be read)."""
    global _last_sample
    try:
        sample = (time.monotonic(), _busy_ticks(), {pid: _process_ticks(pid) for pid in {os.getpid(), *_marked_pids()}})
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    before, _last_sample = _last_sample, sample
    if before is None or sample[0] - before[0] <= 0:
        return 0.0
    seal_ticks = sum(ticks - before[2].get(pid, ticks) for pid, ticks in sample[2].items())
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    return max(0.0, (sample[1] - before[1] - seal_ticks) / ticks_per_s / (sample[0] - before[0]))


def round_half_up(cores: float) -> int:
    return int(cores + 0.5)


def _busy_ticks() -> int:
    """Ticks spent running anything (not idle, waiting on I/O or stolen) on the cores we may run on."""
    ours = {f"cpu{c}" for c in os.sched_getaffinity(0)}
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name in ours:  # user nice system idle iowait irq softirq steal ...
            busy += sum(int(t) for t in ticks[:3]) + int(ticks[5]) + int(ticks[6])
    return busy


def _marked_pids() -> list[int]:
    return [int(m.name.split("-")[0]) for m in MARKS.glob("*") if m.name.split("-")[0].isdigit()] \
        if MARKS.is_dir() else []


def _process_ticks(pid: int) -> int:
    """User + system ticks of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15, counted after the command name


def _identity(pid: int) -> str:
    """pid and start time (Linux), so a mark outlives neither its process nor a reuse of its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if not Path("/proc/self/stat").exists():  # no procfs: the pid alone
            with contextlib.suppress(OSError):
                os.kill(pid, 0)
                return str(pid)
        return ""
    return f"{pid}-{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the command name


class RebalanceEachStep(StoppingCriteria):
    """Hooked into `generate` as a stopping criterion that never stops: a rebalance per decoding step."""

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        rebalance()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
