from __future__ import annotations

import json
import pickle

import pytest

from student.messages import (
    LoRASpec,
    Probe,
    ProbeResult,
    StudentJob,
    StudentReport,
    TrainingExample,
    TrainJob,
    TrainReport,
    TrainSpec,
    from_dict,
    to_dict,
)

MESSAGES = [
    StudentJob(
        job_id="p0-e1", seed=7,
        examples=(TrainingExample("Topic: X", "X is Y."), TrainingExample("Q?", "A.", system="Be brief.")),
        probes=(Probe("q0", "What is X?", "Y", system=None),),
        lora=LoRASpec(r=8, alpha=16, target_modules=("q_proj", "k_proj")),
        train=TrainSpec(epochs=3, loss_on="completion", max_steps=5, reference_compat=True),
        base_adapter="/runs/a/adapters/round-1/teacher",
    ),
    StudentReport(
        job_id="p0-e1", ok=True, results=(ProbeResult("q0", "Y", {"exact_match": 1.0, "f1": 1.0}),),
        epoch_losses=(2.5, 1.25), tokens_trained=120, train_seconds=1.5, eval_seconds=0.5, worker="h:1",
    ),
    StudentReport(job_id="p1", ok=False, attempt=2, error="RuntimeError: boom"),
    TrainJob(job_id="m1", seed=1, examples=(TrainingExample("prompt", "edit"),), output_dir="/tmp/a",
             init_adapter="/tmp/prev"),
    TrainReport(job_id="m1", ok=True, adapter_dir="/tmp/a", epoch_losses=(1.0,), tokens_trained=9),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_json_round_trip(message: object) -> None:
    data = json.loads(json.dumps(to_dict(message)))
    assert from_dict(type(message), data) == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_pickle_round_trip(message: object) -> None:
    assert pickle.loads(pickle.dumps(message)) == message


def test_report_mean() -> None:
    report = MESSAGES[1]
    assert report.mean("exact_match") == 1.0
    assert StudentReport(job_id="x", ok=True).mean("f1") == 0.0


@pytest.mark.parametrize("bad", [dict(r=0), dict(alpha=0), dict(dropout=1.0), dict(target_modules=())])
def test_invalid_lora_spec(bad: dict) -> None:
    with pytest.raises(ValueError, match="invalid LoRA spec"):
        LoRASpec(**bad)
