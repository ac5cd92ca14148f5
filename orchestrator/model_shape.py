"""A decoder's shape from its config.json, without loading it: parameter and LoRA counts, KV-cache bytes.

`seal plan` sizes memory and scales time with it, and placement checks that the tensor-parallel size
divides the attention heads. The config comes from a local folder, a prepared model, the Hugging Face
cache, or, for the models the shipped configs name, the table below (their config.json values on the
Hub), so that planning `configs/knowledge-paper.toml` needs no download. Llama-style decoders (Llama,
Qwen2, SmolLM2, Mistral): attention with grouped KV heads and a gated MLP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.models import EMBEDDED, SMOLLM2, ModelError, model_dir
from student.messages import LoRASpec

KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    SMOLLM2: {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
              "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "tie_word_embeddings": True},
    "Qwen/Qwen2.5-7B": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                        "tie_word_embeddings": False, "model_type": "qwen2"},
    "meta-llama/Llama-3.2-1B-Instruct": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                                         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                                         "vocab_size": 128256, "tie_word_embeddings": True},
}


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool  # the output layer shares the embedding's weights
    qkv_bias: bool  # Qwen2 has biases on q, k and v

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        heads = config["num_attention_heads"]
        return cls(
            hidden=config["hidden_size"], intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"], heads=heads, kv_heads=config.get("num_key_value_heads", heads),
            head_dim=config.get("head_dim") or config["hidden_size"] // heads, vocab=config["vocab_size"],
            tied=config.get("tie_word_embeddings", False),
            qkv_bias=config.get("attention_bias", config.get("model_type") == "qwen2"),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection in a layer, by its module name (LoRA target names)."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def params(self) -> int:
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        per_layer = sum(a * b for a, b in self.linears().values()) + bias + 2 * self.hidden  # + two norms
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embeddings + self.hidden

    def lora_params(self, lora: LoRASpec) -> int:
        """A LoRA's parameters: r × (in + out) for each targeted projection of each layer."""
        linears = self.linears()
        return self.layers * sum(lora.r * sum(linears[m]) for m in lora.target_modules if m in linears)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes  # keys and values


def read_shape(ref: str) -> ModelShape:
    """The shape of a model reference as the config names it (a prepared name, a folder or a Hub id)."""
    config = _config(ref)
    try:
        return ModelShape.from_config(config)
    except KeyError as e:
        raise ModelError(f"model '{ref}': its config.json has no {e.args[0]}; only Llama-style decoders "
                         "(Llama, Qwen2, Mistral, SmolLM2) can be sized") from None


def attention_heads(folder: str) -> int | None:
    """A local model folder's attention heads (for the tensor-parallel check); None if it has no config.json."""
    config = Path(folder) / "config.json"
    return json.loads(config.read_text()).get("num_attention_heads") if config.is_file() else None


def _config(ref: str) -> dict[str, Any]:
    for folder in (Path(ref).expanduser(), model_dir(ref) if ref in EMBEDDED else None):
        if folder is not None and (folder / "config.json").is_file():
            return json.loads((folder / "config.json").read_text())
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref, "config.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text())
    if ref in KNOWN_CONFIGS:
        return KNOWN_CONFIGS[ref]
    raise ModelError(f"model '{ref}': no config.json here to size it by; give a local model folder, or fetch the "
                     f"file once with `huggingface-cli download {ref} config.json`")
