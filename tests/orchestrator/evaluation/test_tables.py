"""evaluation/tables.py: plan → run → summarise, bootstrap intervals, paired gains, the rendered table and its JSON."""

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console

from orchestrator.domains.knowledge import QA, KnowledgeDomain, Passage, load_passages
from orchestrator.errors import DataError
from orchestrator.evaluation import tables
from student.messages import LoRASpec, ProbeResult, StudentReport, TrainSpec

PASSAGES = (
    Passage("Genghis Khan", "The Mongols seized Otrar.", (QA("What fell?", "Otrar"),), ("1. Otrar fell.",)),
    Passage("Normans", "Normandy is in France.", (QA("Where?", "France"), QA("Who?", "Normans")), ("Sure:",)),
)
DOMAIN = KnowledgeDomain()


def plan(passages: tuple[Passage, ...] = PASSAGES) -> list[tables.Cell]:
    rows = tables.paper_rows(passages, 0, "test data")
    return tables.plan(DOMAIN, passages, rows, seed=7, lora=LoRASpec(), train=TrainSpec(epochs=1))


# --- bootstrap ---


def test_bootstrap_of_constant_values_is_a_point() -> None:
    assert tables.bootstrap_ci([0.4] * 10) == pytest.approx((0.4, 0.4))


def test_bootstrap_matches_the_normal_interval_on_a_large_sample() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.2, size=400)
    low, high = tables.bootstrap_ci(list(values))
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert low == pytest.approx(values.mean() - half_width, abs=0.003)
    assert high == pytest.approx(values.mean() + half_width, abs=0.003)


def test_bootstrap_narrows_with_more_passages_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    few, many = list(rng.random(10)), list(rng.random(200))
    width = [high - low for low, high in map(tables.bootstrap_ci, (few, many))]
    assert width[1] < width[0] / 2
    assert tables.bootstrap_ci(few, seed=3) == tables.bootstrap_ci(few, seed=3)


def test_bootstrap_needs_values() -> None:
    with pytest.raises(ValueError):
        tables.bootstrap_ci([])


# --- planning ---


def test_plan_builds_the_three_rows() -> None:
    cells = plan()
    assert [(c.row, c.passage) for c in cells] == [
        ("no adaptation", 0), ("no adaptation", 1),
        ("passage only", 0), ("passage only", 1),
        ("passage + edits", 0), ("passage + edits", 1),
    ]  # fmt: skip
    base, passage, edits = cells[0].job, cells[2].job, cells[4].job
    assert base is not None and passage is not None and edits is not None
    assert base.examples == ()
    assert [e.completion for e in passage.examples] == ["The Mongols seized Otrar."]
    assert [e.completion for e in edits.examples] == ["Otrar fell.", "The Mongols seized Otrar."]
    assert base.probes == passage.probes == edits.probes == DOMAIN.probes(PASSAGES[0])
    assert {base.seed, passage.seed, edits.seed} == {7}  # rows differ only in training data
    assert cells[1].job is not None and cells[1].job.seed == 8
    assert edits.train == TrainSpec(epochs=1)


def test_unusable_edit_becomes_a_cell_without_a_job() -> None:
    cell = plan()[5]
    assert cell.job is None and cell.parse_error and "no usable line" in cell.parse_error
    assert len(tables.jobs(plan())) == 5
    assert len({job.job_id for job in tables.jobs(plan())}) == 5


def test_missing_edit_names_the_record() -> None:
    no_edits = (PASSAGES[0], Passage("T", "C", (QA("Q", "A"),)))
    with pytest.raises(DataError, match=r"^data: record 1 has no self-edit number 0 in field 'completions'"):
        tables.paper_rows(no_edits, 0, "data")


# --- aggregation ---


def report(job_id: str, f1: tuple[float, ...], ok: bool = True) -> StudentReport:
    results = tuple(
        ProbeResult(f"q{i}", "x", {"exact_match": float(v == 1.0), "f1": v, "contains": float(v > 0)})
        for i, v in enumerate(f1)
    )
    return StudentReport(job_id, ok=ok, results=results if ok else (), error=None if ok else "worker died")


def fake_reports(cells: list[tables.Cell]) -> dict[str, StudentReport]:
    f1 = {  # by (row, passage)
        ("no adaptation", 0): (0.0,),
        ("no adaptation", 1): (0.0, 0.5),
        ("passage only", 0): (1.0,),
        ("passage only", 1): (0.5, 0.5),
        ("passage + edits", 0): (1.0,),
    }
    reports = {c.job.job_id: report(c.job.job_id, f1[c.row, c.passage]) for c in cells if c.job}
    failed = cells[3].job  # "passage only", passage 1: its worker died twice
    assert failed is not None
    reports[failed.job_id] = report(failed.job_id, (), ok=False)
    return reports


def test_summarise_means_per_passage_then_over_passages() -> None:
    cells = plan()
    rows = tables.summarise(cells, fake_reports(cells))
    assert [(r.name, r.passages, r.failed) for r in rows] == [
        ("no adaptation", 2, 0),
        ("passage only", 2, 1),
        ("passage + edits", 2, 1),
    ]
    assert rows[0].scores["f1"].mean == pytest.approx((0.0 + 0.25) / 2)
    assert rows[0].scores["contains"].mean == pytest.approx((0.0 + 0.5) / 2)
    assert rows[1].scores["f1"].mean == pytest.approx((1.0 + 0.0) / 2)  # a failed job scores 0
    assert rows[2].scores["exact_match"].mean == pytest.approx((1.0 + 0.0) / 2)  # so does an unusable edit
    for row in rows:
        for e in row.scores.values():
            assert e.low <= e.mean <= e.high


def test_paired_gains_are_means_of_per_passage_differences() -> None:
    cells = plan()
    gains = {g.name: g for g in tables.paper_gains(cells, fake_reports(cells))}
    assert list(gains) == ["passage only − no adaptation", "passage + edits − no adaptation",
                           "passage + edits − passage only"]
    # f1 per passage: none (0, 0.25), passage (1, failed = 0), edits (1, unusable = 0)
    assert gains["passage only − no adaptation"].scores["f1"].mean == pytest.approx(((1 - 0) + (0 - 0.25)) / 2)
    assert gains["passage + edits − passage only"].scores["f1"].mean == pytest.approx(0.0)
    assert set(gains["passage + edits − no adaptation"].scores) == {"exact_match", "f1", "contains"}


def test_table_and_results_json() -> None:
    cells = plan()
    reports = fake_reports(cells)
    summaries = tables.summarise(cells, reports)
    console = Console(file=io.StringIO(), width=200)
    console.print(tables.render(summaries, title="t"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "passage + edits" in text and "12.5 (0.0–25.0)" in text
    data = json.loads(json.dumps(tables.results(cells, reports, summaries, model="m")))
    assert data["model"] == "m" and len(data["rows"]) == 3 and len(data["cells"]) == 6
    assert data["cells"][5]["report"] is None and data["cells"][5]["tau"]["f1"] == 0.0


def test_collect_keys_reports_by_job() -> None:
    reports = [report("a", (1.0,)), report("b", (0.0,))]
    done = tables.collect(iter(reports), 2, Console(file=io.StringIO()))
    assert done == {"a": reports[0], "b": reports[1]}


def test_sample_has_no_edits_so_eval_edits_says_so() -> None:
    from orchestrator.domains.knowledge import default_data

    with pytest.raises(DataError, match="no self-edit number 0"):
        tables.paper_rows(load_passages(default_data()), 0, "sample")
