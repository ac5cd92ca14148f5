"""One Student on the tiny random model, shared by the whole test session (loading is the slow part)."""

from __future__ import annotations

import pytest

from student.student import Student


@pytest.fixture(scope="session")
def tiny_student(tiny_model_dir: str) -> Student:
    return Student(tiny_model_dir, device="cpu")
