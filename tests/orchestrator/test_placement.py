"""Placement on 0, 1, 2 and 8 visible GPUs and on Ray: what each child process is given (the vLLM server's
environment and arguments, each local worker's environment, the private Ray node's GPUs and each actor's
share), that the teacher and the students never share a GPU unless a memory split is configured, and
the one-line errors for devices that do not exist, overlaps and tensor-parallel sizes."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import ConfigError, load_config
from orchestrator.model_shape import attention_heads
from orchestrator.placement import Placement, place
from student.pools.local import worker_env
from student.pools.ray_pool import _visible_gpus
from teacher import vllm_process
from teacher.vllm_process import ServerOptions, VLLMServer

PAPER = Path(__file__).resolve().parents[2] / "configs" / "knowledge-paper.toml"
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")


def gpus(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def paper(**sets: Any) -> Any:
    """knowledge-paper.toml: a managed vLLM teacher and a local pool."""
    return load_config(PAPER, sets)


def server_child(p: Placement, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment the managed vLLM server would be started with, as on a GPU machine."""
    monkeypatch.setattr(vllm_process, "on_cpu", lambda: False)
    server = VLLMServer("model", tmp_path, p.server_options(ServerOptions()))
    return server._command(), server._env()


def arg(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


@needs_vllm
@pytest.mark.parametrize(("visible", "teacher", "students"), [
    (2, "0", ["1"]),
    (8, "0", ["1", "2", "3", "4", "5", "6", "7"]),
])
def test_the_teacher_gets_gpu_0_and_each_student_one_of_the_rest(
    visible: int, teacher: str, students: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = place(paper(), gpus(visible))
    argv, env = server_child(p, monkeypatch, tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == teacher
    assert arg(argv, "--tensor-parallel-size") is None  # one GPU: vLLM's default of 1
    assert arg(argv, "--gpu-memory-utilization") == "0.9"
    assert [worker_env(slot, p.student_gpus(), 1)["CUDA_VISIBLE_DEVICES"] for slot in range(p.workers)] == students
    assert p.notes == ()


@needs_vllm
def test_a_tensor_parallel_teacher_sees_all_its_gpus_and_the_students_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = place(paper(**{"teacher.devices": [0, 1, 2, 3]}), gpus(8), attention_heads=28)
    argv, env = server_child(p, monkeypatch, tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and arg(argv, "--tensor-parallel-size") == "4"
    assert p.student_gpus() == ("4", "5", "6", "7")


@needs_vllm
def test_one_gpu_is_shared_only_with_a_memory_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^teacher.gpu_memory_utilization: the vLLM teacher and the students "
                                          "would share GPU 0"):
        place(paper(), gpus(1))
    p = place(paper(**{"teacher.gpu_memory_utilization": 0.4}), gpus(1))
    argv, env = server_child(p, monkeypatch, tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and arg(argv, "--gpu-memory-utilization") == "0.4"
    assert p.student_gpus() == ("0",)
    assert "share GPU 0" in p.notes[0]


def test_children_get_the_names_cuda_visible_devices_gave_this_process() -> None:
    p = place(paper(), ["3", "GPU-5f1e"])
    assert p.server_options(ServerOptions()).cuda_visible_devices == "3"
    assert p.student_gpus() == ("GPU-5f1e",)


@pytest.mark.parametrize("visible", [1, 2, 8])
@pytest.mark.parametrize("sets", [
    {},
    {"pool.kind": "ray"},
    {"pool.kind": "inprocess"},
    {"teacher.devices": [0, 1]},
    {"pool.workers": 3},
    {"pool.devices": [0]},
], ids=json.dumps)
def test_teacher_and_students_never_share_a_gpu_without_a_split(visible: int, sets: dict[str, Any]) -> None:
    try:
        p = place(paper(**sets), gpus(visible), attention_heads=28)
    except ConfigError as e:
        assert "share GPU" in str(e) or "does not exist" in str(e)
        return
    assert not set(p.teacher) & set(p.students)
    split = place(paper(**sets, **{"teacher.gpu_memory_utilization": 0.5}), gpus(visible), attention_heads=28)
    assert split.memory_share == 0.5


def test_ray_private_node_sees_the_student_gpus_and_each_actor_asks_for_one() -> None:
    p = place(paper(**{"pool.kind": "ray"}), gpus(8))
    assert p.student_host == "ray" and p.workers == 7
    assert p.ray_node_gpus() == ("1", "2", "3", "4", "5", "6", "7")
    assert p.ray_gpus_per_actor() == 1.0
    shared = place(paper(**{"pool.kind": "ray", "pool.workers": 14}), gpus(8))
    assert shared.ray_gpus_per_actor() == 0.5 and shared.ray_node_gpus() == p.ray_node_gpus()


def test_ray_cluster_places_its_own_actors() -> None:
    p = place(paper(**{"pool.kind": "ray", "pool.ray_address": "auto", "pool.workers": 16}), gpus(8))
    assert p.ray_cluster and p.workers == 16
    assert p.ray_node_gpus() == () and p.ray_gpus_per_actor() is None and p.student_gpus() == ()
    with pytest.raises(ConfigError, match=r"^pool.devices: a Ray cluster joined by pool.ray_address"):
        place(paper(**{"pool.kind": "ray", "pool.ray_address": "auto", "pool.devices": [1]}), gpus(8))


def test_a_private_ray_node_starts_with_only_the_student_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with _visible_gpus(("1", "2")):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"


def test_in_process_roles_get_torch_devices() -> None:
    quick = load_config(None)  # hf teacher, in-process student
    p = place(quick, gpus(2))
    assert (p.teacher_device(), p.student_device()) == ("cuda:0", "cuda:1")
    inline = place(load_config(None, {"pool.kind": "inline", "teacher.devices": [1]}), gpus(2))
    assert inline.teacher == inline.students == (1,) and inline.student_device() == "cuda:1"
    alone = place(quick, gpus(1))  # no server reserves memory: sharing is allowed, and said
    assert alone.students == (0,) and "their memory adds up" in alone.notes[0]


def test_on_the_cpu_device_fields_are_checked_and_reported_as_ignored() -> None:
    p = place(paper(**{"teacher.devices": [0, 1], "pool.devices": [2]}), [])
    assert not p.on_gpu and p.student_gpus() == () and p.server_options(ServerOptions()) == ServerOptions()
    assert p.notes == ("teacher.devices = [0, 1] ignored: no GPU is visible (a CPU run)",
                       "pool.devices = [2] ignored: no GPU is visible (a CPU run)")
    assert place(load_config(None, {"pool.kind": "local", "pool.workers": 2}), []).workers == 2
    with pytest.raises(ConfigError, match=r"^--set pool.devices: GPU indices must be distinct"):
        load_config(None, {"pool.devices": [1, 1]})


@pytest.mark.parametrize(("visible", "sets", "stream"), [
    (0, {}, False),  # one machine's cores: teacher and students would slow each other (docs/architecture.md §7)
    (0, {"teacher.backend": "url", "teacher.url": "http://h"}, True),  # the teacher is another machine
    (0, {"pool.stream": True}, True),
    (8, {}, True),
    (8, {"pool.kind": "inprocess"}, False),  # one process does one thing at a time
    (8, {"pool.stream": False}, False),
    (1, {"teacher.gpu_memory_utilization": 0.4}, False),  # one GPU for both
    (8, {"pool.kind": "ray", "pool.ray_address": "auto"}, True),
], ids=str)
def test_the_e_step_streams_where_teacher_and_students_do_not_compete(
    visible: int, sets: dict[str, Any], stream: bool
) -> None:
    assert place(paper(**sets), gpus(visible)).stream is stream


@pytest.mark.parametrize(("sets", "message"), [
    ({"teacher.devices": [8]}, "teacher.devices: GPU 8 does not exist; 8 GPU(s) are visible (0 to 7;"),
    ({"pool.devices": [3, 9]}, "pool.devices: GPU 9 does not exist"),
    ({"teacher.devices": [0, 1], "pool.devices": [1, 2]}, "teacher.devices and pool.devices share GPU 1: give them"),
    ({"teacher.devices": [0, 1, 2]}, "teacher.devices: 3 GPUs means tensor-parallel size 3, which does not divide "
                                     "the teacher model's 28 attention heads; give it 1, 2, 4 or 7 GPU(s)"),
    ({"teacher.backend": "hf", "teacher.devices": [0, 1]}, "teacher.devices = [0, 1]: the hf teacher runs"),
    ({"teacher.backend": "url", "teacher.url": "http://h", "teacher.devices": [0]}, "teacher.devices: a teacher at"),
    ({"pool.kind": "inprocess", "pool.devices": [1, 2]}, "pool.devices = [1, 2]: the in-process pool runs one"),
])
def test_bad_placements_are_one_line_config_errors(sets: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        place(paper(**sets), gpus(8), attention_heads=28)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_attention_heads_come_from_a_local_folders_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 9}))
    assert attention_heads(str(tmp_path)) == 9
    assert attention_heads(str(tmp_path / "missing")) is None
