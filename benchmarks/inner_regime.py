"""Inner-loop regimes (issue 14): which LoRA SFT setting makes SmolLM2-135M learn a passage's facts from a
self-edit, per second of student time, and which reward ranks self-edits reliably.

On SEAL's *training* passages (`train/iter0_train.json`, SQuAD train; the 200 evaluation passages stay
for the results), a seeded sample of P passages. For each regime: passage only and passage + the
published Qwen2.5-7B self-edit (the first of each passage), against no adaptation (once per probe format),
every metric (exact match, token F1, contains gold, gold_prob = the per-token probability of the gold
answer, teacher-forced) as a mean with a 95% bootstrap interval and as **paired** gains over passages.
Axes, one at a time from the paper's inner loop: LoRA targets (q/v, attention, all linear), rank, lr,
epochs, loss on the completion vs all tokens, chat turns vs plain continuation (training text and
probe alike). The chosen regime (`choose`): the largest contains-gold gain per second of student time
among the regimes whose paired gain over no adaptation excludes 0.

Reward reliability (`--reliability`): under the chosen regime, M=3 published edits per passage, each
applied with two LoRA seeds; per metric, the Spearman correlation of the edits' rewards between the two
seeds (centred per passage, since selection is within a passage) and how often best-of-M's pick is the
same under both seeds (among passages where the pick is strict).

    .venv/bin/python benchmarks/inner_regime.py --passages 20 --workers 2 --reliability
    .venv/bin/python benchmarks/inner_regime.py --passages 2 --out benchmarks/results/inner_regime_cpu.json

Writes JSON (every cell and answer) and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.config import ALL_LINEAR, load_config
from orchestrator.domains.knowledge import METRICS, KnowledgeDomain, Passage, load_passages, tau
from orchestrator.evaluation import tables
from orchestrator.models import resolve_model
from orchestrator.reliability import reliability
from orchestrator.roles import build_pool
from student.messages import LoRASpec, StudentJob, StudentReport, TrainSpec, to_dict

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DATA = ROOT.parent / "shared/data/seal/general-knowledge/data/synthetic_data/train/iter0_train.json"
OUT = ROOT / "benchmarks" / "results" / "inner_regime.json"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
# chat=True: SmolLM2-Instruct's own rendering, said outright, since a regime's no-adaptation row is chosen by it.
PAPER_LORA = LoRASpec()
PAPER_TRAIN = TrainSpec(lr=1e-3, epochs=10, loss_on="completion", max_new_tokens=32, chat=True)


def regime(lora: dict[str, Any] | None = None, **train: Any) -> tuple[LoRASpec, TrainSpec]:
    return dataclasses.replace(PAPER_LORA, **(lora or {})), dataclasses.replace(PAPER_TRAIN, **train)


# name → (LoRA, training): the paper's loop, then one axis at a time.
REGIMES: dict[str, tuple[LoRASpec, TrainSpec]] = {
    "paper: q/v r32, lr 1e-3, 10 ep": regime(),
    "q/v r32, 3 ep (results so far)": regime(epochs=3),
    "attention r32, 10 ep": regime({"target_modules": ATTENTION}),
    "all-linear r16, 10 ep": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}),
    "all-linear r16, 5 ep": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=5),
    "all-linear r16, 5 ep, lr 3e-3": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=5, lr=3e-3),
    "all-linear r16, 3 ep, lr 3e-3": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=3, lr=3e-3),
    "all-linear r16, 5 ep, loss on all": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=5,
                                                loss_on="all"),
    "all-linear r16, 5 ep, plain text": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=5,
                                               chat=False),
    # Around the chosen regime (a second sweep, on more passages): more steps, rank, a gentler lr.
    "all-linear r16, 3 ep, lr 3e-3, batch 2": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=3,
                                                     lr=3e-3, batch_size=2),
    "all-linear r32, 3 ep, lr 3e-3": regime({"r": 32, "alpha": 64, "target_modules": ALL_LINEAR}, epochs=3, lr=3e-3),
    "all-linear r16, 4 ep, lr 2e-3": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=4, lr=2e-3),
    "all-linear r16, 2 ep, lr 3e-3": regime({"r": 16, "alpha": 32, "target_modules": ALL_LINEAR}, epochs=2, lr=3e-3),
}


def sample_passages(n: int, seed: int) -> list[Passage]:
    passages = load_passages(TRAIN_DATA)
    return [passages[i] for i in sorted(random.Random(seed).sample(range(len(passages)), n))]


def regime_cells(domain: KnowledgeDomain, passages: Sequence[Passage], seed: int, names: Sequence[str]
                 ) -> list[tables.Cell]:
    """No adaptation once per probe format the regimes use (chat or plain), then passage only and passage + edit
    per regime; row names carry the regime, so every job id is unique."""
    edits = tuple(p.completions[0] for p in passages)
    cells = []
    for chat in sorted({REGIMES[name][1].chat for name in names}, reverse=True):
        train = dataclasses.replace(PAPER_TRAIN, chat=chat)
        cells += tables.plan(domain, passages, [tables.Row(none_row(chat), "none")], seed=seed,
                               lora=PAPER_LORA, train=train)
    for name in names:
        lora, train = REGIMES[name]
        rows = [tables.Row(f"{name} | passage", "passage"), tables.Row(f"{name} | edit", "edits", edits)]
        cells += tables.plan(domain, passages, rows, seed=seed, lora=lora, train=train)
    return cells


def none_row(chat: bool) -> str:
    return "no adaptation" + ("" if chat else " (plain)")


def summarise_regimes(cells: Sequence[tables.Cell], reports: dict[str, StudentReport], seed: int,
                      names: Sequence[str]) -> list[dict[str, Any]]:
    """Per regime: passage and edit rows, their paired gains over no adaptation and edit over passage,
    and the student's seconds per job."""
    out = []
    for name in names:
        none = none_row(REGIMES[name][1].chat)
        mine = [c for c in cells if c.row.startswith(f"{name} |") or c.row == none]
        gains = {g.name: g for g in tables.paired_gains(mine, reports, none, seed=seed)}
        edit_vs_passage = tables.paired_gains([c for c in mine if c.row != none], reports, f"{name} | passage",
                                                seed=seed)[0]
        trained = [reports[c.job.job_id] for c in mine if c.job and c.row != none and reports[c.job.job_id].ok]
        seconds = mean(r.train_seconds + r.eval_seconds for r in trained) if trained else float("nan")
        summaries = {s.name: s for s in tables.summarise(mine, reports, seed=seed)}
        out.append({
            "regime": name, "student_s_per_job": seconds,
            "train_s_per_job": mean(r.train_seconds for r in trained) if trained else float("nan"),
            "passage": _scores(summaries[f"{name} | passage"]), "edit": _scores(summaries[f"{name} | edit"]),
            "no_adaptation": _scores(summaries[none]),
            "passage_gain": _scores(gains[f"{name} | passage − {none}"]),
            "edit_gain": _scores(gains[f"{name} | edit − {none}"]),
            "edit_over_passage": _scores(edit_vs_passage),
        })
    return out


