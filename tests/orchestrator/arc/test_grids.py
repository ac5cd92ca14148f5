import pytest
from hypothesis import given

from orchestrator.domains.arc.grids import grid_to_text, text_to_grid, to_grid
from orchestrator.errors import DataError

from .strategies import grids


@given(grids(max_side=30))
def test_text_round_trips(grid):
    assert text_to_grid(grid_to_text(grid)) == grid


def test_text_is_one_digit_per_cell_one_row_per_line():
    assert grid_to_text(((0, 1, 2), (3, 4, 5))) == "012\n345"


@pytest.mark.parametrize(
    ("answer", "grid"),
    [
        ("  012\n345\n", ((0, 1, 2), (3, 4, 5))),
        ("0 1 2\n3 4 5", ((0, 1, 2), (3, 4, 5))),
        ("12\n34\n\nThe rule is a rotation.", ((1, 2), (3, 4))),
        ("12\n34\nthen 56", ((1, 2), (3, 4))),
    ],
)
def test_answer_grid_is_read_up_to_the_first_non_grid_line(answer, grid):
    assert text_to_grid(answer) == grid


@pytest.mark.parametrize("answer", ["", "   \n", "The answer is 12", "12\n345", "1a\n22", "１２"])
def test_no_grid_in_an_answer_is_none(answer):
    assert text_to_grid(answer) is None


def test_json_grid_is_read():
    assert to_grid([[1, 2], [3, 0]], "here") == ((1, 2), (3, 0))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([[1, 2], [3]], "ragged grid"),
        ([[1, 10]], "colours must be integers 0-9, found 10"),
        ([[1, -1]], "found -1"),
        ([[1, True]], "found True"),
        ([[1, 2.0]], "found 2.0"),
        ([[0] * 31], "1x31, over ARC's 30x30"),
        ([[0]] * 31, "31x1, over ARC's 30x30"),
        ([], "non-empty list"),
        ([[]], "non-empty list"),
        ("012", "non-empty list"),
    ],
)
def test_bad_json_grids_are_named(raw, message):
    with pytest.raises(DataError, match="^task abc train 0 input: ") as err:
        to_grid(raw, "task abc train 0 input")
    assert message in str(err.value)
