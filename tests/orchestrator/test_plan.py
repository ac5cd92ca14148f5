"""`seal plan`: the work a run does per round, its time from the benchmark's unit costs, memory per process
and the warnings, and the command's output and one-line errors. Nothing here loads a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator import plan as planning
from orchestrator.cli import app
from orchestrator.config import load_config
from orchestrator.errors import DataError
from orchestrator.plan import GIB, PAPER_INNER_LOOP_S, make_plan, read_unit_costs, round_work

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "knowledge-paper.toml"
runner = CliRunner()


def paper(**sets: Any) -> Any:
    return load_config(PAPER, sets)


def test_unit_costs_are_read_from_the_benchmark_source(tmp_path: Path) -> None:
    source = tmp_path / "bench.py"
    source.write_text("import x\nINNER_LOOP_S = 30.0  # a comment\nBASELINE_S = 2.0\nTEACHER_EDIT_S = 4.0\n"
                      "MSTEP_S = 50.0\nPOOL_SPEEDUP = {1: 1.0, 2: 1.5}\n")
    units = read_unit_costs(source)
    assert (units.inner_loop, units.baseline, units.teacher_edit, units.mstep) == (30.0, 2.0, 4.0, 50.0)
    assert units.pool_speedup == {1: 1.0, 2: 1.5}
    measured = load_config(REPO / "configs" / "results-knowledge.toml")
    assert (units.mstep_examples, units.mstep_epochs) == (measured.data.n_train, measured.restem.train.epochs)
    source.write_text("INNER_LOOP_S = 30.0\n")
    with pytest.raises(DataError, match="has no BASELINE_S, MSTEP_S, POOL_SPEEDUP, TEACHER_EDIT_S: seal plan"):
        read_unit_costs(source)
    real = read_unit_costs()
    assert real.inner_loop > real.baseline > 0 and real.pool_speedup[1] == 1.0


def test_work_per_round_follows_the_loop() -> None:
    quick = load_config(None)
    assert round_work(quick, 0, "best_of_m") == (planning.Work("held-out τ", 4, 4, 4, 4),)
    e_step, m_step, held_out = round_work(quick, 1, "best_of_m")
    assert (e_step.contexts, e_step.edits, e_step.inner_loops, e_step.baselines) == (4, 12, 12, 4)
    assert (m_step.msteps, m_step.examples) == (1, 4)
    assert held_out.baselines == 4  # single-model: each round's student base is new
    assert round_work(paper(), 1, "best_of_m")[0].inner_loops == 750  # the paper's 50 × 5 × 3
    fixed = load_config(None, {"run.mode": "teacher-student"})
    assert round_work(fixed, 1, "best_of_m")[2].baselines == 0  # a fixed student's baselines are done in round 0
    assert round_work(quick, 1, "all_positive")[1].examples == 12


def test_the_quickstart_estimate_is_the_unit_costs_summed() -> None:
    u = read_unit_costs()
    plan = make_plan(load_config(None), "quickstart", gpus=0)
    # per context a baseline and a student trained on the passage alone (restem.baseline: knowledge's "context")
    held_out = 4 * (u.teacher_edit + 2 * u.inner_loop + u.baseline)
    m_step = u.mstep * 4 * 2 / (u.mstep_examples * u.mstep_epochs)  # ≤ 4 kept edits, 2 epochs
    later = 12 * (u.teacher_edit + u.inner_loop) + 4 * (u.inner_loop + u.baseline) + m_step + held_out
    assert plan.total_seconds == pytest.approx(held_out + 2 * later)
    assert not plan.placement.on_gpu and not plan.warnings


def test_on_gpus_the_paper_inner_loop_costs_the_papers_time_and_students_split_over_gpus() -> None:
    two, eight = make_plan(paper(), "p", gpus=2), make_plan(paper(), "p", gpus=8)
    assert two.costs.inner_loop == pytest.approx(PAPER_INNER_LOOP_S)  # Qwen2.5-7B, 10 epochs: the anchor
    assert (two.costs.parallel, eight.costs.parallel) == (1, 7)
    students = dataclasses.replace(two.later_round[0], edits=0)
    assert two.costs.seconds(students) == pytest.approx(7 * eight.costs.seconds(students))
    assert any("estimate: on GPUs every cost" in line for line in two.basis)
    e_step = eight.later_round[0]  # streamed: the teacher writes while the students work
    teacher = e_step.edits * eight.costs.edit
    assert eight.costs.stream and eight.costs.seconds(e_step) == pytest.approx(
        max(teacher, eight.costs.seconds(dataclasses.replace(e_step, edits=0))))


def test_memory_per_process_and_what_will_not_fit() -> None:
    plan = make_plan(paper(), "p", gpus=8)
    server, students = plan.processes
    assert server.reserved == pytest.approx(0.9 * 80 * GIB) and server.weights == pytest.approx(7.6156e9 * 2, rel=1e-3)
    assert students.devices == tuple((d,) for d in range(1, 8)) and students.weights == server.weights
    # the M-step's batch of 10 × 10,240 tokens: the one warning, for every student GPU at once
    assert plan.warnings == (plan.warnings[0],) and plan.warnings[0].startswith("GPU 1, 2, 3, 4, 5, 6, 7: up to")
    assert "restem.train: 10 × 10,240 tokens" in plan.warnings[0]
    short = paper(**{"restem.train.batch_size": 1, "restem.train.max_seq_len": 2048})
    assert make_plan(short, "p", gpus=8).warnings == ()
    assert "will not fit" in make_plan(short, "p", gpus=8, gpu_memory_gib=16).warnings[-1]
    starved = make_plan(paper(**{"teacher.gpu_memory_utilization": 0.18}), "p", gpus=8)
    assert starved.warnings[0].startswith("teacher: its share of memory leaves KV cache for 0 tokens")


def test_gpus_left_idle_are_noted_not_checked() -> None:
    plan = make_plan(paper(**{"pool.workers": 2, "restem.train.batch_size": 1}), "p", gpus=8)
    assert plan.placement.notes == ("GPU 3, 4, 5, 6 and 7 idle",) and plan.warnings == ()
    assert plan.costs.parallel == 2


def test_a_different_trainer_and_the_inline_network_are_planned() -> None:
    two_models = load_config(None, {"run.mode": "teacher-student", "student.model": "meta-llama/Llama-3.2-1B-Instruct"})
    names = [p.name for p in make_plan(two_models, "q", gpus=2).processes]
    assert names == ["hf teacher (seal)", "student (seal)", "M-step trainer"]
    inline = make_plan(load_config(None, {"pool.kind": "inline"}), "q", gpus=1)
    (network,) = inline.processes
    assert network.devices == ((0,),) and network.lora > 0


def test_seal_plan_prints_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this machine shows no GPU
    quick = runner.invoke(app, ["plan"])
    assert quick.exit_code == 0, quick.output
    assert "plan for the quickstart" in quick.output and "work and time per round" in quick.output
    eight = runner.invoke(app, ["plan", str(PAPER), "--gpus", "8"])
    assert eight.exit_code == 0, eight.output
    assert "vLLM teacher: CUDA_VISIBLE_DEVICES=0 --tensor-parallel-size 1" in eight.output
    assert "students ×7: local processes, CUDA_VISIBLE_DEVICES=1 / 2 / 3 / 4 / 5 / 6 / 7" in eight.output


@pytest.mark.parametrize(("args", "message"), [
    (["--gpus", "8", "--set", "teacher.devices=[9]"], "error: teacher.devices: GPU 9 does not exist"),
    (["--gpus", "8", "--set", "pool.devices=[0]"], "error: teacher.devices and pool.devices share GPU 0"),
    (["--gpus", "8", "--set", "teacher.devices=[0,1,2]"], "error: teacher.devices: 3 GPUs means tensor-parallel"),
    (["--gpus", "1"], "error: teacher.gpu_memory_utilization: the vLLM teacher and the students would share"),
    (["--gpus", "-1"], "error: --gpus must be 0 (the CPU) to 4096, got -1"),
    (["--gpus", "100000"], "error: --gpus must be 0 (the CPU) to 4096, got 100000"),
    (["--gpu-memory-gib", "0"], "error: --gpu-memory-gib must be a finite number more than 0, got 0"),
    (["--gpu-memory-gib", "-1"], "error: --gpu-memory-gib must be a finite number more than 0, got -1"),
    (["--gpu-memory-gib", "nan"], "error: --gpu-memory-gib must be a finite number more than 0, got nan"),
    (["--gpu-memory-gib", "inf"], "error: --gpu-memory-gib must be a finite number more than 0, got inf"),
])
def test_seal_plan_rejects_bad_input_in_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["plan", str(PAPER), *args])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.strip().count("\n") == 0, result.output
