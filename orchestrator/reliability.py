"""How reliable a reward is for ReST^EM's selection (issue 14): apply the same M self-edits per context
twice, with different LoRA seeds, and ask whether the two evaluations agree.

Selection happens within a context (best-of-M), so what matters is whether the *order of a context's
edits* repeats, not whether easy contexts score high twice. Hence: the Spearman correlation of rewards
centred per context (each context's mean removed), and the share of contexts whose best-of-M pick is
the same under both seeds, counted only where the first evaluation's pick is strict (a tie, e.g. every
edit at 0, picks nothing real).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reliability:
    spearman_centred: float  # nan when one side is constant (no order to compare)
    pick_agreement: float  # nan when no context has a strict pick
    strict_picks: int
    contexts: int
    chance: float  # pick agreement of a reward that is noise: 1 / M


def reliability(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]]) -> Reliability:
    """`first[c][e]`, `second[c][e]`: context c's edit e's reward under two LoRA seeds."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"need two equal [contexts × edits] arrays with at least 2 edits, got {a.shape}, {b.shape}")
    strict = [c for c in range(len(a)) if (a[c] == a[c].max()).sum() == 1]
    agree = [float(np.argmax(a[c]) == np.argmax(b[c])) for c in strict]
    return Reliability(
        spearman_centred=spearman(_centred(a), _centred(b)),
        pick_agreement=float(np.mean(agree)) if agree else float("nan"),
        strict_picks=len(strict), contexts=len(a), chance=1 / a.shape[1],
    )


def _centred(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)).ravel()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of average ranks (ties share their mean rank); nan when a side is constant."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    out = np.empty(len(x))
    out[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        out[x == value] = out[x == value].mean()
    return out
