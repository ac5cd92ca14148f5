"""PEFT adapter folders on disk: check one before a backend uses it, and merge one into base weights.

Both backends receive adapters as folders written by the student's TrainJob. A bad folder must fail
here with one line naming it, not deep inside vLLM or peft.
"""

from __future__ import annotations

import json
from pathlib import Path

from teacher.base import TeacherError


def adapter_rank(adapter_dir: str) -> int:
    """The largest LoRA rank in the adapter (`r`, or a per-module `rank_pattern` entry)."""
    config = _adapter_config(Path(adapter_dir))
    return max([int(config.get("r", 0)), *(int(r) for r in config.get("rank_pattern", {}).values())])


def check_adapter(adapter_dir: str, max_rank: int | None = None) -> str:
    """The adapter's absolute path, after checking it is a LoRA folder whose rank fits `max_rank`."""
    path = Path(adapter_dir).expanduser().resolve()
    rank = adapter_rank(str(path))
    if max_rank is not None and rank > max_rank:
        raise TeacherError(
            f"adapter {path} has LoRA rank {rank} but the teacher server allows at most {max_rank}: "
            f"raise --max-lora-rank (config: teacher.max_lora_rank) to {rank} or train with r <= {max_rank}"
        )
    if not any(path.glob("adapter_model.*")):
        raise TeacherError(f"adapter {path} has no adapter_model.safetensors: was its TrainJob finished?")
    return str(path)


def merge_adapter(base_model: str, adapter_dir: str, out_dir: Path) -> Path:
    """Write base weights with the adapter merged in as a plain model folder (what vLLM restarts on)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(out_dir)
    return out_dir


def _adapter_config(path: Path) -> dict:
    config = path / "adapter_config.json"
    if not config.exists():
        raise TeacherError(f"adapter folder {path} has no adapter_config.json: pass a PEFT adapter folder")
    try:
        return json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise TeacherError(f"adapter {config} is corrupt ({e.msg} at line {e.lineno})") from None
