"""Test-time training data for one ARC task, built from its demonstrations alone (marc/SEAL recipe).

Leave-n-out turns k demonstrations into sub-tasks: one demonstration becomes the query, the others
(minus n-1 more) the examples. Each sub-task is then augmented by the self-edit's families, plus one
copy with the examples shuffled (and recoloured when any family is on), deduplicated, and capped;
leave-1 sub-tasks come first because they keep the most demonstrations.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

from orchestrator.domains.arc.augment import IDENTITY, GridMap, map_task, permute_demos, random_recolour
from orchestrator.domains.arc.grids import ArcTask, Pair, demos_text, fits, grid_to_text
from student.messages import TrainingExample

INSTRUCTION = (
    "Each example below turns an input grid into an output grid by one hidden rule. A grid is rows of "
    "digits, one digit (0-9, a colour) per cell. Apply the rule to the user's input grid and reply with "
    "its output grid only."
)


def leave_out(task: ArcTask, n: int) -> list[ArcTask]:
    """k demonstrations give k·C(k-1, n-1) sub-tasks of k-n examples each; none if no example would remain."""
    k = len(task.train)
    if k - n < 1:
        return []
    subtasks = []
    for held in range(k):
        rest = [i for i in range(k) if i != held]
        for keep in itertools.combinations(rest, k - n):
            subtasks.append(ArcTask(task.task_id, tuple(task.train[i] for i in keep), (task.train[held],)))
    return subtasks


def ttt_tasks(
    task: ArcTask, maps: Sequence[GridMap], *, leave: Sequence[int] = (1, 2), max_tasks: int, seed: int = 0
) -> list[ArcTask]:
    rng = random.Random(seed)
    chosen: list[ArcTask] = []
    for n in leave:
        level = list(dict.fromkeys(_augmented(leave_out(task, n), maps, rng)))
        rng.shuffle(level)
        chosen += level
    return list(dict.fromkeys(chosen))[:max_tasks]


def _augmented(subtasks: Sequence[ArcTask], maps: Sequence[GridMap], rng: random.Random) -> Iterator[ArcTask]:
    for gmap in (IDENTITY, *maps):
        for sub in subtasks:
            mapped = map_task(sub, gmap)
            if not fits(mapped):
                continue
            yield mapped
            shuffled = permute_demos(mapped, rng.sample(range(len(mapped.train)), len(mapped.train)))
            yield map_task(shuffled, random_recolour(rng)) if maps else shuffled


def render(demos: tuple[Pair, ...], query: Pair) -> tuple[str, str]:
    """(system, user) texts for asking `query.input` after `demos`: the same for training and probing."""
    return f"{INSTRUCTION}\n\n{demos_text(demos)}", grid_to_text(query.input)


def to_example(sub: ArcTask) -> TrainingExample:
    (query,) = sub.test
    system, prompt = render(sub.train, query)
    return TrainingExample(prompt=prompt, completion=grid_to_text(query.output), system=system)
