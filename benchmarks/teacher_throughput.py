"""What a teacher round costs with a freshly trained adapter, for each way of using the adapter.

The same teacher prompts (knowledge passages, 16 by default) × n = 4, the same sampling, one run:
  (a) vLLM, the adapter hot-loaded (/v1/load_lora_adapter): no restart, LoRA kernels at decode time
  (b) vLLM restarted on weights with the adapter merged: merge + server start, then base speed
  (c) the in-process HF backend with the adapter merged
(b) and (c) are measured twice: with the round's prompts sent together, `CONTEXTS_PER_CALL` per call
as the E-step sends them (HF: one batched generate; vLLM: all requests in flight), and one prompt per
call, as the E-step sent them before (the baseline). (a) only batched: at its ~10× slower LoRA decoding
one prompt per call would take most of an hour.
"Seconds per round" is what the loop pays after each M-step: adapter switch + generation. The faster
of (a) and (b) should be `teacher.vllm_server.default_adapter_sync()` on this platform.

    python benchmarks/teacher_throughput.py [--model smollm2-135m-instruct] [--prompts 16] [--n 4]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from orchestrator.domains.knowledge import KnowledgeDomain, default_data, load_passages
from orchestrator.edits import CONTEXTS_PER_CALL
from orchestrator.models import resolve_model
from student.messages import LoRASpec, TrainingExample, TrainJob, TrainSpec
from teacher.base import Sampling, Teacher, TeacherPrompt
from teacher.hf import HFTeacher
from teacher.vllm_process import ServerOptions, on_cpu
from teacher.vllm_server import VLLMTeacher, default_adapter_sync

OUT = Path(__file__).parent / "results" / "teacher_throughput.json"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TEACHER_LORA = LoRASpec(r=64, alpha=128, target_modules=ALL_LINEAR)  # the M-step adapter's default shape
COLUMNS = ("method", "output tok/s", "adapter switch s", "generation s", "s per round")


@dataclass(frozen=True)
class Row:
    method: str
    switch_s: float
    generate_s: float
    output_tokens: int

    def summary(self) -> dict[str, Any]:
        return asdict(self) | {"round_s": self.round_s(), "tokens_per_s": self.tokens_per_s()}

    def round_s(self) -> float:
        return self.switch_s + self.generate_s

    def tokens_per_s(self) -> float:
        return self.output_tokens / self.generate_s

    def cells(self) -> list[str]:
        seconds = (self.switch_s, self.generate_s, self.round_s())
        return [self.method, f"{self.tokens_per_s():.1f}", *(f"{s:.1f}" for s in seconds)]


def train_adapter(model: str, prompts: list[TeacherPrompt], out: Path) -> str:
    """A short real M-step (the student's TrainJob code) on placeholder edits: the adapter's shape,
    not its quality, sets the cost."""
    from student.student import Student

    examples = tuple(
        TrainingExample(prompt=p[1]["content"], completion="It implies a fact.", system=p[0]["content"])
        for p in prompts[:8]
    )
    spec = TrainSpec(lr=3e-4, epochs=1, batch_size=4, loss_on="completion", max_steps=2)
    job = TrainJob("bench", seed=0, examples=examples, output_dir=str(out), lora=TEACHER_LORA, train=spec)
    student = Student(model, device="cpu" if on_cpu() else None)
    report = student.train(job)
    del student
    gc.collect()
    return report.adapter_dir


def measure(
    name: str, teacher: Teacher, adapter: str, prompts: list[TeacherPrompt], sampling: Sampling,
    per_call: int = CONTEXTS_PER_CALL,
) -> Row:
    """One round after an M-step: switch to the adapter, then generate, `per_call` prompts per call."""
    start = time.perf_counter()
    teacher.use_adapter(adapter)
    switched = time.perf_counter()
    calls = [prompts[i : i + per_call] for i in range(0, len(prompts), per_call)]
    tokens = sum(p.tokens for call in calls for row in teacher.propose(call, sampling) for p in row)
    return Row(name, switched - start, time.perf_counter() - switched, tokens)


def both_ways(name: str, teacher: Teacher, adapter: str, prompts: list[TeacherPrompt], sampling: Sampling
              ) -> list[Row]:
    """The E-step's batched calls, then one prompt per call (the baseline)."""
    return [measure(f"{name}, {CONTEXTS_PER_CALL} prompts per call", teacher, adapter, prompts, sampling),
            measure(f"{name}, 1 prompt per call", teacher, adapter, prompts, sampling, per_call=1)]


def run_all(
    model: str, prompts: list[TeacherPrompt], sampling: Sampling, console: Console
) -> tuple[list[Row], float]:
    """The three rows, one method at a time (never two on the CPU at once), and vLLM's start time."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="teacher-bench-") as tmp:
        with console.status("training a teacher adapter (a 2-step TrainJob)"):
            adapter = train_adapter(model, prompts, Path(tmp) / "adapter")
        with console.status("vLLM: start, hot-load, merge-restart"):
            start = time.perf_counter()
            options = ServerOptions(max_lora_rank=TEACHER_LORA.r)
            with VLLMTeacher.launch(model, Path(tmp), options, adapter_sync="hot-load") as vllm:
                startup_s = time.perf_counter() - start
                rows.append(measure("vLLM, adapter hot-loaded", vllm, adapter, prompts, sampling))
                vllm.adapter_sync = "merge-restart"  # the same server, as a run has it after an M-step
                rows += both_ways("vLLM, restarted on merged weights", vllm, adapter, prompts, sampling)
        with console.status("HF in-process"):
            hf = HFTeacher(model)
            rows += both_ways("HF in-process, adapter merged", hf, adapter, prompts, sampling)
            hf.close()
    return rows, startup_s


def report(rows: list[Row], startup_s: float, settings: dict[str, Any], out: Path, console: Console) -> None:
    hot_load, merge_restart = rows[0], rows[1]  # both with the E-step's batched calls
    fastest = "hot-load" if hot_load.round_s() <= merge_restart.round_s() else "merge-restart"
    # The load average shows whether other work shared the machine while this ran.
    machine = {
        "platform": "cpu" if on_cpu() else "gpu", "cpus": os.cpu_count(), "cpu": platform.processor(),
        "torch_threads": torch.get_num_threads(), "load_avg_5m": os.getloadavg()[1],
    }
    result = {"benchmark": "teacher_throughput", "machine": machine, "settings": settings,
              "vllm_startup_s": startup_s, "rows": [r.summary() for r in rows],
              "fastest_vllm_sync": fastest, "default_adapter_sync": default_adapter_sync()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    s = settings["sampling"]
    title = f"teacher round: {settings['prompts']} prompts × n={s['n']}, ≤{s['max_tokens']} tokens"
    table = Table(*COLUMNS, title=f"{title} ({machine['platform']}, {machine['cpus']} cores)")
    for r in rows:
        table.add_row(*r.cells())
    console.print(table)
    console.print(f"vLLM start {startup_s:.1f} s · fastest vLLM sync here: {fastest} · "
                  f"default_adapter_sync(): {default_adapter_sync()} · wrote {out}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    domain = KnowledgeDomain()
    prompts = [domain.teacher_prompt(p) for p in load_passages(default_data())[: args.prompts]]
    sampling = Sampling(n=args.n, temperature=1.0, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    rows, startup_s = run_all(resolve_model(args.model), prompts, sampling, console)
    settings = {"model": args.model, "prompts": len(prompts), "sampling": asdict(sampling),
                "adapter": asdict(TEACHER_LORA)}
    report(rows, startup_s, settings, args.out, console)


if __name__ == "__main__":
    main()
