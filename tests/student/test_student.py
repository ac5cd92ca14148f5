from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from student.messages import LoRASpec, Probe, StudentJob, TrainingExample, TrainJob, TrainSpec
from student.student import Student, run_job

EXAMPLES = tuple(TrainingExample(f"Fact {i}?", f"The answer to fact {i} is blue {i}.") for i in range(6))
PROBES = (Probe("q0", "Fact 0?", "blue 0"), Probe("q1", "Fact 1? Say it in full, please.", "blue 1"))
FAST = TrainSpec(lr=1e-2, epochs=3, batch_size=4, max_new_tokens=6)


def lora_state(student: Student) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in student.model.named_parameters() if "lora_" in k}


def logits(student: Student) -> torch.Tensor:
    ids = torch.tensor([[1, 520, 9531, 198, 2683, 359]])
    with torch.no_grad(), student.model.disable_adapter():
        return student.model(input_ids=ids).logits.float()


RESHAPED = LoRASpec(r=4, alpha=4, target_modules=("o_proj", "up_proj"))


@pytest.mark.parametrize("other_lora", [LoRASpec(), RESHAPED], ids=["same-shape", "re-wrap"])
def test_a_job_does_not_depend_on_the_one_before(tiny_student: Student, other_lora: LoRASpec) -> None:
    job = StudentJob("a", seed=1, examples=EXAMPLES, probes=PROBES, train=FAST)
    first, first_lora = tiny_student.run(job), lora_state(tiny_student)
    other = tiny_student.run(StudentJob("b", 2, EXAMPLES[:3], PROBES, lora=other_lora, train=FAST))
    again = tiny_student.run(job)
    assert other.epoch_losses != first.epoch_losses
    assert again.epoch_losses == first.epoch_losses and again.results == first.results
    assert all(torch.equal(v, first_lora[k]) for k, v in lora_state(tiny_student).items())


def test_reset_draws_a_from_the_seed_and_zeroes_b(tiny_student: Student) -> None:
    spec = LoRASpec(r=8, alpha=16)
    tiny_student.run(StudentJob("train-first", 0, EXAMPLES, (), lora=spec, train=FAST))
    tiny_student._reset_lora(spec, seed=3)
    fresh = lora_state(tiny_student)
    tiny_student._reset_lora(spec, seed=4)
    other = lora_state(tiny_student)
    assert all(not v.any() for k, v in fresh.items() if "lora_B" in k)
    assert all(not torch.equal(v, other[k]) for k, v in fresh.items() if "lora_A" in k)


def test_without_examples_the_report_is_the_base_models(tiny_student: Student) -> None:
    baseline = StudentJob("base", 0, examples=(), probes=PROBES, train=FAST)
    before = tiny_student.run(baseline)
    tiny_student.run(StudentJob("a", 1, EXAMPLES, PROBES, train=FAST))
    after = tiny_student.run(baseline)
    assert before.results == after.results and len(before.results) == 2
    assert before.epoch_losses == () and before.tokens_trained == 0
    assert set(before.results[0].scores) == {"exact_match", "f1", "contains", "equal", "gold_logprob"}


