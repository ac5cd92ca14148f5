"""Adapter folders are checked before any backend touches them, and a merged folder is the base with
the adapter applied, exactly as the in-process teacher applies it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from teacher.adapters import adapter_rank, check_adapter, merge_adapter
from teacher.base import TeacherError
from teacher.hf import HFTeacher


@pytest.fixture(scope="module")
def adapter(
    tiny_model_dir: str, make_adapter: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "a", r=8)


def test_rank_above_the_server_maximum_names_the_setting(adapter: str) -> None:
    assert adapter_rank(adapter) == 8
    assert check_adapter(adapter, max_rank=8) == str(Path(adapter).resolve())
    with pytest.raises(TeacherError, match="rank 8 .* at most 4: raise --max-lora-rank") as e:
        check_adapter(adapter, max_rank=4)
    assert "\n" not in str(e.value)


def test_rank_pattern_counts(adapter: str, tmp_path: Path) -> None:
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps(config | {"rank_pattern": {"q_proj": 32}}))
    assert adapter_rank(str(tmp_path)) == 32


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "no adapter_config.json"), ({"adapter_config.json": "{"}, "is corrupt"),
     ({"adapter_config.json": '{"r": 4}'}, "no adapter_model.safetensors")],
)
def test_broken_folders_are_one_line_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(TeacherError, match=message) as e:
        check_adapter(str(tmp_path))
    assert "\n" not in str(e.value)


def test_merged_folder_matches_in_process_merge(tiny_model_dir: str, adapter: str, tmp_path: Path) -> None:
    merged = merge_adapter(tiny_model_dir, adapter, tmp_path / "merged")
    in_process = HFTeacher(tiny_model_dir, device="cpu", dtype=torch.float32)
    in_process.use_adapter(adapter)
    expected = in_process.model.state_dict()
    loaded = HFTeacher(str(merged), device="cpu", dtype=torch.float32).model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    base = HFTeacher(tiny_model_dir, device="cpu", dtype=torch.float32).model.state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[q], loaded[q])
