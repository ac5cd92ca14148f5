"""`seal eval`, `seal distill` and `seal compare` end to end on the tiny model, through the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import SealConfig, config_toml
from orchestrator.journal import JOURNAL, read_journal

runner = CliRunner()


def test_eval_prints_the_paper_table_with_the_trained_teacher(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    result = runner.invoke(app, ["eval", "--run", str(tiny_run), "--set", "data.n_eval=1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    names = ["no adaptation", "passage only", "base edits", "trained edits"]
    assert [row["name"] for row in table["rows"]] == names
    assert table["adapter"].endswith("adapters/round-1/teacher")
    assert all(name in result.output for name in names)


def test_distill_trains_a_student_on_the_trained_teachers_edits(tiny_run: Path, tiny_model_dir: str) -> None:
    args = ["distill", str(tiny_run), "--student", tiny_model_dir, "--contexts", "2", "--name", "tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tiny_run / "distill" / "tiny"
    assert len((out / "edits.jsonl").read_text().splitlines()) == 2
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists: pass --name NEW" in again.output


def test_distill_runs_from_any_folder_on_a_run_moved_and_renamed(
    tiny_run: Path, tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal stores paths relative to the run directory: the run works wherever it is now."""
    moved = tmp_path / "archive" / "renamed-run"
    shutil.copytree(tiny_run, moved)
    (end,) = (r for r in read_journal(moved / JOURNAL) if r["type"] == "mstep_end")
    assert end["adapter"] == "adapters/round-1/teacher"  # nothing points back at the original run
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(app, ["distill", str(moved), "--student", tiny_model_dir, "--contexts", "1",
                                 "--name", "moved"])
    assert result.exit_code == 0, result.output
    assert (moved / "distill" / "moved" / "adapter" / "adapter_model.safetensors").exists()


def test_a_failed_distillation_leaves_nothing_that_blocks_the_same_command(
    tiny_run: Path, tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import distill

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    monkeypatch.setattr(distill, "one_edit_each", lambda teacher, domain, corpus, *args: [""] * len(corpus))
    args = ["distill", str(run), "--student", tiny_model_dir, "--contexts", "2", "--name", "x"]
    for _ in range(2):  # the same command, the same error: not "exists: pass --name NEW"
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "error: no usable self-edit among 2 contexts: nothing to distill" in result.output
        assert not (run / "distill" / "x").exists()  # (the shared run may hold another test's distillation)


def test_compare_runs_both_modes_on_the_same_held_out_contexts(
    tiny_config: Callable[..., SealConfig], tmp_path: Path
) -> None:
    cfg = tiny_config(tmp_path / "runs", "cmp", **{"data.n_train": 1, "data.n_eval": 1, "teacher.sampling.n": 1})
    config = tmp_path / "cmp.toml"
    config.write_text(config_toml(cfg))
    result = runner.invoke(app, ["compare", str(config)])
    assert result.exit_code == 0, result.output
    modes = {mode: read_journal(tmp_path / "runs" / f"cmp-{mode}" / JOURNAL)
             for mode in ("single-model", "teacher-student")}
    held_out = {mode: {r["key"].split("/")[2] for r in records if r["key"].startswith("eval/")}
                for mode, records in modes.items()}
    assert held_out["single-model"] == held_out["teacher-student"]
    assert (tmp_path / "runs" / "cmp-compare.png").exists()
    assert "single-model" in result.output and "teacher-st" in result.output


def test_the_teacher_commands_default_to_what_a_run_uses() -> None:
    """`seal propose` samples and `seal teacher serve` starts vLLM as the config's defaults say: one source."""
    import typer.main

    from orchestrator.config import TeacherConfig

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    propose = {p.name: p.default for p in commands["propose"].params}
    serve = {p.name: p.default for p in commands["teacher"].commands["serve"].params}
    teacher = TeacherConfig()
    for key in ("temperature", "top_p", "max_tokens"):
        assert propose[key] == getattr(teacher.sampling, key), key
    for key in ("max_lora_rank", "max_model_len"):
        assert serve[key] == getattr(teacher, key), key
