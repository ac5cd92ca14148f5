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
def make_adapter() -> Callable[..., str]:
    """`make_adapter(model_dir, out, r=8, seed=0)`: a saved LoRA adapter whose B is random (peft's
    default B = 0 would be a no-op) and scaled by alpha/r = 8, so that it changes even an answer the
    model is sure of (at alpha/r = 2 "The capital of France is Paris." survived some seeds)."""

    def make(model_dir: str, out: Path, r: int = 8, seed: int = 0) -> str:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        targets = ["q_proj", "v_proj"]
        config = LoraConfig(r=r, lora_alpha=8 * r, target_modules=targets, init_lora_weights=False)
        get_peft_model(model, config).save_pretrained(out)
        return str(out)

    return make


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
