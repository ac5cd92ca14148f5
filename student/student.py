"""The student (docs/architecture.md §2): a resident base model that applies self-edits, one job at a time.

The base is loaded once and wrapped in PEFT once; each job re-initialises the LoRA in place from
its seed (milliseconds, against 400+ ms to re-wrap and seconds to reload, measured on SmolLM2-135M),
trains it with `student.sft`, answers the probes by batched greedy generation and scores them
with `student.metrics`. A different LoRA shape (r, alpha, targets) re-wraps; that is rare.

Precision: bf16 autocast where the device supports it, with the base weights stored in bf16 and
the LoRA weights in fp32 (peft's default), which the optimiser updates. Measured on this CPU
(SmolLM2-135M, r=32 on q/v, batch 4): fp32 base weights make a training step 3–14 % slower and
greedy generation 1.7× slower, because autocast re-casts them to bf16 at every decoding step.

A job's `base_adapter` (single-model mode: the current teacher adapter) is merged into the base
weights by default. With `stack_base_adapter` (the inline pool, docs/architecture.md §3) it is loaded instead as a
second, frozen PEFT adapter under the job's fresh LoRA, and the teacher generates on the same network
through `Student.generator()`, its adapter alone active: one copy of the weights serves both roles.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from accelerate import Accelerator
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, StoppingCriteriaList

from runtime.cores import RebalanceEachStep, computing
from runtime.precision import bf16_native, bf16_wanted
from student.adapters import load_lora_weights, merge_adapter, save_adapter
from student.messages import (
    Job,
    LoRASpec,
    Probe,
    ProbeResult,
    ProbeScoring,
    Report,
    StudentJob,
    StudentReport,
    TrainingExample,
    TrainJob,
    TrainReport,
    TrainSpec,
)
from student.metrics import score
from student.sft import SFTResult, prompt_ids, train_lora

EVAL_BATCH = 16  # probes per generate() call
JOB_LORA = "default"  # peft's name for the adapter a model is wrapped with: each job's fresh LoRA
STACKED = "base"  # the stacked base adapter's name (stack_base_adapter)


class Student:
    def __init__(self, model: str, *, device: str | None = None, threads: int | None = None,
                 stack_base_adapter: bool = False, bf16: bool | None = None) -> None:
        """`model`: a local folder or a Hub id. `device`: "cpu", "cuda", "cuda:N", or None for
        accelerate's choice (a GPU when there is one). `stack_base_adapter`: see the module docstring.
        `bf16`: None = where the device supports it, unless SEAL_PRECISION=fp32 (runtime/precision.py);
        False = fp32 throughout (exact comparisons)."""
        if threads:
            torch.set_num_threads(threads)
        on_cpu = device == "cpu" or not torch.cuda.is_available()
        self.on_cpu = on_cpu  # then jobs share the cores with other seal processes (runtime.cores)
        if device and device.startswith("cuda:"):
            torch.cuda.set_device(device)
        bf16 = bf16_wanted(bf16_native(on_cpu)) if bf16 is None else bf16
        self.accelerator = Accelerator(cpu=on_cpu, mixed_precision="bf16" if bf16 else "no")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if bf16 else torch.float32)
        self.stack_base_adapter = stack_base_adapter
        self.base_adapter: str | None = None
        self._wrap(base.to(self.accelerator.device), LoRASpec())
        self._unmerged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, job: StudentJob) -> StudentReport:
        """Fresh LoRA → SFT on the examples → answers to the probes. Without examples, the answers of
        the (base_adapter-merged) base model: the baseline."""
        with computing(self.on_cpu):
            return self._run(job)

    def _run(self, job: StudentJob) -> StudentReport:
        self._use_base_adapter(job.base_adapter)
        fit = SFTResult((), 0, 0.0)
        if job.examples:
            fit = self._fit(job.lora, job.train, job.examples, job.seed)
        start = time.perf_counter()
        with self._job_lora_active(bool(job.examples)):
            results = self.score_probes(job.probes, job.train, job.scoring)
        return StudentReport(
            job_id=job.job_id, ok=True, results=results, epoch_losses=fit.epoch_losses,
            tokens_trained=fit.tokens_trained, train_seconds=fit.seconds,
            eval_seconds=time.perf_counter() - start, worker=self.worker,
        )

    def train(self, job: TrainJob) -> TrainReport:
        """The M-step: the same SFT on the plain base, saved as a PEFT adapter folder."""
        self._use_base_adapter(None)
        with computing(self.on_cpu):
            fit = self._fit(job.lora, job.train, job.examples, job.seed, job.init_adapter)
        if self.accelerator.is_main_process:
            save_adapter(self.model, job.output_dir)  # the job's LoRA only: a stacked base adapter is gone
        return TrainReport(
            job_id=job.job_id, ok=True, adapter_dir=job.output_dir, epoch_losses=fit.epoch_losses,
            tokens_trained=fit.tokens_trained, train_seconds=fit.seconds, worker=self.worker,
        )

    def answer(self, probes: Sequence[Probe], spec: TrainSpec) -> list[str]:
        with self.accelerator.autocast():
            return generate_answers(self.model, self.tokenizer, probes, spec)

    def score_probes(self, probes: Sequence[Probe], spec: TrainSpec, scoring: ProbeScoring) -> tuple[ProbeResult, ...]:
        """Each probe's generated answer with its scores, and/or its gold answer's log-likelihood."""
        answers = self.answer(probes, spec) if scoring != "likelihood" else [""] * len(probes)
        if scoring != "generate":
            with self.accelerator.autocast():
                logprobs = gold_logprobs(self.model, self.tokenizer, probes, spec)
        results = []
        for i, (probe, answer) in enumerate(zip(probes, answers, strict=True)):
            scores = score(answer, probe.gold) if scoring != "likelihood" else {}
            if scoring != "generate":
                scores["gold_logprob"] = logprobs[i]
            results.append(ProbeResult(probe.probe_id, answer, scores))
        return tuple(results)

    def generator(self) -> StackedGenerator:
        """This network as a teacher generates with it (stack_base_adapter only)."""
        if not self.stack_base_adapter:
            raise ValueError("Student.generator() needs stack_base_adapter=True")
        return StackedGenerator(self)

    def _fit(self, lora: LoRASpec, spec: TrainSpec, examples: Sequence[TrainingExample], seed: int,
             init_adapter: str | None = None) -> SFTResult:
        self._reset_lora(lora, seed)
        if init_adapter:
            load_lora_weights(self.model, init_adapter, lora)
        return train_lora(self._prepared, self.tokenizer, examples, spec, self.accelerator, seed)

    def _wrap(self, base: torch.nn.Module, lora: LoRASpec) -> None:
        """`model` is the PEFT model (reset, generate, save); `_prepared` is what accelerate made of it
        for training (the same object with an autocast forward on one device, DDP on several)."""
        self.model: PeftModel = get_peft_model(base, _lora_config(lora))
        self._prepared = self.accelerator.prepare_model(self.model)
        self.lora = lora
        if self.stack_base_adapter and self.base_adapter:  # a re-wrap unloaded it with the job's LoRA
            self._stack(self.base_adapter)

    def _reset_lora(self, lora: LoRASpec, seed: int) -> None:
        """A from the seed (kaiming-uniform, as peft initialises it), B zero: the adapter is a no-op
        again and no state of an earlier job survives."""
        if lora != self.lora:
            base = self.model.unload()
            try:
                self._wrap(base, lora)
            except Exception:
                # peft refused the new LoRA (a target that names no module, an unsupported one) with the base
                # already unwrapped: wrap it as it was, or every later job finds no LoRA layers (issue #34).
                self._wrap(_without_lora(base), self.lora)
                raise
        torch.manual_seed(seed)  # also seeds LoRA dropout
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)

    def _use_base_adapter(self, adapter_dir: str | None) -> None:
        """Merge the job's base adapter into the base weights, only when it changes. Unmerging copies
        the kept originals back (exact, milliseconds) instead of reloading the base (seconds, and a
        re-wrap); the copies cost memory only for the weights the adapter touches. A changed adapter
        must come in a new folder (run folders are never overwritten, docs/architecture.md §5)."""
        if adapter_dir == self.base_adapter:
            return
        if self.stack_base_adapter:
            self.base_adapter = None  # until the new one is stacked: a load that fails leaves none, said so
            try:
                self._stack(adapter_dir)
            except Exception:
                self._stack(None)  # drop a half-loaded one
                raise
            self.base_adapter = adapter_dir
            return
        for weight, original in self._unmerged:
            weight.data.copy_(original)
        self._unmerged, self.base_adapter = [], None
        if adapter_dir is not None:
            self._unmerged = merge_adapter(self.model.get_base_model(), adapter_dir)
            self.base_adapter = adapter_dir

    def _stack(self, adapter_dir: str | None) -> None:
        """Replace the stacked base adapter, frozen, active under every job's LoRA from now on."""
        if STACKED in self.model.peft_config:
            self.model.delete_adapter(STACKED)
        if adapter_dir is not None:
            self.model.load_adapter(adapter_dir, adapter_name=STACKED, is_trainable=False)
        self._activate([JOB_LORA, STACKED] if adapter_dir is not None else [JOB_LORA])

    def _activate(self, names: list[str]) -> None:
        """Set the LoRAs that take part in forward passes, on the layers: peft's model-level
        set_adapter takes one name, and its layer-level one makes every named adapter trainable."""
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.set_adapter(names)
        for name, param in self.model.named_parameters():
            param.requires_grad_(f".{JOB_LORA}." in name and JOB_LORA in names)

    @contextmanager
    def _job_lora_active(self, active: bool) -> Iterator[None]:
        """The job's LoRA in or out of the forward pass; a stacked base adapter stays in."""
        if active:
            yield
        elif not (self.stack_base_adapter and self.base_adapter):
            with self.model.disable_adapter():
                yield
        else:
            self._activate([STACKED])
            try:
                yield
            finally:
                self._activate([JOB_LORA, STACKED])


