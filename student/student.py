"""The student (DESIGN §2): a resident base model that applies self-edits, one job at a time.

The base is loaded once and wrapped in PEFT once; each job re-initialises the LoRA in place from
its seed (milliseconds, against 400+ ms to re-wrap and seconds to reload: feasibility.md §4a),
trains it with `student.sft`, answers the probes by batched greedy generation and scores them
with `student.metrics`. A different LoRA shape (r, alpha, targets) re-wraps; that is rare.

Precision: bf16 autocast where the device supports it, with the base weights stored in bf16 and
the LoRA weights in fp32 (peft's default), which the optimiser updates. Measured on this CPU
(SmolLM2-135M, r=32 on q/v, batch 4): fp32 base weights make a training step 3–14 % slower and
greedy generation 1.7× slower, because autocast re-casts them to bf16 at every decoding step.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from accelerate import Accelerator
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from student.adapters import load_lora_weights, merge_adapter, save_adapter
from student.messages import (
    Job,
    LoRASpec,
    Probe,
    ProbeResult,
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


class Student:
    def __init__(self, model: str, *, device: str | None = None, threads: int | None = None) -> None:
        """`model`: a local folder or a Hub id. `device`: "cpu", "cuda", "cuda:N", or None for
        accelerate's choice (a GPU when there is one)."""
        if threads:
            torch.set_num_threads(threads)
        on_cpu = device == "cpu" or not torch.cuda.is_available()
        if device and device.startswith("cuda:"):
            torch.cuda.set_device(device)
        bf16 = _bf16_supported(on_cpu)
        self.accelerator = Accelerator(cpu=on_cpu, mixed_precision="bf16" if bf16 else "no")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if bf16 else torch.float32)
        self._wrap(base.to(self.accelerator.device), LoRASpec())
        self.base_adapter: str | None = None
        self._unmerged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, job: StudentJob) -> StudentReport:
        """Fresh LoRA → SFT on the examples → answers to the probes. Without examples, the answers of
        the (base_adapter-merged) base model: the baseline."""
        self._use_base_adapter(job.base_adapter)
        fit = SFTResult((), 0, 0.0)
        if job.examples:
            fit = self._fit(job.lora, job.train, job.examples, job.seed)
        start = time.perf_counter()
        with nullcontext() if job.examples else self.model.disable_adapter():
            answers = self.answer(job.probes, job.train)
        scored = zip(job.probes, answers, strict=True)
        results = tuple(ProbeResult(p.probe_id, a, score(a, p.gold)) for p, a in scored)
        return StudentReport(
            job_id=job.job_id, ok=True, results=results, epoch_losses=fit.epoch_losses,
            tokens_trained=fit.tokens_trained, train_seconds=fit.seconds,
            eval_seconds=time.perf_counter() - start, worker=self.worker,
        )

    def train(self, job: TrainJob) -> TrainReport:
        """The M-step: the same SFT on the plain base, saved as a PEFT adapter folder."""
        self._use_base_adapter(None)
        fit = self._fit(job.lora, job.train, job.examples, job.seed, job.init_adapter)
        if self.accelerator.is_main_process:
            save_adapter(self.model, job.output_dir)
        return TrainReport(
            job_id=job.job_id, ok=True, adapter_dir=job.output_dir, epoch_losses=fit.epoch_losses,
            tokens_trained=fit.tokens_trained, train_seconds=fit.seconds, worker=self.worker,
        )

    def answer(self, probes: Sequence[Probe], spec: TrainSpec) -> list[str]:
        with self.accelerator.autocast():
            return generate_answers(self.model, self.tokenizer, probes, spec)

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

    def _reset_lora(self, lora: LoRASpec, seed: int) -> None:
        """A from the seed (kaiming-uniform, as peft initialises it), B zero: the adapter is a no-op
        again and no state of an earlier job survives."""
        if lora != self.lora:
            self._wrap(self.model.unload(), lora)
        torch.manual_seed(seed)  # also seeds LoRA dropout
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)

    def _use_base_adapter(self, adapter_dir: str | None) -> None:
        """Merge the job's base adapter into the base weights, only when it changes. Unmerging copies
        the kept originals back (exact, milliseconds) instead of reloading the base (seconds, and a
        re-wrap); the copies cost memory only for the weights the adapter touches. A changed adapter
        must come in a new folder (run folders are never overwritten, DESIGN §5)."""
        if adapter_dir == self.base_adapter:
            return
        for weight, original in self._unmerged:
            weight.data.copy_(original)
        self._unmerged, self.base_adapter = [], None
        if adapter_dir is not None:
            self._unmerged = merge_adapter(self.model.get_base_model(), adapter_dir)
            self.base_adapter = adapter_dir


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
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        answers += [a.strip() for a in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def run_job(student: Student, job: Job) -> Report:
    return student.run(job) if isinstance(job, StudentJob) else student.train(job)


def _lora_config(spec: LoRASpec) -> LoraConfig:
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=list(spec.target_modules), task_type="CAUSAL_LM")


def _bf16_supported(on_cpu: bool) -> bool:
    if not on_cpu:
        return torch.cuda.is_bf16_supported()
    # oneDNN's own check (AVX512-BF16/AMX, or AVX512 emulation): what autocast on CPU runs on
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
