"""Rich progress for the loop's long phases: what runs, done/total, rate and ETA.

One bar per phase (teacher sampling, student jobs, M-step, a table's jobs): every long loop in seal draws
this one. When the phase ends, a one-line summary stays on screen (and in logs, where no live bar is drawn).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Units per second, or seconds per unit when each takes longer than a second (a student job)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        if not speed:
            return Text(f"– {unit}/s", style="progress.data.speed")
        text = f"{speed:.2f} {unit}/s" if speed >= 1 else f"{1 / speed:.1f} s per {unit.removesuffix('s')}"
        return Text(text, style="progress.data.speed")


class Phases:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def phase(self, description: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
        """Yields `advance(n)`; prints a summary line at the end."""
        columns = (
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        start = time.perf_counter()
        done = 0
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, unit=unit)

            def advance(n: int = 1) -> None:
                nonlocal done
                done += n
                bar.advance(task, n)

            yield advance
        seconds = time.perf_counter() - start
        rate = f", {done / seconds:.2f} {unit}/s" if done and seconds > 0 else ""
        self.console.print(f"{description}: {done}/{total} {unit} in {seconds:.1f} s{rate}", highlight=False)
