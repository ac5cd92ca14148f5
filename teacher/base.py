"""The one teacher interface (docs/architecture.md §2): propose self-edits, switch adapters, close.

Backends: `teacher.vllm_server.VLLMTeacher` (a managed `vllm serve` child or any OpenAI-compatible
URL) and `teacher.hf.HFTeacher` (transformers + peft in-process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

ChatMessage = dict[str, str]  # {"role": ..., "content": ...}
# A chat prompt (list of messages, rendered with the model's chat template) or a plain completion prompt.
TeacherPrompt = str | list[ChatMessage]


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proposal:
    """One sampled self-edit."""

    text: str
    tokens: int
    finish_reason: Literal["stop", "length"] | str


class TeacherError(Exception):
    """A teacher that cannot start, be reached or use an adapter; the message says what to change."""


class Teacher(Protocol):
    def propose(self, prompts: list[TeacherPrompt], sampling: Sampling) -> list[list[Proposal]]:
        """`sampling.n` proposals for each prompt, in prompt order."""
        ...

    def use_adapter(self, adapter_dir: str | None) -> None:
        """Generate with this PEFT adapter from now on (None: the base model)."""
        ...

    def close(self) -> None: ...
