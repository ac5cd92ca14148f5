"""The inline pool (docs/architecture.md §3): single-model mode on one device, one network for both roles.

It is the in-process pool on a Student that stacks each job's base adapter (the current teacher
adapter) under the job's fresh LoRA instead of merging it, and that lends the same network to the
in-process teacher (`network`, for `teacher.hf.HFTeacher(..., network=...)`): no server, no copy.
"""

from __future__ import annotations

from student.pools.inprocess import InProcessPool
from student.student import Student


class InlinePool(InProcessPool):
    def __init__(self, model: str, *, device: str | None = None, bf16: bool | None = None) -> None:
        student = Student(model, device=device, stack_base_adapter=True, bf16=bf16)
        super().__init__(student)
        self.network = student.generator()
