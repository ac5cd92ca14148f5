"""Hypothesis strategies for ARC grids and tasks."""

from __future__ import annotations

from hypothesis import strategies as st

from orchestrator.domains.arc.grids import ArcTask, Grid, Pair


@st.composite
def grids(draw: st.DrawFn, max_side: int = 8) -> Grid:
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    row = st.lists(st.integers(0, 9), min_size=width, max_size=width).map(tuple)
    return tuple(draw(st.lists(row, min_size=height, max_size=height)))


def pairs(max_side: int = 6) -> st.SearchStrategy[Pair]:
    return st.builds(Pair, grids(max_side), grids(max_side))


def tasks(min_demos: int = 1, max_demos: int = 6) -> st.SearchStrategy[ArcTask]:
    return st.builds(
        ArcTask,
        st.just("t"),
        st.lists(pairs(), min_size=min_demos, max_size=max_demos).map(tuple),
        st.lists(pairs(), min_size=1, max_size=2).map(tuple),
    )
