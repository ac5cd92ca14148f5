"""ReST^EM's filter: which self-edits the M-step trains the teacher on.

`best_of_m` is the paper's knowledge rule: per context, the edit with the highest reward (the first
one on ties, as the reference sorts), kept only if it beats the context's bar: the unadapted student's
τ (the paper), or with restem.baseline = "context" the τ of the student trained on the context alone
(an edit that teaches nothing beyond the passage is then never kept) — the reference
keeps it regardless, which `keep_non_improving` reproduces. `all_positive` is the ARC rule: every
edit that beats the baseline (binary rewards: every solved task); with `keep_non_improving`, every
edit with a positive reward. Edits that did not parse are never kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Rule = Literal["best_of_m", "all_positive"]


@dataclass(frozen=True)
class Scored:
    context_id: str
    edit: int
    reward: float  # mean τ over the edit's repeats; 0 for a parse failure
    baseline: float  # τ of the unadapted student on the same context
    parsed: bool = True
    alone: float | None = None  # mean τ of the student trained on the context alone, where it is the bar

    @property
    def bar(self) -> float:
        return self.baseline if self.alone is None else self.alone

    @property
    def improves(self) -> bool:
        return self.reward > self.bar


def select(scored: Sequence[Scored], rule: Rule, keep_non_improving: bool = False) -> list[Scored]:
    usable = [s for s in scored if s.parsed]
    if rule == "all_positive":
        return [s for s in usable if s.improves or (keep_non_improving and s.reward > 0)]
    best: dict[str, Scored] = {}
    for s in usable:
        if s.context_id not in best or s.reward > best[s.context_id].reward:
            best[s.context_id] = s
    return [s for s in best.values() if s.improves or keep_non_improving]


def summarize(scored: Sequence[Scored]) -> dict[str, float]:
    """Round statistics: mean reward and baselines, share of edits that beat their bar, share that did not
    parse."""
    n = len(scored) or 1
    alone = [s.alone for s in scored if s.alone is not None]
    return {
        "reward": sum(s.reward for s in scored) / n,
        "baseline": sum(s.baseline for s in scored) / n,
        **({"alone": sum(alone) / len(alone)} if alone else {}),
        "improved": sum(s.improves for s in scored) / n,
        "parse_failures": sum(not s.parsed for s in scored) / n,
    }
