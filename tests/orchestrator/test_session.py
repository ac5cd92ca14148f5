"""What a run's inputs decide before anything runs: here, how the domain writes for the student."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import config_toml, load_config
from orchestrator.journal import CONFIG, create_run_dir
from orchestrator.session import check_inputs, prepare_run_dir

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


def test_a_run_moved_and_renamed_resumes_where_it_is_now(tiny_config: TinyConfig, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "runs", "first")
    create_run_dir(cfg.run_dir, config_toml(cfg))
    moved = tiny_config(tmp_path / "archive", "renamed")
    moved.run_dir.parent.mkdir()
    cfg.run_dir.rename(moved.run_dir)
    assert prepare_run_dir(moved, resume=True) == moved.run_dir
    assert load_config(moved.run_dir / CONFIG).run_dir == moved.run_dir  # the config says where it is now
