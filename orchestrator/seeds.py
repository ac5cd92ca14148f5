"""Seeds derived from the run seed and a place in the run, never from order or time.

A resumed run recomputes exactly what was missing and gets the numbers an uninterrupted run would
have got, because every random choice (which contexts a round samples, the teacher's sampling for a
context, a student's LoRA init) is a pure function of (run seed, round, context, edit, repeat).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def derive_seed(seed: int, *place: str | int) -> int:
    """A 31-bit seed (valid for torch, numpy, vLLM) for this place in the run."""
    digest = hashlib.sha256(json.dumps([seed, *place]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def shuffled(items: Sequence[T], seed: int, *place: str | int) -> list[T]:
    out = list(items)
    random.Random(derive_seed(seed, *place)).shuffle(out)
    return out


def round_slice(items: Sequence[T], n: int, round_: int) -> list[T]:
    """Round k's n items from a fixed order: consecutive rounds see disjoint contexts while the data
    lasts (the paper's round 2 used new passages), then wrap around."""
    return [items[((round_ - 1) * n + i) % len(items)] for i in range(n)]
