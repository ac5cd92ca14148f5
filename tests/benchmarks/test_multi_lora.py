"""benchmarks/multi_lora.py's several-jobs-per-step path (issue 16, item 2) must train each job as the student
trains it alone, or its speed would be measured on different work."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from student.messages import Probe, StudentJob, TrainingExample, TrainSpec
from student.student import Student

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # the benchmarks import each other by name
from multi_lora import run_together  # noqa: E402

EXAMPLES = tuple(TrainingExample(f"Fact {i}?", f"The answer to fact {i} is blue {i}.") for i in range(6))
PROBES = (Probe("q0", "Fact 0?", "blue 0"), Probe("q1", "Fact 1? Say it in full, please.", "blue 1"))


@pytest.fixture(scope="module")
def student(tiny_model_dir: str) -> Student:
    return Student(tiny_model_dir, device="cpu")


def test_jobs_trained_together_equal_jobs_trained_alone(student: Student) -> None:
    """Different seeds, example counts (so step counts: jobs drop out early) and lrs in one step loop: each job's
    epoch losses, answers and gold likelihoods are those it gets alone, within bf16 rounding (rows batched
    differently round differently); the student is left with its one job LoRA."""
    jobs = [StudentJob(f"j{k}", seed=k, examples=EXAMPLES[: 6 - 2 * k], probes=PROBES,
                       train=TrainSpec(lr=1e-2 / (k + 1), epochs=3, batch_size=2, max_new_tokens=6))
            for k in range(3)]
    alone = [student.run(job) for job in jobs]
    together = run_together(student, jobs)
    assert alone[0].epoch_losses != alone[1].epoch_losses
    assert alone[0].epoch_losses[-1] < alone[0].epoch_losses[0]  # it trained
    for a, t in zip(alone, together, strict=True):
        assert t.job_id == a.job_id and t.tokens_trained == a.tokens_trained
        assert t.epoch_losses == pytest.approx(a.epoch_losses, abs=1e-4)
        assert [r.answer for r in t.results] == [r.answer for r in a.results]
        assert [r.scores["gold_logprob"] for r in t.results] == pytest.approx(
            [r.scores["gold_logprob"] for r in a.results], abs=1e-4)
    assert list(student.model.peft_config) == ["default"]
    again = student.run(dataclasses.replace(jobs[0]))
    assert again.epoch_losses == alone[0].epoch_losses
