"""Config loading and validation: every mistake is one line naming the file or flag; through the CLI,
exit 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import (
    ConfigError,
    SealConfig,
    config_toml,
    diff,
    load_config,
    parse_overrides,
)

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_quickstart_toml_is_the_embedded_default() -> None:
    assert load_config(REPO / "configs" / "quickstart.toml") == SealConfig()


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    load_config(path)


def test_partial_table_keeps_the_other_defaults_of_its_section(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[restem.train]\nepochs = 1\n"))
    assert cfg.restem.train.epochs == 1
    assert cfg.restem.train.lr == SealConfig().restem.train.lr  # the M-step's 3e-4, not TrainSpec's 1e-3
    assert cfg.restem.train.loss_on == "completion"


def test_set_overrides_parse_toml_literals_and_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[teacher.sampling]\nn = 5\n")
    overrides = parse_overrides([
        "teacher.sampling.n=2", "student.train.lr=1e-4", "teacher.model=org/name",
        "student.lora.target_modules=[\"q_proj\"]", "restem.keep_non_improving=true",
    ])
    cfg = load_config(path, overrides)
    assert cfg.teacher.sampling.n == 2
    assert cfg.student.train.lr == 1e-4
    assert cfg.teacher.model == "org/name"
    assert cfg.student.lora.target_modules == ("q_proj",)
    assert cfg.restem.keep_non_improving is True


def test_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    cfg = load_config(None, parse_overrides([
        "run.mode=teacher-student", "student.model=org/student", "data.options={metric = \"exact_match\"}",
        "pool.job_timeout=30.5",
    ]))
    saved = write(tmp_path, config_toml(cfg, {"torch": "2.13.0"}), "config.toml")
    assert load_config(saved) == cfg
    changed = ["data.options.metric", "pool.job_timeout", "run.mode", "student.model"]
    assert diff(cfg, load_config()) == changed


@pytest.mark.parametrize(
    ("text", "sets", "message"),
    [
        ("[teacher.samplng]\nn = 2\n", [], "c.toml: unknown key 'teacher.samplng' (did you mean "
                                            "'teacher.sampling'?)"),
        ("[student.train]\nepoch = 3\n", [], "c.toml: unknown key 'student.train.epoch' (did you mean "
                                             "'student.train.epochs'?)"),
        ("", ["teachr.model=x"], "--set teachr.model: unknown key 'teachr' (did you mean 'teacher'?)"),
        ("[data]\nn_train = \"four\"\n", [], "c.toml: data.n_train: Input should be a valid integer"),
        ("[teacher.sampling]\nn = 0\n", [], "c.toml: teacher.sampling.n: must be >= 1"),
        ("", ["teacher.sampling.n=0"], "--set teacher.sampling.n: must be >= 1"),
        ("[run]\nmode = \"teacher_student\"\n", [], "c.toml: run.mode: Input should be 'single-model' or"),
        ("[data]\ndomain = \"knowlege\"\n", [], "c.toml: data.domain: unknown domain 'knowlege' (did you"),
        ("[student]\nmodel = \"org/x\"\n", [], "c.toml: student.model: single-model mode uses teacher.model"),
        ("[teacher]\nbackend = \"url\"\n", [], "c.toml: teacher.url: needed when"),
        ("[run\nname = 1\n", [], "c.toml: not valid TOML"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path: Path, text: str, sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), parse_overrides(sets))
    assert str(e.value).startswith(message.replace("c.toml", str(tmp_path / "c.toml")))
    assert "\n" not in str(e.value)


def test_set_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--set teacher.model: expected section.key=value"):
        parse_overrides(["teacher.model"])


# --- through the CLI: exit 2, one line, nothing written ----------------------------------------------------


def cli_run(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    config = write(tmp_path, f"[run]\nruns_dir = \"{tmp_path / 'runs'}\"\n{text}")
    result = runner.invoke(app, ["run", str(config), *args])
    return result.exit_code, result.output.strip()


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("[data]\nn_trian = 2\n", [], "unknown key 'data.n_trian' (did you mean 'data.n_train'?)"),
        ("[teacher.sampling]\nn = \"many\"\n", [], "teacher.sampling.n: Input should be a valid integer"),
        ("[data]\ntrain_path = \"missing.json\"\n", [], "data.train_path: data file missing.json not found"),
        ("[data]\nn_train = 1000\n", [], "data.n_train = 1000 but the training data has 46 contexts"),
        ("[data]\nn_eval = 1000\n", [], "data.n_eval = 1000 but the held-out data has 50 contexts"),
        ("[teacher.sampling]\nn = 0\n", [], "teacher.sampling.n: must be >= 1"),
        ("", ["--set", "teacher.sampling.n=0"], "--set teacher.sampling.n: must be >= 1"),
        ("", ["--mode", "solo"], "--set run.mode: Input should be 'single-model' or 'teacher-student'"),
        ("[data.options]\nmetrik = \"f1\"\n", [],
         "data.options: unknown option 'metrik' for domain knowledge (did you mean 'metric'?)"),
    ],
)
def test_cli_rejects_bad_input_with_one_line_and_writes_nothing(
    tmp_path: Path, text: str, args: list[str], message: str
) -> None:
    code, output = cli_run(tmp_path, text, *args)
    assert code == 2
    assert output.startswith("error: ") and message in output, output
    assert len(output.splitlines()) == 1, output
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_an_existing_run_directory_without_resume(tmp_path: Path) -> None:
    existing = tmp_path / "runs" / "quickstart"
    existing.mkdir(parents=True)
    (existing / "journal.jsonl").write_text(json.dumps({"type": "session", "key": "0"}) + "\n")
    code, output = cli_run(tmp_path, "")
    assert code == 2
    assert output == f"error: run directory {existing} exists: pass --resume to continue it, or --name NEW " \
                     "for a new run"
    assert [p.name for p in existing.iterdir()] == ["journal.jsonl"]


def test_cli_resume_refuses_a_different_config(tmp_path: Path) -> None:
    existing = tmp_path / "runs" / "quickstart"
    existing.mkdir(parents=True)
    before = config_toml(load_config(None, {"run.runs_dir": str(tmp_path / "runs")}))
    (existing / "config.toml").write_text(before)
    code, output = cli_run(tmp_path, "[teacher.sampling]\nn = 5\n", "--resume")
    assert code == 2
    assert "--resume: this config differs from" in output and "teacher.sampling.n" in output
    assert (existing / "config.toml").read_text() == before
