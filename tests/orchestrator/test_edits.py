"""The E-step's two halves (orchestrator/edits.py). On their own: given a teacher, a pool and a journal
file (no run directory, no session), they sample M edits per context, grade them against the baseline of
the base they are told, and read everything back instead of recomputing it. Streamed: on a CPU, a run
whose self-edits go to the students as soon as they are written journals the same edits, reports, rewards,
selection and τ as the sequential run under the same seeds; only the order of the journal's lines
differs. Batched: the teacher writes for several contexts per call, and a run cut between two calls
resumes to the same edits."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import edits, loop
from orchestrator.config import SealConfig, config_toml
from orchestrator.journal import CONFIG, JOURNAL, Journal, TeacherAdapter, read_journal
from orchestrator.progress import Phases
from orchestrator.roles import build_pool, build_teacher
from orchestrator.session import check_inputs

# What each record type decides; times and the workers' timings are left out.
OUTCOMES = {"edit": ("text",), "report": ("score",), "reward": ("reward", "baseline", "alone", "parsed"),
            "selection": ("kept",), "evaluation": ("tau", "baseline_tau")}


def outcomes(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["type"], r["key"]): {f: r[f] for f in OUTCOMES[r["type"]]} for r in records if r["type"] in OUTCOMES}


@pytest.fixture
def work(tiny_config: Any, tmp_path: Path) -> Iterator[tuple[edits.EditWork, list[Any]]]:
    """The tiny model as teacher and in-process student, a journal file and no run directory; with two
    training contexts."""
    cfg: SealConfig = tiny_config(tmp_path, "unused")
    inputs = check_inputs(cfg)
    teacher = build_teacher(cfg, inputs.teacher_model, tmp_path, None, inputs.placement)
    pool = build_pool(cfg, inputs.student_model, placement=inputs.placement)
    with Journal(tmp_path / JOURNAL) as journal:
        yield edits.EditWork(
            domain=inputs.domain, teacher=teacher, pool=pool, journal=journal, phases=Phases(Console(quiet=True)),
            seed=cfg.run.seed, sampling=cfg.teacher.sampling, lora=cfg.student.lora, train=cfg.student.train,
            student_base=None, stream=False, against_alone=False,
        ), inputs.train[:2]
    pool.close()
    teacher.close()
    assert not cfg.run_dir.exists()


def test_the_e_step_samples_grades_and_reads_back(work: tuple[edits.EditWork, list[Any]]) -> None:
    w, contexts = work
    written = edits.sample_edits(w, "train", 1, contexts, 2)
    assert [e.key for e in written] == [f"train/r1/{w.domain.context_id(c)}/e{i}" for c in contexts for i in (0, 1)]
    scored = edits.apply_edits(w, "train", 1, written, 1)
    assert [(x.context_id, x.edit) for x in scored] == [(e.context_id, e.index) for e in written]
    for e, x in zip(written, scored, strict=True):
        report = w.journal.get("report", f"{e.key}/s0")
        assert (report is None) == (e.parsed is None)  # an unusable edit runs no job...
        assert x.reward == (report["score"] if report else 0.0)  # ...and scores 0
        assert x.baseline == w.journal.get("report", f"baseline/base/{e.context_id}")["score"]  # type: ignore[index]
    records = len(w.journal.records)
    assert edits.sample_edits(w, "train", 1, contexts, 2) == written  # read back: no second sample
    assert edits.apply_edits(w, "train", 1, written, 1) == scored
    assert len(w.journal.records) == records  # nothing sampled, run or graded twice


class Restates:
    """A teacher whose first edit of every passage is the passage itself, and whose second adds a line."""

    def propose(self, prompts: list[Any], sampling: Any) -> list[list[Any]]:
        from teacher.base import Proposal

        passages = [p[-1]["content"].split("\n", 1)[1] for p in prompts]
        return [[Proposal(p, 1, "stop"), Proposal(f"{p}\nIt was written down.", 1, "stop")][: sampling.n]
                for p in passages]


def test_against_the_context_alone_an_edit_that_restates_the_passage_is_never_kept(
    work: tuple[edits.EditWork, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """restem.baseline = "context": the student trained on the passage alone runs with the seed of each
    repeat that every edit of the passage runs with, so an edit that restates the passage trains the same
    examples from the same LoRA, scores exactly the passage's τ and does not beat it."""
    from orchestrator.selection import select

    monkeypatch.setenv("SEAL_THREADS", "1")  # the same thread count for both jobs: the same sums
    w, contexts = work
    w = dataclasses.replace(w, against_alone=True, teacher=Restates())
    written = edits.sample_edits(w, "train", 1, contexts, 2)
    scored = edits.apply_edits(w, "train", 1, written, 2)
    for e, x in zip(written, scored, strict=True):
        alone = [w.journal.get("report", edits.alone_key(None, e.context_id, r)) for r in (0, 1)]
        assert x.alone == sum(a["score"] for a in alone) / 2  # type: ignore[index]
        assert w.journal.get("reward", e.key)["alone"] == x.alone  # type: ignore[index]
        if e.index == 0:
            assert e.parsed is not None and e.parsed.examples == w.domain.context_alone(e.context, w.train).examples
            assert x.reward == x.alone and not x.improves
    kept = select(scored, "best_of_m")
    assert all(x.edit == 1 for x in kept)
    assert sum(r["key"].startswith("alone/") for r in w.journal.records) == len(contexts) * 2  # once each


