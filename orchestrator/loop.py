"""ReST^EM for SEAL: Algorithm 1 of the paper, for any domain and both modes.

    for round k = 1..R:
        sample N contexts C; the teacher writes M self-edits SE for each       (E-step)
        a student applies each SE (fresh LoRA, `eval_times` seeds) → τ; reward vs the context's bar
          (the student trained on C alone, or the unadapted student: restem.baseline)
        keep the best SE per context if it beats the bar (or every improving one: ARC)
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
from orchestrator.journal import TeacherAdapter, adapter_dir, in_run, relocated, stored, trained_adapter
from orchestrator.seeds import derive_seed
from orchestrator.selection import Scored, select, summarize
from orchestrator.session import RunError, Session, open_session
from student.messages import TrainJob, to_dict
from teacher.base import Teacher, TeacherPrompt


def main(cfg: SealConfig, resume: bool, console: Console) -> Path:
    """setup → rounds → close; returns the run directory."""
    s = open_session(cfg, resume, console)
    try:
        run(s)
    finally:
        s.close()
    return s.run_dir


def run(s: Session) -> None:
    adapter: TeacherAdapter | None = None  # what the teacher generates with: none yet
    for k in range(s.cfg.run.rounds + 1):
        if s.journal.get("evaluation", f"r{k}"):
            continue  # finished before a restart
        adapter = switch(s.teacher, adapter, trained_adapter(s.journal.records, k - 1, s.run_dir))
        if k > 0:
            adapter = switch(s.teacher, adapter, run_round(s, k, adapter))
        held_out_tau(s, k, adapter)


def run_round(s: Session, k: int, adapter: TeacherAdapter | None) -> TeacherAdapter | None:
    """Round k from the teacher with `adapter`; returns the teacher's adapter after it."""
    # E-step: sample self-edits, apply each with a student, reward against the baseline.
    contexts = s.train_contexts(k)
    edits, scored = sample_and_apply(s.edit_work(adapter), "train", k, contexts, s.cfg.teacher.sampling.n,
                                     s.cfg.student.eval_times)
    kept_keys = _selection(s, k, scored, [e.key for e in edits])

    # M-step: SFT the teacher on (its prompt → each kept edit).
    pairs = [(s.domain.teacher_prompt(e.context), e.text) for e in edits if e.key in kept_keys]
    return m_step(s, k, pairs, adapter)


def switch(teacher: Teacher, current: TeacherAdapter | None, new: TeacherAdapter | None) -> TeacherAdapter | None:
    """Generate with `new` from now on. Loading an adapter costs a merge (HF) or a server restart (vLLM
    merge-restart), so only a change is loaded."""
    if new != current:
        teacher.use_adapter(new.path if new else None)
    return new


def _selection(s: Session, k: int, scored: list[Scored], keys: list[str]) -> set[str]:
    """The kept edits' journal keys: read back, or selected now, journaled and logged."""
    record = s.journal.get("selection", f"r{k}")
    if record is None:
        kept = set(select(scored, s.selection, s.cfg.restem.keep_non_improving))
        contexts = len({x.context_id for x in scored})
        record = s.journal.append("selection", f"r{k}", round=k, rule=s.selection, contexts=contexts,
                                  kept=[key for key, x in zip(keys, scored, strict=True) if x in kept])
        s.metrics.log(k, {f"train/{name}": value for name, value in summarize(scored).items()}
                      | {"train/kept_per_context": len(record["kept"]) / max(1, contexts)})
    return set(record["kept"])


def m_step(s: Session, k: int, pairs: list[tuple[TeacherPrompt, str]], adapter: TeacherAdapter | None
           ) -> TeacherAdapter | None:
    """Train round k's teacher adapter (from `adapter`, or from scratch: run.restem_init) and return it;
    with nothing kept, the teacher keeps `adapter`."""
    done = s.journal.get("mstep_end", f"r{k}")
    if done:
        return adapter if done.get("skipped") else TeacherAdapter(k, in_run(s.run_dir, done["adapter"]))
    if not pairs:
        s.journal.append("mstep_end", f"r{k}", round=k, adapter=_stored(s, adapter), skipped=True)
        return adapter
    out = adapter_dir(s.run_dir, k)
    shutil.rmtree(out, ignore_errors=True)  # an M-step cut short by a crash left it half-written
    job = TrainJob(
        job_id=f"mstep/r{k}", seed=derive_seed(s.seed, "mstep", k), output_dir=str(out),
        lora=s.cfg.restem.lora, examples=tuple(teacher_example(prompt, edit) for prompt, edit in pairs),
        train=s.cfg.restem.train.spec(chat=not isinstance(pairs[0][0], str)),
        init_adapter=adapter.path if adapter and s.cfg.run.restem_init == "previous" else None,
    )
    s.journal.append("mstep_start", f"r{k}", round=k, examples=len(pairs),
                     init_adapter=_stored(s, adapter) if job.init_adapter else None)
    with s.phases.phase(f"round {k} · M-step · teacher SFT", 1, "jobs") as advance:
        (report,) = s.trainer().run([job])
        advance(1)
    if not report.ok:
        raise RunError(f"the M-step of round {k} failed ({report.error}); rerun with --resume to retry it")
    s.journal.append("mstep_end", f"r{k}", round=k, adapter=stored(s.run_dir, report.adapter_dir),
                     report=relocated(to_dict(report), s.run_dir, Path()))
    s.metrics.log(k, {"mstep/loss": report.epoch_losses[-1] if report.epoch_losses else 0.0,
                      "mstep/examples": len(pairs)})
    return TeacherAdapter(k, report.adapter_dir)


def _stored(s: Session, adapter: TeacherAdapter | None) -> str | None:
    """The adapter's path as the journal stores it: relative to the run directory (journal.stored)."""
    return stored(s.run_dir, adapter.path) if adapter else None


def held_out_tau(s: Session, k: int, adapter: TeacherAdapter | None) -> None:
    """Held-out τ: the teacher (with `adapter`) writes edits for contexts it never trains on; students
    apply them. Journaled per context; evaluation/held_out.py re-grades it in every metric with intervals."""
    _, scored = sample_and_apply(s.edit_work(adapter), "eval", k, s.inputs.eval, s.cfg.eval.edits,
                                 s.cfg.eval.repeats)
    contexts = dict.fromkeys(x.context_id for x in scored)
    per_context = {cid: mean(x.reward for x in scored if x.context_id == cid) for cid in contexts}
    baselines = {x.context_id: x.baseline for x in scored}
    alone = {x.context_id: x.alone for x in scored if x.alone is not None}
    tau, baseline = mean(per_context.values()), mean(baselines.values())
    alone_tau = mean(alone.values()) if alone else None
    parse_failures = mean(0.0 if x.parsed else 1.0 for x in scored)
    s.journal.append("evaluation", f"r{k}", round=k, tau=tau, baseline_tau=baseline, per_context=per_context,
                     baselines=baselines, alone_tau=alone_tau, alone=alone or None, parse_failures=parse_failures,
                     adapter=_stored(s, adapter))
    s.metrics.log(k, {"eval/tau": tau, "eval/baseline_tau": baseline, "eval/parse_failures": parse_failures}
                  | ({"eval/alone_tau": alone_tau} if alone_tau is not None else {}))
    also = f", context alone {alone_tau:.3f}" if alone_tau is not None else ""
    s.console.print(f"round {k}: held-out τ = {tau:.3f} (baseline {baseline:.3f}{also})", highlight=False)
