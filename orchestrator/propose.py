"""`seal propose`: a teacher writes self-edits for passages into a SEAL-format file.

The output is the reference's format (`[{title, context, questions, completions, prompt}]` plus a
`.meta` manifest), so `seal eval-edits` and the reference's own scripts can score it. Passages go to
the teacher in chunks, so the progress bar moves while a server keeps many requests in flight.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.domains.knowledge import KnowledgeDomain, Passage, load_passages
from orchestrator.errors import DataError
from orchestrator.models import has_chat_template, resolve_model
from orchestrator.progress import Phases
from orchestrator.roles import flag_teacher
from teacher.base import Proposal, Sampling, Teacher

CHUNK = 16  # passages per teacher call


@dataclass(frozen=True)
class TeacherSource:
    """Which teacher writes: the server at `url` (its `served_model`), or `model` run by `backend`."""

    model: str
    url: str | None
    api_key: str | None
    served_model: str | None
    backend: str  # vllm (a server of our own) or hf (in-process)


def propose_file(data: Path, out: Path, source: TeacherSource, sampling: Sampling, first: int | None,
                 adapter: Path | None, console: Console) -> int:
    """`sampling.n` self-edits for each of the first `first` passages of `data` (all: None), written to
    `out` with its manifest; returns how many passages."""
    records = load_passages(data)
    if first and first > len(records):
        raise DataError(f"--passages {first}: data file {data} has only {len(records)} passages")
    chosen = records[:first] if first else records
    # A server at --url is asked in chat; a model here as its tokenizer says (a base model continues a document).
    domain = KnowledgeDomain(teacher_chat=source.url is not None or has_chat_template(resolve_model(source.model)))
    with console.status(f"starting the teacher ({source.url or f'{source.backend}: {source.model}'})"):
        teacher = flag_teacher(source.model, source.url, source.api_key, source.served_model, source.backend,
                               out.parent)
    try:
        if adapter:
            teacher.use_adapter(str(adapter))
        with Phases(console).phase("teacher", len(chosen) * sampling.n, "edits") as advance:
            proposals = propose_edits(teacher, domain, chosen, sampling, advance)
    finally:
        teacher.close()
    meta = {"model": source.url or source.model, "adapter": str(adapter) if adapter else None, "dataset_in": str(data),
            "dataset_out": str(out), "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens, "n": sampling.n, "seed": sampling.seed}
    write_seal_file(out, seal_records(domain, chosen, proposals), meta)
    return len(chosen)


def propose_edits(
    teacher: Teacher, domain: KnowledgeDomain, passages: Sequence[Passage], sampling: Sampling,
    advance: Callable[[int], None] = lambda n: None,
) -> list[list[Proposal]]:
    """`sampling.n` self-edits per passage, in passage order; `advance(edits)` after each chunk."""
    proposals: list[list[Proposal]] = []
    for start in range(0, len(passages), CHUNK):
        chunk = passages[start : start + CHUNK]
        proposals += teacher.propose([domain.teacher_prompt(p) for p in chunk], sampling)
        advance(len(chunk) * sampling.n)
    return proposals


def seal_records(
    domain: KnowledgeDomain, passages: Sequence[Passage], proposals: Sequence[Sequence[Proposal]]
) -> list[dict[str, Any]]:
    return [
        {
            "title": p.title,
            "context": p.context,
            "questions": [asdict(qa) for qa in p.questions],
            "completions": [edit.text for edit in edits],
            "prompt": domain.teacher_prompt(p),
        }
        for p, edits in zip(passages, proposals, strict=True)
    ]


def write_seal_file(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write `out` and `out.meta` atomically: a half-written file never replaces a good one. `out`'s folder
    exists (the CLI checks --out before the work)."""
    meta = meta | {"k": len(records), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for path, data in ((out, records), (out.with_name(out.name + ".meta"), meta)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
