import math

import pytest

from orchestrator.domains.knowledge import QA, KnowledgeDomain, Passage, tau
from orchestrator.reliability import ranks, reliability, spearman
from student.messages import LoRASpec, StudentJob, TrainSpec


def test_the_same_order_twice_is_reliable_and_a_reversed_one_is_not() -> None:
    rewards = [[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]]
    same = reliability(rewards, [[r + 0.01 for r in row] for row in rewards])  # a shift changes no order
    assert same.spearman_centred == pytest.approx(1.0) and same.pick_agreement == 1.0
    flipped = reliability(rewards, [[-r for r in row] for row in rewards])
    assert flipped.pick_agreement == 0.0 and flipped.spearman_centred == pytest.approx(-1.0)
    assert same.chance == pytest.approx(1 / 3) and same.contexts == 2


def test_ties_pick_nothing_and_a_constant_reward_has_no_order() -> None:
    zeros = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    r = reliability(zeros, zeros)
    assert r.strict_picks == 0 and math.isnan(r.pick_agreement) and math.isnan(r.spearman_centred)
    assert list(ranks([3.0, 1.0, 3.0])) == [1.5, 0.0, 1.5]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal"):
        reliability([[0.1, 0.2]], [[0.1, 0.2, 0.3]])


def test_spearman_of_a_monotone_transform_is_one() -> None:
    import numpy as np

    x = np.array([0.3, -1.0, 2.0, 0.5])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)


PASSAGES = (
    Passage("Otrar", "The Mongol army seized the town of Otrar in 1219.", (QA("Which town was seized?", "Otrar"),
                                                                           QA("When was Otrar seized?", "1219"))),
    Passage("Piraeus", "British and French troops occupied Piraeus until 1857.", (QA("Who occupied Piraeus?",
                                                                                     "British and French troops"),)),
)
EDITS = ("The town of Otrar fell in 1219.\nOtrar was seized.", "Mongols.", "1219 is the year Otrar was seized.")


def test_reliability_of_every_reward_on_a_seeded_tiny_run(tiny_model_dir: str) -> None:
    """Two LoRA seeds, three edits per passage, on the tiny random model: the measure runs end to end and
    its numbers are pinned (they move when the student's numerics move)."""
    from student.student import Student

    student = Student(tiny_model_dir)
    domain, train = KnowledgeDomain(), TrainSpec(lr=1e-2, epochs=2, max_new_tokens=4)
    rewards: dict[int, list[list[float]]] = {}
    for seed in (1, 2):
        rewards[seed] = []
        for p in PASSAGES:
            row = []
            for e, text in enumerate(EDITS):
                examples = domain.parse_edit(p, text, train).examples
                report = student.run(StudentJob(f"{e}", seed + e, examples, domain.probes(p), LoRASpec(r=4, alpha=8),
                                                train, scoring="likelihood"))
                row.append(tau(report, "gold_prob"))
            rewards[seed].append(row)
    r = reliability(rewards[1], rewards[2])
    assert r.contexts == 2 and r.strict_picks == 2
    assert r.pick_agreement == GOLDEN_PICK_AGREEMENT
    assert r.spearman_centred == pytest.approx(GOLDEN_SPEARMAN, abs=1e-6)


GOLDEN_PICK_AGREEMENT, GOLDEN_SPEARMAN = 0.0, -17 / 35  # random tiny model: its seeds disagree
