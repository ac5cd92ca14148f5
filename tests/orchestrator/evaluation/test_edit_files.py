"""`seal eval-edits` (evaluation/edit_files.py): the paper's table for self-edits already written."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.evaluation.edit_files import choose, edit_format_of


def write(tmp_path: Path, records: object) -> Path:
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(records))
    return path


QUESTIONS = [{"question": "Q?", "answer": "Otrar"}]
RECORD = {"title": "T", "context": "C", "questions": QUESTIONS, "completions": ["1. x y"]}


@pytest.mark.parametrize(
    ("records", "flags", "message"),
    [
        ([RECORD, {"title": "T", "context": "C"}], [], "record 1: field 'questions' is missing"),
        ([RECORD], ["--passages", "2"], "--passages 2: the data has only 1 passages"),
        ([RECORD], ["--passages", "0"], "--passages must be 1 or more"),
        ([RECORD], ["--sample", "3"], "--sample 3: the data has only 1 passages"),
        ([RECORD], ["--edit-index", "1"], "record 0 has no self-edit number 1"),
        ([RECORD], ["--set", "student.train.lr=-1"], "--set student.train.lr: must be > 0"),
        ([RECORD], ["--format", "poem"], "--format 'poem' is not one of"),
        ([RECORD], ["--pool", "cloud"], "--pool:"),
    ],
)
def test_eval_edits_user_errors(tmp_path: Path, records: object, flags: list[str], message: str) -> None:
    path = write(tmp_path, records)
    first = [] if "--sample" in flags else ["--passages", "1"]  # the two exclude each other
    result = CliRunner().invoke(app, ["eval-edits", "--data", str(path), *first, *flags])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert result.output.count("\n") == 1


def test_eval_edits_files_must_hold_the_same_passages(tmp_path: Path) -> None:
    a, b = write(tmp_path, [RECORD]), tmp_path / "other.json"
    b.write_text(json.dumps([RECORD | {"context": "another passage"}]))
    result = CliRunner().invoke(app, ["eval-edits", "--data", str(a), "--data", str(b), "--passages", "1"])
    assert result.exit_code == 2 and "does not hold the same passages" in result.output


def test_edit_format_is_read_from_the_paper_s_file_names() -> None:
    names = {"base_val.json": "implications", "iter0_train_prompt-long.json": "implications-long",
             "base_val_prompt-rewrite.json": "rewrite", "iter2_val_prompt-self-qa.json": "self-qa"}
    assert {n: edit_format_of(Path(n), "auto") for n in names} == names
    assert edit_format_of(Path("base_val.json"), "rewrite") == "rewrite"


def test_a_sample_is_seeded_and_in_file_order() -> None:
    assert choose(10, 3, None, 0) == [0, 1, 2]
    picked = choose(10, 3, 4, seed=7)
    assert picked == sorted(picked) and len(set(picked)) == 4 and picked == choose(10, 99, 4, seed=7)
    assert picked != choose(10, 3, 4, seed=8)


def test_eval_edits_runs_the_table(tmp_path: Path, tiny_model_dir: str) -> None:
    pytest.importorskip("student.student")
    from orchestrator.config import load_config

    data = write(tmp_path, [RECORD, RECORD | {"context": "D", "completions": ["Sure:"]}])
    qa = tmp_path / "edits_prompt-self-qa.json"  # the same passages, self-QA edits
    qa.write_text(json.dumps([RECORD | {"completions": ["Q?\nAnswer: Otrar"]}, RECORD | {"context": "D"}]))
    out = tmp_path / "table.json"
    flags = ["--passages", "2", "--model", tiny_model_dir, "--set", "student.train.epochs=1", "--out", str(out)]
    result = CliRunner().invoke(app, ["eval-edits", "--data", str(data), "--data", str(qa), *flags])
    assert result.exit_code == 0, result.output
    assert "no adaptation" in result.output and "passage + edits" in result.output
    table = json.loads(out.read_text())
    assert [row["name"] for row in table["rows"]] == [
        "no adaptation", "passage only", "passage + edits", "passage + edits_prompt-self-qa"]
    assert table["formats"] == ["implications", "self-qa"]
    assert table["rows"][2]["failed"] == 1  # the second passage's edit is unusable
    assert all(c["report"]["ok"] for c in table["cells"] if c["report"])
    assert table["train"]["epochs"] == 1 and table["lora"]["r"] == load_config().student.lora.r
    paired = [row["name"] for row in table["paired"]]
    assert "passage + edits − no adaptation" in paired and "passage + edits − passage only" in paired
    assert set(table["paired"][0]["scores"]) == {"exact_match", "f1", "contains", "gold_prob"}


