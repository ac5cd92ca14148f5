"""PEFT adapter folders on disk: merge one into base weights, load one into a fresh LoRA, save one.

Merging is done by hand (W += B·A·alpha/r, in fp32, rounded once) rather than through peft's
`load_adapter` + `merge`, because that would inject a second set of LoRA layers into the student's
PEFT model (on the teacher's target modules, not the student's) just to read two matrices.
Saved folders are peft's own format (adapter_config.json + adapter_model.safetensors), which vLLM
hot-loads; they appear atomically, so a half-written folder is never read.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from student.messages import LoRASpec

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def read_config(adapter_dir: str) -> dict[str, Any]:
    path = Path(adapter_dir) / CONFIG
    if not path.exists():
        raise ValueError(f"adapter folder {adapter_dir} has no {CONFIG}: is it a PEFT adapter?")
    return json.loads(path.read_text())


def merge_adapter(model: torch.nn.Module, adapter_dir: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Add a saved LoRA's update into `model`'s base weights (a plain transformers model, or the
    model under a PEFT wrapper). Returns (weight, unmerged copy) pairs: copying them back undoes the
    merge exactly, which subtracting the update again would not in bf16."""
    config = read_config(adapter_dir)
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"adapter {adapter_dir}: DoRA and per-module rank/alpha patterns cannot be merged")
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config.get("use_rslora") else config["r"])
    tensors = load_file(Path(adapter_dir) / WEIGHTS)
    if any(not k.endswith(("lora_A.weight", "lora_B.weight")) for k in tensors):
        raise ValueError(f"adapter {adapter_dir}: only LoRA on linear layers (no bias) can be merged")
    undo: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for key in (k for k in tensors if k.endswith("lora_A.weight")):
            module = model.get_submodule(key.removeprefix("base_model.model.").removesuffix(".lora_A.weight"))
            weight = module.get_base_layer().weight if isinstance(module, BaseTunerLayer) else module.weight
            a, b = tensors[key], tensors[key.replace("lora_A", "lora_B")]
            delta = b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)
            undo.append((weight, weight.detach().clone()))
            weight.data.copy_(weight.float() + delta * scale)
    except Exception:
        for weight, original in undo:  # a part-merged base would stay in every later job of this student
            weight.data.copy_(original)
        raise
    return undo


def load_lora_weights(model: PeftModel, adapter_dir: str, spec: LoRASpec) -> None:
    """Start a fresh LoRA from a saved one (the M-step's restem_init = "previous")."""
    config = read_config(adapter_dir)
    if config["r"] != spec.r or set(config["target_modules"]) != set(spec.target_modules):
        raise ValueError(
            f"init adapter {adapter_dir} has r={config['r']}, targets {config['target_modules']}; "
            f"the job's LoRA spec has r={spec.r}, targets {list(spec.target_modules)}"
        )
    result = set_peft_model_state_dict(model, load_file(Path(adapter_dir) / WEIGHTS))
    if result.unexpected_keys:
        raise ValueError(f"init adapter {adapter_dir}: unexpected weights {result.unexpected_keys[:3]}")


def save_adapter(model: PeftModel, output_dir: str) -> None:
    """Write into a temporary sibling folder, then rename it into place."""
    out = Path(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        model.save_pretrained(tmp)
        if out.exists():  # a retried job whose first attempt finished writing: replace its folder
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
