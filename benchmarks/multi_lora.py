"""Several jobs per training step (issue 16, item 2), tried and not adopted: the same student jobs run one at a
time (`Student.run`, the product's path) and K at a time (`run_together` below: each job's fresh LoRA trained
in one step loop, a batch of every job in each forward pass, its rows through its own adapter), side by side
in one process, on one resident SmolLM2-135M in bf16 autocast with the default inner loop (config.py: LoRA
r=16 on every linear layer, 3 epochs, packed batches of 4). It lives here, not in `student/`, because it does
not pay on a CPU (docs/performance.md, *Several jobs per step*); it is written to be moved there for GPUs.

Multi-LoRA as built here: each job keeps its own seeded LoRA init, data order, lr schedule, gradient clipping
and AdamW state (one parameter group per job: a job that has taken its last step gets no gradient, so AdamW
leaves it alone); a step packs each job's batch into its own rows, all as wide as the step's longest
sequence, stacks them, and a forward hook on every peft LoRA layer adds to each job's rows the delta of that
job's adapter (peft's own per-row `adapter_names` works only in eval mode and gathers and scatters every
adapter's rows). Each job's loss is transformers' for its rows; the sum is backpropagated once.

Jobs: the product's own, `KnowledgeDomain.parse_edit` of the published Qwen2.5-7B self-edit (completions[0])
of J seeded SEAL *training* passages, with their probes (greedy answers and gold likelihood). Per K:
student seconds for the J jobs (train and eval), trained tokens per second, GFLOP/s ≈ 4 × parameters ×
tokens / training seconds beside the bf16 matmul peak at the model's shapes measured in the same run, τ
(contains gold, gold prob), and the largest difference from K = 1 in any job's epoch loss and in any probe's
gold log-probability (bf16: rows batched differently round differently). Then why, in the same run: one
training step's tokens per second at 400 to 1,600 tokens a step (`step_scaling`).

    .venv/bin/python benchmarks/multi_lora.py [--jobs 8] [--ks 1 2 4]   (about 6 min alone)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from contention import cpu_model  # benchmarks/, this script's folder
from inner_regime import TRAIN_DATA
from peft.tuners.lora import LoraLayer
from rich.console import Console
from rich.table import Table
from student_step import shape_peak
from torch.utils.data import DataLoader

from orchestrator.config import StudentConfig
from orchestrator.domains.knowledge import KnowledgeDomain, load_passages
from orchestrator.models import SMOLLM2, resolve_model
from student.messages import StudentJob, StudentReport
from student.sft import IGNORE, Encoded, SFTResult, attention, attention_for, encode, pack
from student.student import JOB_LORA, Student, _lora_config

OUT = Path(__file__).parent / "results" / "multi_lora.json"


def jobs(n: int, seed: int) -> list[StudentJob]:
    domain, config = KnowledgeDomain(), StudentConfig()
    passages = load_passages(TRAIN_DATA)
    chosen = [passages[i] for i in sorted(random.Random(seed).sample(range(len(passages)), n))]
    return [StudentJob(f"edit{i}", seed + i, domain.parse_edit(p, p.completions[0], config.train).examples,
                       domain.probes(p), config.lora, config.train) for i, p in enumerate(chosen)]


# --- several jobs per step ------------------------------------------------------------------------------------


def run_together(student: Student, jobs: Sequence[StudentJob]) -> list[StudentReport]:
    """`Student.run` for each job, their LoRAs trained in one step loop (same LoRA shape, no base adapter,
    packed batches, no warm-up); each job then answers its probes through its adapter alone. The extra adapters
    live only for the call."""
    names = [JOB_LORA, *(f"{JOB_LORA}{k}" for k in range(1, len(jobs)))]
    model = student.model
    student._use_base_adapter(None)
    student._reset_lora(jobs[0].lora, jobs[0].seed)
    try:
        for name, job in zip(names[1:], jobs[1:], strict=True):
            model.add_adapter(name, _lora_config(job.lora))
            torch.manual_seed(job.seed)  # as Student._reset_lora draws the default adapter's A
            for layer in model.modules():
                if isinstance(layer, LoraLayer):
                    layer.reset_lora_parameters(name, True)
        for param_name, param in model.named_parameters():
            param.requires_grad_(any(f".{n}." in param_name for n in names))
        fits = train_together(student, names, jobs)
        reports = []
        for name, job, fit in zip(names, jobs, fits, strict=True):
            model.set_adapter(name)
            start = time.perf_counter()
            results = student.score_probes(job.probes, job.train, job.scoring)
            reports.append(StudentReport(job.job_id, True, results, fit.epoch_losses, fit.tokens_trained,
                                         fit.seconds, time.perf_counter() - start))
    finally:
        model.set_adapter(JOB_LORA)
        for name in names[1:]:
            if name in model.peft_config:
                model.delete_adapter(name)
    return reports


def train_together(student: Student, names: Sequence[str], jobs: Sequence[StudentJob]) -> list[SFTResult]:
    """One AdamW parameter group, linear lr decay and gradient clipping per job, as `student.sft.train_lora`
    trains each alone; each step takes the next batch of every job that has one. `seconds`: an equal share."""
    start, accelerator, pad_id = time.perf_counter(), student.accelerator, student.tokenizer.pad_token_id
    encoded, batches = job_batches(student, jobs)
    params = [[p for n, p in student.model.named_parameters() if f".{name}." in n] for name in names]
    optimizer = torch.optim.AdamW([{"params": p, "lr": job.train.lr} for p, job in zip(params, jobs, strict=True)],
                                  weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [partial(linear_decay, total=len(b)) for b in batches])
    losses: list[dict[int, list[float]]] = [{} for _ in jobs]
    longest = max(len(e.input_ids) for sequences in encoded for e in sequences)
    with attention(student.model, attention_for(longest, accelerator.device)):
        student._prepared.train()
        for step in range(max(len(b) for b in batches)):
            taken = [(k, *b[step]) for k, b in enumerate(batches) if step < len(b)]
            width = max(len(e.input_ids) for _, _, batch in taken for e in batch)
            packs = [pack(batch, pad_id, width) for _, _, batch in taken]
            bounds = [0, *itertools.accumulate(len(p["input_ids"]) for p in packs)]
            spans = [(names[k], bounds[i], bounds[i + 1]) for i, (k, _, _) in enumerate(taken)]
            with job_rows(student.model, spans):
                logits = student._prepared(input_ids=torch.cat([p["input_ids"] for p in packs]),
                                           position_ids=torch.cat([p["position_ids"] for p in packs]),
                                           use_cache=False).logits
            step_losses = [torch.nn.functional.cross_entropy(logits[a:b, :-1].flatten(0, 1).float(),
                                                             p["labels"][:, 1:].flatten(), ignore_index=IGNORE)
                           for (_, a, b), p in zip(spans, packs, strict=True)]
            accelerator.backward(torch.stack(step_losses).sum())
            for (k, epoch, _), loss in zip(taken, step_losses, strict=True):
                accelerator.clip_grad_norm_(params[k], 1.0)
                losses[k].setdefault(epoch, []).append(loss.item())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    share = (time.perf_counter() - start) / len(jobs)
    return [SFTResult(tuple(mean(v) for _, v in sorted(job_losses.items())),
                      job.train.epochs * sum(len(e.input_ids) for e in sequences), share)
            for job_losses, job, sequences in zip(losses, jobs, encoded, strict=True)]


def job_batches(student: Student, jobs: Sequence[StudentJob]) -> tuple[list[list[Encoded]], list[list[Any]]]:
    """Per job: its encoded examples, and its (epoch, batch) steps in the order train_lora's loader gives them."""
    encoded = [[encode(student.tokenizer, e, job.train) for e in job.examples] for job in jobs]
    batches = []
    for job, sequences in zip(jobs, encoded, strict=True):
        loader = student.accelerator.prepare(DataLoader(
            sequences, batch_size=job.train.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(job.seed), collate_fn=list))
        batches.append([(epoch, batch) for epoch in range(job.train.epochs) for batch in loader])
    return encoded, batches


