import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domains.arc.augment import (
    FAMILIES,
    GEOMETRIC,
    invert_order,
    map_task,
    permute_demos,
    random_recolour,
    recolour,
    scale,
    tile,
)
from orchestrator.domains.arc.grids import ArcTask, Pair

from .strategies import grids, tasks

ALL_MAPS = {m.name: m for m in [*GEOMETRIC.values(), *(m for family in FAMILIES.values() for m in family)]}
GRID = ((1, 2, 3), (4, 5, 6))


@pytest.mark.parametrize("name", sorted(ALL_MAPS))
@given(grid=grids())
def test_inverse_undoes_every_map(name, grid):
    gmap = ALL_MAPS[name]
    assert gmap.inverse(gmap(grid)) == grid


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@given(grid=grids())
def test_geometric_maps_are_bijections(name, grid):
    gmap = GEOMETRIC[name]
    assert gmap(gmap.inverse(grid)) == grid


@given(grid=grids(), perm=st.permutations(range(10)))
def test_recolour_inverts(grid, perm):
    gmap = recolour(perm)
    assert gmap.inverse(gmap(grid)) == grid
    assert gmap(((0, 9),)) == ((perm[0], perm[9]),)


@given(seed=st.integers(0, 2**32))
def test_random_recolour_keeps_the_background(seed):
    gmap = random_recolour(random.Random(seed))
    assert gmap(((0,),)) == ((0,),)


def test_recolour_rejects_a_non_permutation():
    with pytest.raises(ValueError, match="exactly once"):
        recolour([0, 0, 2, 3, 4, 5, 6, 7, 8, 9])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rot90", ((4, 1), (5, 2), (6, 3))),  # clockwise
        ("rot180", ((6, 5, 4), (3, 2, 1))),
        ("rot270", ((3, 6), (2, 5), (1, 4))),
        ("flip_rows", ((4, 5, 6), (1, 2, 3))),
        ("flip_cols", ((3, 2, 1), (6, 5, 4))),
        ("transpose", ((1, 4), (2, 5), (3, 6))),
    ],
)
def test_geometric_maps_do_what_they_say(name, expected):
    assert GEOMETRIC[name](GRID) == expected


def test_scale_and_tile_grow_as_named():
    assert scale(2, 1)(((1, 2),)) == ((1, 2), (1, 2))
    assert scale(1, 2)(((1, 2),)) == ((1, 1, 2, 2),)
    assert tile(1, 2)(((1, 2),)) == ((1, 2, 1, 2),)
    assert tile(2, 2)(((1,), (2,))) == ((1, 1), (2, 2), (1, 1), (2, 2))


def test_chain_applies_in_order_and_inverts_in_reverse():
    (rot_then_scale,) = [m for m in FAMILIES["chain"] if m.name == "rot90+scale2x2"]
    assert rot_then_scale(((1, 2),)) == ((1, 1), (1, 1), (2, 2), (2, 2))
    assert rot_then_scale.inverse(rot_then_scale(GRID)) == GRID


@given(task=tasks(), data=st.data())
def test_demo_order_permutation_inverts(task, data):
    order = data.draw(st.permutations(range(len(task.train))))
    assert permute_demos(permute_demos(task, order), invert_order(order)) == task


def test_map_task_maps_every_grid_of_every_pair():
    task = ArcTask("t", (Pair(GRID, ((1,),)),), (Pair(((7,),), GRID),))
    flipped = map_task(task, GEOMETRIC["flip_cols"])
    mirrored = ((3, 2, 1), (6, 5, 4))
    assert flipped == ArcTask("t", (Pair(mirrored, ((1,),)),), (Pair(((7,),), mirrored),))
