"""The in-process teacher: transformers `generate` + peft, for machines without vLLM and for fast tests.

The base model is loaded once. An adapter is merged into the weights (merged decoding is the fastest
on CPU: 128 tok/s against 105 unmerged, measured) after the weights it touches are copied aside; returning
to the base copies them back, so base outputs are bit-identical before and after an adapter.

Given a `network` (the inline pool's student, docs/architecture.md §3), the teacher loads no model of its own: it
generates on that network, which stacks the teacher adapter instead of merging it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    LogitsProcessorList,
    StoppingCriteriaList,
)

from runtime.cores import RebalanceEachStep, computing
from runtime.precision import bf16_native, bf16_wanted
from teacher.adapters import check_adapter
from teacher.base import Proposal, Sampling, TeacherPrompt
from teacher.sampling import NucleusSampler


class Network(Protocol):
    """A loaded model owned elsewhere that generates with the adapter last passed to `use_adapter`."""

    device: torch.device
    generation_config: Any

    def use_adapter(self, adapter_dir: str | None) -> None: ...

    def generate(self, **kwargs: Any) -> torch.Tensor: ...


class HFTeacher:
    def __init__(
        self, model: str, *, device: str | None = None, dtype: torch.dtype | None = None,
        max_batch_sequences: int = 64, threads: int | None = None, network: Network | None = None,
    ) -> None:
        """`model`: a folder or Hub id (its tokenizer, and its weights unless `network` is given). `dtype`:
        None = bf16 where the hardware has it, as the student decides (runtime/precision.py)."""
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.network = network
        if network is None:
            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            on_cpu = torch.device(self.device).type == "cpu"
            dtype = dtype or (torch.bfloat16 if bf16_wanted(bf16_native(on_cpu)) else torch.float32)
            self.model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        else:
            self.device, self.model = network.device, network
        self.max_batch_sequences = max_batch_sequences
        self.adapter: str | None = None
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []  # (live weight, base copy) under an adapter
        eos = self.model.generation_config.eos_token_id
        self._end_ids = {self.tokenizer.pad_token_id, *(eos if isinstance(eos, list) else [eos])}

    def propose(self, prompts: list[TeacherPrompt], sampling: Sampling) -> list[list[Proposal]]:
        """Batches of up to `max_batch_sequences` sequences; seeded once per call, so the same prompts
        with the same sampling give the same proposals."""
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        per_batch = max(1, self.max_batch_sequences // sampling.n)
        proposals: list[list[Proposal]] = []
        with computing(torch.device(self.device).type == "cpu"):
            for start in range(0, len(prompts), per_batch):
                proposals += self._generate(prompts[start : start + per_batch], sampling)
        return proposals

    def use_adapter(self, adapter_dir: str | None) -> None:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        self._restore_base()
        path = check_adapter(adapter_dir) if adapter_dir else None
        if self.network is not None:  # as given: the network's jobs name the adapter the same way
            self.network.use_adapter(adapter_dir if path else None)
        elif path:
            peft_model = PeftModel.from_pretrained(self.model, path)
            layers = [m.get_base_layer() for m in peft_model.modules() if isinstance(m, LoraLayer)]
            self._saved = [(p, p.detach().clone()) for layer in layers for p in layer.parameters()]
            self.model = peft_model.merge_and_unload()  # merges in place into the weights saved above
        self.adapter = path

    def close(self) -> None:
        del self.model

    def _restore_base(self) -> None:
        with torch.no_grad():
            for live, base in self._saved:
                live.copy_(base)
        self._saved = []

    @torch.inference_mode()
    def _generate(self, prompts: list[TeacherPrompt], s: Sampling) -> list[list[Proposal]]:
        greedy = s.temperature == 0
        batch = self.tokenizer.pad({"input_ids": [self._tokens(p) for p in prompts]}, return_tensors="pt")
        batch = batch.to(self.device)
        options: dict[str, Any] = {"do_sample": False}  # a sampled token is drawn by NucleusSampler
        if not greedy:
            options["logits_processor"] = LogitsProcessorList([NucleusSampler(s.temperature, s.top_p)])
            if self.network is None:  # a network owned elsewhere generates through its own wrapper only
                options["past_key_values"] = self._prefill(batch, s.n)
            batch = {k: v.repeat_interleave(s.n, dim=0) for k, v in batch.items()}
        if s.stop:
            options |= {"stop_strings": list(s.stop), "tokenizer": self.tokenizer}
        out = self.model.generate(
            **batch, max_new_tokens=s.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([RebalanceEachStep()]), **options,
        )
        proposals = [self._proposal(row.tolist(), s.stop) for row in out[:, batch["input_ids"].shape[1] :]]
        if greedy:  # one greedy answer stands for all n
            return [[row] * s.n for row in proposals]
        return [proposals[i : i + s.n] for i in range(0, len(proposals), s.n)]

    def _prefill(self, batch: Any, n: int) -> DynamicCache:
        """The prompts' attention cache but for their last token, computed once and repeated for each of
        the n samples: transformers' `num_return_sequences` would run every prompt's prefill n times,
        and with passages of a few hundred tokens prefill is most of a call. Positions as `generate` sets
        them for left-padded rows; `generate` then runs only the last prompt token."""
        cache = DynamicCache(config=self.model.config)
        ids, mask = batch["input_ids"][:, :-1], batch["attention_mask"][:, :-1]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(n)
        return cache

    def _tokens(self, prompt: TeacherPrompt) -> list[int]:
        """Token ids as vLLM builds them: chat through the template, plain text with special tokens."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt)["input_ids"]
        text = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _proposal(self, ids: list[int], stop: tuple[str, ...]) -> Proposal:
        """Finished rows are padded after their end token; count up to and including it, like vLLM."""
        end = next((i for i, t in enumerate(ids) if t in self._end_ids), None)
        text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
        cuts = [i for i in (text.find(x) for x in stop) if i >= 0]
        if cuts:  # a stop string ended the row; like the OpenAI API, it is not part of the text
            tokens = len(ids) if end is None else end
            return Proposal(text=text[: min(cuts)], tokens=tokens, finish_reason="stop")
        if end is not None:
            return Proposal(text=text, tokens=end + 1, finish_reason="stop")
        return Proposal(text=text, tokens=len(ids), finish_reason="length")
