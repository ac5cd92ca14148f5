"""The student's training step, one choice at a time (issue 16, item 1): which attention implementation,
whether a job's short sequences are packed into one row, and where the vocabulary projection runs.

The same training batches for every variant: self-edits from SEAL's base_val.json as the inner-loop
benchmark builds them (each line of the edit under its title, then the passage), through the project's
encoder (chat template, loss on the completion, EOS), in batches of 4, with the default inner loop's LoRA
(r=16 on every linear layer) on SmolLM2-135M in bf16 autocast. Each variant starts from the same seeded
LoRA and runs the same optimiser steps, so its first-step loss must equal the baseline's and its later
losses stay close (bf16), which the table shows beside the speed.
  padded:  rows right-padded to the batch's longest sequence, an attention mask (today's `student.sft`)
  packed:  `student.sft.pack`: the batch's sequences end to end in as few rows as hold its longest one,
           position ids restarting at each sequence, no attention mask (transformers then keeps
           attention within each sequence itself)
Attention: `sdpa` (transformers' default: torch's CPU flash kernel), `eager` (plain matmul + softmax).
Loss: `full` (the model's own: logits at every position), `labelled` (`labelled_loss` below: the
vocabulary projection and cross-entropy only at positions with a label, i.e. the completions; in fp32 the
same loss and LoRA gradients to 1e-5, a test while it was tried in student.sft; not adopted, see docs/performance.md).
GFLOP/s ≈ 4 × parameters × real tokens / seconds (forward 2, backward through activations 2), beside
the bf16 matmul peak at the model's own shapes measured in the same run; the labelled loss skips part
of that work, so its figure is the rate that would do the full loss's work in the same time.

    python benchmarks/student_step.py [--edits 4] [--repeats 3]   (10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from contention import cpu_model  # benchmarks/, this script's folder
from inner_loop import DATA, load_edits
from rich.console import Console
from rich.table import Table

from orchestrator.config import StudentConfig
from orchestrator.models import SMOLLM2, resolve_model
from student.sft import IGNORE, Encoded, collate, encode, pack
from student.student import Student

OUT = Path(__file__).parent / "results" / "student_step.json"
Variant = tuple[str, bool, bool, str]  # attention, packed, compiled, loss
VARIANTS: tuple[Variant, ...] = (("sdpa", False, False, "full"), ("eager", False, False, "full"),
                                 ("sdpa", True, False, "full"), ("eager", True, False, "full"),
                                 ("eager", True, False, "labelled"))
COMPILED: Variant = ("eager", True, True, "full")  # --compile: eager packed under torch.compile


@dataclass(frozen=True)
class Measured:
    attention: str
    packed: bool
    compiled: bool
    loss: str
    seconds: float  # best of the repeats, all steps
    tokens: int  # real tokens, all steps
    losses: tuple[float, ...]  # first repeat, per step


def batches(student: Student, edits: int) -> list[list[Encoded]]:
    spec = StudentConfig().train
    out = []
    for edit in load_edits(DATA, edits):
        encoded = [encode(student.tokenizer, e, spec) for e in edit.examples]
        out += [encoded[i : i + spec.batch_size] for i in range(0, len(encoded), spec.batch_size)]
    return out


def labelled_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`model(**batch).loss` with SmolLM2's vocabulary projection (576 × 49,152) and its fp32 cross-entropy
    only at positions with a label (one process, inside the caller's autocast)."""
    labels = batch["labels"][:, 1:]
    targets = labels != IGNORE
    hidden = model.get_decoder()(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
    logits = model.get_output_embeddings()(hidden[:, :-1][targets])
    return torch.nn.functional.cross_entropy(logits.float(), labels[targets])


def run(student: Student, data: list[list[Encoded]], variant: Variant, epochs: int,
        compiled: Any = None) -> Measured:
    """`compiled`: torch.compile of student.model, used for the forward pass of a compiled variant."""
    attention, packed, use_compiled, loss_kind = variant
    model = student.model
    model.set_attn_implementation(attention)
    forward = compiled if use_compiled else model
    pad_id = student.tokenizer.pad_token_id
    inputs = [pack(b, pad_id) if packed else collate(b, pad_id) for b in data]
    student._reset_lora(StudentConfig().lora, seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=StudentConfig().train.lr, weight_decay=0.0)
    model.train()
    losses = []
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in inputs:
            with student.accelerator.autocast():
                loss = forward(**batch).loss if loss_kind == "full" else labelled_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    seconds = time.perf_counter() - start
    tokens = epochs * sum(len(e.input_ids) for b in data for e in b)
    return Measured(attention, packed, use_compiled, loss_kind, seconds, tokens, tuple(losses))


def shape_peak(hidden: int, ffn: int, rows: int, reps: int = 20) -> float:
    """bf16 GFLOP/s of the model's own projections (rows × hidden by hidden × ffn), best of `reps`."""
    a, b = torch.randn(rows, hidden, dtype=torch.bfloat16), torch.randn(hidden, ffn, dtype=torch.bfloat16)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(reps))
    return 2 * rows * hidden * ffn / best / 1e9


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=StudentConfig().train.epochs)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also eager + packed under torch.compile")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    student = Student(resolve_model(SMOLLM2), device="cpu")
    data = batches(student, args.edits)
    config = student.model.get_base_model().config
    peak = shape_peak(config.hidden_size, config.intermediate_size, rows=4 * 64)
    params = sum(p.numel() for p in student.model.get_base_model().parameters())
    run(student, data[:2], VARIANTS[0], 1)  # warm-up: the first steps of a process are slower
    variants = (*VARIANTS, COMPILED) if args.compile else VARIANTS
    compiled, compile_s = None, None
    if args.compile:  # compiled once (dynamic shapes: rows differ in length), its first epoch timed apart
        compiled = torch.compile(student.model, dynamic=True)
        compile_s = run(student, data, COMPILED, 1, compiled).seconds
    runs: dict[Variant, list[Measured]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # round-robin, so a drift of the machine reaches every variant alike
        for variant in variants:
            runs[variant].append(run(student, data, variant, args.epochs, compiled))
    rows = []
    for variant, measured in runs.items():
        best = min(measured, key=lambda m: m.seconds)
        rows.append(Measured(*variant, best.seconds, best.tokens, measured[0].losses))
        console.print(f"{variant}: {[round(m.seconds, 2) for m in measured]} s")
    student.model.set_attn_implementation("sdpa")
    base = rows[0]
    result = {
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0]},
        "settings": {"edits": args.edits, "steps": len(base.losses), "epochs": args.epochs,
                     "repeats": args.repeats, "lora": asdict(StudentConfig().lora)},
        "bf16_peak_gflops_model_shape": peak, "parameters": params, "compiled_first_epoch_s": compile_s,
        "rows": [{"attention": m.attention, "packed": m.packed, "compiled": m.compiled, "loss": m.loss,
                  "seconds": m.seconds,
                  "tokens": m.tokens,
                  "tokens_per_s": m.tokens / m.seconds, "gflops": 4 * params * m.tokens / m.seconds / 1e9,
                  "speedup": base.seconds / m.seconds, "first_loss": m.losses[0],
                  "max_loss_diff": max(abs(a - b) for a, b in zip(m.losses, base.losses, strict=True))}
                 for m in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    table = Table("attention", "batch", "loss", "tokens/s", "GFLOP/s", "% of peak", "speed-up", "first loss",
                  "max |Δloss|", title=f"student training step ({result['machine']['cpu']}; bf16 peak at the "
                                       f"model's shapes {peak:.0f} GFLOP/s)")
    for r in result["rows"]:
        attention = r["attention"] + (" (compiled)" if r["compiled"] else "")
        table.add_row(attention, "packed" if r["packed"] else "padded", r["loss"], f"{r['tokens_per_s']:.0f}",
                      f"{r['gflops']:.0f}", f"{100 * r['gflops'] / peak:.0f}%", f"{r['speedup']:.2f}×",
                      f"{r['first_loss']:.4f}", f"{r['max_loss_diff']:.4f}")
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
