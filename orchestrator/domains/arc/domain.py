"""Few-shot ARC (paper §4.2) behind the generic Domain protocol.

The context is one task; the self-edit is a JSON plan (plan.py) that becomes a test-time training
job: leave-n-out sub-tasks of the demonstrations, augmented as the plan says, with the plan's learning
rate, epochs and loss, under a step budget. τ is pass@2: the student answers each test input under
several invertible views, the answers are mapped back and voted into two attempts, and the task
counts as solved (1.0) only if every test output is among them. Rewards are binary, so ReST^EM keeps
every positive edit (`all_positive`), as the reference does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from orchestrator.domains.arc.augment import FAMILIES, GEOMETRIC, map_task
from orchestrator.domains.arc.grids import ArcTask, Grid, grid_to_text, text_to_grid
from orchestrator.domains.arc.plan import parse_plan, teacher_messages
from orchestrator.domains.arc.ttt import render, to_example, ttt_tasks
from orchestrator.domains.arc.vote import ATTEMPTS, solved, vote
from orchestrator.domains.base import ParsedEdit, Purpose
from student.messages import Probe, ProbeScoring, StudentReport, TrainSpec
from teacher.base import ChatMessage

# The reference's evaluation views: the task as given, transposed, flipped both ways, rotated.
PAPER_VIEWS = ("identity", "transpose", "flip_rows", "flip_cols", "rot90", "rot180")


@dataclass(frozen=True)
class ArcDomain:
    views: tuple[str, ...] = PAPER_VIEWS
    max_examples: int = 250  # the reference's Nmax
    max_steps: int = 375  # the reference's optimiser-step budget per self-edit
    leave_out: tuple[int, ...] = (1, 2)
    seed: int = 0
    name: str = "arc"
    default_selection: ClassVar[str] = "all_positive"
    default_baseline: ClassVar[str] = "no_adaptation"

    def __post_init__(self) -> None:
        unknown = [v for v in self.views if v not in GEOMETRIC]
        if unknown or not self.views:
            raise ValueError(
                f"arc views must be a non-empty subset of {list(GEOMETRIC)}, got {list(self.views)}"
            )
        for option, value in (("max_examples", self.max_examples), ("max_steps", self.max_steps)):
            if value < 1:
                raise ValueError(f"arc {option} must be >= 1, got {value}")
        if not self.leave_out or min(self.leave_out) < 1:
            raise ValueError(f"arc leave_out must be a non-empty list of values >= 1, got {list(self.leave_out)}")

    def context_id(self, context: ArcTask) -> str:
        return context.task_id

    def teacher_prompt(self, context: ArcTask) -> list[ChatMessage]:
        return teacher_messages(context)

    def context_alone(self, context: ArcTask, train: TrainSpec) -> None:
        """A task's demonstrations are what a plan augments; there is no plan-free training set to beat."""
        return None

    def parse_edit(self, context: ArcTask, text: str, train: TrainSpec) -> ParsedEdit:
        plan = parse_plan(text)
        maps = [m for family in plan.families for m in FAMILIES[family]]
        subtasks = ttt_tasks(context, maps, leave=self.leave_out, max_tasks=self.max_examples, seed=self.seed)
        budget = min(self.max_steps, train.max_steps or self.max_steps)
        return ParsedEdit(
            examples=tuple(to_example(sub) for sub in subtasks),
            train=dataclasses.replace(
                train, lr=plan.lr, epochs=plan.epochs, loss_on=plan.loss_on, chat=True, max_steps=budget
            ),
        )

    def probes(self, context: ArcTask) -> tuple[Probe, ...]:
        probes = []
        for view in self.views:
            seen = map_task(context, GEOMETRIC[view])
            for t, pair in enumerate(seen.test):
                system, prompt = render(seen.train, pair)
                probes.append(Probe(_probe_id(context, t, view), prompt, grid_to_text(pair.output), system))
        return tuple(probes)

    def scoring(self, purpose: Purpose) -> ProbeScoring:
        return "generate"  # a grid is right or wrong: the likelihood of a long gold grid adds nothing

    def reward_of(self, context: ArcTask, report: StudentReport) -> float:
        return self.score(context, report)

    def score(self, context: ArcTask, report: StudentReport) -> float:
        answers = {r.probe_id: r.answer for r in report.results} if report.ok else {}
        attempts = [vote(self._predictions(context, answers, t), ATTEMPTS) for t in range(len(context.test))]
        return float(solved(attempts, [pair.output for pair in context.test]))

    def _predictions(self, context: ArcTask, answers: dict[str, str], t: int) -> list[Grid]:
        """Test input t's parseable answers, mapped back to the task's own orientation, in view order."""
        grids = []
        for view in self.views:
            grid = text_to_grid(answers.get(_probe_id(context, t, view), ""))
            if grid is not None:
                grids.append(GEOMETRIC[view].inverse(grid))
        return grids


def _probe_id(context: ArcTask, test_index: int, view: str) -> str:
    return f"{context.task_id}/test{test_index}/{view}"
