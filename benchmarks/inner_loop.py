"""Inner-loop benchmark (issue 3): one self-edit → adapted student → τ, ours against the reference's way.

Both pipelines train on the same token sequences, built as the reference's build_train_sequences
does (SEAL's base_val.json, completions[0]: title + each line of the edit, plus the passage; here
as chat turns, title as the user turn, ending with EOS) with the paper's LoRA hyperparameters
(r=32, α=64, q/v projections, lr 1e-3, 10 epochs), and answer the same probes (title as topic,
chat template, greedy, 64 tokens) with the same batched generation code.
- ours: one resident `Student`; LoRA reset in place, dynamic padding, batches of 4, loss on the
  assistant turns only by default (`--loss-on all` trains the system and user turns too).
- naive (the reference's TTT server, made worse as the issue asks): model loaded and
  `get_peft_model` per edit, HF `Trainer`, batch 1, every sequence padded to 2,048 with the pads in
  the loss, one edit at a time.
The naive pipeline spends ~10 s per 2,048-token step here, so by default it runs fewer epochs
(and edits) and its training time is extrapolated linearly to `--epochs`, as our timing of the
reference did (accurate to 2 % there). Its τ is then that of its shorter training, and the output says so.
FLOP/s ≈ 4 × parameters × trained tokens / seconds (forward 2, backward through activations 2:
the frozen base needs no weight gradients), beside matmul peaks measured in the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from peft import LoraConfig, get_peft_model
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

from orchestrator.models import SMOLLM2, resolve_model
from student.messages import LoRASpec, Probe, StudentJob, TrainingExample, TrainSpec
from student.metrics import score
from student.sft import collate, encode
from student.student import Student, generate_answers

DATA = Path(__file__).parents[2] / "shared/data/seal/general-knowledge/data/synthetic_data/eval/base_val.json"
OUT = Path(__file__).parent / "results" / "inner_loop.json"
LORA = LoRASpec(r=32, alpha=64, dropout=0.0, target_modules=("q_proj", "v_proj"))
console = Console()


@dataclass(frozen=True)
class Edit:
    title: str
    examples: tuple[TrainingExample, ...]  # user: title, assistant: one line of the edit; the passage last
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class Timing:
    seconds: float  # whole inner loop of one edit, at the requested epochs (extrapolated for naive)
    train_seconds: float  # as measured
    tokens: int  # tokens the training computed on, as measured (naive: pads included)
    contains: float
    exact_match: float


def load_edits(path: Path, n: int) -> list[Edit]:
    """As the reference's build_train_sequences(split_newlines=True): every non-empty line of the edit
    is one example under its title, and the passage is always added."""
    edits = []
    for i, record in enumerate(json.loads(path.read_text())[:n]):
        title = record["title"]
        lines = [line.strip() for line in record["completions"][0].splitlines() if line.strip()]
        examples = tuple(TrainingExample(title, text) for text in [*lines, record["context"]])
        probes = tuple(Probe(f"{i}-{j}", f"Topic: {title}\n{q['question']}", q["answer"])
                       for j, q in enumerate(record["questions"]))
        edits.append(Edit(title, examples, probes))
    return edits


def ours(student: Student, edit: Edit, spec: TrainSpec, seed: int) -> Timing:
    start = time.perf_counter()
    report = student.run(StudentJob(edit.title, seed, edit.examples, edit.probes, lora=LORA, train=spec))
    return Timing(time.perf_counter() - start, report.train_seconds, report.tokens_trained,
                  report.mean("contains"), report.mean("exact_match"))


def naive(model_path: str, edit: Edit, spec: TrainSpec, epochs: int, seed: int) -> Timing:
    """The reference's TTT request on CPU: its Trainer runs in fp32 mode (its bf16 flag needs CUDA),
    with bf16 base weights and fp32 LoRA weights."""
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(r=LORA.r, lora_alpha=LORA.alpha, lora_dropout=0.0,
                                             task_type="CAUSAL_LM"))  # peft's default targets: q, v
    everything = replace(spec, loss_on="all")
    rows = [  # padded to max_seq_len, labels = input_ids, pads included
        {k: v[0] for k, v in collate([encode(tokenizer, e, everything)], tokenizer.pad_token_id,
                                     pad_to=spec.max_seq_len, loss_on_pads=True).items()}
        for e in edit.examples
    ]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=1, num_train_epochs=epochs,
                                 learning_rate=spec.lr, save_strategy="no", report_to=[], use_cpu=True,
                                 seed=seed, disable_tqdm=True, logging_strategy="no")
        train_start = time.perf_counter()
        trainer = Trainer(model=model, args=args, train_dataset=rows)
        trainer.remove_callback(PrinterCallback)  # it prints the run's metrics even with logging off
        trainer.train()
        train_seconds = time.perf_counter() - train_start
    answers = generate_answers(model, tokenizer, edit.probes, spec)
    measured = time.perf_counter() - start
    scores = [score(a, p.gold) for a, p in zip(answers, edit.probes, strict=True)]
    return Timing(measured + (spec.epochs / epochs - 1) * train_seconds, train_seconds,
                  len(rows) * spec.max_seq_len * epochs,
                  mean(s["contains"] for s in scores), mean(s["exact_match"] for s in scores))


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def flops(params: int, rows: list[Timing]) -> float:
    seconds = sum(r.train_seconds for r in rows)
    return 4 * params * sum(r.tokens for r in rows) / seconds if seconds else 0.0


def summary(rows: list[Timing], params: int) -> dict[str, float]:
    return {"edits": len(rows), "seconds_per_edit": mean(r.seconds for r in rows),
            "contains": mean(r.contains for r in rows), "exact_match": mean(r.exact_match for r in rows),
            "train_flops": flops(params, rows)}


def speedup(naive_rows: list[Timing], ours_rows: list[Timing]) -> float | None:
    return mean(r.seconds for r in naive_rows) / mean(r.seconds for r in ours_rows) if naive_rows else None


def main(
    model: Annotated[str, typer.Option(help="model name, folder or Hub id")] = SMOLLM2,
    data: Annotated[Path, typer.Option(help="SEAL JSON whose records have completions (self-edits)")] = DATA,
    edits: Annotated[int, typer.Option(min=1, help="self-edits our student applies")] = 8,
    naive_edits: Annotated[int, typer.Option(min=0, help="how many of them the naive pipeline applies")] = 3,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    naive_epochs: Annotated[int, typer.Option(min=1, help="epochs the naive one runs (time scaled up)")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="ours (the naive one uses 1, as the reference)")] = 4,
    loss_on: Annotated[str, typer.Option(help="ours: completion | all (the naive one: all, pads too)")] = "completion",
    threads: Annotated[int, typer.Option(min=1)] = 2,
    out: Annotated[Path, typer.Option(help="JSON results")] = OUT,
) -> None:
    if not data.exists() or loss_on not in ("completion", "all"):
        console.print(f"error: --data {data} does not exist" if not data.exists()
                      else f"error: --loss-on must be completion or all, not {loss_on!r}")
        raise typer.Exit(2)
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]  # other work on the machine slows both pipelines; record it
    path = resolve_model(model)
    items = load_edits(data, edits)
    spec = TrainSpec(lr=1e-3, epochs=epochs, batch_size=batch_size, loss_on=loss_on, max_new_tokens=64)
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}

    student = Student(path, threads=threads)
    ours_rows, naive_rows, baseline = [], [], []
    with Progress(console=console) as progress:
        task = progress.add_task("ours", total=len(items))
        for i, edit in enumerate(items):
            baseline.append(student.run(StudentJob("base", 0, (), edit.probes, train=spec)).mean("contains"))
            ours_rows.append(ours(student, edit, spec, seed=i))
            progress.advance(task)
        task = progress.add_task(f"naive, {naive_epochs} epoch(s)", total=len(items[:naive_edits]))
        for i, edit in enumerate(items[:naive_edits]):
            naive_rows.append(naive(path, edit, spec, naive_epochs, seed=i))
            progress.advance(task)

    params = sum(p.numel() for p in student.model.get_base_model().parameters() if not p.requires_grad)
    common = len(naive_rows)
    result = {
        "model": path, "data": str(data), "lora": asdict(LORA), "epochs": epochs, "batch_size": batch_size,
        "loss_on": loss_on,
        "naive_epochs_run": naive_epochs, "threads": threads, "parameters": params,
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "baseline_contains": mean(baseline), "peak_flops": peaks,
        "ours": summary(ours_rows, params), "ours_same_edits": summary(ours_rows[:common], params),
        "naive": summary(naive_rows, params),  # its FLOP/s count the pads it computes on
        "speedup_same_edits": speedup(naive_rows, ours_rows[:common]),
        "per_edit": {"ours": [asdict(r) for r in ours_rows], "naive": [asdict(r) for r in naive_rows]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    show(result)


def show(result: dict[str, Any]) -> None:
    table = Table(title=f"Inner loop: {result['epochs']} epochs, r=32, α=64, lr 1e-3 "
                        f"(τ without adaptation, contains: {result['baseline_contains']:.3f})")
    for column in ("pipeline", "edits", "s / edit", "τ contains", "τ exact match", "train GFLOP/s"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    run, epochs = result["naive_epochs_run"], result["epochs"]
    extrapolated = run != epochs
    naive_name = f"naive (ran {run} ep., ×{epochs / run:g})"
    for name, key in (("ours", "ours"), ("ours (naive's edits)", "ours_same_edits"),
                      (naive_name if extrapolated else "naive", "naive")):
        row = result[key]
        if row["edits"]:
            table.add_row(name, str(row["edits"]), f"{row['seconds_per_edit']:.1f}", f"{row['contains']:.3f}",
                          f"{row['exact_match']:.3f}", f"{row['train_flops'] / 1e9:.1f}")
    console.print(table)
    if result["speedup_same_edits"]:
        note = f" (naive time extrapolated; its τ is after {run} epoch(s))" if extrapolated else ""
        console.print(f"speed-up per edit on the same edits: {result['speedup_same_edits']:.1f}×{note}")
    peaks = result["peak_flops"]
    console.print(f"matmul peak now: bf16 {peaks['bf16'] / 1e9:.0f}, fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s; "
                  f"ours trains at {result['ours']['train_flops'] / peaks['bf16']:.0%} of the bf16 peak "
                  "(naive GFLOP/s include its pads)")
    load = result["load_average_1min"]
    console.print(f"machine load average (1 min) at start/end: {load['start']:.1f} / {load['end']:.1f}")


if __name__ == "__main__":
    typer.run(main)
