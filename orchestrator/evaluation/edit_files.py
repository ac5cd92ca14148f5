"""`seal eval-edits`: apply self-edits already written (SEAL-format files, e.g. the paper's published edits)
to a student and build the paper's table with paired intervals, with any inner-loop setting.

Rows: no adaptation, passage only, and passage + edits for each file given (one row per file, its edits
parsed in the file's format). Every file must hold the same passages in the same order, so that every
row is measured on the same passages with the same LoRA seed and rows can be compared pairwise.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.config import SealConfig
from orchestrator.domains import make_domain
from orchestrator.domains.knowledge import EDIT_FORMATS, EditFormat, KnowledgeDomain, Passage, load_passages
from orchestrator.errors import DataError
from orchestrator.evaluation import tables
from orchestrator.models import resolve_model
from orchestrator.roles import build_pool
from orchestrator.session import check_lora_targets, student_chat
from student.messages import LoRASpec, StudentReport, TrainSpec, to_dict


@dataclass(frozen=True)
class EditFile:
    path: Path
    edit_format: EditFormat

    @property
    def row_name(self) -> str:
        return f"passage + {self.path.stem}"


def edit_format_of(path: Path, given: str) -> EditFormat:
    """The format given, or "auto": read from the file name as the paper's files are named
    (`…_prompt-self-qa.json`, `…-rewrite.json`, `…-long.json`; anything else is implications)."""
    if given != "auto":
        if given not in EDIT_FORMATS:
            raise DataError(f"--format '{given}' is not one of: auto, {', '.join(EDIT_FORMATS)}")
        return given  # type: ignore[return-value]
    name = path.stem
    if "self-qa" in name:
        return "self-qa"
    if "rewrite" in name:
        return "rewrite"
    return "implications-long" if name.endswith("-long") else "implications"


def choose(n: int, first: int, sample: int | None, seed: int) -> list[int]:
    """Passage indices: the first `first`, or a seeded random `sample` (sorted, so tables read in file order)."""
    if sample is not None:
        if sample > n:
            raise DataError(f"--sample {sample}: the data has only {n} passages")
        return sorted(random.Random(seed).sample(range(n), sample))
    if first > n:
        raise DataError(f"--passages {first}: the data has only {n} passages")
    return list(range(first))


def read_edit_files(files: Sequence[EditFile]) -> list[list[Passage]]:
    """Each file's passages; all must be the same passages in the same order."""
    loaded = [load_passages(f.path) for f in files]
    for f, passages in zip(files[1:], loaded[1:], strict=True):
        same = len(passages) == len(loaded[0]) and all(
            (a.title, a.context) == (b.title, b.context) for a, b in zip(passages, loaded[0], strict=True)
        )
        if not same:
            raise DataError(
                f"data file {f.path} does not hold the same passages, in the same order, as {files[0].path}"
            )
    return loaded


def table_rows(files: Sequence[EditFile], loaded: Sequence[Sequence[Passage]], chosen: Sequence[int],
               edit_index: int) -> tuple[tables.Row, ...]:
    rows = [tables.Row("no adaptation", "none"), tables.Row("passage only", "passage")]
    for f, passages in zip(files, loaded, strict=True):
        picked = [passages[i] for i in chosen]
        rows.append(tables.Row(f.row_name, "edits", tables.edits_at(picked, edit_index, f"data file {f.path}"),
                                 f.edit_format))
    return tuple(rows)


@dataclass(frozen=True)
class EditTable:
    cells: list[tables.Cell]
    reports: dict[str, StudentReport]
    summaries: list[tables.RowSummary]
    gains: list[tables.RowSummary]  # every row minus no adaptation, and every edits row minus passage only


def measure(pool: Any, domain: KnowledgeDomain, passages: Sequence[Passage], rows: Sequence[tables.Row],
            lora: LoRASpec, train: TrainSpec, seed: int, console: Console) -> EditTable:
    """Run every cell's job on `pool` and grade them: the table, and paired gains."""
    cells = tables.plan(domain, passages, rows, seed=seed, lora=lora, train=train)
    jobs = tables.jobs(cells)
    reports = tables.collect(pool.run(jobs), len(jobs), console)
    summaries = tables.summarise(cells, reports, seed=seed)
    gains = tables.paper_gains(cells, reports, seed=seed)
    return EditTable(cells, reports, summaries, gains)


def render(table: EditTable, title: str) -> list[Table]:
    return [tables.render(table.summaries, title),
            tables.render(table.gains, "paired: each row minus another on the same passages")]


def results(table: EditTable, **settings: Any) -> dict[str, Any]:
    """The JSON `--out` writes: settings, rows, paired gains, every cell with its answers."""
    data = tables.results(table.cells, table.reports, table.summaries, **settings)
    data["paired"] = [dataclasses.asdict(g) for g in table.gains]
    return data


def evaluate_files(
    cfg: SealConfig, paths: Sequence[Path], edit_format: str, model: str, first: int, sample: int | None, seed: int,
    edit_index: int, console: Console,
) -> tuple[EditTable, dict[str, Any]]:
    """The table for these edit files on `model` (a name, folder or Hub id) with the config's inner loop and
    pool, and the settings that produced it (for `--out`)."""
    files = [EditFile(path, edit_format_of(path, edit_format)) for path in paths]
    loaded = read_edit_files(files)
    chosen = choose(len(loaded[0]), first, sample, seed)
    rows = table_rows(files, loaded, chosen, edit_index)
    student_model = resolve_model(model)
    check_lora_targets("student.lora.target_modules", cfg.student.lora, student_model)
    domain = make_domain("knowledge", cfg.data.options, chat=student_chat(cfg.student.train, student_model))
    with console.status(f"starting the {cfg.pool.kind} pool ({model})"):
        pool = build_pool(cfg, student_model)
    try:
        table = measure(pool, domain, [loaded[0][i] for i in chosen], rows, cfg.student.lora, cfg.student.train,
                        seed, console)
    finally:
        pool.close()
    used = {"data": [str(f.path) for f in files], "formats": [f.edit_format for f in files], "passages": chosen,
            "model": model, "edit_index": edit_index, "seed": seed, "lora": to_dict(cfg.student.lora),
            "train": to_dict(cfg.student.train), "tau_metric": domain.metric}
    return table, used
