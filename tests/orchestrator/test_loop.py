"""The ReST^EM loop: selection rules, seeds, and whole rounds on a tiny model with the real HF teacher
and an in-process student pool — including resuming from a journal cut at any point."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from orchestrator import loop
from orchestrator.config import SealConfig, config_toml
from orchestrator.edits import teacher_example
from orchestrator.journal import CONFIG, JOURNAL, read_journal
from orchestrator.report import report, round_rows
from orchestrator.seeds import derive_seed, round_slice, shuffled
from orchestrator.selection import Scored, select, summarize
from student.messages import TrainingExample

TinyConfig = Callable[..., SealConfig]  # the tiny_config fixture (conftest.py)

# --- selection -------------------------------------------------------------------------------------------


def scored(context: str, edit: int, reward: float, baseline: float = 0.2, parsed: bool = True) -> Scored:
    return Scored(context, edit, reward, baseline, parsed)


def test_best_of_m_keeps_the_best_edit_per_context_only_if_it_beats_the_baseline() -> None:
    edits = [scored("a", 0, 0.1), scored("a", 1, 0.5), scored("a", 2, 0.3), scored("b", 0, 0.2),
             scored("b", 1, 0.1)]
    assert select(edits, "best_of_m") == [edits[1]]
    assert select(edits, "best_of_m", keep_non_improving=True) == [edits[1], edits[3]]


def test_best_of_m_breaks_ties_by_the_first_edit_as_the_reference_does() -> None:
    edits = [scored("a", 0, 0.5), scored("a", 1, 0.5)]
    assert select(edits, "best_of_m") == [edits[0]]


def test_all_positive_keeps_every_edit_that_beats_the_baseline() -> None:
    edits = [scored("a", 0, 1.0, 0.0), scored("a", 1, 1.0, 0.0), scored("a", 2, 0.0, 0.0),
             scored("b", 0, 1.0, 1.0)]
    assert select(edits, "all_positive") == edits[:2]
    assert select(edits, "all_positive", keep_non_improving=True) == [edits[0], edits[1], edits[3]]


def test_edits_that_did_not_parse_are_never_kept() -> None:
    edits = [scored("a", 0, 0.0, 0.0, parsed=False), scored("b", 0, 0.0, 0.0, parsed=False)]
    assert select(edits, "best_of_m", keep_non_improving=True) == []
    assert select(edits, "all_positive", keep_non_improving=True) == []


def test_summary_counts_improving_and_unparsed_edits() -> None:
    summary = summarize([scored("a", 0, 0.4), scored("a", 1, 0.0, parsed=False)])
    assert summary == pytest.approx({"reward": 0.2, "baseline": 0.2, "improved": 0.5, "parse_failures": 0.5})


# --- seeds and context sampling --------------------------------------------------------------------------


def test_seeds_depend_only_on_the_place_in_the_run() -> None:
    assert derive_seed(0, "student", "train/r1/c/e0/s0") == derive_seed(0, "student", "train/r1/c/e0/s0")
    places = [("student", f"train/r{k}/c/e{i}/s{r}") for k in (1, 2) for i in range(5) for r in range(3)]
    seeds = {derive_seed(0, *place) for place in places}
    assert len(seeds) == len(places)
    assert derive_seed(1, *places[0]) != derive_seed(0, *places[0])
    assert all(0 <= s < 2**31 for s in seeds)


def test_rounds_get_disjoint_contexts_while_the_data_lasts_then_wrap() -> None:
    order = shuffled(range(10), 0, "train contexts")
    assert sorted(order) == list(range(10)) and order == shuffled(range(10), 0, "train contexts")
    r1, r2, r3 = (round_slice(order, 4, k) for k in (1, 2, 3))
    assert not set(r1) & set(r2)
    assert r3 == order[8:] + order[:2]


def test_a_chat_prompt_becomes_an_m_step_example_with_its_system_turn() -> None:
    prompt = [{"role": "system", "content": "List implications."}, {"role": "user", "content": "Passage"}]
    assert teacher_example(prompt, "An edit.") == TrainingExample("Passage", "An edit.", "List implications.")
    assert teacher_example("Plain prompt:", "edit") == TrainingExample("Plain prompt:", "edit")
    with pytest.raises(ValueError, match="roles"):
        teacher_example([{"role": "assistant", "content": "x"}], "edit")


# --- whole rounds on a tiny model -------------------------------------------------------------------------


def run(cfg: SealConfig, resume: bool = False) -> list[dict[str, Any]]:
    loop.main(cfg, resume, Console(quiet=True))
    return read_journal(cfg.run_dir / JOURNAL)


def results(records: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    """What a record of each key holds, without times and worker names (they differ between runs)."""
    out = {}
    for r in records:
        if r["type"] == type_:
            body = {k: v for k, v in r.items() if k not in ("time", "report")}
            if "report" in r:
                body["answers"] = [p["answer"] for p in r["report"].get("results", [])]
                body["losses"] = r["report"]["epoch_losses"]
            out[r["key"]] = body
    return out


@pytest.fixture
def uninterrupted(tiny_run: Path) -> list[dict[str, Any]]:
    return read_journal(tiny_run / JOURNAL)


def test_a_round_journals_every_step_once(uninterrupted: list[dict[str, Any]]) -> None:
    counts = Counter(r["type"] for r in uninterrupted)
    # round 0 and 1 held-out: 2 contexts × 1 edit; round 1 E-step: 2 contexts × 2 edits
    assert counts["edit"] == 2 + 2 + 4 and counts["reward"] == 8
    # reports: each usable edit once (eval_times = repeats = 1), and per context and student base one baseline
    # and one student trained on the context alone (restem.baseline: knowledge's "context")
    parsed = sum(1 for r in uninterrupted if r["type"] == "edit" and r["parse_error"] is None)
    assert counts["report"] == parsed + 2 * (2 + 2 + 2)
    assert sum(r["type"] == "report" and r["key"].startswith("alone/") for r in uninterrupted) == 2 + 2 + 2
    assert counts["selection"] == counts["mstep_start"] == counts["mstep_end"] == 1
    assert counts["evaluation"] == 2
    keys = Counter((r["type"], r["key"]) for r in uninterrupted)
    assert max(keys.values()) == 1
    (selection,) = (r for r in uninterrupted if r["type"] == "selection")
    assert len(selection["kept"]) == 2 and selection["rule"] == "best_of_m"  # the knowledge domain's rule


def test_single_model_students_adapt_the_current_teacher(uninterrupted: list[dict[str, Any]], tiny_run: Path
                                                         ) -> None:
    (mstep,) = (r for r in uninterrupted if r["type"] == "mstep_end")
    assert mstep["adapter"] == "adapters/round-1/teacher"  # relative to the run directory, wherever it is
    assert (tiny_run / mstep["adapter"] / "adapter_model.safetensors").exists()
    evaluations = {r["round"]: r for r in uninterrupted if r["type"] == "evaluation"}
    assert evaluations[0]["adapter"] is None and evaluations[1]["adapter"] == mstep["adapter"]
    baselines = {r["key"].split("/")[1] for r in uninterrupted if r["key"].startswith("baseline/")}
    assert baselines == {"base", "round-1"}  # held-out after round 1 is measured on the new teacher


@pytest.mark.parametrize("cut", ["mid_reports", "mstep_started"])
def test_resuming_a_journal_cut_anywhere_gives_the_uninterrupted_results(
    tiny_config: TinyConfig, tmp_path: Path, uninterrupted: list[dict[str, Any]], cut: str
) -> None:
    types = [r["type"] for r in uninterrupted]
    first_train_report = next(i for i, r in enumerate(uninterrupted) if r["key"].startswith("train/")
                              and r["type"] == "report")
    # mid_reports: round 1's edits journaled, 2 of its student jobs done; mstep_started: an M-step cut short
    at = {"mid_reports": first_train_report + 2, "mstep_started": types.index("mstep_start") + 1}[cut]
    cfg = tiny_config(tmp_path, "cut")
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / CONFIG).write_text(config_toml(cfg))
    prefix = uninterrupted[:at]  # as a SIGKILL at that point leaves it
    (cfg.run_dir / JOURNAL).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prefix))

    resumed = run(cfg, resume=True)

    assert resumed[:at] == prefix  # append-only
    work = [(r["type"], r["key"]) for r in resumed if r["type"] in ("edit", "report", "mstep_end")]
    assert len(work) == len(set(work))  # nothing was computed twice
    for type_ in ("edit", "report", "reward", "selection", "evaluation"):
        assert _same(results(resumed, type_), results(uninterrupted, type_)), type_


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, except run-directory paths (the two runs live in different folders)."""
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value.split("/adapters/")[-1] if isinstance(value, str) and "/adapters/" in value else value
    return norm(a) == norm(b)


