"""The domain protocol (docs/architecture.md §4): everything task-specific lives behind it, so loop.py has no
domain branches. A domain turns a context into a teacher prompt, a self-edit into training data
and settings, and a student report into a reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from student.messages import Probe, ProbeScoring, StudentReport, TrainingExample, TrainSpec
from teacher.base import TeacherPrompt

C = TypeVar("C")
Purpose = Literal["reward", "tau"]  # what a student job is graded for: selecting edits, or held-out τ


class ParseFailure(ValueError):
    """A self-edit the domain cannot use; recorded in the journal with reward 0, never raised to the user."""


@dataclass(frozen=True)
class ParsedEdit:
    examples: tuple[TrainingExample, ...]
    train: TrainSpec  # the domain's defaults, or what the self-edit chose (ARC)


class Domain(Protocol[C]):
    name: str

    def context_id(self, context: C) -> str: ...

    def teacher_prompt(self, context: C) -> TeacherPrompt: ...

    def parse_edit(self, context: C, text: str, train: TrainSpec) -> ParsedEdit:
        """Raises ParseFailure with a one-line reason for an unusable edit."""
        ...

    def context_alone(self, context: C, train: TrainSpec) -> ParsedEdit | None:
        """What a student trains on without any self-edit (knowledge: the passage), the bar an edit must
        beat with restem.baseline = "context"; None where a context has no training data of its own."""
        ...

    def probes(self, context: C) -> tuple[Probe, ...]: ...

    def scoring(self, purpose: Purpose) -> ProbeScoring:
        """How the student answers the probes: generate, score the gold answer's likelihood, or both."""
        ...

    def score(self, context: C, report: StudentReport) -> float:
        """τ for this context in [0, 1] (knowledge: mean of the grading metric; ARC: pass@2 solved)."""
        ...

    def reward_of(self, context: C, report: StudentReport) -> float:
        """The reward that ranks this context's self-edits in training rounds, in [0, 1]."""
        ...
