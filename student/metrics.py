"""Generic answer metrics the student reports for every probe (docs/architecture.md §2: domain-agnostic).

SQuAD-style normalisation (lowercase, no punctuation, no articles, single spaces), as the SQuAD
evaluation script and the local grader we timed the reference with use, so scores are comparable.
Domains pick the metric that is their τ; the student computes all of them.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, gold: str) -> float:
    return float(normalize(answer) == normalize(gold))


def f1(answer: str, gold: str) -> float:
    pred, ref = normalize(answer).split(), normalize(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains(answer: str, gold: str) -> float:
    """Gold inside the answer on word boundaries ("1979" matches "in 1979 it", not "19790")."""
    ref = normalize(gold)
    return float(bool(ref) and f" {ref} " in f" {normalize(answer)} ")


def equal(answer: str, gold: str) -> float:
    """Exact string equality after stripping: for outputs where every character counts (ARC grids)."""
    return float(answer.strip() == gold.strip())


def score(answer: str, gold: str) -> dict[str, float]:
    return {
        "exact_match": exact_match(answer, gold),
        "f1": f1(answer, gold),
        "contains": contains(answer, gold),
        "equal": equal(answer, gold),
    }
