"""Nucleus sampling for the in-process teacher, at the cost of the few tokens it can pick.

transformers samples by sorting all 49,152 logits of every row (top-p) and drawing from the whole
vocabulary (`torch.multinomial`): at 64 rows on 2 CPU cores that is 0.16 s + 0.13 s a decoding step,
as long as the model's own forward pass. The nucleus almost always lies within a row's few hundred most
likely tokens, so `NucleusSampler` takes those with `topk`, checks that they hold the top-p mass (else
it sorts the row's whole vocabulary, as transformers does), and draws among them. It runs as a logits
processor under greedy decoding: it returns scores where only the drawn token is finite, so the greedy
step picks exactly that token. The distribution is transformers' own (temperature, then the smallest set
of most likely tokens whose mass reaches top_p); the random draws are not the same ones.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

CANDIDATES = 1024  # most likely tokens looked at first; a row whose nucleus is wider is sorted whole


class NucleusSampler(LogitsProcessor):
    def __init__(self, temperature: float, top_p: float, candidates: int = CANDIDATES) -> None:
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, not {temperature}, {top_p}")
        self.temperature, self.top_p, self.candidates = temperature, top_p, candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        if self.top_p == 1:
            drawn = torch.multinomial(probs, 1)
        else:
            top, ids = probs.topk(min(self.candidates, probs.shape[-1]), dim=-1)
            drawn = self._draw(top, ids)
            flat = (top.sum(dim=-1) < self.top_p).nonzero().flatten()  # rows whose nucleus is wider
            if len(flat):
                drawn[flat] = self._draw(*probs[flat].sort(dim=-1, descending=True))
        return torch.full_like(scores, -torch.inf).scatter_(1, drawn, 0.0)

    def _draw(self, top: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """One token per row from its nucleus, given its tokens in order of probability."""
        before = top.cumsum(dim=-1) - top  # the mass of the tokens more likely than each
        return ids.gather(1, torch.multinomial(top.masked_fill(before >= self.top_p, 0.0), 1))
