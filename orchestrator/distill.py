"""`seal distill`: a trained teacher writes self-edits for a corpus, and a student is fine-tuned on all
of them into one saved adapter (docs/architecture.md §3) — the knowledge of the corpus, in the teacher's words,
moved into a (often smaller) model.

The teacher is the run's last trained adapter; each context gets one edit, seeded per context; edits
the domain cannot use are skipped and counted. Everything goes to `<run>/distill/<name>/`: the edits
(`edits.jsonl`) and the student's adapter (`adapter/`). A name is never reused; a distillation that
fails leaves no folder behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.config import load_config
from orchestrator.domains import load_contexts
from orchestrator.domains.base import Domain
from orchestrator.edits import one_edit_each, parse
from orchestrator.journal import CONFIG, JOURNAL, RunDirError, read_journal, trained_adapter
from orchestrator.models import resolve_model
from orchestrator.roles import build_pool, build_teacher, teacher_api_key
from orchestrator.seeds import derive_seed
from orchestrator.session import RunError, check_inputs, check_lora_targets, run_domain
from student.messages import TrainJob, TrainReport


@dataclass(frozen=True)
class Distilled:
    contexts: int
    usable: int
    examples: int
    report: TrainReport


def distill(
    run_dir: Path, student: str, name: str, data: str | None, limit: int | None, console: Console
) -> Distilled:
    cfg = load_config(run_dir / CONFIG)
    inputs = check_inputs(cfg)
    student_model = resolve_model(student)
    check_lora_targets("student.lora.target_modules", cfg.student.lora, student_model)  # it trains with that LoRA
    domain = run_domain(cfg, student_model, inputs.teacher_model)  # written for this student, not the run's
    adapter = last_adapter(run_dir)
    corpus = list(load_contexts(cfg.data.domain, data, "train") if data else inputs.train)[:limit]
    out = run_dir / "distill" / name
    if out.exists():
        raise RunDirError(f"{out} exists: pass --name NEW for another distillation")
    with _new_folder(out):
        teacher = build_teacher(cfg, inputs.teacher_model, out, teacher_api_key(cfg))
        try:
            teacher.use_adapter(adapter)
            with console.status(f"the trained teacher writes self-edits for {len(corpus)} contexts"):
                sampling = cfg.teacher.sampling
                edits = one_edit_each(teacher, domain, corpus, sampling, cfg.run.seed, "distill")
        finally:
            teacher.close()
        _save_edits(out / "edits.jsonl", domain, corpus, edits)
        parsed = [parse(domain, c, text, cfg.student.train) for c, text in zip(corpus, edits, strict=True)]
        usable = [p for p in parsed if not isinstance(p, str)]
        if not usable:
            raise RunDirError(f"no usable self-edit among {len(corpus)} contexts: nothing to distill")
        examples = tuple(example for p in usable for example in p.examples)
        job = TrainJob(
            job_id=f"distill/{name}", seed=derive_seed(cfg.run.seed, "distill", name), examples=examples,
            output_dir=str(out / "adapter"), lora=cfg.student.lora, train=usable[0].train,
        )
        pool = build_pool(cfg, student_model, workers=1)
        try:
            with console.status(f"training {student} on {len(examples)} examples"):
                (report,) = pool.run([job])
        finally:
            pool.close()
        if not report.ok:
            raise RunError(f"training {student} failed: {report.error}")
    return Distilled(len(corpus), len(usable), len(examples), report)


@contextmanager
def _new_folder(path: Path) -> Iterator[None]:
    """Create `path` for the block; a block that fails removes it (and a parent left empty), so that the
    same command can run again."""
    path.mkdir(parents=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        with suppress(OSError):
            path.parent.rmdir()  # only if empty
        raise


def last_adapter(run_dir: Path) -> str:
    adapter = trained_adapter(read_journal(run_dir / JOURNAL), run_dir=run_dir)
    if adapter is None:
        raise RunDirError(f"{run_dir} has no trained teacher adapter yet: let `seal run` finish a round")
    if not Path(adapter.path).is_dir():
        raise RunDirError(f"{run_dir}: the teacher adapter of round {adapter.round}, {adapter.path}, is missing; "
                          "was the run's adapters/ folder removed?")
    return adapter.path


def _save_edits(path: Path, domain: Domain[Any], corpus: list[Any], edits: list[str]) -> None:
    with path.open("w") as f:
        for context, text in zip(corpus, edits, strict=True):
            record = {"context_id": domain.context_id(context), "text": text}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
