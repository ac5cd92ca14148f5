"""Every user mistake the reliability issue found ends in one `error: ...` line, exit code 2, and nothing
written; a bug ends in one line that says where its traceback went. Real files, real CLI, no model is
loaded (each mistake is caught before one would be)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.domains.knowledge import default_data

SealCli = Callable[..., tuple[int, str]]

NOT_UTF8 = b'[{"title": "caf\xe9", "context": "x", "questions": []}]'


def one_line_error(code: int, output: str, message: str) -> None:
    assert code == 2, output
    assert output.startswith("error: ") and len(output.splitlines()) == 1, output
    assert message in output, output


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def run_with(seal_cli: SealCli, runs: Path, *sets: str) -> tuple[int, str]:
    flags = [a for s in (f'run.runs_dir="{runs}"', *sets) for a in ("--set", s)]
    return seal_cli("run", *flags)


def test_a_config_file_that_is_not_utf8(tmp_path: Path, seal_cli: SealCli) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b'[run]\nname = "caf\xe9"\n')
    one_line_error(*seal_cli("run", config), f"config file {config} is not UTF-8 text (byte 17 is 0xe9)")


def test_a_directory_given_as_the_config(tmp_path: Path, seal_cli: SealCli) -> None:
    one_line_error(*seal_cli("run", tmp_path), f"config file {tmp_path} is a directory; give a file")


def test_a_directory_given_as_the_data(tmp_path: Path, runs: Path, seal_cli: SealCli) -> None:
    one_line_error(*run_with(seal_cli, runs, f'data.train_path="{tmp_path}"'),
                   f"data.train_path: data file {tmp_path} is a directory")
    assert not runs.exists()


def test_knowledge_data_that_is_not_utf8(tmp_path: Path, runs: Path, seal_cli: SealCli) -> None:
    data = tmp_path / "passages.json"
    data.write_bytes(NOT_UTF8)
    one_line_error(*run_with(seal_cli, runs, f'data.train_path="{data}"'), f"data file {data} is not UTF-8 text")
    assert not runs.exists()


def test_arc_data_that_is_not_utf8(tmp_path: Path, runs: Path, seal_cli: SealCli) -> None:
    challenges = tmp_path / "x_challenges.json"
    challenges.write_bytes(b'{"t": "\xff"}')
    (tmp_path / "x_solutions.json").write_text("{}")
    one_line_error(*run_with(seal_cli, runs, 'data.domain="arc"', f'data.train_path="{challenges}"'),
                   f"ARC file {challenges} is not UTF-8 text")
    assert not runs.exists()


def test_propose_data_that_is_not_utf8(tmp_path: Path, seal_cli: SealCli) -> None:
    data = tmp_path / "passages.json"
    data.write_bytes(NOT_UTF8)
    out = tmp_path / "out.json"
    one_line_error(*seal_cli("propose", "--data", data, "--out", out), f"data file {data} is not UTF-8 text")
    assert not out.exists()


def test_a_file_given_as_the_runs_directory(tmp_path: Path, seal_cli: SealCli) -> None:
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    one_line_error(*run_with(seal_cli, runs), f"cannot create run directory {runs / 'quickstart'}: Not a directory")
    assert runs.read_text() == "not a folder"


def _writable(folder: Path) -> bool:
    try:
        (folder / ".seal-probe").mkdir()
    except OSError:
        return False
    (folder / ".seal-probe").rmdir()
    return True


@pytest.mark.skipif(_writable(Path("/sys")), reason="/sys is writable here")
def test_a_read_only_runs_directory(seal_cli: SealCli) -> None:
    runs = Path("/sys/seal-runs")  # a read-only file system even for root, who ignores permission bits
    code, output = run_with(seal_cli, runs)
    one_line_error(code, output, f"cannot create run directory {runs / 'quickstart'}: ")
    assert not runs.exists()


def test_resume_of_a_run_that_does_not_exist(runs: Path, seal_cli: SealCli) -> None:
    one_line_error(*seal_cli("run", "--resume", "--set", f'run.runs_dir="{runs}"'),
                   f"--resume: no run to continue in {runs / 'quickstart'}; drop --resume to start it")
    assert not runs.exists()


def test_a_port_out_of_range(seal_cli: SealCli) -> None:
    one_line_error(*seal_cli("teacher", "serve", "--port", "70000"), "--port must be a TCP port, 1 to 65535, got 70000")


def _truncated_model(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    save_file({"w": torch.zeros(256)}, str(weights))
    os.truncate(weights, weights.stat().st_size // 2)
    return folder


def test_a_truncated_model_in_run_and_eval_edits(tmp_path: Path, runs: Path, seal_cli: SealCli) -> None:
    model = _truncated_model(tmp_path / "model")
    message = f"{model / 'model.safetensors'} is truncated"
    one_line_error(*run_with(seal_cli, runs, f'teacher.model="{model}"'), message)
    assert not runs.exists()
    passage = json.loads(default_data().read_text())[0] | {"completions": ["An implication."]}
    data = tmp_path / "edits.json"
    data.write_text(json.dumps([passage]))
    one_line_error(*seal_cli("eval-edits", "--data", data, "--model", model, "--passages", "1"), message)


@pytest.mark.parametrize("field", ["student.lora.target_modules", "restem.lora.target_modules"])
def test_lora_targets_the_model_lacks(field: str, tiny_model_dir: str, runs: Path, seal_cli: SealCli) -> None:
    """Issue #34: read from the model folder's safetensors headers (no weights loaded), before anything runs; it
    used to fail every student job inside peft. A norm has no matrix LoRA could adapt; q_proj is fine."""
    targets = f'{field}=["q_proj", "nope_proj", "input_layernorm"]'
    code, output = run_with(seal_cli, runs, f'teacher.model="{tiny_model_dir}"', targets)
    one_line_error(code, output, f"{field}: {Path(tiny_model_dir).resolve()} has no weight matrix named 'nope_proj', "
                                 "'input_layernorm'; its matrices: embed_tokens, ")
    assert all(name in output for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    assert not runs.exists()


def test_a_hub_id_offline(tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    one_line_error(*run_with(seal_cli, runs, 'teacher.model="org/no-such-model"'),
                   "model 'org/no-such-model' is not in the Hub cache and the Hub cannot be reached")
    assert not runs.exists()


def test_a_run_that_fails_to_start_leaves_nothing_behind(runs: Path, seal_cli: SealCli) -> None:
    """The teacher cannot be reached: the run directory made for it goes again, so the same command
    gives the same error rather than asking for --resume."""
    sets = ('run.mode="teacher-student"', 'teacher.backend="url"', 'teacher.url="http://127.0.0.1:9/v1"')
    first = run_with(seal_cli, runs, *sets)
    assert first[0] == 2 and first[1].startswith("error: ") and len(first[1].splitlines()) == 1, first
    assert not (runs / "quickstart").exists()
    assert run_with(seal_cli, runs, *sets) == first


def test_a_bug_is_one_line_and_a_saved_traceback(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli
) -> None:
    from orchestrator import loop

    def broken(*args: object) -> Path:
        raise RuntimeError("an invariant broke\nsecond line")

    monkeypatch.setattr(loop, "main", broken)  # stands for any bug; the thing under test is the CLI's handler
    monkeypatch.setenv("SEAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SEAL_DEBUG", raising=False)
    code, output = run_with(seal_cli, runs)
    assert code == 1 and len(output.splitlines()) == 1, output
    assert output.startswith("internal error: RuntimeError: an invariant broke (full traceback in ")
    (saved,) = (tmp_path / "home" / "errors").iterdir()
    assert str(saved) in output and "raise RuntimeError" in saved.read_text()


@pytest.mark.parametrize(
    ("failure", "line"),
    [
        ("step", "error: the M-step of round 1 failed (disk); rerun with --resume to retry it"),
        ("disk", "error: No space left on device writing /runs/x/journal.jsonl: free space, then run the same "
                 "command again (a run: with --resume; what was journaled is kept)"),
    ],
)
def test_a_failed_step_or_a_full_disk_is_one_line_and_exit_1(
    failure: str, line: str, runs: Path, monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli
) -> None:
    import errno

    from orchestrator import loop
    from orchestrator.session import RunError

    def fails(*args: object) -> Path:
        if failure == "step":
            raise RunError("the M-step of round 1 failed (disk); rerun with --resume to retry it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/journal.jsonl")

    monkeypatch.setattr(loop, "main", fails)  # where the run stops is not under test; the CLI's handler is
    code, output = run_with(seal_cli, runs)
    assert (code, output.strip()) == (1, line)


# --- mistakes checked before any work (issue #34): each is one line, and nothing is written ----------------


def test_report_of_a_journal_with_binary_bytes(tmp_path: Path, seal_cli: SealCli) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "journal.jsonl").write_bytes(b'{"type": "session", "key": "0"}\n\x89PNG\r\n\x1a\x00\xff\n')
    for html in ([], ["--html"]):
        one_line_error(*seal_cli("report", run, *html), f"{run / 'journal.jsonl'}: line 2 is not JSON")
    assert sorted(p.name for p in run.iterdir()) == ["journal.jsonl"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sample", "0"], "--sample must be 1 or more, got 0"),
        (["--sample", "2", "--passages", "3"], "--passages and --sample exclude each other"),
    ],
)
def test_eval_edits_passages_and_sample(flags: list[str], message: str, tmp_path: Path, seal_cli: SealCli) -> None:
    # a model that does not exist: the mistake is found before any model would be resolved or loaded
    one_line_error(*seal_cli("eval-edits", "--data", default_data(), "--model", tmp_path / "none", *flags), message)


@pytest.mark.parametrize("command", ["propose", "eval-edits"])
def test_out_naming_a_directory_or_a_missing_folder(command: str, tmp_path: Path, seal_cli: SealCli) -> None:
    args = (command, "--data", default_data(), "--model", tmp_path / "none", "--out")
    one_line_error(*seal_cli(*args, tmp_path), f"--out {tmp_path} is a directory: give a file name")
    missing = Path("/seal-no-such-folder") / "dir" / "x.json"  # never made, not even at the filesystem root
    one_line_error(*seal_cli(*args, missing), f"--out {missing}: directory {missing.parent} does not exist")
    assert not missing.parent.parent.exists()


def test_teacher_log_dir_naming_a_file(tmp_path: Path, seal_cli: SealCli) -> None:
    file = tmp_path / "log"
    file.write_text("a file")
    one_line_error(*seal_cli("teacher", "serve", "--log-dir", file), f"--log-dir {file}: {file} is a file")
    one_line_error(*seal_cli("teacher", "serve", "--log-dir", file / "sub"), f"{file} is a file, not a folder")


def test_seal_home_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli) -> None:
    home = tmp_path / "home"
    home.write_text("a file")
    monkeypatch.setenv("SEAL_HOME", str(home))
    one_line_error(*seal_cli("prepare-model"), f"cannot write prepared models to {home / 'models'} (Not a directory)")


@pytest.mark.skipif(_writable(Path("/sys")), reason="/sys is writable here")
def test_seal_home_that_cannot_be_written(monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli) -> None:
    monkeypatch.setenv("SEAL_HOME", "/sys/seal-home")  # read-only even for root
    one_line_error(*seal_cli("prepare-model"), "cannot write prepared models to /sys/seal-home/models (")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("SEAL_THREADS", "abc", "SEAL_THREADS='abc': give a whole number of threads"),
     ("SEAL_THREADS", "0", "SEAL_THREADS='0': give a whole number of threads, 1 or more"),
     ("SEAL_PRECISION", "xyz", "SEAL_PRECISION='xyz': give auto or fp32")],
)
def test_a_bad_runtime_variable_stops_every_command_at_start(
    variable: str, value: str, message: str, runs: Path, monkeypatch: pytest.MonkeyPatch, seal_cli: SealCli
) -> None:
    monkeypatch.setenv(variable, value)
    one_line_error(*run_with(seal_cli, runs), message)
    assert not runs.exists()
    one_line_error(*seal_cli("plan"), message)


@pytest.mark.parametrize("name", ["../escape", "", "..", "a/b"])
def test_a_name_that_is_not_one_folder(name: str, runs: Path, tmp_path: Path, seal_cli: SealCli) -> None:
    one_line_error(*seal_cli("run", "--name", name, "--set", f'run.runs_dir="{runs}"'),
                   f"--name: must be one folder name: not empty, no / or \\, not . or .. (got {name!r})")
    assert not runs.exists() and not (tmp_path / "escape").exists()
    one_line_error(*seal_cli("distill", tmp_path, "--student", "x", "--name", name), "--name: must be one folder")