def test_students_adapt_the_base_they_are_given(
    work: tuple[edits.EditWork, list[Any]], make_adapter: Callable[..., str], tiny_model_dir: str, tmp_path: Path
) -> None:
    """Single-model: given round 3's adapter, the students' baseline is that adapter's, journaled under its
    round, and its reward (gold prob) differs from the base model's."""
    w, contexts = work
    adapted = dataclasses.replace(w, student_base=TeacherAdapter(3, make_adapter(tiny_model_dir, tmp_path / "a")))
    cid = w.domain.context_id(contexts[0])
    for phase_work, k in ((w, 1), (adapted, 4)):
        edits.apply_edits(phase_work, "train", k, edits.sample_edits(phase_work, "train", k, contexts[:1], 1), 1)
    on_base = w.journal.get("report", f"baseline/base/{cid}")
    on_adapter = w.journal.get("report", f"baseline/round-3/{cid}")
    assert on_base is not None and on_adapter is not None and on_adapter["score"] != on_base["score"]


@pytest.mark.parametrize("pool", ["inprocess", "local"])
def test_a_streamed_run_equals_the_sequential_one(
    tiny_config: Any, tmp_path: Path, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, the teacher and the students take turns (so reports and edits interleave in the journal);
    with local workers they run at once. One context per teacher call, so that there is something to stream."""
    monkeypatch.setattr(edits, "CONTEXTS_PER_CALL", 1)
    journals = {}
    for stream in (False, True):
        sets = {"pool.stream": stream, "pool.kind": pool, "pool.workers": 2 if pool == "local" else None}
        cfg: SealConfig = tiny_config(tmp_path, f"stream-{stream}", **sets)
        loop.main(cfg, False, Console(quiet=True))
        journals[stream] = read_journal(cfg.run_dir / JOURNAL)
    assert outcomes(journals[True]) == outcomes(journals[False])
    assert sum(k[0] == "reward" for k in outcomes(journals[True])) == 4 + 4  # round 1's 2×2, 2 held-out × 2 rounds

    def first_report_before_last_edit(records: list[dict[str, Any]]) -> bool:
        keys = [(r["type"], r["key"]) for r in records]
        edits = [i for i, (t, k) in enumerate(keys) if t == "edit" and k.startswith("train/r1/")]
        reports = [i for i, (t, k) in enumerate(keys) if t == "report" and k.startswith("train/r1/")]
        return reports[0] < edits[-1]

    assert not first_report_before_last_edit(journals[False])
    if pool == "inprocess":  # it reads one job at a time; local workers are handed jobs ahead of their reports
        assert first_report_before_last_edit(journals[True])


def test_the_teacher_writes_a_round_s_contexts_in_one_call(tiny_config: Any, tmp_path: Path) -> None:
    """Streamed, in-process: students start only after the teacher's one call for both contexts."""
    cfg: SealConfig = tiny_config(tmp_path, "batched", **{"pool.stream": True})
    loop.main(cfg, False, Console(quiet=True))
    records = read_journal(cfg.run_dir / JOURNAL)
    keys = [(r["type"], r["key"]) for r in records]
    edits_r1 = [i for i, (t, k) in enumerate(keys) if t == "edit" and k.startswith("train/r1/")]
    reports_r1 = [i for i, (t, k) in enumerate(keys) if t == "report" and k.startswith("train/r1/")]
    assert len(edits_r1) == 4 and edits_r1[-1] < reports_r1[0]
    assert len({records[i]["time"] for i in edits_r1}) == 1  # journaled in one write


def test_a_phase_cut_between_teacher_calls_resumes_to_the_same_edits(
    tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's sample depends on every context in it, so batches are fixed slices seeded by their contexts:
    a run cut after round 1's first teacher call resamples only the second call, as the whole run did."""
    monkeypatch.setattr(edits, "CONTEXTS_PER_CALL", 1)
    whole: SealConfig = tiny_config(tmp_path, "whole")
    loop.main(whole, False, Console(quiet=True))
    records = read_journal(whole.run_dir / JOURNAL)
    calls = [i for i, r in enumerate(records) if r["type"] == "edit" and r["key"].startswith("train/r1/")]
    at = calls[2]  # the first context's 2 edits are journaled, the second context's are not
    cut: SealConfig = tiny_config(tmp_path, "cut")
    cut.run_dir.mkdir(parents=True)
    (cut.run_dir / CONFIG).write_text(config_toml(cut))
    (cut.run_dir / JOURNAL).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:at]))

    loop.main(cut, True, Console(quiet=True))

    resumed = read_journal(cut.run_dir / JOURNAL)
    assert outcomes(resumed) == outcomes(records)
    assert sum(r["type"] == "edit" for r in resumed) == sum(r["type"] == "edit" for r in records)  # none twice


