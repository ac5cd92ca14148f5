"""`seal report --html`: a self-contained page of a run (finished, in progress, cut short or empty), of a
`seal compare` pair and of `seal eval-edits --out` JSON. Fast tests build journals by hand in the shape
loop.py writes them; the slow ones render a real seeded tiny run and open the page in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from markupsafe import escape
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import config_toml, load_config
from orchestrator.domains.knowledge import KnowledgeDomain, Passage, default_data, load_passages
from orchestrator.edits import baseline_key
from orchestrator.journal import JOURNAL, Journal, TeacherAdapter, create_run_dir, read_journal
from orchestrator.report_html import phase_times, run_view, write_html
from student.messages import ProbeResult, StudentReport, to_dict

runner = CliRunner()
DOMAIN = KnowledgeDomain()
# A page may link to itself (#anchors) and declare XML namespaces; it must load nothing from elsewhere.
EXTERNAL = re.compile(
    r"""\b(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""",
    re.IGNORECASE,
)


# --- a journal as loop.py writes it -----------------------------------------------------------------------


def _report(job_id: str, passage: Passage, level: float) -> StudentReport:
    """Every question answered with token F1 `level`; only the first answer contains the gold one."""
    results = tuple(
        ProbeResult(p.probe_id, f"answer {job_id} q{i}", {"exact_match": 0.0, "f1": level, "contains": float(i == 0),
                                                          "equal": 0.0, "gold_logprob": -2.0 - i})
        for i, p in enumerate(DOMAIN.probes(passage))
    )
    return StudentReport(job_id, True, results, (1.0, 0.5), 100, 1.5, 0.5)


def fake_run(runs: Path, name: str = "fake", rounds: int = 1, stop_after: str | None = None,
             mode: str = "single-model") -> Path:
    """A finished knowledge run of `rounds` rounds (2 training and 2 held-out passages, M=2, one repeat), or
    one cut short: "r1:mstep" stops before round 1's selection and M-step, "r1:eval" before its held-out
    evaluation, "r2:start" before round 2 begins. Edit 1 of the first training passage in each round does not
    parse."""
    cfg = load_config(None, {"run.name": name, "run.runs_dir": str(runs), "run.rounds": rounds, "run.mode": mode,
                             "data.n_train": 2, "data.n_eval": 2, "teacher.sampling.n": 2})
    run_dir = create_run_dir(cfg.run_dir, config_toml(cfg, {"seal-lm": "0.1.0", "torch": "2.13.0"}))
    passages = load_passages(default_data())
    train, held = passages[:2], passages[2:4]
    adapter: str | None = None
    trained: TeacherAdapter | None = None
    with Journal(run_dir / JOURNAL) as journal:
        journal.append("session", "0", argv=["seal", "run"], pid=1)
        for k in range(rounds + 1):
            if stop_after == f"r{k}:start":
                return run_dir
            if k > 0:
                taus = _phase(journal, "train", k, train, trained if mode == "single-model" else None)
                if stop_after == f"r{k}:mstep":
                    return run_dir
                kept = [key for key in taus if key.endswith("/e0")]
                journal.append("selection", f"r{k}", round=k, rule="best_of_m", kept=kept)
                journal.append("mstep_start", f"r{k}", round=k, examples=len(kept), init_adapter=adapter)
                adapter = str(run_dir / "adapters" / f"round-{k}" / "teacher")
                trained = TeacherAdapter(k, adapter)
                journal.append("mstep_end", f"r{k}", round=k, adapter=adapter,
                               report={"job_id": f"mstep/r{k}", "ok": True, "epoch_losses": [1.2, 0.9 - 0.1 * k]})
            if stop_after == f"r{k}:eval":
                return run_dir
            taus = _phase(journal, "eval", k, held, trained if mode == "single-model" else None)
            per_context = {key.split("/")[2]: tau for key, tau in taus.items()}
            baselines = dict.fromkeys(per_context, 0.1)
            journal.append("evaluation", f"r{k}", round=k, tau=sum(per_context.values()) / len(per_context),
                           baseline_tau=0.1, per_context=per_context, baselines=baselines, parse_failures=0.0,
                           adapter=adapter)
    return run_dir


def _phase(journal: Journal, phase: str, k: int, passages: list[Passage], base: TeacherAdapter | None
           ) -> dict[str, float]:
    """A phase as edits.py journals it: the edits (M=2 in training, 1 held out), then the baselines' and
    edits' jobs, then the rewards; returns each edit's τ. Passage j's edits score 0.2 + 0.1 k + 0.05 j."""
    taus = {}
    for j, passage in enumerate(passages):
        cid = DOMAIN.context_id(passage)
        for i in range(2 if phase == "train" else 1):
            key = f"{phase}/r{k}/{cid}/e{i}"
            unusable = phase == "train" and j == 0 and i == 1
            journal.append("edit", key, phase=phase, round=k, context_id=cid, edit=i, prompt_hash="0" * 16,
                           text="" if unusable else f"Self-edit {key}: {passage.title} <b>&</b> implies things.",
                           tokens=12, finish_reason="stop", parse_error="empty self-edit" if unusable else None)
            taus[key] = 0.0 if unusable else round(0.2 + 0.1 * k + 0.05 * j, 3)
    for passage in passages:
        cid = DOMAIN.context_id(passage)
        baseline = baseline_key(base, cid)
        if journal.get("report", baseline) is None:
            journal.append("report", baseline, score=0.1, report=to_dict(_report(baseline, passage, 0.1)))
        for key, tau in taus.items():
            if f"/{cid}/" in key and tau:
                journal.append("report", f"{key}/s0", score=tau, report=to_dict(_report(f"{key}/s0", passage, tau)))
    for key, tau in taus.items():
        journal.append("reward", key, phase=phase, round=k, reward=tau, baseline=0.1, parsed=bool(tau))
    return taus


def html_of(target: Path, out: Path | None = None) -> str:
    return write_html(target, out).read_text(encoding="utf-8")


def assert_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script src" not in page and "<link" not in page
    assert "Content-Security-Policy\" content=\"default-src 'none'" in page  # the browser would refuse a fetch too


def assert_shows_the_journal(page: str, run_dir: Path) -> None:
    """Every edit, every kept edit and every answer the journal holds is on the page."""
    records = read_journal(run_dir / JOURNAL)
    for r in records:
        if r["type"] == "edit":
            assert str(escape(r["text"])) in page, r["key"]
            assert f'id="edit-{r["key"]}"' in page
            if r["parse_error"]:
                assert str(escape(r["parse_error"])) in page
        if r["type"] == "selection":
            for key in r["kept"]:
                block = page[page.index(f'id="edit-{key}"') - 40:][:200]
                assert "kept" in block, key
        if r["type"] == "report":
            for result in r["report"]["results"]:
                assert str(escape(result["answer"])) in page or not result["answer"], r["key"]


# --- a run ------------------------------------------------------------------------------------------------


def test_a_finished_run_shows_every_edit_selection_answer_and_gold(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, rounds=2)
    page = html_of(run_dir)
    assert (run_dir / "report.html").exists()
    assert_shows_the_journal(page, run_dir)
    assert_self_contained(page)
    passage = load_passages(default_data())[2]
    assert str(escape(passage.title)) in page and str(escape(passage.questions[0].answer)) in page  # gold
    assert page.count("<svg") == 3  # reward, held-out τ per metric, paired gain per metric
    for metric in ("exact_match", "f1", "contains", "gold_prob"):
        assert f">{metric}</td>" in page  # the interval table has every metric the answers can be graded in
    assert 'href="#ctx-' in page and 'xlink:href="#tau-r1"' in page and 'xlink:href="#train-r2"' in page
    assert "<b>&</b>" not in page  # edit text is escaped, never markup


def test_the_runs_metric_reproduces_the_journaled_tau_with_intervals_and_a_paired_gain(tmp_path: Path) -> None:
    view = run_view(fake_run(tmp_path, rounds=2), plots=False)
    assert view.metric == "f1" and view.taus[0].metric == "f1"  # the run's own metric first
    f1 = {r.round: r for r in view.taus if r.metric == "f1"}
    for row in view.rows:
        assert f1[row.round].tau.mean == pytest.approx(row.tau)
        assert f1[row.round].tau.low <= row.tau <= f1[row.round].tau.high
    assert f1[0].gain is None
    assert f1[2].gain is not None and f1[2].gain.mean == pytest.approx(0.2)  # every context gains 0.1 a round
    assert f1[2].contexts == 2 and f1[2].baseline is not None and f1[2].baseline.mean == pytest.approx(0.1)
    assert view.rewards[1].mean == pytest.approx(((0.3 + 0.0) / 2 + 0.35) / 2)  # per context first


def test_a_journal_with_a_cut_off_last_line_renders_without_it(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path)
    with (run_dir / JOURNAL).open("a") as f:
        f.write('{"type": "edit", "key": "train/r2/x/e0", "te')
    page = html_of(run_dir)
    assert "last line is cut off" in page
    assert_shows_the_journal(page, run_dir)


@pytest.mark.parametrize("content", ["", '{"type": "session", "key": "0", "time": 1.0, "argv": [], "pid": 1}\n'])
def test_an_empty_run_renders_with_a_note(tmp_path: Path, content: str) -> None:
    cfg = load_config(None, {"run.name": "empty", "run.runs_dir": str(tmp_path)})
    run_dir = create_run_dir(cfg.run_dir, config_toml(cfg))
    (run_dir / JOURNAL).write_text(content)
    page = html_of(run_dir)
    assert ("no records yet" if not content else "no self-edit yet") in page
    assert "No held-out edit in the journal yet" in page and "No training round in the journal yet" in page
    assert "<svg" not in page


def test_a_run_directory_with_only_its_config_renders_with_a_note(tmp_path: Path) -> None:
    cfg = load_config(None, {"run.name": "new", "run.runs_dir": str(tmp_path)})
    run_dir = create_run_dir(cfg.run_dir, config_toml(cfg))
    assert "does not exist yet" in html_of(run_dir)


def test_a_run_with_only_round_0_renders_with_a_note(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, rounds=0)
    page = html_of(run_dir)
    assert "Only round 0" in page and "No training round in the journal yet" in page
    assert page.count("<svg") == 2  # τ and its (empty) paired gain; no reward plot
    assert_shows_the_journal(page, run_dir)


@pytest.mark.parametrize("stop", ["r1:mstep", "r1:eval", "r2:start"])
def test_a_run_in_progress_shows_what_its_journal_has(tmp_path: Path, stop: str) -> None:
    run_dir = fake_run(tmp_path, rounds=2, stop_after=stop)
    page = html_of(run_dir)
    assert_shows_the_journal(page, run_dir)
    if stop == "r2:start":
        assert "1 of 2 rounds are finished" in page
    else:
        assert "Round 1 is not finished" in page
        assert ("not selected yet" in page) == (stop == "r1:mstep")


def test_a_teacher_student_run_reads_its_fixed_students_baseline(tmp_path: Path) -> None:
    view = run_view(fake_run(tmp_path, rounds=1, mode="teacher-student"), plots=False)
    assert all(col.job is not None for h in view.held_out for col in h.columns)


def test_wall_time_is_charged_per_phase_and_a_restarts_gap_is_not() -> None:
    records = [
        {"type": "session", "key": "0", "time": 0.0},
        {"type": "edit", "key": "eval/r0/a/e0", "time": 10.0, "round": 0, "phase": "eval"},
        {"type": "report", "key": "baseline/base/a", "time": 13.0},
        {"type": "report", "key": "eval/r0/a/e0/s0", "time": 16.0},
        {"type": "evaluation", "key": "r0", "time": 16.5},
        {"type": "session", "key": "1", "time": 1000.0},  # a restart an hour later
        {"type": "edit", "key": "train/r1/b/e0", "time": 1004.0, "round": 1, "phase": "train"},
        {"type": "edit", "key": "train/r1/b/e1", "time": 1004.0, "round": 1, "phase": "train"},
        {"type": "mstep_start", "key": "r1", "time": 1005.0, "round": 1},
        {"type": "mstep_end", "key": "r1", "time": 1025.0, "round": 1},
    ]
    times = {(p.round, p.phase): (p.seconds, p.units) for p in phase_times(records)}
    assert times == {(0, "held-out teacher"): (10.0, 1), (0, "held-out students"): (6.5, 2),
                     (1, "E-step teacher"): (4.0, 2), (1, "M-step"): (21.0, 1)}


# --- seal compare and seal eval-edits ---------------------------------------------------------------------


def test_a_compare_pair_renders_both_modes_side_by_side(tmp_path: Path) -> None:
    for mode in ("single-model", "teacher-student"):
        fake_run(tmp_path, f"cmp-{mode}", rounds=1, mode=mode)
    result = runner.invoke(app, ["report", str(tmp_path / "cmp"), "--html"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "cmp-compare.html").read_text()
    assert "single-model · round 1" in page and "teacher-student · round 1" in page
    assert "teacher-student − single-model" in page
    for mode in ("single-model", "teacher-student"):
        assert_shows_the_journal(page, tmp_path / f"cmp-{mode}")
    assert_self_contained(page)


def _eval_edits_json(tmp_path: Path) -> Path:
    """A `seal eval-edits --out` file for 2 passages of a SEAL-format file with one self-edit each."""
    passages = load_passages(default_data())[:2]
    data = tmp_path / "edits_implications.json"
    data.write_text(json.dumps([{"title": p.title, "context": p.context, "completions": [f"Edit of {p.title}."],
                                 "questions": [{"question": q.question, "answer": q.answer} for q in p.questions]}
                                for p in passages]))
    rows = ["no adaptation", "passage only", "passage + edits_implications"]
    estimate = {"mean": 0.2, "low": 0.1, "high": 0.3}
    cells = [{"row": row, "passage": i, "context_id": DOMAIN.context_id(p), "parse_error": None, "tau": {"f1": 0.2},
              "report": to_dict(_report(f"{row}/{i}", p, 0.2))} for row in rows for i, p in enumerate(passages)]
    out = tmp_path / "table.json"
    out.write_text(json.dumps({
        "data": [str(data)], "formats": ["implications"], "passages": [0, 1], "model": "tiny", "edit_index": 0,
        "seed": 0, "tau_metric": "f1",
        "rows": [{"name": row, "passages": 2, "failed": 0, "scores": {"f1": estimate, "contains": estimate}}
                 for row in rows],
        "paired": [{"name": f"{row} − no adaptation", "passages": 2, "failed": 0,
                    "scores": {"f1": estimate, "contains": estimate}} for row in rows[1:]],
        "cells": cells,
    }))
    return out


def test_eval_edits_json_renders_its_table_edits_answers_and_gold(tmp_path: Path) -> None:
    table = _eval_edits_json(tmp_path)
    result = runner.invoke(app, ["report", str(table), "--html"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "table.html").read_text()
    passage = load_passages(default_data())[0]
    for text in (f"Edit of {passage.title}.", passage.questions[0].answer, "answer passage only/1 q0",
                 "passage + edits_implications − no adaptation"):
        assert str(escape(text)) in page, text
    assert page.count("<svg") == 2
    assert_self_contained(page)


# --- one-line errors --------------------------------------------------------------------------------------


def _error(args: list[str]) -> str:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error:")
    return " ".join(result.output.split())


def test_a_missing_run_is_a_one_line_error(tmp_path: Path) -> None:
    assert "not found" in _error([str(tmp_path / "nope"), "--html"])


def test_a_damaged_journal_line_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path)
    lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
    (run_dir / JOURNAL).write_text("".join([lines[0], "{not json\n", *lines[1:]]))
    assert "line 2 is not JSON" in _error([str(run_dir), "--html"])


def test_an_output_in_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path)
    assert "does not exist" in _error([str(run_dir), "--out", str(tmp_path / "no" / "where.html")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_output_in_a_read_only_directory_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert "cannot write" in _error([str(run_dir), "--out", str(locked / "r.html")])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full to fail a write, even as root")
def test_an_output_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    assert "cannot write the report to /dev/full" in _error([str(fake_run(tmp_path)), "--out", "/dev/full"])


def test_a_json_file_that_is_no_eval_edits_output_is_a_one_line_error(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert "is not a `seal eval-edits --out` file" in _error([str(other), "--html"])


def test_out_writes_the_page_where_asked_and_the_terminal_report_is_unchanged(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path)
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0 and str(out) in " ".join(result.output.split()) and out.exists()
    plain = runner.invoke(app, ["report", str(run_dir)])
    assert plain.exit_code == 0 and not (run_dir / "report.html").exists()


# --- a real run, and a real browser -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_seeded_tiny_runs_page_shows_every_edit_selection_and_answer(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.html"  # the shared tiny run is never written to
    page = html_of(tiny_run, out)
    assert_shows_the_journal(page, tiny_run)
    assert_self_contained(page)
    assert page.count("<svg") == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (./install.sh --dev installs "
                    "Debian's package where it can)")
def test_the_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = write_html(fake_run(tmp_path, rounds=2), tmp_path / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    # No network: a name lookup fails, and the page's Content-Security-Policy refuses any fetch (and says so
    # in the log, which is checked below).
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr", "--v=0"]
    shot_run = subprocess.run([*chromium, f"--screenshot={shot}", "--window-size=1280,1600", page],
                              capture_output=True, text=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    dom_run = subprocess.run([*chromium, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True)
    assert "Held-out contexts" in dom_run.stdout and dom_run.stdout.count("<svg") == 3
    for log in (shot_run.stderr, dom_run.stderr):
        assert "Content Security Policy" not in log and "Uncaught" not in log, log
