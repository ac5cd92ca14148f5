"""`seal propose` writes a SEAL-format file that the knowledge loader reads back, with a manifest that
records the sampling and never a key; its mistakes are one `error:` line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.domains.knowledge import default_data, load_passages
from teacher.vllm_process import HOST, free_port

runner = CliRunner()


def test_propose_fills_completions_in_seal_format(tiny_model_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "edits.json"
    args = ["propose", "--data", str(default_data()), "--out", str(out), "--model", tiny_model_dir,
            "--backend", "hf", "--n", "2", "--passages", "3", "--max-tokens", "8", "--seed", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    written = load_passages(out)
    source = load_passages(default_data())[:3]
    assert [(p.title, p.context, p.questions) for p in written] == [
        (p.title, p.context, p.questions) for p in source
    ]
    assert [len(p.completions) for p in written] == [2, 2, 2]
    records = json.loads(out.read_text())
    assert records[0]["prompt"][0]["role"] == "system"  # the teacher prompt each edit answers
    meta = json.loads((tmp_path / "edits.json.meta").read_text())
    assert (meta["n"], meta["k"], meta["seed"], meta["dataset_in"]) == (2, 3, 5, str(default_data()))


def test_unreachable_teacher_url_is_one_error_line(tmp_path: Path) -> None:
    url = f"http://{HOST}:{free_port()}/v1"
    args = ["propose", "--data", str(default_data()), "--out", str(tmp_path / "o.json"), "--url", url]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot reach the teacher") and result.output.count("\n") == 1
    assert not (tmp_path / "o.json").exists()


def test_bad_flags_are_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    base = ["propose", "--data", str(default_data()), "--out", str(tmp_path / "o.json")]
    for extra, message in [
        (["--n", "0"], "--n must be 1 or more"),
        (["--passages", "999"], "--passages 999: data file"),
        (["--backend", "tgi"], "--backend must be vllm or hf"),
        (["--url", "http://x", "--api-key-env", "NO_SUCH_KEY_VAR"], "variable NO_SUCH_KEY_VAR is not set"),
    ]:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and result.output.count("\n") == 1, result.output
