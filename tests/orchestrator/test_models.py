import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.models import SMOLLM2, ModelError, prepare_model, resolve_model


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


def test_hub_id_passes_through() -> None:
    assert resolve_model("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"


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
