"""Everything one run needs, built from a config in an order that writes nothing until the inputs check out.

`check_inputs` builds the domain, loads and splits the contexts, resolves the models and places the roles
on the GPUs: any mistake there is a one-line `ConfigError` (or the domain's `DataError`, or a `ModelError`)
and the run directory is not touched. Only then does `open_session` create or resume the run directory,
start the teacher and the student pool where the placement says (orchestrator/roles.py). The session is
what loop.py passes around: what stays fixed for the whole run. It holds no algorithm and nothing that
changes between rounds: the teacher's adapter is a value the loop passes from step to step, and the
E-step gets its inputs whole (`edit_work`), not the session.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.config import ConfigError, SealConfig, config_toml, diff, load_config, package_versions
from orchestrator.domains import DomainOptionError, load_contexts, make_domain
from orchestrator.domains.base import Domain
from orchestrator.edits import EditWork
from orchestrator.errors import DataError
from orchestrator.errors import RunError as RunError  # defined beside the others; imported from here as before
from orchestrator.journal import CONFIG, JOURNAL, Journal, RunDirError, TeacherAdapter, create_run_dir
from orchestrator.metrics import MetricsSink, make_tracker
from orchestrator.model_shape import attention_heads
from orchestrator.models import has_chat_template, resolve_model, weight_modules
from orchestrator.placement import Placement
from orchestrator.progress import Phases
from orchestrator.roles import build_pool, build_roles, place_roles, teacher_api_key
from orchestrator.seeds import round_slice, shuffled
from orchestrator.selection import Rule
from student.messages import LoRASpec, TrainSpec
from student.pool import Pool
from teacher.base import Teacher

# Keys a resumed run may change: how long it runs, where its jobs run and where it lives (a run moved or
# renamed: its journal's paths are relative to it), not what it computes.
RESUMABLE = ("run.rounds", "run.name", "run.runs_dir", "pool.", "metrics.", "teacher.url", "teacher.api_key_env")


@dataclass(frozen=True)
class Inputs:
    domain: Domain[Any]
    train: list[Any]  # the training pool, held-out contexts removed
    eval: list[Any]  # the held-out contexts, n_eval of them
    teacher_model: str  # resolved path or Hub id
    student_model: str
    placement: Placement  # which process runs on which GPUs


@dataclass
class Session:
    cfg: SealConfig
    inputs: Inputs
    run_dir: Path
    journal: Journal
    teacher: Teacher
    pool: Pool
    phases: Phases
    metrics: MetricsSink
    console: Console
    _trainer: Pool | None = field(default=None, repr=False)

    @property
    def domain(self) -> Domain[Any]:
        return self.inputs.domain

    @property
    def seed(self) -> int:
        return self.cfg.run.seed

    @property
    def selection(self) -> Rule:
        return selection_rule(self.cfg, self.domain)

    def train_contexts(self, round_: int) -> list[Any]:
        """Round k's N contexts; consecutive rounds get disjoint ones while the data lasts."""
        return round_slice(self.inputs.train, self.cfg.data.n_train, round_)

    def edit_work(self, adapter: TeacherAdapter | None) -> EditWork:
        """What the E-step and held-out τ need while the teacher generates with `adapter`: single-model
        students adapt that teacher, teacher-student ones the fixed student."""
        c = self.cfg
        return EditWork(
            domain=self.domain, teacher=self.teacher, pool=self.pool, journal=self.journal, phases=self.phases,
            seed=c.run.seed, sampling=c.teacher.sampling, lora=c.student.lora, train=c.student.train,
            student_base=adapter if c.run.mode == "single-model" else None, stream=self.inputs.placement.stream,
            against_alone=baseline_kind(c, self.domain) == "context", stop_when_failed=c.pool.stop_when_failed,
        )

    def trainer(self) -> Pool:
        """The pool that runs the teacher's M-step: the student pool when it holds the teacher's weights,
        else a one-worker pool of the teacher model (teacher-student mode with two models)."""
        if self.inputs.student_model == self.inputs.teacher_model:
            return self.pool
        if self._trainer is None:
            self._trainer = build_pool(self.cfg, self.inputs.teacher_model, workers=1, placement=self.inputs.placement)
        return self._trainer

    def close(self) -> None:
        for closeable in (self._trainer, self.pool, self.teacher, self.metrics, self.journal):
            if closeable is not None:
                closeable.close()


# ---------------------------------------------------------------------------------------------------------


def selection_rule(cfg: SealConfig, domain: Domain[Any]) -> Rule:
    """restem.selection, with "domain" resolved to the domain's own rule."""
    rule = cfg.restem.selection
    return getattr(domain, "default_selection", "best_of_m") if rule == "domain" else rule


def baseline_kind(cfg: SealConfig, domain: Domain[Any]) -> str:
    """restem.baseline, with "domain" resolved to the domain's own bar."""
    kind = cfg.restem.baseline
    return getattr(domain, "default_baseline", "no_adaptation") if kind == "domain" else kind


