"""The paper's knowledge-incorporation results at small scale (issue 8): SmolLM2-135M-Instruct on CPU,
one resumable command, three parts on the same K held-out passages.

  part 1  published self-edits applied to a small student. K of SEAL's 200 evaluation passages (chosen
          by the config's seed, as `seal run` chooses its held-out contexts; listed in the JSON), rows:
          no adaptation, passage only, and passage + the first edit per passage written by Qwen2.5-7B
          before SEAL training (base_val.json), after two SEAL rounds (iter2_val.json) and by GPT-4.1
          (gpt4_1_val.json). Built with orchestrator/evaluation/tables.py (as `seal eval-edits`), run on a local
          student pool; every finished cell is journaled in OUT/part1.jsonl and skipped on restart.
  part 2  our own loop: `seal run` in single-model mode (SmolLM2 writes the edits and is the student),
          ReST^EM on SEAL's training passages (iter0_train.json: SQuAD train, disjoint from the
          evaluation passages), held-out τ on the same K passages after rounds 0, 1, 2. Resumable through
          the run's journal (`--resume`).
  part 3  teacher–student, same budget: `seal compare` on the same config, where the teacher's adapter
          is trained for a fixed SmolLM2 student; its single-model run is part 2's run, resumed (so
          part 3 alone also does part 2's work). The teacher–student run starts as a fork of it: until
          a student first trains on an adapted teacher (round 1's held-out students) both modes do the
          same seeded work, which `seal compare` copies instead of recomputing.

Another student (`--set 'teacher.model="gemma-3-270m"' --out OTHER`) takes part 1's rows on its own journal;
`--against RESULTS_JSON` (a results JSON of the same K, another student's) pairs each row, and each row's lift
over no adaptation, passage by passage with that student's: `part1.student_gains`.

Grader: SQuAD-normalised exact match and token F1 (and gold contained in the answer) of greedy answers
to each passage's questions, asked without the passage; no LLM judge. Every number is the mean over
passages with a 95% percentile bootstrap interval (10,000 resamples over passages). The loop's rewards
(which edits its M-step keeps) use the knowledge domain's default reward, the gold answers' probability.

Settings come from configs/results-knowledge.toml (inner loop: LoRA r=16, α=32 on all linear layers, lr 3e-3,
3 epochs; ReST^EM: N=10 passages × M=3 edits per round), with the flags below on top. Output: OUT/results-kK.json
(tables, every cell and answer, per-unit times, wall times, commands), OUT/tau-per-round-kK.png, run
directories under OUT/runs/. A smoke run (about 6 min on 2 busy cores):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results_knowledge.py --passages 2 --rounds 1 --n-train 1 \\
        --edits-per-passage 1 --epochs 1 --out benchmarks/results/results_knowledge_smoke

The full run: `.venv/bin/python benchmarks/results_knowledge.py`. An estimate from the unit costs below is
printed first, with a warning for any part over 2 h, and the JSON records the per-unit times measured (on 2
quiet cores: part 2 estimated at 59 min, measured 54; part 3 estimated at 28 min, measured 24).
Interrupt it at any point and run the same command again: finished work is read back, not redone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from statistics import mean, median
from typing import Any

from rich.console import Console

from orchestrator.compare import mode_config
from orchestrator.config import Mode, SealConfig, load_config, parse_overrides
from orchestrator.domains.knowledge import EditFormat, KnowledgeDomain, Passage, load_passages
from orchestrator.errors import DataError
from orchestrator.evaluation import tables
from orchestrator.evaluation.held_out import HeldOut, regrade
from orchestrator.journal import JOURNAL, Journal, read_journal
from orchestrator.report import round_rows
from orchestrator.roles import build_pool
from orchestrator.session import check_inputs
from student.messages import StudentJob, StudentReport, from_dict, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "results-knowledge.toml"
OUT = ROOT / "benchmarks" / "results" / "results_knowledge"
EVAL_DATA = ROOT.parent / "shared/data/seal/general-knowledge/data/synthetic_data/eval"
EDIT_SOURCES: tuple[tuple[str, str, EditFormat], ...] = (  # (row, file in EVAL_DATA, its format)
    ("passage + Qwen2.5-7B base edits", "base_val.json", "implications"),
    ("passage + Qwen2.5-7B SEAL iter-2 edits", "iter2_val.json", "implications"),
    # the paper's prompt ablation (Table 6): the base model's published edits with the other prompts
    ("passage + base, rewrite", "alternate_prompts/base/base_val_prompt-rewrite.json", "rewrite"),
    ("passage + base, self-QA", "alternate_prompts/base/base_val_prompt-self-qa.json", "self-qa"),
    ("passage + base, long implications", "alternate_prompts/base/base_val_prompt-long.json", "implications-long"),
    ("passage + GPT-4.1 edits", "gpt4_1_val.json", "implications"),
)
# The paper's prompt ablation compares the formats of one model's edits: the Qwen base model's, each
# format against its implications (the first row).
BASE_MODEL_FORMATS = tuple(EDIT_SOURCES[i][0] for i in (0, 2, 3, 4))
MODES: tuple[Mode, ...] = ("single-model", "teacher-student")
GRADER = ("SQuAD-normalised exact match, token F1 and gold-contained of greedy answers (no LLM judge); "
          "mean over passages, 95% percentile bootstrap CI over passages (10,000 resamples); "
          "ReST^EM rewards use the knowledge domain's reward (gold prob by default)")

# Unit costs for the up-front estimate, SmolLM2-135M on this 2-core CPU machine, quiet, one worker on both
# cores, from the quickstart's phase times (results/quickstart.json, all-linear r16 3-epoch inner loop,
# batched teacher); the measured ones, per part, are in the JSON:
INNER_LOOP_S = 12.5  # one student job: LoRA SFT on passage + edit, then the passage's questions (11-14 s)
BASELINE_S = 3.0  # one student job without training: the questions only (inner_loop.json: 2-3 s)
TEACHER_EDIT_S = 6.0  # one self-edit from the HF teacher (≤256 tokens), 12 per batched call: 4.8-6.0 s
MSTEP_S = 60.0  # one M-step (r=64 all-linear LoRA, 2 epochs, ≤N=10 kept edits): 25-30 s for 4 edits, scaled
POOL_SPEEDUP = {1: 1.0, 2: 1.45}  # local pool on 2 cores: 1.4-1.5x with 2 workers (docs/performance.md, student pools)


# --- settings ----------------------------------------------------------------------------------------------


def overrides(args: argparse.Namespace, base: SealConfig) -> dict[str, Any]:
    """What the flags change in the config: scale, pool, and absolute paths (so resuming works from
    any directory). The run name carries K, so runs at two scales can share OUT."""
    data = {k: _absolute(getattr(base.data, k)) for k in ("train_path", "eval_path")}
    sets: dict[str, Any] = {
        "run.name": f"{base.run.name}-k{args.passages}", "run.runs_dir": str(args.out.resolve() / "runs"),
        "data.train_path": data["train_path"], "data.eval_path": data["eval_path"],
        "data.n_eval": args.passages, "pool.kind": "local", "pool.workers": args.workers,
    }
    optional = {"run.rounds": args.rounds, "data.n_train": args.n_train, "teacher.sampling.n": args.edits_per_passage,
                "student.train.epochs": args.epochs}
    return sets | {k: v for k, v in optional.items() if v is not None} | parse_overrides(args.set)


def _absolute(path: str | None) -> str | None:
    return None if path is None else str((ROOT / path).resolve())


def set_flags(sets: dict[str, Any]) -> list[str]:
    """`--set key=value` for the seal CLI; values as TOML literals (strings quoted)."""
    return [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def passages_listing(cfg: SealConfig, passages: Sequence[Passage]) -> list[dict[str, Any]]:
    domain = KnowledgeDomain()
    position = {domain.context_id(p): i for i, p in enumerate(load_passages(cfg.data.eval_path or ""))}
    return [{"index_in_file": position[domain.context_id(p)], "context_id": domain.context_id(p), "title": p.title,
             "questions": len(p.questions)} for p in passages]


# --- estimate ----------------------------------------------------------------------------------------------


def estimate_seconds(cfg: SealConfig, part: int, pending_part1: int | None = None,
                     edit_rows: int = len(EDIT_SOURCES)) -> float:
    """Wall seconds of a part from the unit costs above (part 1: only its jobs not yet journaled)."""
    speedup = _speedup(cfg)
    k, n, m, rounds = cfg.data.n_eval, cfg.data.n_train, cfg.teacher.sampling.n, cfg.run.rounds
    if part == 1:
        trained = edit_rows + 1
        jobs = k * (trained + 1) if pending_part1 is None else pending_part1
        share = trained / (trained + 1)
        return jobs * (share * INNER_LOOP_S + (1 - share) * BASELINE_S) / speedup
    if part == 2:
        work = (rounds + 1) * k + rounds * n * m  # held-out and training edits, one student job each
        return _loop_seconds(work, work, (rounds + 1) * k + rounds * n, rounds, speedup)
    # Part 3's teacher–student run is forked from part 2's up to round 1's held-out edits (orchestrator/
    # compare.py); what is left: round 1's held-out students, then rounds 2.. whole (a fixed student's
    # held-out baselines were computed in round 0).
    later = rounds - 1
    return _loop_seconds(later * (k + n * m), rounds * k + later * n * m, later * n, later, speedup)


def _loop_seconds(edits: int, jobs: int, baselines: int, msteps: int, speedup: float) -> float:
    students = jobs * INNER_LOOP_S + baselines * BASELINE_S
    return edits * TEACHER_EDIT_S + students / speedup + msteps * MSTEP_S


def _hm(seconds: float) -> str:
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


# --- part 1: published edits → SmolLM2 ---------------------------------------------------------------------


def part1_rows(domain: KnowledgeDomain, passages: Sequence[Passage], edit_rows: int) -> list[tables.Row]:
    rows = [tables.Row("no adaptation", "none"), tables.Row("passage only", "passage")]
    for name, file, edit_format in EDIT_SOURCES[:edit_rows]:
        by_id = {domain.context_id(p): p for p in load_passages(EVAL_DATA / file)}
        missing = [p.title for p in passages if domain.context_id(p) not in by_id]
        if missing:
            raise DataError(f"{EVAL_DATA / file}: no record for held-out passage '{missing[0]}'")
        chosen = [by_id[domain.context_id(p)] for p in passages]
        edits = tables.edits_at(chosen, 0, f"data file {EVAL_DATA / file}")
        rows.append(tables.Row(name, "edits", edits, edit_format))
    return rows


# Training settings added after part 1's journal was begun, at the value that trains as the code did before
# them: left out of a job's hash, so that journal resumes instead of rerunning (its jobs were trained on
# padded rows and said chat=true: `--set student.train.packing=false --set student.train.chat=true`); any
# other value is hashed and reruns.
SETTINGS_ADDED_LATER = {"packing": False}


def job_hash(job: StudentJob, model: str) -> str:
    """What a journaled report answers: the whole job and the student model. Any change reruns it."""
    described = to_dict(job)
    described["train"] = {k: v for k, v in described["train"].items()
                          if k not in SETTINGS_ADDED_LATER or SETTINGS_ADDED_LATER[k] != v}
    return hashlib.sha256(json.dumps([model, described], sort_keys=True).encode()).hexdigest()[:16]


def journaled(reports: Iterable[StudentReport], journal: Journal, hashes: dict[str, str]) -> Iterator[StudentReport]:
    for report in reports:
        journal.append("report", report.job_id, job=hashes[report.job_id], report=to_dict(report))
        yield report


def part1(cfg: SealConfig, out: Path, console: Console, edit_rows: int) -> dict[str, Any]:
    inputs = check_inputs(cfg)
    domain = inputs.domain
    assert isinstance(domain, KnowledgeDomain)
    cells = tables.plan(domain, inputs.eval, part1_rows(domain, inputs.eval, edit_rows), seed=cfg.run.seed,
                          lora=cfg.student.lora, train=cfg.student.train)
    jobs = tables.jobs(cells)
    hashes = {job.job_id: job_hash(job, inputs.student_model) for job in jobs}
    out.mkdir(parents=True, exist_ok=True)
    with Journal(out / "part1.jsonl") as journal:
        done = {job_id: from_dict(StudentReport, r["report"]) for job_id, h in hashes.items()
                if (r := journal.get("report", job_id)) and r["job"] == h}
        # passage by passage (every row of passage 0, then of passage 1, ...): a run cut short leaves its
        # first passages complete, and the first K' passages are exactly `--passages K'`'s (a prefix)
        order = {c.job.job_id: (c.passage, n) for n, c in enumerate(cells) if c.job}
        pending = sorted((job for job in jobs if job.job_id not in done), key=lambda job: order[job.job_id])
        console.print(f"part 1: {len(jobs)} student jobs, {len(done)} journaled, {len(pending)} to run: "
                      f"about {_hm(estimate_seconds(cfg, 1, len(pending), edit_rows))}", highlight=False)
        start = time.perf_counter()
        if pending:
            journal.append("session", str(time.time()), argv=sys.argv, pending=len(pending))
            pool = build_pool(cfg, inputs.student_model)
            try:
                done |= tables.collect(journaled(pool.run(pending), journal, hashes), len(pending), console)
            finally:
                pool.close()
        wall = time.perf_counter() - start
        records = journal.records
    summaries = tables.summarise(cells, done, seed=cfg.run.seed)
    timing = {
        "this_invocation": {"wall_s": wall, "jobs_run": len(pending),
                            "wall_s_per_job": wall / len(pending) if pending else None},
        "all_sessions_wall_s": active_seconds(records),
        "per_row": {row: job_seconds([done[c.job.job_id] for c in cells if c.row == row and c.job]) for row in
                    dict.fromkeys(c.row for c in cells)},
    }
    gains = tables.paper_gains(cells, done, seed=cfg.run.seed)
    ablation = [c for c in cells if c.row in BASE_MODEL_FORMATS]
    formats = (tables.paired_gains(ablation, done, BASE_MODEL_FORMATS[0], seed=cfg.run.seed)
               if len({c.row for c in ablation}) > 1 else [])
    table = tables.results(cells, done, summaries, workers=cfg.pool.workers, student=cfg.student_model,
                             lora=to_dict(cfg.student.lora), train=to_dict(cfg.student.train),
                             edit_index=0, edit_files={n: str(EVAL_DATA / f) for n, f, _ in EDIT_SOURCES},
                             timing=timing)
    return table | {"paired_gains": [dataclasses.asdict(g) for g in gains],
                    "format_gains": [dataclasses.asdict(g) for g in formats]}


def job_seconds(reports: Sequence[StudentReport]) -> dict[str, Any]:
    """A student's own seconds per job (train + questions) and tokens trained; failed jobs left out."""
    ok = [r for r in reports if r.ok]
    return {"jobs": len(reports), "ok": len(ok),
            "student_s_per_job": mean(r.train_seconds + r.eval_seconds for r in ok) if ok else None,
            "train_s_per_job": mean(r.train_seconds for r in ok) if ok else None,
            "tokens_trained_per_job": mean(r.tokens_trained for r in ok) if ok else None}