class StackedGenerator:
    """A stacking Student's network as its teacher sees it (teacher.hf.HFTeacher's `network`): `generate`
    runs with the adapter last given to `use_adapter` stacked and alone active, the job's LoRA off."""

    def __init__(self, student: Student) -> None:
        self.student = student
        self.adapter: str | None = None

    @property
    def device(self) -> torch.device:
        return self.student.model.device

    @property
    def generation_config(self) -> Any:
        return self.student.model.generation_config

    def use_adapter(self, adapter_dir: str | None) -> None:
        self.adapter = adapter_dir  # stacked lazily: jobs run in between may stack another one

    def generate(self, **kwargs: Any) -> torch.Tensor:
        self.student._use_base_adapter(self.adapter)
        self.student.model.eval()
        with self.student._job_lora_active(False):
            return self.student.model.generate(**kwargs)


def generate_answers(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe],
                     spec: TrainSpec) -> list[str]:
    """Greedy answers, batched with left padding, stripped of whitespace and special tokens."""
    model.eval()
    answers: list[str] = []
    for start in range(0, len(probes), EVAL_BATCH):
        ids = [prompt_ids(tokenizer, p.prompt, p.system, spec.chat) for p in probes[start:start + EVAL_BATCH]]
        batch = tokenizer.pad({"input_ids": ids}, padding_side="left", return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=spec.max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 stopping_criteria=StoppingCriteriaList([RebalanceEachStep()]))
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        answers += [a.strip() for a in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def gold_logprobs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, probes: Sequence[Probe],
                  spec: TrainSpec) -> list[float]:
    """Mean log-probability per token of each probe's gold answer after its prompt, teacher-forced: the
    answer is tokenised as a training completion is (`sft.encode`, without the EOS), so this is the
    likelihood of exactly what training on that answer would teach. One forward pass per batch, right-
    padded (pads are masked and never scored), never cut at `max_seq_len` (a training limit). A dense
    score where a small model's greedy answers are almost all wrong."""
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[float] = []
    for start in range(0, len(probes), EVAL_BATCH):
        batch = probes[start:start + EVAL_BATCH]
        prompts = [prompt_ids(tokenizer, p.prompt, p.system, spec.chat) for p in batch]
        golds = [tokenizer(p.gold, add_special_tokens=False).input_ids or [pad_id] for p in batch]
        rows = [a + b for a, b in zip(prompts, golds, strict=True)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad_id)
        mask = torch.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)).logits
        for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
            targets = torch.tensor(row[len(prompt):], device=logits.device)  # token t is predicted at t - 1
            logp = torch.log_softmax(logits[i, len(prompt) - 1 : len(row) - 1].float(), dim=-1)
            out.append(float(logp.gather(1, targets[:, None]).mean()))
    return out


def run_job(student: Student, job: Job) -> Report:
    return student.run(job) if isinstance(job, StudentJob) else student.train(job)


def _without_lora(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every LoRA layer a failed wrap may have injected replaced by the layer it wraps."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    return model


def _lora_config(spec: LoRASpec) -> LoraConfig:
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=list(spec.target_modules), task_type="CAUSAL_LM")

