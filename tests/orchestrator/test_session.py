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


def test_only_the_factories_construct_teachers_students_and_pools() -> None:
    """orchestrator/roles.py builds every teacher and pool (the student package's own pool factory builds
    the pool's students): no other orchestrator module constructs one."""
    import re

    built = re.compile(r"\b(Student|HFTeacher|InlinePool|InProcessPool|LocalPool|RayPool|make_pool)\(|"
                       r"VLLMTeacher\.(launch|attach)\(")
    orchestrator = Path(__file__).parents[2] / "orchestrator"
    found = [f"{path.name}:{n}" for path in sorted(orchestrator.rglob("*.py")) if path.name != "roles.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if built.search(line)]
    assert found == []
