"""Generation at the machine's speed: the E-step's teacher call and a held-out student's answers, each by
today's path and by the path before it, in one run, beside the decode limit measured in the same run.

  teacher: `HFTeacher.propose` on knowledge prompts × n (the config's temperature and top_p), as round 0
           calls it (no adapter). Three paths:
           before:  bf16 weights whatever the CPU, transformers' own top-p sampling (a full sort of the
                    vocabulary and a draw from all of it, every step)
           + dtype: the weights in the student's precision (runtime/precision.py: fp32 where bf16 is
                    emulated), transformers' sampling
           now:     the product's default: that precision, each prompt prefilled once for its n samples,
                    and teacher/sampling.py's NucleusSampler
  student: held-out jobs of the quickstart's regime (a fresh LoRA trained on a passage, then greedy
           answers to its questions and the gold answers' likelihood) on a resident Student: today's
           path, for its fraction of the decode limit (nothing in it changed).
The decode limit is the matmul peak at 2048² / (2 × parameters) tokens/s: what a decoding step that did
only the model's matmuls at peak would reach. The peak is bf16's or fp32's, whichever is higher here (on
a CPU without native bf16, bf16 is emulated and far below fp32). A profile of the teacher's steps says where the
rest goes. Same seeds, same prompts; sampled edits are compared by their length and parse statistics,
greedy answers one by one.

    python benchmarks/generation.py [--prompts 16] [--n 4] [--max-tokens 64] [--passages 4]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from inner_loop import matmul_peak  # benchmarks/, this script's folder, is first on sys.path
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, StoppingCriteriaList

from orchestrator.config import load_config
from orchestrator.domains.base import ParseFailure
from orchestrator.domains.knowledge import KnowledgeDomain, default_data, load_passages
from orchestrator.models import resolve_model
from runtime.cores import RebalanceEachStep
from runtime.precision import bf16_native
from student.messages import StudentJob
from student.student import Student
from teacher.base import Sampling, TeacherPrompt
from teacher.hf import HFTeacher

OUT = Path(__file__).parent / "results" / "generation.json"


class TransformersSampling(HFTeacher):
    """The teacher before this change: transformers' own sampling (`do_sample`, its top-p warper)."""

    @torch.inference_mode()
    def _generate(self, prompts: list[TeacherPrompt], s: Sampling) -> list[list[Any]]:
        batch = self.tokenizer.pad({"input_ids": [self._tokens(p) for p in prompts]}, return_tensors="pt")
        out = self.model.generate(**batch, max_new_tokens=s.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                  do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0,
                                  num_return_sequences=s.n,
                                  stopping_criteria=StoppingCriteriaList([RebalanceEachStep()]))
        rows = [self._proposal(row.tolist(), s.stop) for row in out[:, batch["input_ids"].shape[1]:]]
        return [rows[i : i + s.n] for i in range(0, len(rows), s.n)]


def teacher_row(name: str, teacher: HFTeacher, prompts: list[TeacherPrompt], sampling: Sampling,
                domain: KnowledgeDomain, passages: list[Any], limit: float) -> dict[str, Any]:
    teacher.propose(prompts[:1], Sampling(n=1, max_tokens=4, seed=0))  # first-call costs out of the timing
    start = time.perf_counter()
    proposals = teacher.propose(prompts, sampling)
    seconds = time.perf_counter() - start
    edits = [(p, e) for p, row in zip(passages, proposals, strict=True) for e in row]
    parsed = sum(_parses(domain, p, e.text) for p, e in edits)
    tokens = [e.tokens for _, e in edits]
    return {"path": name, "seconds": seconds, "output_tokens": sum(tokens), "tok_s": sum(tokens) / seconds,
            "of_limit": sum(tokens) / seconds / limit, "mean_tokens": statistics.mean(tokens),
            "hit_max_tokens": sum(e.finish_reason == "length" for _, e in edits) / len(edits),
            "parse_rate": parsed / len(edits), "dtype": str(teacher.model.dtype)}


def _parses(domain: KnowledgeDomain, passage: Any, text: str) -> bool:
    try:
        domain.parse_edit(passage, text, load_config().student.train)
        return True
    except ParseFailure:
        return False


def student_row(name: str, student: Student, jobs: list[StudentJob], limit: float) -> dict[str, Any]:
    student.run(jobs[0])  # first-call costs out of the timing
    reports = [student.run(job) for job in jobs]
    answers = [r.answer for rep in reports for r in rep.results]
    new_tokens = sum(len(student.tokenizer(a, add_special_tokens=False).input_ids) + 1 for a in answers)
    train_s, eval_s = sum(r.train_seconds for r in reports), sum(r.eval_seconds for r in reports)
    return {"path": name, "jobs": len(jobs), "train_s": train_s, "eval_s": eval_s, "seconds": train_s + eval_s,
            "answer_tok_s": new_tokens / eval_s, "of_limit": new_tokens / eval_s / limit,
            "answers": answers, "f1": statistics.mean(r.scores["f1"] for rep in reports for r in rep.results),
            "dtype": str(student.model.dtype)}