def layout_cost(student: Student, jobs: Sequence[StudentJob], k: int) -> dict[str, int]:
    """What the steps of K jobs at a time compute: token positions (pads included) and attention score cells
    (rows × width², eager attention), K = 1 being the product's own packing."""
    positions = cells = 0
    for first in range(0, len(jobs), k):
        _, batches = job_batches(student, jobs[first : first + k])
        for step in range(max(len(b) for b in batches)):
            taken = [b[step][1] for b in batches if step < len(b)]
            width = max(len(e.input_ids) for batch in taken for e in batch)
            rows = sum(len(pack(batch, 0, width)["input_ids"]) for batch in taken)
            positions, cells = positions + rows * width, cells + rows * width * width
    return {"positions": positions, "attention_cells": cells}


def linear_decay(step: int, total: int) -> float:
    """transformers' linear schedule without warm-up, as train_lora's."""
    return max(0.0, (total - step) / total)


@contextmanager
def job_rows(model: Any, spans: Sequence[tuple[str, int, int]]) -> Iterator[None]:
    """Inside: every peft LoRA layer adds to rows start:end the delta of that span's adapter (peft's own:
    B(A(dropout(x))) × scaling, x in the adapter's dtype) instead of its active adapters'."""
    def add_deltas(layer: LoraLayer, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        deltas = []
        for adapter, start, end in spans:
            lora_a, lora_b = layer.lora_A[adapter], layer.lora_B[adapter]
            delta = lora_b(lora_a(layer.lora_dropout[adapter](args[0][start:end].to(lora_a.weight.dtype))))
            deltas.append(delta * layer.scaling[adapter])
        return output + torch.cat(deltas).to(output.dtype)

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    hooks = [layer.register_forward_hook(add_deltas) for layer in layers]
    for layer in layers:  # the flag alone: peft's disable_adapter() would also freeze every adapter
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, hook in zip(layers, hooks, strict=True):
            layer._disable_adapters = False
            hook.remove()


def step_scaling(student: Student, widths: Sequence[tuple[int, int]]) -> list[dict[str, float]]:
    """Tokens per second of one training step (forward and backward, random tokens, eager attention) at
    rows × width: whether a step with more rows uses the cores better."""
    out = []
    with attention(student.model, "eager"):
        student._prepared.train()
        for rows, width in widths:
            ids = torch.randint(100, 20_000, (rows, width))
            seconds = []
            for _ in range(3):
                start = time.perf_counter()
                student._prepared(input_ids=ids, labels=ids, use_cache=False).loss.backward()
                seconds.append(time.perf_counter() - start)
            student.model.zero_grad(set_to_none=True)
            out.append({"rows": rows, "width": width, "tokens_per_s": rows * width / min(seconds[1:])})
    return out


# --- the benchmark ------------------------------------------------------------------------------------------


def run(student: Student, job_list: list[StudentJob], k: int) -> tuple[list[StudentReport], float]:
    start = time.perf_counter()
    reports = []
    for i in range(0, len(job_list), k):
        group = job_list[i : i + k]
        reports += run_together(student, group) if k > 1 else [student.run(job) for job in group]
    return reports, time.perf_counter() - start


def summary(k: int, reports: list[StudentReport], wall: float, baseline: list[StudentReport] | None,
            params: int) -> dict[str, Any]:
    train_s = sum(r.train_seconds for r in reports)
    tokens = sum(r.tokens_trained for r in reports)
    probes = [p for r in reports for p in r.results]
    row = {"k": k, "wall_s": wall, "train_s": train_s, "eval_s": sum(r.eval_seconds for r in reports),
           "tokens": tokens, "tokens_per_s": tokens / train_s, "gflops": 4 * params * tokens / train_s / 1e9,
           "contains": mean(p.scores["contains"] for p in probes),
           "gold_prob": mean(math.exp(p.scores["gold_logprob"]) for p in probes)}
    if baseline is not None:
        pairs = list(zip(baseline, reports, strict=True))
        row["max_loss_diff"] = max(abs(a - b) for x, y in pairs for a, b in zip(x.epoch_losses, y.epoch_losses,
                                                                                   strict=True))
        row["max_logprob_diff"] = max(abs(a.scores["gold_logprob"] - b.scores["gold_logprob"])
                                      for x, y in pairs for a, b in zip(x.results, y.results, strict=True))
        row["answers_equal"] = sum(a.answer == b.answer for x, y in pairs
                                   for a, b in zip(x.results, y.results, strict=True)) / len(probes)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    student = Student(resolve_model(SMOLLM2), device="cpu")
    job_list = jobs(args.jobs, args.seed)
    config = student.model.get_base_model().config
    peak = shape_peak(config.hidden_size, config.intermediate_size, rows=4 * 64)
    params = sum(p.numel() for p in student.model.get_base_model().parameters())
    student.run(job_list[0])  # warm-up: the first steps of a process are slower
    rows, baseline = [], None
    for k in args.ks:
        reports, wall = run(student, job_list, k)
        baseline = baseline or reports
        rows.append(summary(k, reports, wall, None if reports is baseline else baseline, params)
                    | layout_cost(student, job_list, k))
        console.print(f"K={k}: {wall:.1f} s")
    scaling = step_scaling(student, [(1, 400), (2, 400), (4, 400)])
    result = {"machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0]},
              "data": str(TRAIN_DATA), "jobs": args.jobs, "seed": args.seed,
              "bf16_peak_gflops_model_shape": peak, "parameters": params, "rows": rows,
              "step_scaling": scaling}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    table = Table("jobs per step", "student s", "train s", "eval s", "tokens/s", "GFLOP/s", "% of peak",
                  "speed-up", "contains", "gold prob", "max |Δloss|", "max |Δlogprob|", "same answers",
                  title=f"{args.jobs} student jobs, K per training step ({result['machine']['cpu']}; bf16 peak at "
                        f"the model's shapes {peak:.0f} GFLOP/s)")
    for r in rows:
        table.add_row(str(r["k"]), f"{r['wall_s']:.1f}", f"{r['train_s']:.1f}", f"{r['eval_s']:.1f}",
                      f"{r['tokens_per_s']:.0f}", f"{r['gflops']:.0f}", f"{100 * r['gflops'] / peak:.0f}%",
                      f"{rows[0]['wall_s'] / r['wall_s']:.2f}×", f"{100 * r['contains']:.1f}%",
                      f"{100 * r['gold_prob']:.1f}%", f"{r.get('max_loss_diff', 0):.4f}",
                      f"{r.get('max_logprob_diff', 0):.3f}", f"{100 * r.get('answers_equal', 1):.0f}%")
    console.print(table)
    console.print("one training step: " + ", ".join(f"{r['rows']}×{r['width']} tokens {r['tokens_per_s']:.0f}/s"
                                                     for r in scaling), highlight=False)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
