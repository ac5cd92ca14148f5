"""The two halves of every evaluation of self-edits, for training rounds and held-out τ alike:
the teacher writes M edits per context, and students apply them and are graded.

Both halves journal before anything acts on their results and read the journal back first, so a
restarted run samples no edit twice (recorded edits are never re-sampled) and runs no job twice.
The teacher writes for up to `CONTEXTS_PER_CALL` contexts at once (HF: one batched generate; vLLM: all
requests in flight), which shares every decoding step (benchmarks/teacher_throughput.py measures both
ways). A batch's edits depend on every prompt in it (one random stream, and
left padding), so batches are fixed slices of the phase's context list, seeded per (phase, round, the
batch's contexts), and journaled in one all-or-nothing write: a restart finds each batch whole or
missing and resamples a missing one exactly. Each job is seeded per (round, context, edit, repeat).
What a restart recomputes is what the interrupted run would have computed.

Journal keys: an edit is `{phase}/r{round}/{context}/e{i}`, its jobs `{edit}/s{repeat}`, and a
context's baseline `baseline/{student base}/{context}` — once per context and student base, so in
teacher–student mode (fixed student) each context's baseline is computed once per run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.config import SamplingConfig
from orchestrator.domains.base import Domain, ParsedEdit, ParseFailure, Purpose
from orchestrator.seeds import derive_seed
from orchestrator.selection import Scored
from student.messages import StudentJob, StudentReport, TrainingExample, TrainSpec, to_dict
from teacher.base import Sampling, Teacher, TeacherPrompt

if TYPE_CHECKING:
    from orchestrator.session import Session

Phase = Literal["train", "eval"]
PHASE_NAMES = {"train": "E-step", "eval": "held-out"}
PURPOSES: dict[Phase, Purpose] = {"train": "reward", "eval": "tau"}
CONTEXTS_PER_CALL = 16  # contexts per teacher call: 48 sequences at M=3, within HFTeacher's batch of 64


@dataclass(frozen=True)
class Edit:
    context: Any
    context_id: str
    index: int
    key: str
    text: str
    parsed: ParsedEdit | None  # None: the domain could not use it (reward 0)


def sample_and_apply(
    s: Session, phase: Phase, round_: int, contexts: Sequence[Any], m: int, repeats: int
) -> tuple[list[Edit], list[Scored]]:
    """M self-edits per context and their rewards. Streamed where the placement says the teacher and the
    students do not compete for devices (DESIGN §7): each context's jobs go to the pool as soon as its
    edits are written, so students work while the teacher writes. Otherwise the teacher writes every
    edit first. Both compute the same seeded jobs, so they journal the same edits, reports and rewards."""
    if not s.inputs.placement.stream:
        edits = sample_edits(s, phase, round_, contexts, m)
        return edits, apply_edits(s, phase, round_, edits, repeats)
    edits: list[Edit] = []

    def written() -> Iterator[tuple[StudentJob, Any]]:
        for batch in teacher_calls(contexts):
            new = batch_edits(s, phase, round_, batch, m)
            edits.extend(new)
            yield from _pending(s, phase, new, repeats)

    most = len(contexts) * (1 + m * repeats)  # journaled jobs and unusable edits have none
    _run(s, phase, written(), f"round {round_} · {PHASE_NAMES[phase]} · teacher → students", most)
    return edits, _scored(s, phase, round_, edits, repeats)


def sample_edits(s: Session, phase: Phase, round_: int, contexts: Sequence[Any], m: int) -> list[Edit]:
    """M self-edits per context, read back from the journal or sampled and journaled."""
    edits = []
    description = f"round {round_} · {PHASE_NAMES[phase]} · teacher"
    with s.phases.phase(description, len(contexts), "contexts") as done:
        for batch in teacher_calls(contexts):
            edits += batch_edits(s, phase, round_, batch, m)
            done(len(batch))
    return edits


def teacher_calls(contexts: Sequence[Any]) -> list[Sequence[Any]]:
    """The fixed slices of `contexts` that the teacher writes for together."""
    return [contexts[i : i + CONTEXTS_PER_CALL] for i in range(0, len(contexts), CONTEXTS_PER_CALL)]


def batch_edits(s: Session, phase: Phase, round_: int, contexts: Sequence[Any], m: int) -> list[Edit]:
    """These contexts' M self-edits each, read back from the journal, or sampled in one teacher call and
    journaled. A batch is journaled whole, so a part of one is found only in a run journaled per context
    by an earlier version: its recorded edits are kept and the batch's sample fills in the rest."""
    cids = [s.domain.context_id(c) for c in contexts]
    keys = [[f"{phase}/r{round_}/{cid}/e{i}" for i in range(m)] for cid in cids]
    records = [[s.journal.get("edit", key) for key in row] for row in keys]
    if any(None in row for row in records):
        seed = derive_seed(s.seed, "teacher", phase, round_, *cids)
        records = _propose(s, contexts, keys, records, seed, {"phase": phase, "round": round_})
    return [_edit(s.domain, context, cid, r, s.cfg.student.train)
            for context, cid, row in zip(contexts, cids, records, strict=True) for r in row]