def step_profile(teacher: HFTeacher, prompts: list[TeacherPrompt], sampling: Sampling) -> dict[str, float]:
    """Seconds by operator over a short sampled call (16 decoding steps), largest first."""
    short = Sampling(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=16,
                     seed=sampling.seed)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        teacher.propose(prompts, short)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return {e.key: e.self_cpu_time_total / 1e6 for e in ops[:12]}


def held_out_jobs(domain: KnowledgeDomain, passages: list[Any]) -> list[StudentJob]:
    """The quickstart's held-out job shape, with the passage as its own training data (the teacher's edit
    is not what is timed here)."""
    cfg = load_config()
    return [StudentJob(f"bench-{i}", 0, domain.parse_edit(p, p.context, cfg.student.train).examples,
                       domain.probes(p), lora=cfg.student.lora, train=cfg.student.train,
                       scoring=domain.scoring("tau")) for i, p in enumerate(passages)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--passages", type=int, default=4, help="held-out student jobs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    model = resolve_model(args.model)
    cfg = load_config()
    domain = KnowledgeDomain()
    passages = load_passages(default_data())
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
    peaks = {"bf16": matmul_peak(torch.bfloat16, n=1024, reps=2), "fp32": matmul_peak(torch.float32)}
    peak = max(peaks.values())
    limit = peak / (2 * params)
    console.print(f"matmul peak bf16 {peaks['bf16'] / 1e9:.0f}, fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s → decode limit "
                  f"{limit:.0f} tok/s "
                  f"({params / 1e6:.0f}M parameters)")

    s = cfg.teacher.sampling
    sampling = Sampling(n=args.n, temperature=s.temperature, top_p=s.top_p, max_tokens=args.max_tokens, seed=0)
    teacher_passages = passages[: args.prompts]
    prompts = [domain.teacher_prompt(p) for p in teacher_passages]
    teachers = [("before: bf16, transformers sampling", lambda: TransformersSampling(model, dtype=torch.bfloat16)),
                ("+ dtype: transformers sampling", lambda: TransformersSampling(model)),
                ("now: product default", lambda: HFTeacher(model))]
    teacher_rows, profiles = [], {}
    for name, make in teachers:
        with console.status(f"teacher, {name}"):
            teacher = make()
            teacher_rows.append(teacher_row(name, teacher, prompts, sampling, domain, teacher_passages, limit))
            profiles[name] = step_profile(teacher, prompts[:4], sampling)
            del teacher
            gc.collect()
        console.print(f"teacher, {name}: {teacher_rows[-1]['seconds']:.1f} s")

    jobs = held_out_jobs(domain, passages[args.prompts : args.prompts + args.passages])
    with console.status("student"):
        student_rows = [student_row("product default", Student(model, device="cpu"), jobs, limit)]

    result = {"benchmark": "generation", "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
              "load_avg_1m_before": os.getloadavg()[0], "bf16_native": bf16_native(True)},
              "peak_flops": peaks, "parameters": params, "decode_limit_tok_s": limit,
              "settings": vars(args) | {"out": str(args.out), "temperature": s.temperature, "top_p": s.top_p},
              "teacher": teacher_rows, "teacher_profile_s": profiles, "student": student_rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    show(result, console)


def show(result: dict[str, Any], console: Console) -> None:
    t = Table("teacher path", "s", "tok/s", "of limit", "mean tokens", "at max", "parses",
              title=f"teacher: {result['settings']['prompts']} prompts × n={result['settings']['n']}")
    for r in result["teacher"]:
        t.add_row(r["path"], f"{r['seconds']:.1f}", f"{r['tok_s']:.1f}", f"{r['of_limit']:.1%}",
                  f"{r['mean_tokens']:.1f}", f"{r['hit_max_tokens']:.0%}", f"{r['parse_rate']:.0%}")
    console.print(t)
    s = Table("student path", "train s", "answer s", "job s", "answer tok/s", "of limit", "F1",
              title=f"held-out student jobs ×{result['student'][0]['jobs']}")
    for r in result["student"]:
        s.add_row(r["path"], f"{r['train_s']:.1f}", f"{r['eval_s']:.1f}", f"{r['seconds']:.1f}",
                  f"{r['answer_tok_s']:.1f}", f"{r['of_limit']:.1%}", f"{r['f1']:.3f}")
    console.print(s)
    before, now = result["teacher"][0], result["teacher"][-1]
    peak = max(result["peak_flops"].values())
    console.print(f"teacher now {before['seconds'] / now['seconds']:.2f}× before · decode limit "
                  f"{result['decode_limit_tok_s']:.0f} tok/s (matmul peak {peak / 1e9:.0f} GFLOP/s)")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
