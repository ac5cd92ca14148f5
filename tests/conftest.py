"""Session fixtures: one real model folder and one tiny random model per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The real SmolLM2-135M-Instruct, prepared once into $SEAL_HOME (the user's cache by default)."""
    from orchestrator.models import SMOLLM2, prepare_model

    return str(prepare_model(SMOLLM2, progress=lambda _: None))


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: same code paths, ~1 s to load."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(Path(out))
