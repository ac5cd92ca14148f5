"""Messages between the orchestrator and student processes (docs/architecture.md §2).

Plain frozen dataclasses: picklable for multiprocessing and Ray, JSON-serialisable for the journal
(`to_dict` / `from_dict`). Tuples, not lists, so a message cannot change after it is sent.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

LossOn = Literal["all", "completion"]
# How a job's probes are answered: greedy generation graded against the gold answer, the teacher-forced
# log-likelihood of the gold answer (one forward pass per batch, no generation), or both.
ProbeScoring = Literal["generate", "likelihood", "both"]


@dataclass(frozen=True)
class TrainingExample:
    """One training sequence. With `chat`, `prompt` is the user turn and `completion` the assistant turn
    (after an optional `system` turn); without, the text is `prompt + completion` followed by EOS (and
    preceded by BOS where the tokenizer adds one)."""

    prompt: str
    completion: str
    system: str | None = None


@dataclass(frozen=True)
class Probe:
    """One question of τ, asked of the student by greedy generation and/or scored by the likelihood of
    `gold` after `prompt`."""

    probe_id: str
    prompt: str
    gold: str
    system: str | None = None


@dataclass(frozen=True)
class LoRASpec:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0 or not self.target_modules:
            raise ValueError(
                f"invalid LoRA spec {self}: need r >= 1, alpha > 0, 0 <= dropout < 1 and target modules"
            )


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings of one LoRA SFT run."""

    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 4
    loss_on: LossOn = "all"
    # Render examples and probes with the tokenizer's chat template, or as plain text (a base model); None:
    # the tokenizer decides (a chat template means chat), as the orchestrator does for the domain's text.
    chat: bool | None = None
    max_seq_len: int = 2048
    max_steps: int | None = None  # cap on optimiser steps (ARC's budget); None = no cap
    warmup_steps: int = 0
    max_new_tokens: int = 64  # for probes
    # Reproduce the reference's pad-to-max_seq_len with loss on every token, pads included.
    reference_compat: bool = False
    # Pack a batch's sequences into as few rows as hold its longest one (student.sft.pack); off: pad each.
    packing: bool = True


@dataclass(frozen=True)
class StudentJob:
    """Apply one self-edit: fresh LoRA (seeded) → SFT on `examples` → answer `probes`.
    No examples means no training: the report is the baseline of `base_adapter`'s model."""

    job_id: str
    seed: int
    examples: tuple[TrainingExample, ...]
    probes: tuple[Probe, ...]
    lora: LoRASpec = field(default_factory=LoRASpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    base_adapter: str | None = None  # single-model mode: the teacher adapter merged into the base
    scoring: ProbeScoring = "both"


@dataclass(frozen=True)
class ProbeResult:
    probe_id: str
    answer: str  # "" when the job's scoring is "likelihood"
    # exact_match, f1, contains, equal (generated answers); gold_logprob (the mean log-probability per
    # token of the gold answer, teacher-forced: ≤ 0, higher is better)
    scores: dict[str, float]


@dataclass(frozen=True)
class StudentReport:
    job_id: str
    ok: bool
    results: tuple[ProbeResult, ...] = ()
    epoch_losses: tuple[float, ...] = ()
    tokens_trained: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    attempt: int = 1
    error: str | None = None
    worker: str = ""

    def mean(self, metric: str) -> float:
        return sum(r.scores[metric] for r in self.results) / len(self.results) if self.results else 0.0


@dataclass(frozen=True)
class TrainJob:
    """The teacher's M-step: LoRA SFT on (prompt → completion) pairs, loss on the completion only,
    saved as a PEFT adapter folder that vLLM can hot-load."""

    job_id: str
    seed: int
    examples: tuple[TrainingExample, ...]
    output_dir: str
    lora: LoRASpec = field(default_factory=lambda: LoRASpec(r=64, alpha=128))
    train: TrainSpec = field(default_factory=lambda: TrainSpec(lr=3e-4, epochs=2, loss_on="completion"))
    init_adapter: str | None = None  # restem_init = "previous": continue from this adapter


@dataclass(frozen=True)
class TrainReport:
    job_id: str
    ok: bool
    adapter_dir: str = ""
    epoch_losses: tuple[float, ...] = ()
    tokens_trained: int = 0
    train_seconds: float = 0.0
    attempt: int = 1
    error: str | None = None
    worker: str = ""


Job = StudentJob | TrainJob
Report = StudentReport | TrainReport

T = TypeVar("T")


def to_dict(message: Any) -> dict[str, Any]:
    return dataclasses.asdict(message)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a message from `to_dict` output (JSON turns tuples into lists; this turns them back)."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _convert(arg, value)
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(_convert(item, v) for v in value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    return value