def _scores(summary: tables.RowSummary) -> dict[str, dict[str, float]]:
    return {m: dataclasses.asdict(e) for m, e in summary.scores.items()}


def choose(regimes: Sequence[dict[str, Any]]) -> str:
    """The largest contains-gold gain per student second, among regimes whose paired gain excludes 0
    (else the largest gain)."""
    significant = [r for r in regimes if r["edit_gain"]["contains"]["low"] > 0] or list(regimes)
    return max(significant, key=lambda r: r["edit_gain"]["contains"]["mean"] / r["student_s_per_job"])["regime"]


# --- reward reliability --------------------------------------------------------------------------------------


def reliability_jobs(domain: KnowledgeDomain, passages: Sequence[Passage], lora: LoRASpec, train: TrainSpec,
                     m: int, seeds: Sequence[int]) -> list[StudentJob]:
    jobs = []
    for i, passage in enumerate(passages):
        for e in range(m):
            examples = domain.parse_edit(passage, passage.completions[e], train).examples
            jobs += [StudentJob(f"rel/{i}/e{e}/s{seed}", seed + 1000 * i + e, examples, domain.probes(passage), lora,
                                train) for seed in seeds]
    return jobs


def reward_reliability(reports: dict[str, StudentReport], n_passages: int, m: int, seeds: Sequence[int]
                       ) -> dict[str, dict[str, float]]:
    """Per metric: orchestrator.reliability's measures of the rewards under the two seeds."""
    out = {}
    for metric in METRICS:
        a, b = ([[tau(reports[f"rel/{i}/e{e}/s{s}"], metric) for e in range(m)] for i in range(n_passages)]
                for s in seeds)
        out[metric] = dataclasses.asdict(reliability(a, b))
    return out


