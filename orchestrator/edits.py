"""The two halves of every evaluation of self-edits, for training rounds and held-out τ alike:
the teacher writes M edits per context, and students apply them and are graded.

Both halves journal before anything acts on their results and read the journal back first, so a
restarted run samples no edit twice (recorded edits are never re-sampled) and runs no job twice.
The teacher writes for up to `CONTEXTS_PER_CALL` contexts at once (HF: one batched generate; vLLM: all
requests in flight), which shares every decoding step (benchmarks/teacher_throughput.py measures both
ways). A batch's edits depend on every prompt in it (one random stream, and
left padding), so batches are fixed slices of the phase's context list, seeded per (phase, round, the
batch's contexts), and journaled in one all-or-nothing write: a restart finds each batch whole or
missing and resamples a missing one exactly. Each job is seeded per (context, repeat): every edit of a
context, in every round, and the context alone start from the same LoRA, so their differences are the
data's, not the initialisation's. What a restart recomputes is what the interrupted run would have computed.

Journal keys: an edit is `{phase}/r{round}/{context}/e{i}`, its jobs `{edit}/s{repeat}`, a context's
baseline `baseline/{student base}/{context}`, and the student trained on the context alone (the bar
with restem.baseline = "context") `alone/{student base}/{context}/s{repeat}` — once per context and
student base, so in teacher–student mode (fixed student) each is computed once per run. A job that failed is
journaled as a `failure` under its job's key until its phase goes on, then as its `report` (pool.stop_when_failed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any, Literal

from orchestrator.config import SamplingConfig, StopWhen
from orchestrator.domains.base import Domain, ParsedEdit, ParseFailure, Purpose
from orchestrator.errors import RunError
from orchestrator.journal import Journal, TeacherAdapter
from orchestrator.progress import Phases
from orchestrator.seeds import derive_seed
from orchestrator.selection import Scored
from student.messages import LoRASpec, StudentJob, StudentReport, TrainingExample, TrainSpec, to_dict
from student.pool import Pool
from teacher.base import Sampling, Teacher, TeacherPrompt

Phase = Literal["train", "eval"]
PHASE_NAMES = {"train": "E-step", "eval": "held-out"}
PURPOSES: dict[Phase, Purpose] = {"train": "reward", "eval": "tau"}
CONTEXTS_PER_CALL = 16  # contexts per teacher call: 48 sequences at M=3, within HFTeacher's batch of 64


@dataclass(frozen=True)
class EditWork:
    """Everything one phase of self-edits uses, passed in whole (the loop builds it per round,
    `Session.edit_work`): who writes them, who applies them and on which base, the settings, and the
    journal that records every result before it is used."""

    domain: Domain[Any]
    teacher: Teacher
    pool: Pool
    journal: Journal
    phases: Phases
    seed: int  # the run's
    sampling: SamplingConfig
    lora: LoRASpec
    train: TrainSpec
    student_base: TeacherAdapter | None  # the adapter students adapt (single-model), None: the base model
    stream: bool  # students start on a context's edits as soon as they are written (the placement says)
    against_alone: bool  # an edit must beat the student trained on its context alone (restem.baseline)
    stop_when_failed: StopWhen = "all"  # pool.stop_when_failed: which failed jobs stop the run


@dataclass(frozen=True)
class Edit:
    context: Any
    context_id: str
    index: int
    key: str
    text: str
    parsed: ParsedEdit | None  # None: the domain could not use it (reward 0)


def sample_and_apply(
    w: EditWork, phase: Phase, round_: int, contexts: Sequence[Any], m: int, repeats: int
) -> tuple[list[Edit], list[Scored]]:
    """M self-edits per context and their rewards. Streamed where the placement says the teacher and the
    students do not compete for devices (docs/architecture.md §7): each context's jobs go to the pool as soon as its
    edits are written, so students work while the teacher writes. Otherwise the teacher writes every
    edit first. Both compute the same seeded jobs, so they journal the same edits, reports and rewards."""
    if not w.stream:
        edits = sample_edits(w, phase, round_, contexts, m)
        return edits, apply_edits(w, phase, round_, edits, repeats)
    edits: list[Edit] = []

    def written() -> Iterator[tuple[StudentJob, Any]]:
        for batch in teacher_calls(contexts):
            new = batch_edits(w, phase, round_, batch, m)
            edits.extend(new)
            yield from _pending(w, phase, new, repeats)

    most = len(contexts) * (1 + m * repeats)  # journaled jobs and unusable edits have none
    _run(w, phase, round_, written(), f"round {round_} · {PHASE_NAMES[phase]} · teacher → students", most)
    return edits, _scored(w, phase, round_, edits, repeats)


def sample_edits(w: EditWork, phase: Phase, round_: int, contexts: Sequence[Any], m: int) -> list[Edit]:
    """M self-edits per context, read back from the journal or sampled and journaled."""
    edits = []
    description = f"round {round_} · {PHASE_NAMES[phase]} · teacher"
    with w.phases.phase(description, len(contexts), "contexts") as done:
        for batch in teacher_calls(contexts):
            edits += batch_edits(w, phase, round_, batch, m)
            done(len(batch))
    return edits


def teacher_calls(contexts: Sequence[Any]) -> list[Sequence[Any]]:
    """The fixed slices of `contexts` that the teacher writes for together."""
    return [contexts[i : i + CONTEXTS_PER_CALL] for i in range(0, len(contexts), CONTEXTS_PER_CALL)]


def batch_edits(w: EditWork, phase: Phase, round_: int, contexts: Sequence[Any], m: int) -> list[Edit]:
    """These contexts' M self-edits each, read back from the journal, or sampled in one teacher call and
    journaled. A batch is journaled whole, so a part of one is found only in a run journaled per context
    by an earlier version: its recorded edits are kept and the batch's sample fills in the rest."""
    cids = [w.domain.context_id(c) for c in contexts]
    keys = [[f"{phase}/r{round_}/{cid}/e{i}" for i in range(m)] for cid in cids]
    records = [[w.journal.get("edit", key) for key in row] for row in keys]
    if any(None in row for row in records):
        seed = derive_seed(w.seed, "teacher", phase, round_, *cids)
        records = _propose(w, contexts, keys, records, seed, {"phase": phase, "round": round_})
    return [_edit(w.domain, context, cid, r, w.train)
            for context, cid, row in zip(contexts, cids, records, strict=True) for r in row]


