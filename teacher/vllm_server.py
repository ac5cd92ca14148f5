"""The vLLM teacher (docs/architecture.md §2): self-edits from a managed vLLM server or any OpenAI-compatible URL.

After each M-step the teacher writes with a new adapter, synced one of two ways:
- "hot-load": POST /v1/load_lora_adapter under a fresh name, then unload the previous one. No restart,
  but on CPU a LoRA costs vLLM ~3.4× per token (a 16 × 128-token test on 2 CPU cores).
- "merge-restart": merge the adapter into the base weights and restart the server on them; costs a
  merge and a server start per round, then runs at base speed.
`default_adapter_sync()` picks per platform what benchmarks/teacher_throughput.py measured fastest.
A managed server that dies mid-round is restarted once and the unanswered prompts are re-sent.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from teacher.adapters import check_adapter, merge_adapter
from teacher.base import Proposal, Sampling, TeacherError, TeacherPrompt
from teacher.openai_api import CONCURRENCY, REQUEST_TIMEOUT_S, OpenAIEndpoint, ServerGone
from teacher.vllm_process import ServerOptions, VLLMServer, on_cpu

AdapterSync = Literal["hot-load", "merge-restart"]
ADAPTER_SYNCS: tuple[AdapterSync, ...] = ("hot-load", "merge-restart")


def default_adapter_sync() -> AdapterSync:
    """CPU: merge-restart, 4× cheaper per round than hot-load in benchmarks/teacher_throughput.py (vLLM-CPU
    ran an r=64 LoRA about 10× slower per token than merged weights). GPU: hot-load (LoRA kernels are cheap
    there and a restart costs minutes; not measured, no GPU here)."""
    return "merge-restart" if on_cpu() else "hot-load"


class VLLMTeacher:
    """Use `VLLMTeacher.launch(model, run_dir)` to manage a server, `VLLMTeacher.attach(url, key)` for one
    that runs elsewhere (never started or stopped here)."""

    def __init__(
        self, endpoint: OpenAIEndpoint, base_name: str, server: VLLMServer | None, adapter_sync: AdapterSync,
        run_dir: Path | None,
    ) -> None:
        if adapter_sync not in ADAPTER_SYNCS:
            raise TeacherError(f"unknown adapter_sync '{adapter_sync}': use {' or '.join(ADAPTER_SYNCS)}")
        if adapter_sync == "merge-restart" and server is None:
            raise TeacherError("adapter_sync = merge-restart needs a managed server; use hot-load with a URL")
        self.endpoint = endpoint
        self.base_name = base_name
        self.server = server
        self.adapter_sync = adapter_sync
        self.run_dir = run_dir
        self.model_name = base_name  # what requests ask for: the base, or the hot-loaded adapter's name
        self.adapter: str | None = None
        self._base_model = server.model if server else base_name
        self._merged: Path | None = None

    @classmethod
    def launch(
        cls, model: str, run_dir: Path, options: ServerOptions | None = None, *,
        adapter_sync: AdapterSync | None = None, api_key: str | None = None, concurrency: int = CONCURRENCY,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> VLLMTeacher:
        """`api_key`: None for a random one (read it back from `.server.api_key`)."""
        options = options or ServerOptions()
        server = VLLMServer(model, Path(run_dir), options, api_key)
        endpoint = OpenAIEndpoint(
            server.url, server.api_key, concurrency=concurrency, request_timeout_s=request_timeout_s
        )
        # Built (and so validated) before the server starts: a bad setting must not leave a process.
        sync = adapter_sync or default_adapter_sync()
        teacher = cls(endpoint, options.served_name, server, sync, Path(run_dir))
        server.start()
        try:
            endpoint.models()  # learns that the server is vLLM (per-choice token counts)
        except BaseException:
            server.stop()
            raise
        return teacher

    @classmethod
    def attach(
        cls, url: str, api_key: str, *, model: str | None = None, concurrency: int = CONCURRENCY,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> VLLMTeacher:
        endpoint = OpenAIEndpoint(url, api_key, concurrency=concurrency, request_timeout_s=request_timeout_s)
        served = endpoint.models()  # reachable, key accepted, and is it vLLM
        return cls(endpoint, model or _only_base_model(endpoint.root, served), None, "hot-load", None)

    def propose(self, prompts: list[TeacherPrompt], sampling: Sampling) -> list[list[Proposal]]:
        outcomes = self.endpoint.propose(self.model_name, prompts, sampling)
        lost = [i for i, o in enumerate(outcomes) if isinstance(o, ServerGone)]
        if lost and self.server is not None:
            self._recover()
            retried = self.endpoint.propose(self.model_name, [prompts[i] for i in lost], sampling)
            for i, outcome in zip(lost, retried, strict=True):
                outcomes[i] = outcome
            if any(isinstance(o, ServerGone) for o in retried):
                raise self._died_twice()
        proposals = [o for o in outcomes if not isinstance(o, TeacherError)]
        if len(proposals) < len(outcomes):
            raise next(o for o in outcomes if isinstance(o, TeacherError))
        return proposals

    def use_adapter(self, adapter_dir: str | None) -> None:
        max_rank = self.server.options.max_lora_rank if self.server else None
        path = check_adapter(adapter_dir, max_rank) if adapter_dir else None
        if self.adapter_sync == "hot-load":
            self._hot_load(path)
        else:
            self._merge_restart(path)
        self.adapter = path

    def close(self) -> None:
        if self.server is None:
            if self.model_name != self.base_name:  # leave a shared server as we found it
                self.endpoint.unload_adapter(self.model_name)
                self.model_name = self.base_name
            return
        self.server.stop()
        self._drop_merged()

    def __enter__(self) -> VLLMTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _hot_load(self, adapter_dir: str | None) -> None:
        """Load under a fresh name (vLLM caches by name), then drop the previous adapter."""
        previous = self.model_name if self.model_name != self.base_name else None
        if adapter_dir:
            name = f"teacher-{uuid.uuid4().hex[:12]}"
            self.endpoint.load_adapter(name, adapter_dir)
            self.model_name = name
        else:
            self.model_name = self.base_name
        if previous:
            self.endpoint.unload_adapter(previous)

    def _merge_restart(self, adapter_dir: str | None) -> None:
        assert self.run_dir is not None  # merge-restart is refused without a managed server
        previous = self._merged
        if adapter_dir is None and previous is None:
            return  # already serving the base weights
        self._merged = None
        if adapter_dir:
            self._merged = merge_adapter(
                self._base_model, adapter_dir, self.run_dir / f"merged-teacher-{uuid.uuid4().hex[:12]}"
            )
        self._restart(str(self._merged or self._base_model))
        if previous:
            shutil.rmtree(previous, ignore_errors=True)

    def _recover(self) -> None:
        """A fresh server on the same weights, with the same adapter, after the last one died."""
        assert self.server is not None
        self._restart(self.server.model)
        if self.adapter_sync == "hot-load" and self.adapter:
            self._hot_load(self.adapter)

    def _died_twice(self) -> TeacherError:
        assert self.server is not None
        why = self.server.last_error() or "no error in its log: killed from outside, or out of memory?"
        return TeacherError(f"the vLLM server died twice in one round ({why}); see {self.server.log_path}")

    def _restart(self, model: str) -> None:
        """A new server on `model` at the same URL and key, so the endpoint stays valid."""
        assert self.server is not None
        old = self.server
        old.stop()
        self.server = VLLMServer(model, old.log_path.parent, replace(old.options, port=old.port), old.api_key)
        self.server.start()
        self.model_name = self.base_name

    def _drop_merged(self) -> None:
        if self._merged:
            shutil.rmtree(self._merged, ignore_errors=True)
            self._merged = None


def _only_base_model(url: str, served: list[dict[str, Any]]) -> str:
    """The one base model a server serves (vLLM also lists loaded adapters, with a `parent`)."""
    names = [m["id"] for m in served if not m.get("parent")]
    if len(names) != 1:
        raise TeacherError(
            f"the teacher at {url} serves {len(names)} models ({', '.join(names[:5])}): "
            "name one with --served-model"
        )
    return names[0]
