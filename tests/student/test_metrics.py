from __future__ import annotations

import pytest

from student.metrics import contains, equal, exact_match, f1, normalize, score


@pytest.mark.parametrize(("text", "expected"), [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  a  cat, an owl and THE dog ", "cat owl and dog"),
    ("theatre", "theatre"),  # articles only as whole words
    ("", ""),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(("answer", "gold", "em", "f", "has"), [
    ("Paris", "paris", 1.0, 1.0, 1.0),
    ("The capital is Paris.", "Paris", 0.0, 0.5, 1.0),
    ("Paris, France", "Paris", 0.0, 2 / 3, 1.0),
    ("Parisian food", "Paris", 0.0, 0.0, 0.0),  # contained only inside a word: no
    ("in 19790", "1979", 0.0, 0.0, 0.0),
    ("Subutai and Jebe", "Subutai and Jebe", 1.0, 1.0, 1.0),
    ("Jebe and Subutai", "Subutai and Jebe", 0.0, 1.0, 0.0),
    ("", "fled", 0.0, 0.0, 0.0),
    ("the", "a", 1.0, 1.0, 0.0),  # both normalise to nothing: equal, but nothing to contain
])
def test_answer_metrics(answer: str, gold: str, em: float, f: float, has: float) -> None:
    assert exact_match(answer, gold) == em
    assert f1(answer, gold) == pytest.approx(f)
    assert contains(answer, gold) == has


def test_equal_is_strict_but_strips() -> None:
    assert equal(" [[1, 2], [3, 4]]\n", "[[1, 2], [3, 4]]") == 1.0
    assert equal("[[1, 2], [3, 5]]", "[[1, 2], [3, 4]]") == 0.0
    assert equal("[[1,2],[3,4]]", "[[1, 2], [3, 4]]") == 0.0  # normalisation would call these equal


def test_score_has_every_metric() -> None:
    assert score("Paris", "Paris") == {"exact_match": 1.0, "f1": 1.0, "contains": 1.0, "equal": 1.0}
