"""The ARC self-edit: a JSON plan for test-time training, asked for and read back.

The teacher sees the demonstrations and answers with the reference's fields (four augmentation
families, loss on all tokens or on outputs, learning rate, epochs). Reading is forgiving about where
the JSON sits (prose, code fences) and strict about what it says: a missing or mistyped field is a
ParseFailure with the reason, and numbers are clamped into documented ranges, so a plan never turns
into the reference's silent "0 epochs".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from orchestrator.domains.arc.grids import ArcTask, demos_text
from orchestrator.domains.base import ParseFailure
from student.messages import LossOn
from teacher.base import ChatMessage

FLAGS = {
    "use_basic_augmentations": "basic",
    "use_size_augmentations": "size",
    "use_chain_augmentations": "chain",
    "use_repeat_augmentations": "repeat",
}
STRATEGIES: dict[str, LossOn] = {"train_using_all_tokens": "all", "train_using_output_tokens": "completion"}
LR_RANGE = (1e-6, 1e-2)
EPOCH_RANGE = (1, 10)

TEACHER_SYSTEM = "You set up how a small model studies a puzzle before it solves it. You answer in JSON only."
PLAN_REQUEST = f"""The examples above show a grid puzzle. A model will be fine-tuned on variations of these \
examples before it solves a new input. Choose how:

1. data_generation: true or false for each family of variations
   - use_basic_augmentations: rotations, flips and transposition
   - use_size_augmentations: every cell doubled in height, width or both
   - use_chain_augmentations: a rotation, flip or transposition followed by doubling
   - use_repeat_augmentations: the grid repeated side by side, stacked, or both
2. training:
   - strategy: "train_using_all_tokens" (learn the examples and the answers) or \
"train_using_output_tokens" (learn the answers only)
   - learning_rate: a number from {LR_RANGE[0]:g} to {LR_RANGE[1]:g}
   - num_train_epochs: an integer from {EPOCH_RANGE[0]} to {EPOCH_RANGE[1]}

Answer with one JSON object and nothing else, for example:
{{"data_generation": {{"use_basic_augmentations": true, "use_size_augmentations": false, \
"use_chain_augmentations": false, "use_repeat_augmentations": false}}, "training": {{"strategy": \
"train_using_output_tokens", "learning_rate": 0.0001, "num_train_epochs": 2}}}}"""


@dataclass(frozen=True)
class Plan:
    families: tuple[str, ...]  # FLAGS values switched on, in FLAGS order
    loss_on: LossOn
    lr: float
    epochs: int


def teacher_messages(task: ArcTask) -> list[ChatMessage]:
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": f"{demos_text(task.train)}\n\n{PLAN_REQUEST}"},
    ]


def parse_plan(text: str) -> Plan:
    plan = _find_plan(text)
    data = _section(plan, "data_generation")
    training = _section(plan, "training")
    strategy = _required(training, "training", "strategy")
    if strategy not in STRATEGIES:
        raise ParseFailure(f"training.strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
    return Plan(
        families=tuple(family for flag, family in FLAGS.items() if _flag(data, flag)),
        loss_on=STRATEGIES[strategy],
        lr=min(max(_learning_rate(training), LR_RANGE[0]), LR_RANGE[1]),
        epochs=min(max(_epochs(training), EPOCH_RANGE[0]), EPOCH_RANGE[1]),
    )


def _find_plan(text: str) -> dict[str, Any]:
    """The first JSON object in `text` with a plan section; JSON errors only matter when none is found."""
    decoder = json.JSONDecoder()
    first_error: json.JSONDecodeError | None = None
    for start, char in enumerate(text):
        if char != "{":
            continue
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            first_error = first_error or e
            continue
        if isinstance(obj, dict) and ("data_generation" in obj or "training" in obj):
            return obj
    if first_error is not None:
        raise ParseFailure(f"no valid JSON plan: {first_error.msg} at char {first_error.pos}")
    if "{" in text:
        raise ParseFailure("JSON found, but no object with 'data_generation' and 'training'")
    raise ParseFailure("no JSON object in the self-edit")


def _required(obj: dict[str, Any], where: str, key: str) -> Any:
    if key not in obj:
        raise ParseFailure(f"missing {where}.{key}")
    return obj[key]


def _section(plan: dict[str, Any], key: str) -> dict[str, Any]:
    if key not in plan:
        raise ParseFailure(f"missing '{key}' object")
    if not isinstance(plan[key], dict):
        raise ParseFailure(f"'{key}' must be an object, got {type(plan[key]).__name__}")
    return plan[key]


def _flag(data: dict[str, Any], key: str) -> bool:
    value = _required(data, "data_generation", key)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ParseFailure(f"data_generation.{key} must be true or false, got {value!r}")
    return value


def _number(training: dict[str, Any], key: str) -> float:
    value = _required(training, "training", key)
    try:
        number = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        )
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise ParseFailure(f"training.{key} must be a number, got {value!r}")
    return number


def _learning_rate(training: dict[str, Any]) -> float:
    lr = _number(training, "learning_rate")
    if lr <= 0:
        raise ParseFailure(f"training.learning_rate must be positive, got {lr:g}")
    return lr


def _epochs(training: dict[str, Any]) -> int:
    epochs = _number(training, "num_train_epochs")
    if not epochs.is_integer():
        raise ParseFailure(f"training.num_train_epochs must be an integer, got {epochs:g}")
    return int(epochs)