SMALL = {"data.n_train": 1, "data.n_eval": 1, "teacher.sampling.n": 1}


def test_teacher_student_mode_keeps_one_baseline_per_context(
    tiny_config: TinyConfig, tiny_model_dir: str, tmp_path: Path
) -> None:
    student = shutil.copytree(tiny_model_dir, tmp_path / "student-model")  # another model: the M-step
    cfg = tiny_config(tmp_path, "ts", **SMALL, **{  # runs on a pool of the teacher's
        "run.mode": "teacher-student", "run.rounds": 2, "student.model": str(student)})
    records = run(cfg)
    baselines = [r["key"] for r in records if r["type"] == "report" and r["key"].startswith("baseline/")]
    # the fixed student's baseline of the held-out context is measured once, not after every round
    assert len(baselines) == len(set(baselines)) == 3  # held-out, round 1's context, round 2's context
    assert all(key.startswith("baseline/base/") for key in baselines)
    assert [row.round for row in round_rows(records)] == [0, 1, 2]


@pytest.mark.parametrize("base_side", ["student", "teacher"])
def test_teacher_student_across_a_chat_and_a_base_model(
    base_side: str, tiny_config: TinyConfig, tiny_model_dir: str, tiny_base_model_dir: str, tmp_path: Path
) -> None:
    """A base model (no chat template, BOS added) on either side: its prompts are plain text, the other's a
    chat; the students' jobs and the teacher's M-step (on the teacher's own model) run."""
    from orchestrator.edits import prompt_hash
    from orchestrator.session import check_inputs

    teacher, student = (tiny_model_dir, tiny_base_model_dir)[:: 1 if base_side == "student" else -1]
    cfg = tiny_config(tmp_path, base_side, **SMALL, **{
        "teacher.model": teacher, "run.mode": "teacher-student", "student.model": student})
    inputs = check_inputs(cfg)
    domain = inputs.domain
    assert (domain.chat, domain.teacher_chat) == ((False, True) if base_side == "student" else (True, False))
    records = run(cfg)
    prompts = {domain.context_id(c): prompt_hash(domain.teacher_prompt(c)) for c in [*inputs.train, *inputs.eval]}
    edits = [r for r in records if r["type"] == "edit"]
    assert edits and all(r["prompt_hash"] == prompts[r["context_id"]] for r in edits)
    reports = [r["report"] for r in records if r["type"] == "report"]
    assert reports and all(report["ok"] for report in reports)
    (m_step,) = [r for r in records if r["type"] == "mstep_end"]
    assert not m_step.get("skipped") and m_step["report"]["ok"]


