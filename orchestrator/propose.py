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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrator.domains.knowledge import KnowledgeDomain, Passage
from teacher.base import Proposal, Sampling, Teacher

CHUNK = 16  # passages per teacher call


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
    """Write `out` and `out.meta` atomically: a half-written file never replaces a good one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = meta | {"k": len(records), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for path, data in ((out, records), (out.with_name(out.name + ".meta"), meta)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