def active_seconds(records: Sequence[dict[str, Any]]) -> float:
    """Wall time spent on a journal across its sessions: each session's first to last record."""
    total, start, last = 0.0, None, None
    for r in records:
        if r["type"] == "session":
            if start is not None and last is not None:
                total += last - start
            start = last = r["time"]
        elif start is not None:
            last = r["time"]
    return total + (last - start if start is not None and last is not None else 0.0)


# --- parts 2 and 3: the loop, through the seal CLI ---------------------------------------------------------


def seal(command: list[str], console: Console) -> tuple[str, float]:
    """Run a seal command to the end (its progress goes to the terminal); its command line and wall time."""
    exe = Path(sys.executable).with_name("seal")
    argv = [str(exe), *command]
    line = shlex.join(argv)
    console.rule(line, style="dim")
    start = time.perf_counter()
    rc = subprocess.run(argv, cwd=ROOT, check=False).returncode
    if rc:
        console.print(f"[red]error:[/red] `{line}` exited with {rc}; its output is above. Rerun this benchmark "
                      "to resume (a config mismatch with an existing run: use another --out).")
        raise SystemExit(rc)
    return line, time.perf_counter() - start


def run_dir(cfg: SealConfig, mode: Mode) -> Path:
    return mode_config(cfg, mode).run_dir


