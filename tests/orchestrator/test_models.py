import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.models import SMOLLM2, ModelError, resolve_model
from orchestrator.prepare import prepare_model


def test_known_name_resolves_to_prepared_folder(smollm2_dir: str) -> None:
    assert resolve_model(SMOLLM2) == smollm2_dir
    assert json.loads((Path(smollm2_dir) / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (Path(smollm2_dir) / "chat_template.jinja").exists()


def test_prepare_is_idempotent(smollm2_dir: str) -> None:
    weights = Path(smollm2_dir) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert str(prepare_model(SMOLLM2, progress=lambda _: None)) == smollm2_dir
    assert weights.stat().st_mtime_ns == before


def test_unprepared_name_and_half_written_folder_do_not_count(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEAL_HOME", str(tmp_path))
    (tmp_path / "models" / f".{SMOLLM2}-partial" / "model").mkdir(parents=True)
    with pytest.raises(ModelError, match="seal prepare-model"):
        resolve_model(SMOLLM2)


@pytest.fixture
def offline_hub_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty Hub cache with the Hub out of reach, as on this machine and any offline one."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_hub_id_resolves_to_its_cached_snapshot(offline_hub_cache: Path) -> None:
    # The Hub cache's own layout (refs/main → snapshots/<commit>), as a download leaves it.
    repo = offline_hub_cache / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert Path(resolve_model("org/tiny")) == snapshot


def test_hub_id_offline_and_not_cached_is_one_line(offline_hub_cache: Path) -> None:
    with pytest.raises(ModelError, match="'Qwen/Qwen2.5-7B' is not in the Hub cache and the Hub cannot be reached"):
        resolve_model("Qwen/Qwen2.5-7B")


def _safetensors(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path))
    return path


def test_a_truncated_or_foreign_weights_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    weights = _safetensors(tmp_path / "model.safetensors")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size - 10)
    with pytest.raises(ModelError, match=r"model.safetensors is truncated \(\d+ of \d+ bytes\)"):
        resolve_model(str(tmp_path))
    weights.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError, match="is not a safetensors file"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "no config.json"), ({"config.json": "{oops"}, "corrupt"), ({"config.json": "{}"}, "no weights")],
)
def test_broken_model_folder(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ModelError, match=message):
        resolve_model(str(tmp_path))


def test_unknown_model_is_a_one_line_cli_error() -> None:
    result = CliRunner().invoke(app, ["prepare-model", "gpt-17"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "unknown model 'gpt-17'" in result.output and SMOLLM2 in result.output