# --- main ----------------------------------------------------------------------------------------------------


def run_jobs(jobs: list[StudentJob], workers: int, console: Console) -> dict[str, StudentReport]:
    cfg = load_config(None, {"pool.kind": "local" if workers > 1 else "inprocess", "pool.workers": workers})
    pool = build_pool(cfg, resolve_model(cfg.teacher.model))
    try:
        return tables.collect(pool.run(jobs), len(jobs), console)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=20, help="P training passages (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="student processes (a local pool when > 1)")
    parser.add_argument("--reliability", action="store_true", help="also measure reward reliability")
    parser.add_argument("--no-sweep", action="store_true", help="only reward reliability, under --regime")
    parser.add_argument("--regime", choices=list(REGIMES), help="the regime of --reliability (default: chosen)")
    parser.add_argument("--regimes", nargs="+", choices=list(REGIMES), default=list(REGIMES), metavar="NAME",
                        help="the regimes to sweep (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 160)
    domain = KnowledgeDomain()
    passages = sample_passages(args.passages, args.seed)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "inner_regime", "command": " ".join([sys.executable, *sys.argv]),
        "data": str(TRAIN_DATA), "passages": [p.title for p in passages], "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor(), "load_avg_1m": os.getloadavg()[0],
                    "cuda": _cuda_name()},
        "settings": {n: {"lora": to_dict(REGIMES[n][0]), "train": to_dict(REGIMES[n][1])} for n in args.regimes},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_sweep:
        cells = regime_cells(domain, passages, args.seed, args.regimes)
        reports = run_jobs(tables.jobs(cells), args.workers, console)
        result["regimes"] = summarise_regimes(cells, reports, args.seed, args.regimes)
        result["chosen"] = choose(result["regimes"])
        result["cells"] = tables.results(cells, reports, [])["cells"]
        result["wall_s"] = time.perf_counter() - start
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        console.print(render(result))
        console.print(f"chosen: {result['chosen']}", highlight=False)
    if args.reliability:
        name = args.regime or result["chosen"]
        lora, train = REGIMES[name]
        seeds, m = (1, 2), 3
        jobs = reliability_jobs(domain, passages, lora, train, m, seeds)
        result["reliability"] = {"regime": name, "m": m, "seeds": seeds,
                                 "metrics": reward_reliability(run_jobs(jobs, args.workers, console), len(passages),
                                                               m, seeds)}
        result["wall_s"] = time.perf_counter() - start
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        console.print(render_reliability(result["reliability"]))
    console.print(f"wrote {args.out}", highlight=False)


def render(result: dict[str, Any]) -> Table:
    table = Table(title=f"inner-loop regimes, {len(result['passages'])} training passages, paired gains (95% CI)")
    for column in ("regime", "s/job", "edit − none: contains", "gold prob", "F1", "passage − none: contains",
                   "edit − passage: contains"):
        table.add_column(column, justify="left" if column == "regime" else "right")
    for r in result["regimes"]:
        table.add_row(r["regime"], f"{r['student_s_per_job']:.1f}", _pct(r["edit_gain"]["contains"]),
                      _pct(r["edit_gain"]["gold_prob"]), _pct(r["edit_gain"]["f1"]),
                      _pct(r["passage_gain"]["contains"]), _pct(r["edit_over_passage"]["contains"]))
    return table


def render_reliability(rel: dict[str, Any]) -> Table:
    table = Table(title=f"reward reliability: M={rel['m']} edits per passage, two LoRA seeds ({rel['regime']})")
    for column in ("reward", "Spearman ρ (centred per passage)", "best-of-M pick kept", "strict picks"):
        table.add_column(column, justify="left" if column == "reward" else "right")
    for metric, r in rel["metrics"].items():
        table.add_row(metric, f"{r['spearman_centred']:.2f}", f"{r['pick_agreement']:.2f} (chance {r['chance']:.2f})",
                      f"{r['strict_picks']}/{r['contexts']}")
    return table


def _pct(e: dict[str, float]) -> str:
    return f"{100 * e['mean']:+.1f} ({100 * e['low']:+.1f}…{100 * e['high']:+.1f})"


def _cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