def _propose(
    w: EditWork, contexts: Sequence[Any], keys: list[list[str]], known: list[list[dict[str, Any] | None]],
    seed: int, place: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    prompts = [w.domain.teacher_prompt(context) for context in contexts]
    sp = w.sampling
    sampling = Sampling(
        n=len(keys[0]), temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens, seed=seed
    )
    records = []
    proposed = w.teacher.propose(prompts, sampling)
    for context, prompt, row, have, proposals in zip(contexts, prompts, keys, known, proposed, strict=True):
        for i, (key, had, proposal) in enumerate(zip(row, have, proposals, strict=True)):
            if had is not None:
                continue
            parsed = parse(w.domain, context, proposal.text, w.train)
            records.append(("edit", key, {
                **place, "context_id": w.domain.context_id(context), "edit": i,
                "prompt_hash": prompt_hash(prompt), "text": proposal.text, "tokens": proposal.tokens,
                "finish_reason": proposal.finish_reason,
                "parse_error": parsed if isinstance(parsed, str) else None,
            }))
    written = iter(w.journal.append_many(records))
    return [[r if r is not None else next(written) for r in row] for row in known]


def _edit(domain: Domain[Any], context: Any, cid: str, record: dict[str, Any], train: TrainSpec) -> Edit:
    parsed = parse(domain, context, record["text"], train)
    usable = None if isinstance(parsed, str) else parsed
    return Edit(context, cid, record["edit"], record["key"], record["text"], usable)


def one_edit_each(
    teacher: Teacher, domain: Domain[Any], contexts: Sequence[Any], sp: SamplingConfig, seed: int,
    purpose: str,
) -> list[str]:
    """One self-edit per context, batched as a round's are and seeded per (purpose, batch's contexts):
    for tables and distillation, which sample once and keep no journal."""
    edits = []
    for batch in teacher_calls(contexts):
        sampling = Sampling(
            n=1, temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens,
            seed=derive_seed(seed, purpose, *(domain.context_id(c) for c in batch)),
        )
        edits += [p[0].text for p in teacher.propose([domain.teacher_prompt(c) for c in batch], sampling)]
    return edits


def parse(domain: Domain[Any], context: Any, text: str, train: TrainSpec) -> ParsedEdit | str:
    """The parsed edit, or the reason it is unusable."""
    try:
        return domain.parse_edit(context, text, train)
    except ParseFailure as e:
        return str(e) or "unusable self-edit"


def prompt_hash(prompt: TeacherPrompt) -> str:
    return hashlib.sha256(json.dumps(prompt).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------


def apply_edits(w: EditWork, phase: Phase, round_: int, edits: Sequence[Edit], repeats: int) -> list[Scored]:
    """Each usable edit applied `repeats` times (a fresh seeded LoRA each), plus each context's
    baseline; an edit's reward is its mean τ over the repeats."""
    pending = _pending(w, phase, edits, repeats)
    if pending:
        _run(w, phase, round_, pending, f"round {round_} · {PHASE_NAMES[phase]} · students", len(pending))
    return _scored(w, phase, round_, edits, repeats)


def _pending(w: EditWork, phase: Phase, edits: Sequence[Edit], repeats: int) -> list[tuple[StudentJob, Any]]:
    """The edits' jobs not journaled yet, each with its context: `repeats` per usable edit, one baseline
    per context, and `repeats` of the context alone where edits must beat it."""
    base = w.student_base
    jobs: dict[str, tuple[StudentJob, Any]] = {}
    for e in edits:
        baseline = baseline_key(base, e.context_id)
        jobs.setdefault(baseline, (_job(w, phase, baseline, e.context, None), e.context))
        for r in range(repeats if w.against_alone else 0):
            alone = alone_key(base, e.context_id, r)
            if alone not in jobs:
                data = w.domain.context_alone(e.context, w.train)
                jobs[alone] = (_job(w, phase, alone, e.context, data, _seed(w, e.context_id, r)), e.context)
        for r in range(repeats if e.parsed else 0):
            job_id = f"{e.key}/s{r}"
            jobs[job_id] = (_job(w, phase, job_id, e.context, e.parsed, _seed(w, e.context_id, r)), e.context)
    return [(job, ctx) for job_id, (job, ctx) in jobs.items() if w.journal.get("report", job_id) is None]


def _scored(w: EditWork, phase: Phase, round_: int, edits: Sequence[Edit], repeats: int) -> list[Scored]:
    """The edits' rewards from their journaled reports, journaled in turn."""
    base = w.student_base

    def score(job_id: str) -> float:
        return w.journal.get("report", job_id)["score"]  # type: ignore[index]

    def alone(context_id: str) -> float | None:
        return mean(score(alone_key(base, context_id, r)) for r in range(repeats)) if w.against_alone else None

    scored = [
        Scored(
            e.context_id, e.index, mean(score(f"{e.key}/s{r}") for r in range(repeats)) if e.parsed else 0.0,
            score(baseline_key(base, e.context_id)), e.parsed is not None, alone(e.context_id),
        )
        for e in edits
    ]
    w.journal.append_many([
        ("reward", e.key, {"phase": phase, "round": round_, "reward": x.reward, "baseline": x.baseline,
                           "alone": x.alone, "parsed": x.parsed})
        for e, x in zip(edits, scored, strict=True) if w.journal.get("reward", e.key) is None
    ])
    return scored


def _seed(w: EditWork, context_id: str, repeat: int) -> int:
    return derive_seed(w.seed, "student", context_id, repeat)


def _job(w: EditWork, phase: Phase, job_id: str, context: Any, parsed: ParsedEdit | None, seed: int = 0
         ) -> StudentJob:
    """A student job; without a parsed edit, the context's baseline (no training, so no seed). Training
    rounds answer as the reward needs, held-out evaluations as τ needs."""
    return StudentJob(
        job_id=job_id, seed=seed, examples=parsed.examples if parsed else (), probes=w.domain.probes(context),
        lora=w.lora, train=parsed.train if parsed else w.train,
        base_adapter=w.student_base.path if w.student_base else None, scoring=w.domain.scoring(PURPOSES[phase]),
    )


def baseline_key(base: TeacherAdapter | None, context_id: str) -> str:
    """Round k's adapter → round-k; the fixed student (or the untrained teacher) → base."""
    return f"baseline/{f'round-{base.round}' if base else 'base'}/{context_id}"


def alone_key(base: TeacherAdapter | None, context_id: str, repeat: int) -> str:
    """The student trained on the context alone, with repeat `repeat`'s seed."""
    return f"alone/{f'round-{base.round}' if base else 'base'}/{context_id}/s{repeat}"


def _run(w: EditWork, phase: Phase, round_: int, pending: Iterable[tuple[StudentJob, Any]], description: str,
         total: int) -> None:
    """Run jobs (a list, or a generator the pool reads as workers free up) and journal their reports. A failed
    job is said at once (the first of the phase) and counted at the end, and journaled as a `failure` until
    its phase goes on (pool.stop_when_failed): a stopped phase's failures are no reports, so --resume runs
    them again; a phase that goes on journals them as reports that score 0."""
    jobs_of: dict[str, tuple[StudentJob, Any]] = {}

    def jobs() -> Iterator[StudentJob]:
        for job, ctx in pending:
            jobs_of[job.job_id] = (job, ctx)
            yield job

    where = {"phase": phase, "round": round_}  # for `seal report`: job ids do not all name their round
    trained: list[tuple[bool, bool]] = []  # (does the job train, did it succeed) for each job run
    failed: list[StudentReport] = []
    console = w.phases.console
    with w.phases.phase(description, total, "jobs") as done:
        for report in w.pool.run(jobs()):
            job, context = jobs_of[report.job_id]
            trained.append((bool(job.examples), report.ok))
            if report.ok:
                score = grade(w.domain, PURPOSES[phase], context, report)
                w.journal.append("report", report.job_id, score=score, report=to_dict(report), **where)
            else:
                w.journal.append("failure", report.job_id, report=to_dict(report), **where)
                failed.append(report)
                if len(failed) == 1:
                    console.print(f"{description}: job {report.job_id} failed: {reason(report)}", highlight=False)
                if w.stop_when_failed == "any":
                    raise RunError(f"{description}: a student job failed ({reason(report)}); {STOPPED % 'any'}")
            done(1)
    if not failed:
        return
    console.print(f"{description}: {len(failed)} of {len(trained)} jobs failed (first: {reason(failed[0])})",
                  highlight=False)
    if w.stop_when_failed == "all" and all_failed(trained):
        raise RunError(f"{description}: every student job that trains failed ({len(failed)} of {len(trained)} "
                       f"jobs; first: {reason(failed[0])}); {STOPPED % 'all'}")
    w.journal.append_many([
        ("report", r.job_id, {"score": grade(w.domain, PURPOSES[phase], jobs_of[r.job_id][1], r),
                              "report": to_dict(r), **where})
        for r in failed
    ])


STOPPED = ('the run stops (pool.stop_when_failed = "%s"): fix the cause and --resume to run the failed jobs '
           'again, or --resume --set pool.stop_when_failed=never to go on with them scoring 0')


def all_failed(trained: Sequence[tuple[bool, bool]]) -> bool:
    """Whether every job that trains failed, given (trains, succeeded) per job; every job where none trains.
    Baselines do not count beside training jobs: they pass where training fails (a LoRA peft refuses, memory
    that training runs out of), and without a trained job the phase measured nothing."""
    counted = [ok for trains, ok in trained if trains] or [ok for _, ok in trained]
    return bool(counted) and not any(counted)


def reason(report: StudentReport) -> str:
    """A failed job's error, its first line (a worker's traceback can follow it)."""
    return next((line.strip() for line in (report.error or "").splitlines() if line.strip()), "no error given")


def grade(domain: Domain[Any], purpose: Purpose, context: Any, report: StudentReport) -> float:
    """The reward (training rounds) or τ (held-out) of one job; a job that failed (twice, in pools that
    retry) scores 0 (docs/architecture.md §2)."""
    if not report.ok:
        return 0.0
    return domain.reward_of(context, report) if purpose == "reward" else domain.score(context, report)


def teacher_example(prompt: TeacherPrompt, edit: str) -> TrainingExample:
    """(teacher prompt → kept edit) as an M-step example: a chat prompt becomes its system and user
    turns, so the student's chat rendering reproduces exactly what the teacher was shown."""
    if isinstance(prompt, str):
        return TrainingExample(prompt=prompt, completion=edit)
    roles = [m["role"] for m in prompt]
    if roles not in (["user"], ["system", "user"]):
        raise ValueError(f"an M-step example needs a [system,] user prompt, got roles {roles}")
    system = prompt[0]["content"] if roles[0] == "system" else None
    return TrainingExample(prompt=prompt[-1]["content"], completion=edit, system=system)
