"""ARC grids and tasks as immutable values, checked once at the border and written as compact text.

Grids are tuples of tuples so they hash: dedupe and voting compare them directly. The text form is
one row of digits per line ("012\\n340"): SmolLM2's tokenizer spends one token per cell and one per
row, a third of the reference's Python-list form.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import DataError

Grid = tuple[tuple[int, ...], ...]

MAX_SIDE = 30  # ARC's own limit; augmentations that grow past it are dropped
COLOURS = range(10)


@dataclass(frozen=True)
class Pair:
    input: Grid
    output: Grid


@dataclass(frozen=True)
class ArcTask:
    """One context: demonstrations (`train`) and held-out test pairs whose outputs are the gold."""

    task_id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]


def to_grid(raw: object, where: str) -> Grid:
    """A JSON grid (list of lists of ints) → Grid; errors begin with `where` ("task 6150a2bd test 0")."""
    if not isinstance(raw, list) or not raw or not all(isinstance(row, list) and row for row in raw):
        raise DataError(f"{where}: a grid must be a non-empty list of non-empty rows")
    width = len(raw[0])
    if any(len(row) != width for row in raw):
        raise DataError(f"{where}: ragged grid (rows of lengths {sorted({len(row) for row in raw})})")
    if len(raw) > MAX_SIDE or width > MAX_SIDE:
        raise DataError(f"{where}: grid is {len(raw)}x{width}, over ARC's {MAX_SIDE}x{MAX_SIDE} limit")
    bad = sorted({repr(cell) for row in raw for cell in row if type(cell) is not int or cell not in COLOURS})
    if bad:
        raise DataError(f"{where}: colours must be integers 0-9, found {', '.join(bad)}")
    return tuple(tuple(row) for row in raw)


def grid_to_text(grid: Grid) -> str:
    return "\n".join("".join(map(str, row)) for row in grid)


def text_to_grid(text: str) -> Grid | None:
    """The grid at the start of a model's answer, or None. Text after the grid is ignored (a model may
    ramble on); blanks inside a row are tolerated; an empty or ragged grid is no answer."""
    rows: list[tuple[int, ...]] = []
    for line in text.strip().splitlines():
        cells = line.replace(" ", "").strip()
        if not cells.isdecimal() or not cells.isascii():
            break
        rows.append(tuple(int(c) for c in cells))
    if not rows or any(len(row) != len(rows[0]) for row in rows):
        return None
    return tuple(rows)


def shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


def fits(task: ArcTask) -> bool:
    """Every grid within ARC's size limit (augmentations that scale or tile can break it)."""
    grids = [g for pair in task.train + task.test for g in (pair.input, pair.output)]
    return all(max(shape(g)) <= MAX_SIDE for g in grids)


def demos_text(pairs: tuple[Pair, ...]) -> str:
    return "\n\n".join(
        f"Example {i}\nInput:\n{grid_to_text(p.input)}\nOutput:\n{grid_to_text(p.output)}"
        for i, p in enumerate(pairs, 1)
    )
