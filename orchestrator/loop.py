"""ReST^EM for SEAL: Algorithm 1 of the paper, for any domain and both modes.

    for round k = 1..R:
        sample N contexts C; the teacher writes M self-edits SE for each       (E-step)
        a student applies each SE (fresh LoRA, `eval_times` seeds) → τ; reward vs the context's baseline
        keep the best SE per context if it beats the baseline (or every improving one: ARC)
        SFT the teacher on (prompt(C) → kept SE), loss on SE only              (M-step)
        the teacher generates with its new adapter; measure held-out τ

Round 0 only measures held-out τ ("before"). The mode decides one thing, the students' base:
single-model students adapt the current teacher (its adapter merged), teacher–student students keep
a fixed model. Phases run one after another (teacher, then students, then the M-step), so they never
compete for a small machine's cores; where the teacher and the students use different devices or
machines, each context's self-edits go to the students as soon as they are written (a streamed E-step,
edits.sample_and_apply), with the same seeded jobs and results. Every result is journaled before it is
used; a restarted run skips finished rounds, reads finished work back and recomputes only what is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from statistics import mean

from rich.console import Console

from orchestrator.config import SealConfig
from orchestrator.edits import sample_and_apply, teacher_example
from orchestrator.journal import adapter_dir
from orchestrator.seeds import derive_seed
from orchestrator.selection import Scored, select, summarize
from orchestrator.session import RunError, Session, open_session
from student.messages import TrainJob, to_dict
from teacher.base import TeacherPrompt


def main(cfg: SealConfig, resume: bool, console: Console) -> Path:
    """setup → rounds → close; returns the run directory."""
    s = open_session(cfg, resume, console)
    try:
        run(s)
    finally:
        s.close()
    return s.run_dir


def run(s: Session) -> None:
    for k in range(s.cfg.run.rounds + 1):
        if s.journal.get("evaluation", f"r{k}"):
            continue  # finished before a restart
        s.use_adapter(adapter_after(s, k - 1))
        if k > 0:
            run_round(s, k)
        evaluate(s, k)


def run_round(s: Session, k: int) -> None:
    # E-step: sample self-edits, apply each with a student, reward against the baseline.
    contexts = s.train_contexts(k)
    edits, scored = sample_and_apply(s, "train", k, contexts, s.cfg.teacher.sampling.n, s.cfg.student.eval_times)
    kept_keys = _selection(s, k, scored, [e.key for e in edits])

    # M-step: SFT the teacher on (its prompt → each kept edit); generate with the new adapter from now on.
    pairs = [(s.domain.teacher_prompt(e.context), e.text) for e in edits if e.key in kept_keys]
    s.use_adapter(m_step(s, k, pairs))


def _selection(s: Session, k: int, scored: list[Scored], keys: list[str]) -> set[str]:
    """The kept edits' journal keys: read back, or selected now, journaled and logged."""
    record = s.journal.get("selection", f"r{k}")
    if record is None:
        kept = set(select(scored, s.selection, s.cfg.restem.keep_non_improving))
        record = s.journal.append("selection", f"r{k}", round=k, rule=s.selection,
                                  kept=[key for key, x in zip(keys, scored, strict=True) if x in kept])
        s.metrics.log(k, {f"train/{name}": value for name, value in summarize(scored).items()})
    return set(record["kept"])


def m_step(s: Session, k: int, pairs: list[tuple[TeacherPrompt, str]]) -> str | None:
    """Train round k's teacher adapter and return its folder; with nothing kept, the teacher stays."""
    done = s.journal.get("mstep_end", f"r{k}")
    if done:
        return done["adapter"]
    if not pairs:
        s.journal.append("mstep_end", f"r{k}", round=k, adapter=s.adapter, skipped=True)
        return s.adapter
    out = adapter_dir(s.run_dir, k)
    shutil.rmtree(out, ignore_errors=True)  # an M-step cut short by a crash left it half-written
    job = TrainJob(
        job_id=f"mstep/r{k}", seed=derive_seed(s.seed, "mstep", k), output_dir=str(out),
        lora=s.cfg.restem.lora, examples=tuple(teacher_example(prompt, edit) for prompt, edit in pairs),
        train=s.cfg.restem.train.spec(chat=not isinstance(pairs[0][0], str)),
        init_adapter=s.adapter if s.cfg.run.restem_init == "previous" else None,
    )
    s.journal.append("mstep_start", f"r{k}", round=k, examples=len(pairs), init_adapter=job.init_adapter)
    with s.phases.phase(f"round {k} · M-step · teacher SFT", 1, "jobs") as advance:
        (report,) = s.trainer().run([job])
        advance(1)
    if not report.ok:
        raise RunError(f"the M-step of round {k} failed ({report.error}); rerun with --resume to retry it")
    s.journal.append("mstep_end", f"r{k}", round=k, adapter=report.adapter_dir, report=to_dict(report))
    s.metrics.log(k, {"mstep/loss": report.epoch_losses[-1] if report.epoch_losses else 0.0,
                      "mstep/examples": len(pairs)})
    return report.adapter_dir


def evaluate(s: Session, k: int) -> None:
    """Held-out τ: the teacher writes edits for contexts it never trains on; students apply them."""
    _, scored = sample_and_apply(s, "eval", k, s.inputs.eval, s.cfg.eval.edits, s.cfg.eval.repeats)
    contexts = dict.fromkeys(x.context_id for x in scored)
    per_context = {cid: mean(x.reward for x in scored if x.context_id == cid) for cid in contexts}
    baselines = {x.context_id: x.baseline for x in scored}
    tau, baseline = mean(per_context.values()), mean(baselines.values())
    parse_failures = mean(0.0 if x.parsed else 1.0 for x in scored)
    s.journal.append("evaluation", f"r{k}", round=k, tau=tau, baseline_tau=baseline, per_context=per_context,
                     baselines=baselines, parse_failures=parse_failures, adapter=s.adapter)
    s.metrics.log(k, {"eval/tau": tau, "eval/baseline_tau": baseline, "eval/parse_failures": parse_failures})
    s.console.print(f"round {k}: held-out τ = {tau:.3f} (baseline {baseline:.3f})", highlight=False)


def adapter_after(s: Session, k: int) -> str | None:
    """The teacher adapter at the end of round k: the last finished M-step's (none before round 1)."""
    ends = [r for r in s.journal.of_type("mstep_end") if r["round"] <= k]
    return max(ends, key=lambda r: r["round"])["adapter"] if ends else None