@pytest.mark.slow
def test_smollm2_teaches_gemma_a_round_across_families(gemma_dir: str, smollm2_dir: str, tmp_path: Path) -> None:
    """configs/teacher-student-gemma.toml cut to one context per phase: SmolLM2's chat edits, Gemma's plain-text
    students (their own tokenizer, <bos> first), SmolLM2's M-step on its own pool."""
    from orchestrator.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "teacher-student-gemma.toml", {
        "run.runs_dir": str(tmp_path), "data.n_train": 1, "data.n_eval": 1, "teacher.sampling.n": 2,
        "teacher.sampling.max_tokens": 48, "student.train.epochs": 1, "restem.train.epochs": 1,
        "restem.keep_non_improving": True})
    records = run(cfg)
    reports = [r["report"] for r in records if r["type"] == "report"]
    assert len(reports) >= 4 and all(report["ok"] for report in reports)
    assert any(result["answer"] for report in reports for result in report["results"])  # Gemma answered
    (m_step,) = [r for r in records if r["type"] == "mstep_end"]
    assert m_step["report"]["ok"] and [row.round for row in round_rows(records)] == [0, 1]
    # `seal distill`: the trained SmolLM2 teacher writes for Gemma, which trains on its own plain-text rendering
    from orchestrator.distill import distill

    distilled = distill(cfg.run_dir, gemma_dir, "gemma", None, 2, Console(quiet=True))
    assert distilled.report.ok and distilled.usable >= 1 and distilled.report.tokens_trained > 0


