"""Config loading and validation: every mistake is one line naming the file or flag; through the CLI,
exit 2 and nothing written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import (
    CheckedBy,
    ConfigError,
    LoRAFields,
    MStepTrain,
    SealConfig,
    TrainSpecFields,
    allowed_range,
    config_toml,
    diff,
    load_config,
    parse_overrides,
    summary,
)
from student.messages import LoRASpec, TrainSpec

CliRun = Callable[..., tuple[int, str]]

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


# --- ranges: every number that could not run is a load error naming the key and the allowed range -------

# (key, a value outside its range, the range the message shows); every constrained field appears.
OUT_OF_RANGE = [
    ("run.rounds", -1, ">= 0"),
    ("data.n_train", 0, ">= 1"),
    ("data.n_eval", 0, ">= 1"),
    ("teacher.max_lora_rank", 0, ">= 1"),
    ("teacher.max_model_len", 0, ">= 1"),
    ("teacher.gpu_memory_utilization", 0, "> 0 and <= 1"),
    ("teacher.gpu_memory_utilization", 1.5, "> 0 and <= 1"),
    ("teacher.sampling.n", 0, ">= 1"),
    ("teacher.sampling.temperature", -1, ">= 0"),
    ("teacher.sampling.top_p", 0, "> 0 and <= 1"),
    ("teacher.sampling.top_p", 2, "> 0 and <= 1"),
    ("teacher.sampling.max_tokens", 0, ">= 1"),
    ("student.eval_times", 0, ">= 1"),
    ("pool.workers", 0, ">= 1"),
    ("pool.job_timeout", -3, "> 0"),
    ("pool.job_timeout", 0, "> 0"),
    ("eval.edits", 0, ">= 1"),
    ("eval.repeats", 0, ">= 1"),
    *[(f"{section}.lora.{key}", value, allowed) for section in ("student", "restem") for key, value, allowed in [
        ("r", 0, ">= 1"),
        ("alpha", 0, "> 0"),
        ("dropout", -0.1, ">= 0 and < 1"),
        ("dropout", 1, ">= 0 and < 1"),
        ("target_modules", [], "non-empty"),
    ]],
    *[(f"{section}.train.{key}", value, allowed) for section in ("student", "restem") for key, value, allowed in [
        ("lr", 0, "> 0"),
        ("lr", -1, "> 0"),
        ("epochs", 0, ">= 1"),
        ("batch_size", 0, ">= 1"),
        ("max_seq_len", 0, ">= 1"),
        ("max_steps", 0, ">= 1"),
        ("warmup_steps", -1, ">= 0"),
    ]],
    ("student.train.max_new_tokens", 0, ">= 1"),
]


def constrained_keys(fields: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys of every field with a range, walking sections and the message dataclasses' schemas."""
    keys = set()
    for name, field in fields.items():
        schema = next((m.schema for m in field.metadata if isinstance(m, CheckedBy)), field.annotation)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            keys |= constrained_keys(schema.model_fields, f"{prefix}{name}.")
        elif allowed_range(field):
            keys.add(f"{prefix}{name}")
    return keys


def test_every_constrained_field_has_an_out_of_range_case() -> None:
    assert constrained_keys(SealConfig.model_fields) == {key for key, _, _ in OUT_OF_RANGE}


