"""Invertible grid transformations, applied to whole tasks so that a rule stays a rule.

Each `GridMap` carries its inverse: training data uses only the forward map, evaluation maps the
test input forward and the model's answer back (`inverse(forward(g)) == g` for every grid). The four
families are the ones a self-edit can switch on, after marc/SEAL's augmenters; we leave out its
mirror-concatenations and random translations, which have no exact inverse on every grid.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.domains.arc.grids import ArcTask, Grid, Pair

GridFn = Callable[[Grid], Grid]


@dataclass(frozen=True)
class GridMap:
    name: str
    forward: GridFn
    inverse: GridFn

    def __call__(self, grid: Grid) -> Grid:
        return self.forward(grid)


def _identity(grid: Grid) -> Grid:
    return grid


def _transpose(grid: Grid) -> Grid:
    return tuple(zip(*grid, strict=True))


def _flip_rows(grid: Grid) -> Grid:
    return grid[::-1]


def _flip_cols(grid: Grid) -> Grid:
    return tuple(row[::-1] for row in grid)


def _rot90(grid: Grid) -> Grid:  # clockwise
    return _transpose(_flip_rows(grid))


def _rot180(grid: Grid) -> Grid:
    return _flip_cols(_flip_rows(grid))


def _rot270(grid: Grid) -> Grid:
    return _flip_rows(_transpose(grid))


IDENTITY = GridMap("identity", _identity, _identity)
GEOMETRIC: dict[str, GridMap] = {
    m.name: m
    for m in (
        IDENTITY,
        GridMap("rot90", _rot90, _rot270),
        GridMap("rot180", _rot180, _rot180),
        GridMap("rot270", _rot270, _rot90),
        GridMap("flip_rows", _flip_rows, _flip_rows),
        GridMap("flip_cols", _flip_cols, _flip_cols),
        GridMap("transpose", _transpose, _transpose),
    )
}


def scale(rows: int, cols: int) -> GridMap:
    """Every cell becomes a rows×cols block; the inverse samples one cell per block."""

    def forward(grid: Grid) -> Grid:
        return tuple(tuple(c for c in row for _ in range(cols)) for row in grid for _ in range(rows))

    def inverse(grid: Grid) -> Grid:
        return tuple(row[::cols] for row in grid[::rows])

    return GridMap(f"scale{rows}x{cols}", forward, inverse)


def tile(rows: int, cols: int) -> GridMap:
    """The grid repeated rows×cols times; the inverse keeps the top-left copy."""

    def forward(grid: Grid) -> Grid:
        return tuple(row * cols for row in grid) * rows

    def inverse(grid: Grid) -> Grid:
        height, width = len(grid) // rows, len(grid[0]) // cols
        return tuple(row[:width] for row in grid[:height])

    return GridMap(f"tile{rows}x{cols}", forward, inverse)


def recolour(perm: Sequence[int]) -> GridMap:
    """Colour c becomes perm[c]."""
    if sorted(perm) != list(range(10)):
        raise ValueError(f"a colour permutation must order 0-9 exactly once, got {list(perm)}")
    back = [0] * 10
    for c, p in enumerate(perm):
        back[p] = c

    def forward(grid: Grid) -> Grid:
        return tuple(tuple(perm[c] for c in row) for row in grid)

    def inverse(grid: Grid) -> Grid:
        return tuple(tuple(back[c] for c in row) for row in grid)

    return GridMap("colours" + "".join(map(str, perm)), forward, inverse)


def random_recolour(rng: random.Random) -> GridMap:
    """A random permutation of colours 1-9; black (0) is the background in most tasks and stays."""
    rest = list(range(1, 10))
    rng.shuffle(rest)
    return recolour([0, *rest])


def chain(first: GridMap, second: GridMap) -> GridMap:
    return GridMap(
        f"{first.name}+{second.name}",
        lambda grid: second.forward(first.forward(grid)),
        lambda grid: first.inverse(second.inverse(grid)),
    )


def map_task(task: ArcTask, gmap: GridMap) -> ArcTask:
    """The same map on every input and output keeps the task's rule consistent across its pairs."""

    def pairs(ps: tuple[Pair, ...]) -> tuple[Pair, ...]:
        return tuple(Pair(gmap(p.input), gmap(p.output)) for p in ps)

    return ArcTask(task.task_id, pairs(task.train), pairs(task.test))


def permute_demos(task: ArcTask, order: Sequence[int]) -> ArcTask:
    if sorted(order) != list(range(len(task.train))):
        raise ValueError(f"demo order {list(order)} is not a permutation of {len(task.train)} demos")
    return ArcTask(task.task_id, tuple(task.train[i] for i in order), task.test)


def invert_order(order: Sequence[int]) -> tuple[int, ...]:
    back = [0] * len(order)
    for position, i in enumerate(order):
        back[i] = position
    return tuple(back)


_BASIC = tuple(GEOMETRIC[n] for n in ("rot90", "rot180", "rot270", "flip_rows", "flip_cols", "transpose"))
FAMILIES: dict[str, tuple[GridMap, ...]] = {
    "basic": _BASIC,
    "size": (scale(2, 2), scale(2, 1), scale(1, 2)),
    "chain": tuple(chain(m, scale(2, 2)) for m in _BASIC),
    "repeat": (tile(1, 2), tile(2, 1), tile(2, 2)),
}
