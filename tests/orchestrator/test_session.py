"""What a run's inputs decide before anything runs: here, how the domain writes for the student."""

from __future__ import annotations

from pathlib import Path

from orchestrator.session import check_inputs

from .conftest import TinyConfig


def test_the_student_s_tokenizer_decides_how_the_domain_writes_unless_the_config_says(
    tiny_config: TinyConfig, tiny_base_model_dir: str, tmp_path: Path
) -> None:
    assert check_inputs(tiny_config(tmp_path, "chat")).domain.chat  # the tiny model has SmolLM2's chat template
    base = {"run.mode": "teacher-student", "student.model": tiny_base_model_dir}
    assert not check_inputs(tiny_config(tmp_path, "base", **base)).domain.chat
    forced = tiny_config(tmp_path, "forced", **base, **{"student.train.chat": True})
    assert check_inputs(forced).domain.chat