@pytest.mark.parametrize(("key", "value", "allowed"), OUT_OF_RANGE, ids=lambda x: str(x))
def test_out_of_range_values_name_the_key_and_the_range(tmp_path: Path, key: str, value: Any, allowed: str) -> None:
    got = f"must be {allowed} (got {json.dumps(value)})"
    with pytest.raises(ConfigError) as by_flag:
        load_config(None, {key: value})
    assert str(by_flag.value) == f"--set {key}: {got}"
    section, _, leaf = key.rpartition(".")
    path = write(tmp_path, f"[{section}]\n{leaf} = {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as in_file:
        load_config(path)
    assert str(in_file.value) == f"{path}: {key}: {got}"


def test_values_on_the_bounds_load() -> None:
    cfg = load_config(None, {
        "run.rounds": 0, "teacher.sampling.temperature": 0, "teacher.sampling.top_p": 1, "student.lora.dropout": 0,
        "student.train.warmup_steps": 0, "restem.train.max_steps": 1, "pool.job_timeout": 0.5,
    })
    assert (cfg.run.rounds, cfg.teacher.sampling.top_p, cfg.restem.train.max_steps) == (0, 1, 1)


def test_message_dataclasses_stay_plain_dataclasses_and_mirror_their_schemas() -> None:
    cfg = load_config(None, {"student.train.lr": 5e-4, "restem.lora.target_modules": ["q_proj"]})
    assert type(cfg.student.train) is TrainSpec and cfg.student.train.lr == 5e-4
    assert type(cfg.student.lora) is LoRASpec and type(cfg.restem.lora) is LoRASpec
    assert cfg.restem.lora.target_modules == ("q_proj",)
    assert SealConfig(student={"train": TrainSpec(epochs=2)}).student.train == TrainSpec(epochs=2)
    train_fields = {f.name for f in dataclasses.fields(TrainSpec)}
    assert set(TrainSpecFields.model_fields) == train_fields
    assert set(MStepTrain.model_fields) == train_fields - {"chat", "max_new_tokens"}
    assert set(LoRAFields.model_fields) == {f.name for f in dataclasses.fields(LoRASpec)}


def test_the_m_step_has_its_own_settings_without_probe_only_keys(tmp_path: Path) -> None:
    for key in ("chat", "max_new_tokens"):
        with pytest.raises(ConfigError, match=f"^--set restem.train.{key}: unknown key 'restem.train.{key}'"):
            load_config(None, {f"restem.train.{key}": 1})
    m_step = SealConfig().restem.train.spec(chat=False)
    assert m_step == TrainSpec(lr=3e-4, epochs=2, batch_size=4, loss_on="completion", chat=False)


def test_a_run_saved_with_the_old_probe_only_m_step_keys_still_loads(tmp_path: Path) -> None:
    saved = config_toml(SealConfig(), {"torch": "2.13.0"}).replace(
        "[restem.train]\n", "[restem.train]\nchat = true\nmax_new_tokens = 64\n"
    )
    assert load_config(write(tmp_path, saved, "config.toml")) == SealConfig()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("[data.options]\nmetric = \"bogus\"\n", "c.toml: data.options: knowledge metric 'bogus' is not one of"),
        ("[data]\ndomain = \"arc\"\n[data.options]\nviews = [\"sideways\"]\n",
         "c.toml: data.options: arc views must be a non-empty subset of"),
        ("[data]\ndomain = \"arc\"\n[data.options]\nmax_steps = 0\n",
         "c.toml: data.options: arc max_steps must be >= 1, got 0"),
    ],
)
def test_domain_options_are_checked_at_load(tmp_path: Path, options: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, options))
    assert str(e.value).startswith(message.replace("c.toml", str(tmp_path / "c.toml")))


def test_summary_lists_what_differs_from_the_defaults_by_section() -> None:
    assert summary(SealConfig()) == "config: the defaults (configs/quickstart.toml)"
    cfg = load_config(None, {"run.rounds": 3, "student.lora.target_modules": ["q_proj"], "pool.workers": 2,
                             "data.options": {"metric": "exact_match"}})
    assert summary(cfg).splitlines() == [
        "config, where it differs from the defaults:",
        "  run: rounds = 3",
        "  data: options.metric = \"exact_match\"",
        "  student: lora.target_modules = [\"q_proj\"]",
        "  pool: workers = 2",
    ]


# --- through the CLI: exit 2, one line, nothing written ----------------------------------------------------