def test_more_rounds_on_resume_compute_only_the_new_round(tiny_config: TinyConfig, tmp_path: Path) -> None:
    first = run(tiny_config(tmp_path, "grow", **SMALL, **{"run.rounds": 0}))
    grown = run(tiny_config(tmp_path, "grow", **SMALL, **{"run.rounds": 1}), resume=True)
    assert grown[: len(first)] == first
    new = Counter(r["type"] for r in grown[len(first):])
    assert new["evaluation"] == 1 and new["mstep_end"] == 1 and new["session"] == 1
    assert not any(r["key"].startswith("eval/r0/") for r in grown[len(first):])


def test_the_inline_pool_runs_the_same_loop_on_one_network(
    tiny_run: Path, tiny_config: TinyConfig, tmp_path: Path
) -> None:
    """The same seeds as the in-process run: the same edits, answers and rewards until a teacher adapter
    exists, and a bit-identical M-step adapter. After it the inline teacher samples with that adapter
    stacked, the in-process one with it merged into bf16 weights: round 1's held-out edits may part."""
    inline = run(tiny_config(tmp_path, "whole", **{"pool.kind": "inline"}))
    whole = read_journal(tiny_run / JOURNAL)

    def before_the_adapter(key: str) -> bool:
        return not key.startswith(("eval/r1/", "baseline/round-"))

    for type_ in ("edit", "report", "reward", "selection"):
        ours, theirs = results(inline, type_), results(whole, type_)
        assert ours.keys() == theirs.keys()
        assert {k: v for k, v in ours.items() if before_the_adapter(k)} == {
            k: v for k, v in theirs.items() if before_the_adapter(k)}
    assert any(not before_the_adapter(k) for k in results(inline, "report"))  # round 1 did run inline
    adapters = [run_dir / r["adapter"] / "adapter_model.safetensors"
                for run_dir, records in ((tmp_path / "whole", inline), (tiny_run, whole))
                for r in records if r["type"] == "mstep_end"]
    ours, theirs = (load_file(a) for a in adapters)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_report_reads_rounds_and_contexts_from_the_journal(tiny_run: Path) -> None:
    tables, plot = report(tiny_run)
    rows = round_rows(read_journal(tiny_run / JOURNAL))
    assert [r.round for r in rows] == [0, 1]
    assert rows[0].reward is None and rows[0].tau is not None  # round 0 only measures
    assert rows[1].kept == 2 and rows[1].parse_failures is not None and rows[1].mstep_loss is not None
    gain = rows[1].tau_gain  # paired on the same held-out contexts: the mean gain is the change of means
    assert rows[0].tau_gain is None and gain is not None and gain.low <= gain.mean <= gain.high
    assert gain.mean == pytest.approx(rows[1].tau - rows[0].tau)
    assert [t.row_count for t in tables] == [2, 2]  # rounds; held-out contexts
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("reward", ["f1", "gold_prob"])
def test_training_rounds_answer_as_the_reward_needs_and_held_out_rounds_as_tau_needs(
    tiny_config: TinyConfig, tmp_path: Path, reward: str
) -> None:
    cfg = tiny_config(tmp_path, f"reward-{reward}", **{"data.options": {"metric": "contains", "reward": reward}})
    loop.main(cfg, False, Console(quiet=True))
    records = read_journal(cfg.run_dir / JOURNAL)
    phase_of = {r["context_id"]: r["phase"] for r in records if r["type"] == "edit"}
    reports = {"train": [], "eval": []}  # type: dict[str, list[dict[str, Any]]]
    for r in records:
        if r["type"] == "report":
            key = r["key"].split("/")
            if key[0] == "baseline":
                reports[phase_of[key[-1]]].append(r)
            elif key[0] == "alone":  # alone/{base}/{context}/s{repeat}
                reports[phase_of[key[2]]].append(r)
            else:
                reports[key[0]].append(r)
    assert reports["train"] and reports["eval"]
    for r in reports["eval"]:  # held-out: generated answers and likelihoods, τ is contains
        scores = r["report"]["results"][0]["scores"]
        assert {"contains", "gold_logprob"} <= set(scores)
    likelihood_only = reward == "gold_prob"
    for r in reports["train"]:  # a likelihood reward generates nothing; its score is the reward, in [0, 1]
        answers = [p["answer"] for p in r["report"]["results"]]
        assert (answers == [""] * len(answers) or not likelihood_only) and 0.0 <= r["score"] <= 1.0
        assert ("f1" in r["report"]["results"][0]["scores"]) != likelihood_only