def _propose(
    s: Session, contexts: Sequence[Any], keys: list[list[str]], known: list[list[dict[str, Any] | None]],
    seed: int, place: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    prompts = [s.domain.teacher_prompt(context) for context in contexts]
    sp = s.cfg.teacher.sampling
    sampling = Sampling(
        n=len(keys[0]), temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens, seed=seed
    )
    records = []
    proposed = s.teacher.propose(prompts, sampling)
    for context, prompt, row, have, proposals in zip(contexts, prompts, keys, known, proposed, strict=True):
        for i, (key, had, proposal) in enumerate(zip(row, have, proposals, strict=True)):
            if had is not None:
                continue
            parsed = parse(s.domain, context, proposal.text, s.cfg.student.train)
            records.append(("edit", key, {
                **place, "context_id": s.domain.context_id(context), "edit": i,
                "prompt_hash": prompt_hash(prompt), "text": proposal.text, "tokens": proposal.tokens,
                "finish_reason": proposal.finish_reason,
                "parse_error": parsed if isinstance(parsed, str) else None,
            }))
    written = iter(s.journal.append_many(records))
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


def apply_edits(s: Session, phase: Phase, round_: int, edits: Sequence[Edit], repeats: int) -> list[Scored]:
    """Each usable edit applied `repeats` times (a fresh seeded LoRA each), plus each context's
    baseline; an edit's reward is its mean τ over the repeats."""
    pending = _pending(s, phase, edits, repeats)
    if pending:
        _run(s, phase, pending, f"round {round_} · {PHASE_NAMES[phase]} · students", len(pending))
    return _scored(s, phase, round_, edits, repeats)


def _pending(s: Session, phase: Phase, edits: Sequence[Edit], repeats: int) -> list[tuple[StudentJob, Any]]:
    """The edits' jobs not journaled yet, each with its context: `repeats` per usable edit, and one
    baseline per context."""
    base = s.student_base()
    jobs: dict[str, tuple[StudentJob, Any]] = {}
    for e in edits:
        baseline = baseline_key(base, e.context_id)
        jobs.setdefault(baseline, (_job(s, phase, baseline, e.context, None), e.context))
        for r in range(repeats if e.parsed else 0):
            job_id = f"{e.key}/s{r}"
            seed = derive_seed(s.seed, "student", job_id)
            jobs[job_id] = (_job(s, phase, job_id, e.context, e.parsed, seed), e.context)
    return [(job, ctx) for job_id, (job, ctx) in jobs.items() if s.journal.get("report", job_id) is None]


def _scored(s: Session, phase: Phase, round_: int, edits: Sequence[Edit], repeats: int) -> list[Scored]:
    """The edits' rewards from their journaled reports, journaled in turn."""
    base = s.student_base()

    def score(job_id: str) -> float:
        return s.journal.get("report", job_id)["score"]  # type: ignore[index]

    scored = [
        Scored(
            e.context_id, e.index, mean(score(f"{e.key}/s{r}") for r in range(repeats)) if e.parsed else 0.0,
            score(baseline_key(base, e.context_id)), e.parsed is not None,
        )
        for e in edits
    ]
    s.journal.append_many([
        ("reward", e.key, {"phase": phase, "round": round_, "reward": x.reward, "baseline": x.baseline,
                           "parsed": x.parsed})
        for e, x in zip(edits, scored, strict=True) if s.journal.get("reward", e.key) is None
    ])
    return scored


def _job(s: Session, phase: Phase, job_id: str, context: Any, parsed: ParsedEdit | None, seed: int = 0
         ) -> StudentJob:
    """A student job; without a parsed edit, the context's baseline (no training, so no seed). Training
    rounds answer as the reward needs, held-out evaluations as τ needs."""
    return StudentJob(
        job_id=job_id, seed=seed, examples=parsed.examples if parsed else (), probes=s.domain.probes(context),
        lora=s.cfg.student.lora, train=parsed.train if parsed else s.cfg.student.train,
        base_adapter=s.student_base(), scoring=s.domain.scoring(PURPOSES[phase]),
    )


def baseline_key(base: str | None, context_id: str) -> str:
    """adapters/round-k/teacher → round-k; the fixed student (or the untrained teacher) → base."""
    return f"baseline/{Path(base).parent.name if base else 'base'}/{context_id}"


def _run(s: Session, phase: Phase, pending: Iterable[tuple[StudentJob, Any]], description: str, total: int) -> None:
    """Run jobs (a list, or a generator the pool reads as workers free up) and journal their reports."""
    context_of: dict[str, Any] = {}

    def jobs() -> Iterator[StudentJob]:
        for job, ctx in pending:
            context_of[job.job_id] = ctx
            yield job

    with s.phases.phase(description, total, "jobs") as done:
        for report in s.pool.run(jobs()):
            score = grade(s.domain, PURPOSES[phase], context_of[report.job_id], report)
            s.journal.append("report", report.job_id, score=score, report=to_dict(report))
            done(1)


def grade(domain: Domain[Any], purpose: Purpose, context: Any, report: StudentReport) -> float:
    """The reward (training rounds) or τ (held-out) of one job; a job that failed (twice, in pools that
    retry) scores 0 (DESIGN §2)."""
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
