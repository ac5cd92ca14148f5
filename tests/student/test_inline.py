"""The inline pool: one network, the teacher adapter stacked under each job's LoRA. Stacking is checked
against merging (the same answers, in fp32 on the real model) and for what it must leave alone: the
teacher adapter's weights while a student trains, and the teacher's generations after a job."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from student.messages import LoRASpec, Probe, StudentJob, TrainingExample, TrainJob, TrainSpec
from student.pools.inline import InlinePool
from student.student import STACKED, Student
from teacher.base import Sampling, TeacherPrompt
from teacher.hf import HFTeacher

EXAMPLES = tuple(TrainingExample(f"Fact {i}?", f"The answer to fact {i} is blue {i}.") for i in range(4))
PROBES = (Probe("q0", "Fact 0?", "blue 0"), Probe("q1", "Fact 1? Say it in full, please.", "blue 1"))
FAST = TrainSpec(lr=1e-2, epochs=2, batch_size=4, max_new_tokens=6)
GREEDY = Sampling(n=1, temperature=0.0, max_tokens=8)
PROMPTS = ["The river flows", [{"role": "user", "content": "Why is the sky blue?"}]]


def weights(student: Student, adapter: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in student.model.named_parameters() if f".{adapter}." in k}


@pytest.fixture(scope="module")
def inline(tiny_model_dir: str) -> InlinePool:
    return InlinePool(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def teacher_adapter(tiny_model_dir: str, make_adapter: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
                    ) -> str:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("inline") / "teacher", r=4, seed=1)


def test_training_a_student_leaves_the_stacked_teacher_adapter_bit_identical(
    inline: InlinePool, teacher_adapter: str
) -> None:
    student = inline.student
    baseline = student.run(StudentJob("base", 0, (), PROBES, train=FAST, base_adapter=teacher_adapter))
    teacher_before, lora_before = weights(student, STACKED), weights(student, "default")
    (report,) = inline.run([StudentJob("a", 1, EXAMPLES, PROBES, train=FAST, base_adapter=teacher_adapter)])
    assert report.ok and report.epoch_losses[-1] < report.epoch_losses[0]
    teacher_after, lora_after = weights(student, STACKED), weights(student, "default")
    assert teacher_before and teacher_before.keys() == teacher_after.keys()
    assert all(torch.equal(v, teacher_after[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, lora_after[k]) for k, v in lora_before.items())  # the job's LoRA did train
    again = student.run(StudentJob("base", 0, (), PROBES, train=FAST, base_adapter=teacher_adapter))
    assert again.results == baseline.results  # the trained LoRA is out of a baseline


def test_the_teacher_generates_with_its_adapter_alone(
    inline: InlinePool, teacher_adapter: str, tiny_model_dir: str
) -> None:
    teacher = HFTeacher(tiny_model_dir, network=inline.network)
    base = teacher.propose(PROMPTS, GREEDY)
    teacher.use_adapter(teacher_adapter)
    adapted = teacher.propose(PROMPTS, GREEDY)
    inline.run([StudentJob("a", 2, EXAMPLES, PROBES, train=FAST, base_adapter=teacher_adapter)])
    assert teacher.propose(PROMPTS, GREEDY) == adapted != base
    # an M-step trains on the plain base and saves the job's LoRA only; the teacher's adapter comes back
    out = Path(teacher_adapter).parent / "mstep"
    (trained,) = inline.run([TrainJob("m", 3, EXAMPLES, str(out), lora=LoRASpec(r=4), train=FAST)])
    assert trained.ok and not (out / STACKED).exists()
    assert teacher.propose(PROMPTS, GREEDY) == adapted
    teacher.use_adapter(None)
    assert teacher.propose(PROMPTS, GREEDY) == base


# --- the real model, fp32: stacking computes what merging computes ------------------------------------------

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "What colour is the sky?",
             "Name a large animal.", "What is 2+2?", "Where do penguins live?"]


@pytest.mark.slow
def test_stacked_answers_equal_the_teacher_merged_models(
    smollm2_dir: str, make_adapter: Callable[..., str], tmp_path: Path
) -> None:
    """fp32, where both sums are exact to ~1e-6; in bf16 the merged weights round the adapter's update
    and greedy answers part after some tokens (docs/architecture.md §3). fp32 needs its own process:
    accelerate fixes one precision per process, and this session's students run bf16."""
    adapter = make_adapter(smollm2_dir, tmp_path / "teacher", r=8, scale=0.04)
    with multiprocessing.get_context("spawn").Pool(1) as worker:
        unadapted, merged, stacked = worker.apply(fp32_answers, (smollm2_dir, adapter))
    assert stacked["student"] == merged["student"] != unadapted["student"]
    assert stacked["teacher"] == merged["teacher"] != unadapted["teacher"]


def fp32_answers(model_dir: str, adapter: str) -> list[dict[str, list[str]]]:
    """Greedy student answers and sampled teacher texts: unadapted, adapter merged, adapter stacked."""
    probes = tuple(Probe(f"q{i}", q, "") for i, q in enumerate(QUESTIONS))
    job = StudentJob("base", 0, (), probes, train=TrainSpec(max_new_tokens=24), base_adapter=adapter)
    prompts: list[TeacherPrompt] = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    sampling = Sampling(n=2, temperature=1.0, max_tokens=24, seed=0)
    merging = Student(model_dir, device="cpu", bf16=False)
    inline = InlinePool(model_dir, device="cpu", bf16=False)
    teachers = {"merged": HFTeacher(model_dir, device="cpu", dtype=torch.float32),
                "stacked": HFTeacher(model_dir, network=inline.network)}
    out = []
    for name, student, base in (("unadapted", merging, None), ("merged", merging, adapter),
                                ("stacked", inline.student, adapter)):
        teacher = teachers["stacked" if name == "stacked" else "merged"]
        teacher.use_adapter(base)
        answers = student.run(dataclasses.replace(job, base_adapter=base)).results
        texts = [p.text for row in teacher.propose(prompts, sampling) for p in row]
        out.append({"student": [r.answer for r in answers], "teacher": texts})
    return out