def run_results(cfg: SealConfig, mode: Mode) -> dict[str, Any]:
    """A finished (or partly finished) run, from its journal: τ per round with intervals, the per-round
    E-step/M-step numbers, and measured per-unit times."""
    records = read_journal(run_dir(cfg, mode) / JOURNAL)
    rounds = regrade(records, mode)
    return {
        "mode": mode, "run_dir": str(run_dir(cfg, mode)),
        "rounds": [round_json(h, cfg.run.seed) for h in rounds],
        "loop": [dataclasses.asdict(r) for r in round_rows(records)],
        "timing": run_timing(records),
    }


def round_json(h: HeldOut, seed: int) -> dict[str, Any]:
    edits, baseline = h.summaries(f"round {h.round}", seed=seed)
    return {"round": h.round, "failed": h.failed, "tau": {m: dataclasses.asdict(e) for m, e in edits.scores.items()},
            "no_adaptation": {m: dataclasses.asdict(e) for m, e in baseline.scores.items()},
            "per_context": h.tau, "no_adaptation_per_context": h.baseline}


def run_timing(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-unit times measured in a run: student jobs with and without training, teacher seconds per edit
    (the gaps between consecutive contexts' edits within a phase, over the edits per context), M-steps."""
    reports = [from_dict(StudentReport, r["report"]) for r in records if r["type"] == "report"]
    trained = [r for r in reports if not r.job_id.startswith("baseline/")]
    baselines = [r for r in reports if r.job_id.startswith("baseline/")]
    groups: list[tuple[tuple[str, int, float], int] | None] = []  # one per teacher call, None between phases
    for r in records:
        place = (r["phase"], r["round"], r["time"]) if r["type"] == "edit" else None
        if place and groups and groups[-1] and groups[-1][0] == place:
            groups[-1] = (place, groups[-1][1] + 1)  # one call's edits share one append, so one time
        else:
            groups.append((place, 1) if place else None)
    gaps = [(b[0][2] - a[0][2]) / b[1] for a, b in zip(groups, groups[1:], strict=False)
            if a and b and a[0][:2] == b[0][:2]]
    msteps = [r["report"]["train_seconds"] for r in records if r["type"] == "mstep_end" and r.get("report")]
    return {"all_sessions_wall_s": active_seconds(records), "edit_jobs": job_seconds(trained),
            "baseline_jobs": job_seconds(baselines),
            "teacher_s_per_edit": median(gaps) if gaps else None, "teacher_gaps_measured": len(gaps),
            "mstep_s": msteps}


def loop_rows(runs: dict[Mode, dict[str, Any]], part: int) -> list[tables.RowSummary]:
    """Part 2: each round's held-out τ and its no-adaptation baseline; part 3: both modes per round."""
    rows = []
    by_round = {mode: {r["round"]: r for r in run["rounds"]} for mode, run in runs.items()}
    for k in sorted({k for rounds in by_round.values() for k in rounds}):
        for mode in runs:
            r = by_round[mode].get(k)
            if r is None:
                continue
            name = f"round {k}" if part == 2 else f"round {k} · {mode}"
            rows.append(_summary(name, r["per_context"], r["failed"], r["tau"]))
            if part == 2:
                no_adaptation = r["no_adaptation_per_context"]
                rows.append(_summary(f"round {k}, no adaptation", no_adaptation, 0, r["no_adaptation"]))
    return rows


def _summary(name: str, per_context: dict[str, dict[str, float]], failed: int,
             scores: dict[str, dict[str, float]]) -> tables.RowSummary:
    return tables.RowSummary(name, len(next(iter(per_context.values()))), failed, _estimates(scores))


def loop_paired(result: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The loop's held-out τ, passage by passage (paired: the same 50 passages, so what they share cancels):
    each mode's last round minus its round 0, single-model minus teacher–student per round, and each mode's
    round 0 and last round minus part 1's passage-only and first published-edit rows (the same inner loop;
    the LoRA seeds differ, so those pair passages, not seeds)."""
    runs = result.get("part3", {}).get("runs") or ({"single-model": result["part2"]["run"]} if "part2" in result
                                                   else {})
    taus = {mode: {r["round"]: r["per_context"] for r in run["rounds"]} for mode, run in runs.items() if run["rounds"]}
    pairs = [(f"{mode} round {max(by_round)} − round 0", by_round[max(by_round)], by_round[0])
             for mode, by_round in taus.items() if len(by_round) > 1]
    if len(taus) == 2:
        (a, by_a), (b, by_b) = taus.items()
        pairs += [(f"round {k}: {a} − {b}", by_a[k], by_b[k]) for k in sorted(by_a.keys() & by_b.keys()) if k > 0]
    if "part1" in result:
        fixed = cell_taus(result["part1"])
        pairs += [(f"{mode} round {k} − {row}", by_round[k], fixed[row]) for mode, by_round in taus.items()
                  for k in sorted({0, max(by_round)}) for row in ("passage only", EDIT_SOURCES[0][0])]
    return [_paired(name, a, b, seed) for name, a, b in pairs]


def cell_taus(part1: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Part 1's cells as row -> metric -> context -> τ."""
    taus: dict[str, dict[str, dict[str, float]]] = {}
    for cell in part1["cells"]:
        for m, v in cell["tau"].items():
            taus.setdefault(cell["row"], {}).setdefault(m, {})[cell["context_id"]] = v
    return taus


def student_gains(part1: dict[str, Any], other: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Two students under the same rows on the same passages (the same LoRA seeds), paired: each row's τ,
    and each row's lift over no adaptation ("row − no adaptation"), each as this student's minus the other's."""
    a, b = cell_taus(part1), cell_taus(other)
    rows = [row for row in a if row in b]
    missing = next((row for row in rows if a[row]["f1"].keys() - b[row]["f1"].keys()), None)
    if missing:
        raise DataError(f"--against: its part 1 lacks some of these passages in row '{missing}'; give a results "
                        "JSON of the same --passages and seed")

    def lift(taus: dict[str, dict[str, dict[str, float]]], row: str) -> dict[str, dict[str, float]]:
        return {m: {c: v - taus["no adaptation"][m][c] for c, v in by_c.items()} for m, by_c in taus[row].items()}

    return ([_paired(row, a[row], b[row], seed) for row in rows]
            + [_paired(f"{row} − no adaptation", lift(a, row), lift(b, row), seed)
               for row in rows if row != "no adaptation"])


def _paired(name: str, a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], seed: int) -> dict[str, Any]:
    """Row `a − b` over the contexts of `a`; both metric -> context -> τ."""
    metrics = [m for m in a if m in b]
    scores = {m: tables.estimate([v - b[m][c] for c, v in a[m].items()], seed=seed) for m in metrics}
    return {"name": name, "passages": len(a[metrics[0]]), "failed": 0,
            "scores": {m: dataclasses.asdict(e) for m, e in scores.items()}}


# --- plot --------------------------------------------------------------------------------------------------


def plot(runs: dict[Mode, dict[str, Any]], references: list[dict[str, Any]], out: Path, k: int) -> Path:
    """Held-out τ per round for each mode, with 95% intervals; part 1's fixed rows as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    for ax, metric, label in zip(axes, ("f1", "exact_match"), ("token F1", "exact match"), strict=True):
        for i, (mode, run) in enumerate(runs.items()):
            rounds = run["rounds"]
            if not rounds:
                continue
            x = [r["round"] + (i - 0.5) * 0.06 for r in rounds]
            y = [100 * r["tau"][metric]["mean"] for r in rounds]
            err = [[100 * (r["tau"][metric]["mean"] - r["tau"][metric]["low"]) for r in rounds],
                   [100 * (r["tau"][metric]["high"] - r["tau"][metric]["mean"]) for r in rounds]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{mode} (SmolLM2 edits)")
        for j, row in enumerate(references):
            ax.axhline(100 * row["scores"][metric]["mean"], linestyle=(0, (2, 2 + j)), linewidth=1,
                       color=f"C{j + 2}", label=f"part 1: {row['name']}")
        ax.set(title=f"held-out τ ({label}), {k} passages", xlabel="ReST^EM round (0 = before training)",
               ylabel="τ, % (95% bootstrap CI)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.0))
    handles, labels = axes[0].get_legend_handles_labels()  # below both panels: part 1 has many rows
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 * (len(labels) + 2) / 3 + 0.02, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# --- main --------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    console = Console(width=None if sys.stdout.isatty() else 150)  # logs get the whole table, not 80 columns
    sets = overrides(args, load_config(args.config))
    cfg = load_config(args.config, sets)
    parts = (1, 2, 3) if args.part == "all" else (int(args.part),)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / f"results-k{args.passages}.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    load_before = os.getloadavg()[0]
    estimates = {p: estimate_seconds(cfg, p, edit_rows=args.edit_rows) for p in parts}
    console.print(f"estimate (2 quiet CPU cores; unit costs: inner loop {INNER_LOOP_S} s, teacher edit "
                  f"{TEACHER_EDIT_S} s, {cfg.pool.workers} workers ≈ {_speedup(cfg)}× one): "
                  + ", ".join(f"part {p} ≈ {_hm(s)}" for p, s in estimates.items())
                  + (" (part 3 alone also runs part 2's run)" if parts == (3,) else ""), highlight=False)
    for p, s in estimates.items():
        if s > 2 * 3600:
            console.print(f"[yellow]warning:[/yellow] part {p} is estimated at {_hm(s)}, over 2 h of CPU; the JSON "
                          "records the measured time per student job, teacher edit and M-step", highlight=False)
    command = shlex.join([sys.executable, *sys.argv])
    result |= {
        "benchmark": "results_knowledge", "command": command, "config": str(args.config), "overrides": sets,
        "grader": GRADER, "seed": cfg.run.seed, "passages": passages_listing(cfg, check_inputs(cfg).eval),
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor(), "load_avg_1m_before": load_before,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "unit_costs_for_estimate": {"inner_loop_s": INNER_LOOP_S, "baseline_s": BASELINE_S,
                                    "teacher_edit_s": TEACHER_EDIT_S, "mstep_s": MSTEP_S,
                                    "pool_speedup": _speedup(cfg)},
        "estimate_s": result.get("estimate_s", {}) | {str(p): s for p, s in estimates.items()},
    }
    if 1 in parts:
        start = time.perf_counter()
        result["part1"] = part1(cfg, out, console, args.edit_rows)
        result["part1"] |= {"command": command, "wall_s": time.perf_counter() - start}
        if args.against:
            other = json.loads(args.against.read_text())["part1"]
            result["part1"] |= {"against": str(args.against), "student_gains_of": [cfg.student_model, other["student"]],
                                "student_gains": student_gains(result["part1"], other, cfg.run.seed)}
    if 2 in parts:
        name = mode_config(cfg, "single-model").run.name
        resume = ["--resume"] if run_dir(cfg, "single-model").exists() else []
        line, wall = seal(["run", str(args.config), "--mode", "single-model", "--name", name, *resume,
                           *set_flags(sets)], console)
        result["part2"] = {"command": command, "seal_command": line, "wall_s": wall,
                           "run": run_results(cfg, "single-model")}
    if 3 in parts:
        line, wall = seal(["compare", str(args.config), *set_flags(sets)], console)
        result["part3"] = {"command": command, "seal_command": line, "wall_s": wall,
                           "runs": {mode: run_results(cfg, mode) for mode in MODES},
                           "compare_plot": str(cfg.run.runs_dir / f"{cfg.run.name}-compare.png")}
    result["machine"]["load_avg_5m_after"] = os.getloadavg()[1]
    result["loop_paired"] = loop_paired(result, cfg.run.seed)
    console.rule("results")
    runs = print_tables(result, cfg, console)
    if runs:
        result["plot"] = str(plot(runs, result.get("part1", {}).get("rows", []),
                                  out / f"tau-per-round-k{args.passages}.png", args.passages))
        console.print(f"plot: {result['plot']}", highlight=False)
    console.print(f"grader: {GRADER}", highlight=False)
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    console.print(f"wrote {result_path}", highlight=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("1", "2", "3", "all"), default="all")
    parser.add_argument("--passages", type=int, default=50, help="K held-out passages (of SEAL's 200)")
    parser.add_argument("--rounds", type=int, help="ReST^EM rounds (config: 2)")
    parser.add_argument("--n-train", type=int, help="training passages per round (config: 10)")
    parser.add_argument("--edits-per-passage", type=int, help="M self-edits per training passage (config: 3)")
    parser.add_argument("--epochs", type=int, help="inner-loop epochs (config: 3)")
    parser.add_argument("--workers", type=int, default=2, help="local student pool workers")
    parser.add_argument("--set", action="append", default=[], help="a config override, section.key=value")
    parser.add_argument("--edit-rows", type=int, default=len(EDIT_SOURCES),
                        help=f"part 1: the first N published-edit rows (of {len(EDIT_SOURCES)})")
    parser.add_argument("--against", type=Path, help="part 1: another student's results JSON (same --passages): "
                                                     "each row paired with its row, this student minus that one")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=OUT, help="results and run directories")
    args = parser.parse_args()
    args.config = args.config.resolve()  # the seal commands run from the repository root
    if not 1 <= args.passages <= 200:
        parser.error(f"--passages must be between 1 and 200 (SEAL's evaluation passages), got {args.passages}")
    return args


def print_tables(result: dict[str, Any], cfg: SealConfig, console: Console) -> dict[Mode, dict[str, Any]]:
    """Every part in `result` as a rich table with its measured times; the loop runs, for the plot."""
    k = cfg.data.n_eval
    if "part1" in result:
        summaries = _summaries(result["part1"]["rows"])
        title = (f"Part 1: published self-edits → {cfg.student_model}, {k} held-out passages, "
                 f"{cfg.student.train.epochs} epochs")
        console.print(tables.render(summaries, title))
        for row, t in result["part1"]["timing"]["per_row"].items():
            if t["student_s_per_job"] is not None:
                console.print(f"  {row}: {t['student_s_per_job']:.1f} s/job (student's own), "
                              f"{t['tokens_trained_per_job']:.0f} tokens trained/job", highlight=False)
        console.print(f"  part 1 wall: {_hm(result['part1']['timing']['all_sessions_wall_s'])}", highlight=False)
        gains = _summaries(result["part1"]["paired_gains"])
        console.print(tables.render(gains, "Part 1, paired on the same passages: each row minus no adaptation, "
                                             "each edit row minus passage only"))
        if result["part1"].get("format_gains"):
            console.print(tables.render(_summaries(result["part1"]["format_gains"]),
                                          "Part 1, the base model's edit formats, paired: each minus implications"))
        if result["part1"].get("student_gains"):
            this, other = result["part1"]["student_gains_of"]
            console.print(tables.render(_summaries(result["part1"]["student_gains"]),
                                        f"Part 1, {this} minus {other} on the same passages, paired", signed=True))
    runs: dict[Mode, dict[str, Any]] = {}
    if "part2" in result:
        runs = {"single-model": result["part2"]["run"]}
        console.print(tables.render(loop_rows(runs, 2), f"Part 2: single-model ReST^EM, held-out τ, {k} passages"))
    if "part3" in result:
        runs = result["part3"]["runs"]
        console.print(tables.render(loop_rows(runs, 3), f"Part 3: single-model vs teacher–student, {k} passages"))
    if result.get("loop_paired"):
        title = "The loop's held-out τ, paired on the same passages: across rounds, modes, and against part 1"
        console.print(tables.render(_summaries(result["loop_paired"]), title))
    for mode, run in runs.items():
        t = run["timing"]
        console.print(f"  {mode}: {_fmt(t['edit_jobs']['student_s_per_job'])} s/edit job, "
                      f"{_fmt(t['baseline_jobs']['student_s_per_job'])} s/baseline job (student's own), teacher "
                      f"{_fmt(t['teacher_s_per_edit'])} s/edit, M-steps {[round(s, 1) for s in t['mstep_s']]} s, "
                      f"run wall {_hm(t['all_sessions_wall_s'])}", highlight=False)
    return runs


def _summaries(rows: list[dict[str, Any]]) -> list[tables.RowSummary]:
    """Rows as the JSON keeps them (name, passages, failed, scores) for tables.render."""
    return [tables.RowSummary(r["name"], r["passages"], r["failed"], _estimates(r["scores"])) for r in rows]


def _estimates(scores: dict[str, dict[str, float]]) -> dict[str, tables.Estimate]:
    return {m: tables.Estimate(**e) for m, e in scores.items()}


def _speedup(cfg: SealConfig) -> float:
    return POOL_SPEEDUP.get(cfg.pool.workers, POOL_SPEEDUP[2])


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
