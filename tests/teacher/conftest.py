"""Teacher fixtures: LoRA adapters with random weights, one real vLLM server per session, and a /proc
scan that tells whether a server left any process behind."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from teacher.vllm_process import ServerOptions
from teacher.vllm_server import VLLMTeacher

SERVER_RANK = 16  # the session server's --max-lora-rank


@pytest.fixture
def needs_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")


@pytest.fixture(scope="session")
def members() -> Callable[[int], list[int]]:
    return group_members


def group_members(group: int) -> list[int]:
    """Live processes of a process group (a server runs in its own), read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            if int(fields[2]) == group and fields[0] != "Z":  # state, ppid, pgrp; Z = zombie
                members.append(int(entry.name))
    return members


@pytest.fixture(scope="session")
def vllm_teacher(smollm2_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMTeacher]:
    """One managed vLLM server (hot-load) for the session's slow tests. Teardown checks that closing it
    leaves no process and that the API key never reached its log."""
    run_dir = tmp_path_factory.mktemp("vllm-run")
    options = ServerOptions(max_lora_rank=SERVER_RANK, max_model_len=1024)
    teacher = VLLMTeacher.launch(smollm2_dir, run_dir, options, adapter_sync="hot-load")
    yield teacher
    assert teacher.server is not None
    group, key, log = teacher.server.pid, teacher.server.api_key, teacher.server.log_path
    teacher.close()
    assert group is not None and group_members(group) == []
    assert key not in log.read_text(errors="replace")
    assert os.environ.get("VLLM_API_KEY") != key  # the key went to the child's environment only