@pytest.fixture
def cli_run(seal_cli: CliRun) -> CliRun:
    def run(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
        config = write(tmp_path, f"[run]\nruns_dir = \"{tmp_path / 'runs'}\"\n{text}")
        return seal_cli("run", config, *args)

    return run


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
        ("", ["--mode", "solo"], "--mode: Input should be 'single-model' or 'teacher-student'"),
        ("[data.options]\nmetrik = \"f1\"\n", [],
         "data.options: unknown option 'metrik' for domain knowledge (did you mean 'metric'?)"),
        ("[data]\ndomain = \"arc\"\n[restem]\nbaseline = \"context\"\n", [],
         'restem.baseline = "context": the arc domain\'s contexts have no training data of their own'),
    ],
)
def test_cli_rejects_bad_input_with_one_line_and_writes_nothing(
    tmp_path: Path, text: str, args: list[str], message: str, cli_run: CliRun
) -> None:
    code, output = cli_run(tmp_path, text, *args)
    assert code == 2
    assert output.startswith("error: ") and message in output, output
    assert len(output.splitlines()) == 1, output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "-1"], "--rounds: must be >= 0 (got -1)"),
        (["--workers", "0"], "--workers: must be >= 1 (got 0)"),
        (["--set", "pool.workers=0"], "--set pool.workers: must be >= 1 (got 0)"),
        (["--set", "run.rounds=2", "--rounds", "-1"], "--rounds: must be >= 0 (got -1)"),  # the flag wins
        (["--set", "student.train.lr=-1"], "--set student.train.lr: must be > 0 (got -1)"),
        (["--set", "data.options={metric = \"bogus\"}"], "--set data.options: knowledge metric 'bogus' is not one"),
    ],
)
def test_cli_names_the_flag_that_set_a_bad_value(tmp_path: Path, args: list[str], message: str) -> None:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--set", f"run.runs_dir=\"{runs}\"", *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message}") and result.output.count("\n") == 1, result.output
    assert not runs.exists()


def test_compare_checks_both_modes_before_running_either(tmp_path: Path) -> None:
    config = write(tmp_path, f"[run]\nruns_dir = \"{tmp_path / 'runs'}\"\n[pool]\nkind = \"inline\"\n")
    result = runner.invoke(app, ["compare", str(config)])
    assert result.exit_code == 2
    assert result.output.startswith("error: seal compare runs both modes: with run.mode = \"teacher-student\"")
    assert "pool.kind: \"inline\" needs run.mode = \"single-model\"" in result.output
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_an_existing_run_directory_without_resume(tmp_path: Path, cli_run: CliRun) -> None:
    existing = tmp_path / "runs" / "quickstart"
    existing.mkdir(parents=True)
    (existing / "journal.jsonl").write_text(json.dumps({"type": "session", "key": "0"}) + "\n")
    code, output = cli_run(tmp_path, "")
    assert code == 2
    assert output == f"error: run directory {existing} exists: pass --resume to continue it, or --name NEW " \
                     "for a new run"
    assert [p.name for p in existing.iterdir()] == ["journal.jsonl"]


def test_cli_resume_refuses_a_different_config(tmp_path: Path, cli_run: CliRun) -> None:
    existing = tmp_path / "runs" / "quickstart"
    existing.mkdir(parents=True)
    before = config_toml(load_config(None, {"run.runs_dir": str(tmp_path / "runs")}))
    (existing / "config.toml").write_text(before)
    code, output = cli_run(tmp_path, "[teacher.sampling]\nn = 5\n", "--resume")
    assert code == 2
    assert "--resume: this config differs from" in output and "teacher.sampling.n" in output
    assert (existing / "config.toml").read_text() == before


def test_the_inner_loop_defaults_are_the_regime_benchmark_s_choice() -> None:
    """benchmarks/inner_regime.py chose these (docs/results.md, "An inner loop that learns"); a change here must come
    with a new measurement, and the quickstart file must say the same."""
    from orchestrator.config import ALL_LINEAR, load_config
    from student.messages import LoRASpec, TrainSpec

    cfg = load_config()
    assert cfg.student.lora == LoRASpec(r=16, alpha=32, dropout=0.0, target_modules=ALL_LINEAR)
    assert cfg.student.train == TrainSpec(lr=3e-3, epochs=3, batch_size=4, loss_on="completion", max_new_tokens=32)
    quickstart = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")
    assert quickstart.student == cfg.student


def test_edits_must_beat_the_passage_alone_by_default_in_knowledge_and_no_adaptation_in_arc() -> None:
    """restem.baseline = "domain": a knowledge run keeps only edits that teach more than their passage
    (orchestrator/selection.py); ARC's tasks have no plan-free training data, so the unadapted student."""
    from orchestrator.domains.arc.domain import ArcDomain
    from orchestrator.domains.knowledge import KnowledgeDomain
    from orchestrator.session import baseline_kind

    cfg = load_config()
    assert cfg.restem.baseline == "domain"
    assert baseline_kind(cfg, KnowledgeDomain()) == "context"
    assert baseline_kind(cfg, ArcDomain()) == "no_adaptation"
    assert baseline_kind(load_config(None, {"restem.baseline": "no_adaptation"}), KnowledgeDomain()) == "no_adaptation"