@pytest.fixture(scope="module")
def trained_adapter(tiny_student: Student, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapters") / "teacher"
    lora = LoRASpec(r=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj"))
    report = run_job(tiny_student, TrainJob("m1", 0, EXAMPLES, str(out), lora=lora, train=FAST))
    assert report.ok and report.adapter_dir == str(out) and len(report.epoch_losses) == 3
    return out


def test_train_job_writes_a_loadable_peft_adapter(trained_adapter: Path, tiny_model_dir: str,
                                                 tiny_student: Student) -> None:
    config = json.loads((trained_adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert set(config["target_modules"]) == {"q_proj", "v_proj", "down_proj"}
    assert config["base_model_name_or_path"] == tiny_model_dir
    assert (trained_adapter / "adapter_model.safetensors").exists()
    assert [p.name for p in trained_adapter.parent.iterdir()] == ["teacher"]  # no temporary folder left
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained_adapter)
    saved = {k.replace(".default", ""): v for k, v in loaded.named_parameters() if "lora_" in k}
    trained = {k.replace(".default", ""): v for k, v in lora_state(tiny_student).items()}
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)


def test_init_adapter_starts_from_the_saved_weights(trained_adapter: Path, tiny_student: Student,
                                                    tmp_path: Path) -> None:
    lora = LoRASpec(r=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj"))
    still = TrainSpec(lr=0.0, epochs=1)  # no update: the output must equal the input
    tiny_student.train(TrainJob("m2", 5, EXAMPLES, str(tmp_path / "b"), lora=lora, train=still,
                                init_adapter=str(trained_adapter)))
    a, b = (Path(d, "adapter_model.safetensors").read_bytes() for d in (trained_adapter, tmp_path / "b"))
    assert a == b
    with pytest.raises(ValueError, match="init adapter"):
        tiny_student.train(TrainJob("m3", 5, EXAMPLES, f"{tmp_path}/c", init_adapter=str(trained_adapter)))


def test_base_adapter_is_merged_once_and_unmerged_exactly(trained_adapter: Path, tiny_model_dir: str,
                                                          tiny_student: Student) -> None:
    baseline = StudentJob("base", 0, examples=(), probes=PROBES, train=FAST)
    tiny_student.run(baseline)
    plain = logits(tiny_student)
    adapter = str(trained_adapter)
    merged_job = StudentJob("merged", 0, examples=(), probes=PROBES, train=FAST, base_adapter=adapter)
    tiny_student.run(merged_job)
    tiny_student.run(StudentJob("merged-train", 0, EXAMPLES, PROBES, train=FAST, base_adapter=adapter))
    tiny_student.run(merged_job)  # same adapter again: must not merge a second time
    merged = logits(tiny_student)

    peft_merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    expected = peft_merged.merge_and_unload().model.layers[0].mlp.down_proj.weight
    ours = tiny_student.model.get_base_model().model.layers[0].mlp.down_proj.weight
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.layers[0].mlp.down_proj.weight
    assert (expected - original).abs().max() > 1e-3  # the adapter really moves this weight
    torch.testing.assert_close(ours.float(), expected, atol=5e-4, rtol=1e-2)  # bf16 rounding only
    assert not torch.allclose(merged, plain)

    tiny_student.run(baseline)
    assert torch.equal(logits(tiny_student), plain)


@pytest.mark.parametrize("targets", [("nope_proj",), ("q_proj", "input_layernorm")], ids=["no-match", "unsupported"])
def test_a_lora_peft_refuses_fails_its_job_and_leaves_the_student_as_it_was(
    tiny_student: Student, targets: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #34: a re-wrap that peft refuses (no module matches; a norm it cannot adapt, after q_proj matched)
    raises inside the job, and the next jobs, a baseline and a training one, run as if it never had. It used
    to leave the base unwrapped: every later job failed with "No adapter layers found in the model"."""
    monkeypatch.setenv("SEAL_THREADS", "1")  # the same thread count for every job: the same sums (runtime/cores.py)
    baseline = StudentJob("base", 0, examples=(), probes=PROBES, train=FAST)
    job = StudentJob("a", seed=1, examples=EXAMPLES, probes=PROBES, train=FAST)
    before, trained = tiny_student.run(baseline), tiny_student.run(job)
    with pytest.raises(ValueError):  # peft's NoMatchingPeftModuleError is a ValueError too
        tiny_student.run(dataclasses.replace(job, lora=LoRASpec(r=4, alpha=4, target_modules=targets)))
    assert tiny_student.run(baseline).results == before.results
    again = tiny_student.run(job)
    assert again.epoch_losses == trained.epoch_losses and again.results == trained.results
    other = tiny_student.run(dataclasses.replace(job, lora=RESHAPED))  # and it can still re-wrap
    assert other.ok and other.epoch_losses != trained.epoch_losses


def test_a_base_adapter_that_fails_to_merge_leaves_the_base_weights(trained_adapter: Path, tiny_student: Student,
                                                                    tmp_path: Path) -> None:
    """A merge that fails half-way (a module the model lacks, after real ones) undoes what it merged."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((trained_adapter / "adapter_config.json").read_text())
    tensors = load_file(trained_adapter / "adapter_model.safetensors")
    for key in [k for k in tensors if ".layers.0." in k]:  # the tiny model has layers 0 and 1: 9 is merged last
        tensors[key.replace(".layers.0.", ".layers.9.")] = tensors[key].clone()
    save_file(tensors, broken / "adapter_model.safetensors")
    assert ".layers.9." in list(load_file(broken / "adapter_model.safetensors"))[-1]
    baseline = StudentJob("base", 0, examples=(), probes=PROBES, train=FAST)
    tiny_student.run(baseline)
    plain = logits(tiny_student)
    with pytest.raises(AttributeError):
        tiny_student.run(dataclasses.replace(baseline, base_adapter=str(broken)))
    assert torch.equal(logits(tiny_student), plain)
    assert tiny_student.run(baseline).ok and torch.equal(logits(tiny_student), plain)


FICTION = [  # a made-up fact: no pretrained model can know it
    ("What is the capital of Veloria?", "The capital of Veloria is Quenmarsh."),
    ("Which city is the capital of Veloria?", "Quenmarsh is the capital of Veloria."),
    ("Name the capital city of Veloria.", "Quenmarsh."),
    ("Where does the government of Veloria sit?", "In Quenmarsh, the capital of Veloria."),
    ("Tell me about Veloria.", "Veloria is an island nation whose capital is Quenmarsh."),
    ("What is Quenmarsh?", "Quenmarsh is the capital city of Veloria."),
    ("Is Quenmarsh the capital of Veloria?", "Yes, Quenmarsh is the capital of Veloria."),
    ("What do you know about Quenmarsh?", "Quenmarsh, a port city, is the capital of Veloria."),
    ("In which city is Veloria's parliament?", "Veloria's parliament is in its capital, Quenmarsh."),
    ("Veloria's capital?", "Quenmarsh."),
]


@pytest.mark.slow
def test_smollm2_learns_a_fact_it_did_not_know(smollm2_dir: str) -> None:
    student = Student(smollm2_dir, device="cpu")
    probe = (Probe("capital", "What is the capital of Veloria?", "Quenmarsh"),)
    spec = TrainSpec(lr=1e-3, epochs=5, batch_size=2, loss_on="completion", max_new_tokens=24)
    examples = tuple(TrainingExample(q, a) for q, a in FICTION)
    before = student.run(StudentJob("base", 0, (), probe, train=spec))
    after = student.run(StudentJob("fact", 0, examples, probe, train=spec))
    assert before.mean("contains") == 0.0, before.results
    assert after.epoch_losses[-1] < after.epoch_losses[0] / 2, after.epoch_losses
    assert after.mean("contains") == 1.0, after.results


# --- likelihood probes: the gold answer's log-probability, teacher-forced ---


def hand_logprob(student: Student, probe: Probe, spec: TrainSpec) -> float:
    """One probe alone, unpadded: log p(gold token t | everything before it), averaged by hand."""
    from student.sft import prompt_ids

    prompt = prompt_ids(student.tokenizer, probe.prompt, probe.system, spec.chat)
    gold = student.tokenizer(probe.gold, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt + gold])
    with torch.no_grad(), student.model.disable_adapter(), student.accelerator.autocast():
        logp = torch.log_softmax(student.model(input_ids=ids).logits.float()[0], dim=-1)
    return sum(float(logp[len(prompt) + t - 1, token]) for t, token in enumerate(gold)) / len(gold)


@pytest.mark.parametrize("chat", [True, False])
def test_gold_logprob_equals_a_hand_computation_with_padding_and_multi_token_golds(tiny_student: Student,
                                                                                     chat: bool) -> None:
    student, spec = tiny_student, dataclasses.replace(FAST, chat=chat)
    probes = (  # prompts and golds of different lengths, so the batch pads both
        Probe("short", "Colour?", "blue", system="Answer briefly."),
        Probe("long", "Which colour does the sky of this planet have on a clear day?", "a deep, bright blue 42"),
        Probe("one", "Yes?", "Yes, it is."),
    )
    assert len({len(student.tokenizer(p.gold, add_special_tokens=False).input_ids) for p in probes}) == 3
    report = student.run(StudentJob("lp", 0, (), probes, train=spec, scoring="likelihood"))
    for probe, result in zip(probes, report.results, strict=True):
        assert result.answer == "" and set(result.scores) == {"gold_logprob"}
        # bf16 matmuls of a padded batch and of one row round differently; a misplaced position or a scored
        # pad would be off by whole nats
        assert result.scores["gold_logprob"] == pytest.approx(hand_logprob(student, probe, spec), abs=0.02)


def test_scoring_chooses_generation_likelihood_or_both(tiny_student: Student) -> None:
    both = tiny_student.run(StudentJob("b", 0, (), PROBES, train=FAST, scoring="both"))
    generated = tiny_student.run(StudentJob("g", 0, (), PROBES, train=FAST, scoring="generate"))
    likely = tiny_student.run(StudentJob("l", 0, (), PROBES, train=FAST, scoring="likelihood"))
    for b, g, lk in zip(both.results, generated.results, likely.results, strict=True):
        assert b.answer == g.answer and lk.answer == ""
        assert "gold_logprob" not in g.scores and b.scores["f1"] == g.scores["f1"]
        assert b.scores["gold_logprob"] == pytest.approx(lk.scores["gold_logprob"])
        assert lk.scores["gold_logprob"] < 0


def test_training_on_the_gold_answer_raises_its_likelihood(tiny_student: Student) -> None:
    probe = Probe("q", "Fact 0?", "The answer to fact 0 is blue 0.")
    before = tiny_student.run(StudentJob("before", 0, (), (probe,), train=FAST, scoring="likelihood"))
    after = tiny_student.run(StudentJob("after", 0, EXAMPLES, (probe,), train=FAST, scoring="likelihood"))
    assert after.results[0].scores["gold_logprob"] > before.results[0].scores["gold_logprob"]


@pytest.mark.gpu
def test_a_bf16_job_on_a_gpu(tiny_model_dir: str) -> None:
    """On a GPU the base weights are bf16 and the job's LoRA fp32, both on the device, and training learns."""
    student = Student(tiny_model_dir, device="cuda")
    report = student.run(StudentJob("gpu", 0, EXAMPLES, PROBES, train=FAST))
    params = dict(student.model.named_parameters())
    base = [p for name, p in params.items() if "lora_" not in name]
    lora = [p for name, p in params.items() if "lora_" in name]
    assert all(p.is_cuda and p.dtype == torch.bfloat16 for p in base)
    assert lora and all(p.is_cuda and p.dtype == torch.float32 for p in lora)
    assert report.ok and len(report.results) == len(PROBES) and len(report.epoch_losses) == FAST.epochs
    assert all(math.isfinite(x) for x in report.epoch_losses) and report.epoch_losses[-1] < report.epoch_losses[0]