def test_a_run_whose_student_jobs_fail_says_so_stops_and_goes_on_when_told(
    tiny_config: TinyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #34's run: a LoRA target the model lacks (past the check that now refuses it before the run) fails
    every job that trains. The run says so, stops at the first phase (round 0's held-out τ), and --resume with
    pool.stop_when_failed = "never" runs the failed jobs again and goes on; the baselines pass throughout (a
    failed job no longer breaks the student), and `seal report` names the round that lost jobs."""
    from orchestrator import session
    from orchestrator.session import RunError

    monkeypatch.setattr(session, "check_lora_targets", lambda *args: None)
    sets = {**SMALL, "run.rounds": 0, "student.lora.target_modules": ["nope_proj"]}
    console = Console(record=True, width=400)
    with pytest.raises(RunError, match=r"round 0 · held-out · students: every student job that trains failed "
                                       r"\(\d of \d jobs; first: NoMatchingPeftModuleError: Target modules"):
        loop.main(tiny_config(tmp_path, "lost", **sets), False, console)
    said = console.export_text()
    assert "held-out · students: job alone/base/" in said and "jobs failed (first: NoMatchingPeftModuleError" in said

    records = run(tiny_config(tmp_path, "lost", **sets, **{"pool.stop_when_failed": "never"}), resume=True)
    reports = {r["key"]: r["report"] for r in records if r["type"] == "report"}
    trains = [k for k in reports if not k.startswith("baseline/")]  # the context alone, and the edit if it parsed
    assert trains and not any(reports[k]["ok"] for k in trains)
    assert [r["ok"] for k, r in reports.items() if k.startswith("baseline/")] == [True]
    assert sum(r["type"] == "failure" for r in records) == 2 * len(trains)  # when it stopped, and on resume
    (table, *_), _ = report(tmp_path / "lost")
    line = f"round 0: {len(trains)} of {len(reports)} student jobs failed (first: NoMatchingPeftModuleError"
    assert line in str(table.caption)