def check_inputs(cfg: SealConfig) -> Inputs:
    data = cfg.data
    teacher_model, student_model = resolve_model(cfg.teacher.model), resolve_model(cfg.student_model)
    check_lora_targets("student.lora.target_modules", cfg.student.lora, student_model)
    check_lora_targets("restem.lora.target_modules", cfg.restem.lora, teacher_model)  # the M-step trains the teacher
    domain = run_domain(cfg, student_model, teacher_model)
    if cfg.restem.baseline == "context" and getattr(domain, "default_baseline", None) != "context":
        raise ConfigError(f'restem.baseline = "context": the {domain.name} domain\'s contexts have no training '
                          'data of their own; use "no_adaptation" or "domain"')
    held_out = _contexts(cfg, "eval", data.eval_path)
    if data.n_eval > len(held_out):
        raise ConfigError(f"data.n_eval = {data.n_eval} but the held-out data has {len(held_out)} contexts")
    held_out = shuffled(held_out, cfg.run.seed, "eval contexts")[: data.n_eval]
    eval_ids = {domain.context_id(c) for c in held_out}
    train = [c for c in _contexts(cfg, "train", data.train_path) if domain.context_id(c) not in eval_ids]
    if data.n_train > len(train):
        raise ConfigError(
            f"data.n_train = {data.n_train} but the training data has {len(train)} contexts "
            f"(after removing the {len(eval_ids)} held-out ones)"
        )
    return Inputs(
        domain=domain, train=shuffled(train, cfg.run.seed, "train contexts"), eval=held_out,
        teacher_model=teacher_model, student_model=student_model,
        placement=place_roles(cfg, attention_heads(teacher_model)),
    )


def check_lora_targets(field: str, lora: LoRASpec, model: str) -> None:
    """Each target module names a weight matrix of the model (a module name or its dotted end, as peft matches
    them), read from the folder's safetensors headers. Else every student job would fail inside peft, long
    after the run started (issue #34); and a name that matches nothing beside one that does, peft leaves out
    without a word."""
    modules = weight_modules(model)
    if modules is None:  # *.bin weights: the jobs' failures say it (pool.stop_when_failed)
        return

    def matrices(target: str) -> list[int]:
        return [dims for name, dims in modules.items() if name == target or name.endswith(f".{target}")]

    missing = [target for target in lora.target_modules if max(matrices(target), default=0) < 2]
    if missing:
        names = dict.fromkeys(name.rpartition(".")[2] for name, dims in modules.items() if dims == 2)
        raise ConfigError(f"{field}: {model} has no weight matrix named {', '.join(map(repr, missing))}; "
                          f"its matrices: {', '.join(names)}")


def run_domain(cfg: SealConfig, student_model: str, teacher_model: str | None = None) -> Domain[Any]:
    """The config's domain, writing for these models (resolved folders): the student reads chat turns as
    student.train.chat says, or else as its tokenizer decides (student/sft.py prompt_ids), read here from the
    model folder; the teacher (none: no teacher prompts are written) is asked in chat if its tokenizer has
    a chat template."""
    rendering = {"chat": student_chat(cfg.student.train, student_model)}
    if teacher_model is not None:
        rendering["teacher_chat"] = has_chat_template(teacher_model)
    try:
        return make_domain(cfg.data.domain, cfg.data.options, **rendering)
    except DomainOptionError as e:
        raise ConfigError(f"data.options: {e}") from None


def student_chat(train: TrainSpec, student_model: str) -> bool:
    """Whether students of this model read chat turns: student.train.chat, or else what their tokenizer
    decides (student/sft.py prompt_ids), read here from the model folder so that the domain writes for it."""
    return train.chat if train.chat is not None else has_chat_template(student_model)


def _contexts(cfg: SealConfig, split: str, source: str | None) -> Sequence[Any]:
    try:
        return load_contexts(cfg.data.domain, source, split)  # type: ignore[arg-type]
    except DataError as e:
        raise ConfigError(f"data.{split}_path: {e}") from None


def prepare_run_dir(cfg: SealConfig, resume: bool) -> Path:
    """Create the run directory, or check that the one being resumed ran this config."""
    run_dir = cfg.run_dir
    if not (resume and run_dir.exists()):
        return create_run_dir(run_dir, config_toml(cfg, package_versions()))
    if not (run_dir / CONFIG).exists():
        raise RunDirError(f"{run_dir} has no {CONFIG}: it is not a seal run directory; use a new --name")
    changed = diff(load_config(run_dir / CONFIG), cfg)
    fixed = [k for k in changed if not k.startswith(RESUMABLE)]
    if fixed:
        raise RunDirError(
            f"--resume: this config differs from {run_dir / CONFIG} in {', '.join(fixed)}; "
            "resume with the same settings, or start a new run with --name NEW"
        )
    if changed:  # more rounds, another pool: record what the run goes on with
        (run_dir / CONFIG).write_text(config_toml(cfg, package_versions()))
    return run_dir


def open_session(cfg: SealConfig, resume: bool, console: Console) -> Session:
    inputs = check_inputs(cfg)
    api_key = teacher_api_key(cfg)
    new = not cfg.run_dir.exists()
    run_dir = prepare_run_dir(cfg, resume)
    journal = Journal(run_dir / JOURNAL)
    try:
        journal.append("session", str(sum(1 for _ in journal.of_type("session"))), argv=sys.argv, pid=os.getpid())
        metrics = MetricsSink(run_dir, make_tracker(cfg, run_dir, lambda m: console.print(f"warning: {m}")))
        teacher, pool = build_roles(cfg, inputs, run_dir, api_key, console)
    except BaseException:
        journal.close()
        if new:  # nothing was computed: leave no half-made run that the same command would then refuse
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return Session(cfg, inputs, run_dir, journal, teacher, pool, Phases(console), metrics, console)
