"""Any OpenAI-compatible server as a source of self-edits: a vLLM server we manage, one given by URL,
or an external API (the paper's "GPT-4.1 edits" row).

Only stable endpoints are used: /v1/models, /v1/completions (plain prompts), /v1/chat/completions
(chat prompts), and vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter. Requests go
concurrently under a semaphore; every call has a timeout, so a dead server is an error, never a hang.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import openai

from teacher.base import Proposal, Sampling, TeacherError, TeacherPrompt

Outcome = list[Proposal] | TeacherError
CONCURRENCY = 32  # requests in flight (each with n choices): enough to fill a CPU or GPU server's batch
# A non-streamed answer arrives only when all its choices are done; on a busy CPU server that can take
# many minutes, so the timeout catches a hung server, not a slow one.
REQUEST_TIMEOUT_S = 1800.0


class ServerGone(TeacherError):
    """No answer (connection refused or reset, timeout, 5xx): the server may have died."""


class OpenAIEndpoint:
    def __init__(
        self, url: str, api_key: str, *, concurrency: int = CONCURRENCY,
        request_timeout_s: float = REQUEST_TIMEOUT_S, connect_timeout_s: float = 5.0,
    ) -> None:
        self.root = url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.concurrency = concurrency
        # openai's own Timeout type: openai 3.x runs on httpx2, whose client refuses an httpx.Timeout
        self.timeout = openai.Timeout(request_timeout_s, connect=connect_timeout_s)
        self.vllm = False  # set by models(): vLLM returns per-choice token ids, others only usage

    def models(self) -> list[dict[str, Any]]:
        """The served models; also the health and key check (one line each for unreachable, wrong key)."""
        response = self._http("GET", "/v1/models", timeout=httpx.Timeout(10.0, connect=5.0))
        if response.status_code != 200:
            raise TeacherError(
                f"the teacher at {self.root} answered GET /v1/models with {response.status_code}: "
                "is it an OpenAI-compatible server?"
            )
        models = response.json()["data"]
        self.vllm = any(m.get("owned_by") == "vllm" for m in models)
        return models

    def load_adapter(self, name: str, path: str) -> None:
        self._lora("load", {"lora_name": name, "lora_path": path}, f"adapter {path}")

    def unload_adapter(self, name: str) -> None:
        self._lora("unload", {"lora_name": name}, f"adapter '{name}'")

    def propose(self, model: str, prompts: list[TeacherPrompt], sampling: Sampling) -> list[Outcome]:
        """One outcome per prompt, in order: its proposals, or the error that stopped it (so a caller
        can resend only the failed prompts)."""
        return asyncio.run(self._propose_all(model, prompts, sampling))

    async def _propose_all(
        self, model: str, prompts: list[TeacherPrompt], sampling: Sampling
    ) -> list[Outcome]:
        semaphore = asyncio.Semaphore(self.concurrency)
        client = openai.AsyncOpenAI(
            base_url=f"{self.root}/v1", api_key=self.api_key, timeout=self.timeout, max_retries=0
        )
        async with client:
            tasks = [self._propose_one(client, semaphore, model, p, sampling) for p in prompts]
            return await asyncio.gather(*tasks)

    async def _propose_one(
        self, client: openai.AsyncOpenAI, semaphore: asyncio.Semaphore, model: str, prompt: TeacherPrompt,
        sampling: Sampling,
    ) -> Outcome:
        # Greedy decoding has one answer (vLLM refuses n > 1 for it). Without per-choice token counts
        # (non-vLLM servers), n choices are n requests of one, so `usage` counts each; distinct seeds
        # keep seeded samples distinct.
        if sampling.temperature == 0:
            parts, copies = [replace(sampling, n=1)], sampling.n
        elif self.vllm or sampling.n == 1:
            parts, copies = [sampling], 1
        else:
            seeds = [None if sampling.seed is None else sampling.seed + i for i in range(sampling.n)]
            parts, copies = [replace(sampling, n=1, seed=seed) for seed in seeds], 1
        try:
            requests = (self._request(client, semaphore, model, prompt, s) for s in parts)
            results = await asyncio.gather(*requests)
        except TeacherError as e:
            return e
        return [proposal for result in results for proposal in result] * copies

    async def _request(
        self, client: openai.AsyncOpenAI, semaphore: asyncio.Semaphore, model: str, prompt: TeacherPrompt,
        s: Sampling,
    ) -> list[Proposal]:
        args: dict[str, Any] = {"model": model, "n": s.n, "temperature": s.temperature, "top_p": s.top_p}
        if s.seed is not None:
            args["seed"] = s.seed
        if s.stop:
            args["stop"] = list(s.stop)
        if self.vllm:
            args["extra_body"] = {"return_token_ids": True}
        async with semaphore:
            try:
                if isinstance(prompt, str):
                    response = await client.completions.create(prompt=prompt, max_tokens=s.max_tokens, **args)
                    texts = [c.text for c in response.choices]
                else:
                    response = await client.chat.completions.create(
                        messages=prompt, max_completion_tokens=s.max_tokens, **args  # type: ignore[arg-type]
                    )
                    texts = [c.message.content or "" for c in response.choices]
            except (openai.APIConnectionError, openai.InternalServerError) as e:
                raise ServerGone(f"lost the teacher at {self.root}: {type(e).__name__}: {e}") from None
            except openai.AuthenticationError:
                raise self._bad_key() from None
            except openai.APIStatusError as e:
                why = f"({e.status_code}): {_error_message(e.response)}"
                raise TeacherError(f"the teacher at {self.root} refused a request {why}") from None
        return [
            Proposal(text, self._tokens(choice, response), choice.finish_reason or "stop")
            for text, choice in zip(texts, response.choices, strict=True)
        ]

    def _tokens(self, choice: Any, response: Any) -> int:
        if self.vllm:
            return len(choice.model_extra["token_ids"])
        return response.usage.completion_tokens if response.usage else 0

    def _lora(self, action: str, body: dict[str, str], what: str) -> None:
        timeout = httpx.Timeout(300.0, connect=5.0)
        response = self._http("POST", f"/v1/{action}_lora_adapter", json=body, timeout=timeout)
        if response.status_code == 200:
            return
        message = _error_message(response)
        if message == "Not Found":  # FastAPI's answer for a route the server does not have
            raise TeacherError(
                f"the teacher at {self.root} has no runtime LoRA loading: start vLLM with --enable-lora "
                "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (`seal teacher serve` does)"
            )
        raise TeacherError(f"the teacher at {self.root} could not {action} {what}: {message}")

    def _http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            response = httpx.request(method, self.root + path, headers=headers, **kwargs)
        except httpx.TransportError as e:
            raise ServerGone(
                f"cannot reach the teacher at {self.root} ({type(e).__name__}): start one with "
                "`seal teacher serve` or fix --url"
            ) from None
        if response.status_code == 401:
            raise self._bad_key()
        return response

    def _bad_key(self) -> TeacherError:
        return TeacherError(
            f"the teacher at {self.root} rejected the API key (401 Unauthorized): pass the key it was "
            "started with (--api-key-env NAME of the variable holding it)"
        )


def _error_message(response: httpx.Response) -> str:
    """vLLM's {"error": {"message"}}, FastAPI's {"detail"}, or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error")
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error or body.get("detail") or body)
