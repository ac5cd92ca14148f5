"""LoRA supervised fine-tuning: the one training loop of seal-lm (student jobs and the teacher's M-step).

The reference pads every sequence to 2,048 tokens and puts the pads in the loss; on this machine
97–98 % of its training compute went to pads (the reference, timed on it). Here a batch's sequences go end to
end into as few rows as hold its longest one (`TrainSpec.packing`; or, without it, are padded only to
the longest), and pads carry label -100: the same loss, 1.2–1.5× the tokens per second of padding on a CPU
(benchmarks/student_step.py). On a CPU, short rows train with plain matmul attention (`attention_for`).
`TrainSpec.reference_compat` restores the reference's behaviour for fidelity comparisons. Every sequence
ends with EOS: without it an adapted model never learns to stop and answers run to the token limit
(docs/architecture.md §4). Device placement, DDP and bf16 autocast go through `accelerate`, so this loop runs unchanged
on a CPU, one GPU or several.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from runtime.cores import rebalance
from student.messages import TrainingExample, TrainSpec

IGNORE = -100  # label that the loss skips
EAGER_UP_TO = 512  # tokens per row: see attention_for


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class SFTResult:
    epoch_losses: tuple[float, ...]
    tokens_trained: int  # real (non-pad) tokens seen, summed over epochs
    seconds: float


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, system: str | None, chat: bool | None) -> list[int]:
    """What the model reads before it answers: the chat template up to the assistant turn, or the raw
    prompt (with BOS where the tokenizer adds one). Training and probes share it, so a trained answer follows
    exactly the context it is asked in. `chat` None: chat if the tokenizer has a template (TrainSpec.chat)."""
    if chat is None:
        chat = tokenizer.chat_template is not None
    if not chat:
        return tokenizer(prompt).input_ids
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": prompt})
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


def encode(tokenizer: PreTrainedTokenizerBase, example: TrainingExample, spec: TrainSpec) -> Encoded:
    """prompt + completion + EOS, cut at max_seq_len; with loss_on="completion" the prompt (for chat:
    system and user turns) is masked and the assistant turn with its end token is trained."""
    prompt = prompt_ids(tokenizer, example.prompt, example.system, spec.chat)
    completion = tokenizer(example.completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    masked = [IGNORE] * len(prompt) if spec.loss_on == "completion" else prompt
    return Encoded((prompt + completion)[: spec.max_seq_len], (masked + completion)[: spec.max_seq_len])


def collate(batch: Sequence[Encoded], pad_id: int, pad_to: int | None = None,
            loss_on_pads: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence (or to `pad_to`); pads are masked from attention and, unless
    `loss_on_pads` (the reference's behaviour: labels = input_ids), from the loss."""
    width = pad_to or max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    labels = torch.full_like(input_ids, pad_id if loss_on_pads else IGNORE)
    attention_mask = torch.zeros_like(input_ids)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(batch: Sequence[Encoded], pad_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """The batch's sequences end to end in as few rows as hold its longest one (first fit, longest first),
    so no row is longer, and no attention costs more, than in `collate`'s padded batch. Positions restart
    at each sequence and there is no attention mask: transformers then keeps attention within each
    sequence (masking_utils' packed-sequence detection; it needs `use_cache=False`). A sequence's first
    label is dropped, as a row's first token is never a target; pads end a row, continuing its last
    sequence's positions, which its real tokens never attend to (causal attention). `width`: rows this long
    instead, at least the longest sequence (batches of several jobs stacked in one pass)."""
    width = width or max(len(e.input_ids) for e in batch)
    rows: list[list[Encoded]] = []
    for e in sorted(batch, key=lambda e: -len(e.input_ids)):
        row = next((r for r in rows if sum(len(x.input_ids) for x in r) + len(e.input_ids) <= width), None)
        if row is None:
            rows.append([e])
        else:
            row.append(e)
    input_ids = torch.full((len(rows), width), pad_id)
    labels = torch.full_like(input_ids, IGNORE)
    position_ids = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        start = 0
        for e in row:
            n = len(e.input_ids)
            input_ids[i, start : start + n] = torch.tensor(e.input_ids)
            labels[i, start + 1 : start + n] = torch.tensor(e.labels[1:])
            position_ids[i, start : start + n] = torch.arange(n)
            start += n
        position_ids[i, start:] = torch.arange(n, n + width - start)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "use_cache": False}


def attention_for(row_tokens: int, device: torch.device) -> str:
    """On a CPU, plain matmul attention ("eager") trains the inner loop's short rows faster than torch's
    flash kernel (benchmarks/student_step.py: 1.17× padded; packed, 1.01–1.19× at best and steadier);
    it keeps an L×L score matrix per head for the backward pass, so long rows (the M-step's teacher
    prompts) and GPUs keep SDPA."""
    return "eager" if device.type == "cpu" and row_tokens <= EAGER_UP_TO else "sdpa"


@contextmanager
def attention(model: torch.nn.Module, implementation: str) -> Iterator[None]:
    """Train with this attention implementation, and give generation back the one it had."""
    before = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def train_lora(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TrainingExample],
    spec: TrainSpec, accelerator: Accelerator, seed: int,
) -> SFTResult:
    """AdamW on the trainable (LoRA) parameters, linear decay after `warmup_steps`, gradients clipped
    at 1.0, `epochs` passes capped at `max_steps`. The model is trained in place; it must come from
    `accelerator.prepare` already, once: preparing the same model again is silently a no-op in
    accelerate (no autocast the second time), so a per-job prepare would train jobs differently."""
    if not examples:
        raise ValueError("nothing to train on: the job has no training examples")
    start = time.perf_counter()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if spec.packing and not spec.reference_compat:
        layout = partial(pack, pad_id=pad_id)
    else:
        layout = partial(collate, pad_id=pad_id, pad_to=spec.max_seq_len if spec.reference_compat else None,
                         loss_on_pads=spec.reference_compat)
    encoded = [encode(tokenizer, e, spec) for e in examples]
    loader = DataLoader(
        encoded, batch_size=spec.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=lambda batch: (layout(batch), sum(len(e.input_ids) for e in batch)),  # and its real tokens
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    optimizer, loader = accelerator.prepare(optimizer, loader)
    total = spec.epochs * len(loader)  # per process: the loader is sharded under DDP
    total = min(total, spec.max_steps) if spec.max_steps is not None else total
    scheduler = get_linear_schedule_with_warmup(optimizer, spec.warmup_steps, total)

    implementation = attention_for(max(len(e.input_ids) for e in encoded), accelerator.device)
    with attention(accelerator.unwrap_model(model), implementation):
        model.train()
        step, tokens, epoch_losses = 0, 0, []
        for _ in range(spec.epochs):
            losses = []
            for batch, real_tokens in loader:
                if step == total:
                    break
                rebalance()  # another seal process may have started computing on these cores
                loss = model(**batch).loss
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                tokens += real_tokens
                step += 1
            if losses:
                epoch_losses.append(sum(losses) / len(losses))
    accelerator.free_memory()  # drop accelerate's references to this job's optimizer and loader
    return SFTResult(tuple(epoch_losses), tokens, time.perf_counter() - start)
