"""The ARC self-edit: a JSON plan for test-time training, asked for and read back.

The teacher sees three worked examples (a tiny puzzle and a complete plan each), then the task's
demonstrations, and answers with the reference's fields (four augmentation families, loss on all tokens
or on outputs, learning rate, epochs). Reading is forgiving about where the JSON sits (prose, code
fences, text after it) and strict about what it says: a missing or mistyped field is a ParseFailure with
the reason, numbers are clamped into documented ranges, so a plan never turns into the reference's
silent "0 epochs", and no text makes the parser crash.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from orchestrator.domains.arc.grids import ArcTask, Grid, Pair, demos_text
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

TEACHER_SYSTEM = f"""You plan how a small model is fine-tuned on the examples of a grid puzzle before it \
solves the puzzle. A plan is one JSON object with two parts.
"data_generation" switches each family of training variations on (true) or off (false):
- "use_basic_augmentations": rotations, flips and transposition
- "use_size_augmentations": every cell doubled in height, width or both
- "use_chain_augmentations": a rotation, flip or transposition, then doubling
- "use_repeat_augmentations": the grid repeated side by side, stacked, or both
"training" sets how the model learns:
- "strategy": "train_using_all_tokens" (learn the examples and the answers) or "train_using_output_tokens" \
(learn the answers only)
- "learning_rate": a number from {LR_RANGE[0]:g} to {LR_RANGE[1]:g}
- "num_train_epochs": a whole number from {EPOCH_RANGE[0]} to {EPOCH_RANGE[1]}
Reply with the JSON object only."""


@dataclass(frozen=True)
class Plan:
    families: tuple[str, ...]  # FLAGS values switched on, in FLAGS order
    loss_on: LossOn
    lr: float
    epochs: int


def plan_text(plan: Plan) -> str:
    """The plan in the reference's fields, as the teacher is shown it (parse_plan reads it back)."""
    strategy = next(name for name, loss_on in STRATEGIES.items() if loss_on == plan.loss_on)
    return json.dumps({
        "data_generation": {flag: family in plan.families for flag, family in FLAGS.items()},
        "training": {"strategy": strategy, "learning_rate": plan.lr, "num_train_epochs": plan.epochs},
    }, indent=2)


def _tiny(*pairs: tuple[Grid, Grid]) -> ArcTask:
    return ArcTask("shot", tuple(Pair(i, o) for i, o in pairs), ())


# Worked examples shown before the task (few-shot): three tiny puzzles, each with a complete plan. Given only
# the instruction and one inline example, SmolLM2-135M wrote 1 parseable plan in 40 (prose, Python, broken
# JSON); with these, 31 in 40 at temperature 0.8, top-p 0.8 (configs/arc-tiny.toml). They show the format
# (every field, indented JSON, then stop); they are not tuned answers.
SHOTS: tuple[tuple[ArcTask, Plan], ...] = (
    (_tiny((((1, 0), (0, 0)), ((0, 1), (0, 0))), (((0, 0), (2, 0)), ((0, 0), (0, 2)))),
     Plan(("basic",), "completion", 1e-4, 3)),
    (_tiny((((3, 3, 0),), ((3, 3, 0), (3, 3, 0))), (((0, 5, 0),), ((0, 5, 0), (0, 5, 0)))),
     Plan(("size", "repeat"), "all", 5e-4, 2)),
    (_tiny((((4, 0, 0), (0, 0, 0)), ((4, 4, 4), (0, 0, 0))), (((0, 0, 0), (7, 0, 0)), ((0, 0, 0), (7, 7, 7)))),
     Plan(("basic", "chain"), "completion", 1e-3, 1)),
)


def teacher_messages(task: ArcTask) -> list[ChatMessage]:
    """System: what a plan is; user: the worked examples, then the task's demonstrations (never its test
    pairs). Two turns only, so an M-step example reproduces the prompt exactly (edits.teacher_example)."""
    shots = [f"Puzzle {k}:\n{demos_text(t.train)}\nPlan for puzzle {k}:\n{plan_text(p)}" for k, (t, p) in
             enumerate(SHOTS, 1)]
    last = len(SHOTS) + 1
    ask = f"Puzzle {last}:\n{demos_text(task.train)}\n\nWrite the plan for puzzle {last} as JSON."
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": "\n\n".join([*shots, ask])},
    ]


def parse_plan(text: str) -> Plan:
    plan = _find_plan(text)
    data = _section(plan, "data_generation")
    training = _section(plan, "training")
    strategy = _required(training, "training", "strategy")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ParseFailure(f"training.strategy must be one of {sorted(STRATEGIES)}, got {_shown(strategy)}")
    return Plan(
        families=tuple(family for flag, family in FLAGS.items() if _flag(data, flag)),
        loss_on=STRATEGIES[strategy],
        lr=min(max(_learning_rate(training), LR_RANGE[0]), LR_RANGE[1]),
        epochs=min(max(_epochs(training), EPOCH_RANGE[0]), EPOCH_RANGE[1]),
    )


def _find_plan(text: str) -> dict[str, Any]:
    """The first JSON object in `text` with a plan section; JSON errors only matter when none is found.
    Python's decoder also raises plain ValueError (an integer over 4300 digits) and RecursionError (deep
    nesting): those are failures of the text too, never a crash."""
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for start, char in enumerate(text):
        if char != "{":
            continue
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            first_error = first_error or f"{e.msg} at char {e.pos}"
            continue
        except (ValueError, RecursionError) as e:
            first_error = first_error or f"{type(e).__name__} at char {start}: {str(e).split(':')[0]}"
            continue
        if isinstance(obj, dict) and ("data_generation" in obj or "training" in obj):
            return obj
    if first_error is not None:
        raise ParseFailure(f"no valid JSON plan: {first_error}")
    if "{" in text:
        raise ParseFailure("JSON found, but no object with 'data_generation' and 'training'")
    raise ParseFailure("no JSON object in the self-edit")


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a one-line reason: its repr, cut at `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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
        raise ParseFailure(f"data_generation.{key} must be true or false, got {_shown(value)}")
    return value


def _number(training: dict[str, Any], key: str) -> float:
    value = _required(training, "training", key)
    try:
        number = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        )
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        number = None
    if number is None or not math.isfinite(number):
        raise ParseFailure(f"training.{key} must be a number, got {_shown(value)}")
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
