"""`compare.fork_shared_prefix`: a teacher–student run forked from the single-model run's shared work."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from orchestrator import loop
from orchestrator.compare import fork_shared_prefix, mode_config
from orchestrator.config import with_overrides
from orchestrator.journal import JOURNAL, read_journal

from .conftest import TinyConfig


def test_a_forked_teacher_student_run_equals_one_run_from_scratch(tiny_config: TinyConfig, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "cmp", **{"run.rounds": 2})
    single, forked = mode_config(cfg, "single-model"), mode_config(cfg, "teacher-student")
    scratch = with_overrides(forked, {"run.name": "scratch"})
    quiet = Console(quiet=True)
    loop.main(single, False, quiet)
    loop.main(scratch, False, quiet)
    copied = fork_shared_prefix(single, forked)
    assert copied > 0 and fork_shared_prefix(single, forked) == 0  # never into an existing run
    loop.main(forked, True, quiet)

    def work(run_dir: Path, kind: str) -> dict[str, object]:
        fields = {"edit": "text", "selection": "kept", "report": "score", "evaluation": "per_context"}[kind]
        return {r["key"]: r[fields] for r in read_journal(run_dir / JOURNAL) if r["type"] == kind}

    for kind in ("edit", "selection", "report", "evaluation"):
        assert work(forked.run_dir, kind) == work(scratch.run_dir, kind), kind
    records = read_journal(forked.run_dir / JOURNAL)
    computed = records[[r["type"] for r in records].index("session"):]
    assert copied + len(computed) == len(records) - 1  # + the fork record
    ran = {r["key"].split("/")[0] + "/" + r["key"].split("/")[1] for r in computed if r["type"] == "report"}
    # Round 0 and round 1's E-step came with the fork; round 2's new training contexts need baselines and
    # students trained on them alone.
    assert ran == {"eval/r1", "train/r2", "eval/r2", "baseline/base", "alone/base"}
    assert (forked.run_dir / "adapters" / "round-1" / "teacher" / "adapter_model.safetensors").exists()
