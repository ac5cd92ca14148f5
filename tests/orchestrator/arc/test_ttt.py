from math import comb

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domains.arc.augment import FAMILIES, scale
from orchestrator.domains.arc.grids import ArcTask, Pair, fits
from orchestrator.domains.arc.ttt import INSTRUCTION, leave_out, to_example, ttt_tasks

from .strategies import tasks

ALL = [m for family in FAMILIES.values() for m in family]


def numbered(k: int, side: int = 2) -> ArcTask:
    """k demonstrations that differ from each other: demo i is filled with colour i."""
    demos = tuple(Pair(((i,) * side,) * side, ((9 - i,),)) for i in range(k))
    return ArcTask("t", demos, (Pair(((0,),), ((0,),)),))


@given(k=st.integers(1, 7), n=st.integers(1, 3))
def test_leave_n_out_counts(k, n):
    expected = k * comb(k - 1, n - 1) if k - n >= 1 else 0
    assert len(leave_out(numbered(k), n)) == expected


@given(k=st.integers(2, 6), n=st.integers(1, 2))
def test_leave_n_out_queries_a_demo_unseen_among_its_examples(k, n):
    task = numbered(k)
    for sub in leave_out(task, n):
        (query,) = sub.test
        assert query in task.train and query not in sub.train
        assert len(sub.train) == k - n and set(sub.train) < set(task.train)


@settings(deadline=None, max_examples=25)  # each example builds a few hundred augmented sub-tasks
@given(task=tasks(min_demos=2), seed=st.integers(0, 100))
def test_ttt_tasks_are_unique_capped_within_size_and_seeded(task, seed):
    chosen = ttt_tasks(task, ALL, max_tasks=40, seed=seed)
    assert 1 <= len(chosen) <= 40
    assert len(set(chosen)) == len(chosen)
    assert all(fits(sub) for sub in chosen)
    assert chosen == ttt_tasks(task, ALL, max_tasks=40, seed=seed)


def test_leave_one_out_tasks_come_first():
    chosen = ttt_tasks(numbered(4), [], max_tasks=100)
    sizes = [len(sub.train) for sub in chosen]
    assert sizes == sorted(sizes, reverse=True) and set(sizes) == {3, 2}
    assert ttt_tasks(numbered(4), [], max_tasks=5) == chosen[:5]


def test_each_sub_task_also_comes_with_its_examples_shuffled():
    originals = leave_out(numbered(4), 1)
    chosen = ttt_tasks(numbered(4), [], leave=(1,), max_tasks=100)
    assert set(originals) < set(chosen)
    assert {(frozenset(s.train), s.test) for s in chosen} == {(frozenset(s.train), s.test) for s in originals}


def test_augmentations_past_30x30_are_dropped():
    big = numbered(3, side=16)
    chosen = ttt_tasks(big, [scale(2, 2)], max_tasks=1000)
    assert chosen and all(max(len(p.input) for p in sub.train) == 16 for sub in chosen)


def test_example_asks_the_held_out_input_after_the_other_demos():
    sub = ArcTask("t", (Pair(((1, 2),), ((3,),)),), (Pair(((4, 5), (6, 7)), ((8,),)),))
    example = to_example(sub)
    assert example.system == f"{INSTRUCTION}\n\nExample 1\nInput:\n12\nOutput:\n3"
    assert (example.prompt, example.completion) == ("45\n67", "8")