class FailsTraining:
    """A pool whose jobs that train fail every attempt, as when peft refuses the LoRA; baselines pass."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def run(self, jobs: Any) -> Iterator[Any]:
        from student.pool import failed_report

        for job in jobs:
            if job.examples:
                yield failed_report(job, "NoMatchingPeftModuleError: Target modules ['nope_proj'] not found\n  more",
                                    2, "w")
            else:
                yield from self.pool.run([job])

    def close(self) -> None:
        self.pool.close()


def test_failed_jobs_are_said_stop_the_run_as_pool_stop_when_failed_says_and_run_again_on_resume(
    work: tuple[edits.EditWork, list[Any]]
) -> None:
    """Issue #34. "all" (the default): a phase whose every training job failed stops the run before anything is
    graded, its failures journaled apart, so that --resume runs them again. "never": the phase goes on and its
    failures are reports that score 0. "any": the first failed job stops it. Each phase says what failed."""
    from orchestrator.errors import RunError

    w, contexts = work
    console = Console(record=True, width=400)
    ok = dataclasses.replace(w, teacher=Restates(), phases=Phases(console))  # its edits always parse: they train
    failing = dataclasses.replace(ok, pool=FailsTraining(w.pool))
    written = edits.sample_edits(ok, "train", 1, contexts, 2)
    with pytest.raises(RunError, match=r'students: every student job that trains failed \(4 of 6 jobs; first: '
                                       r'NoMatchingPeftModuleError: .*not found\); .*pool.stop_when_failed = "all"'):
        edits.apply_edits(failing, "train", 1, written, 1)
    said = console.export_text()
    assert "round 1 · E-step · students: job train/r1/" in said and "4 of 6 jobs failed (first: NoMatching" in said
    failures = [r for r in w.journal.records if r["type"] == "failure"]
    assert len(failures) == 4 and all(r["round"] == 1 and r["phase"] == "train" for r in failures)
    assert not any(w.journal.get("report", r["key"]) for r in failures)
    assert not any(r["type"] == "reward" for r in w.journal.records)

    scored = edits.apply_edits(ok, "train", 1, written, 1)  # --resume, the cause fixed: they run again
    assert all(w.journal.get("report", r["key"])["report"]["ok"] for r in failures)  # type: ignore[index]
    assert len(scored) == 4

    never = dataclasses.replace(failing, stop_when_failed="never")  # round 2: the baselines are journaled
    scored = edits.apply_edits(never, "train", 2, edits.sample_edits(never, "train", 2, contexts, 2), 1)
    assert [x.reward for x in scored] == [0.0] * 4
    lost = [r for r in w.journal.records if r["type"] == "report" and r["key"].startswith("train/r2/")]
    assert len(lost) == 4 and not any(r["report"]["ok"] or r["score"] for r in lost)

    first = dataclasses.replace(failing, stop_when_failed="any")
    with pytest.raises(RunError, match=r'a student job failed \(NoMatching.*pool.stop_when_failed = "any"'):
        edits.apply_edits(first, "train", 3, edits.sample_edits(first, "train", 3, contexts, 2), 1)
    assert sum(r["type"] == "failure" and r["round"] == 3 for r in w.journal.records) == 1


def test_a_phase_stops_when_every_job_that_trains_failed() -> None:
    """(trains, succeeded) per job: baselines count only where no job trains."""
    assert edits.all_failed([(True, False), (False, True), (True, False)])
    assert not edits.all_failed([(True, False), (True, True)])
    assert edits.all_failed([(False, False)]) and not edits.all_failed([(False, True)])
    assert not edits.all_failed([])
