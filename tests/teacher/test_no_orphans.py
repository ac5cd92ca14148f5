"""No orphans (issue 17): `seal run` and `seal teacher serve` killed with SIGTERM or SIGKILL at several moments
leave no process of their tree behind and no port bound; a killed run resumes to its next moment. Real vLLM
server, real local pool worker (slow; CI runs them).

Each kill hits the seal process alone, as `kill PID` or the OOM killer would: what must end its children is
the parent-death signal and the cleanup on exit, not a signal to the whole group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.journal import JOURNAL, read_journal

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_vllm")]

SEAL = [sys.executable, "-c", "from orchestrator.cli import app; app()"]


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (children, theirs, ...) with its command line."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = commands.get(child, "")
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def vllm_port(tree: dict[int, str]) -> int | None:
    for command in tree.values():
        words = command.split()
        if "--port" in words and any("vllm" in w for w in words):
            return int(words[words.index("--port") + 1])
    return None


def port_bound(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def kill_and_check(proc: subprocess.Popen[str], sig: signal.Signals, moment: str) -> None:
    """Signal the seal process alone; within a minute every process of its tree is gone and vLLM's port free."""
    tree = descendants(proc.pid)
    port = vllm_port(tree)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (any(alive(p) for p in tree) or (port and port_bound(port))):
        time.sleep(0.2)
    left = {pid: command[:120] for pid, command in tree.items() if alive(pid)}
    for pid in left:  # so that a failure does not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{sig.name} {moment}: left behind {left}"
    assert not (port and port_bound(port)), f"{sig.name} {moment}: port {port} still bound"


def wait_until(condition: object, proc: subprocess.Popen[str], moment: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"the command ended before {moment}"
        assert time.monotonic() < deadline, f"{moment} not reached in {timeout} s"
        time.sleep(0.05)


def starting_vllm(proc: subprocess.Popen[str]) -> bool:
    """vLLM's server process exists and has had a moment to start importing (not yet ready)."""
    if vllm_port(descendants(proc.pid)) is None:
        return False
    time.sleep(3)
    return True


def records(journal: Path, kind: str) -> int:
    return sum(r["type"] == kind for r in read_journal(journal)) if journal.exists() else 0


def test_a_killed_seal_run_leaves_nothing_at_any_moment_and_resumes(
    smollm2_dir: str, tiny_model_dir: str, tmp_path: Path
) -> None:
    """One teacher–student run (SmolLM2 on vLLM teaching the tiny model, a local pool worker) killed four
    times, each at a later moment, resumed after each kill."""
    sets = {"run.runs_dir": str(tmp_path), "run.mode": "teacher-student", "run.rounds": 1,
            "teacher.model": smollm2_dir, "teacher.backend": "vllm", "student.model": tiny_model_dir,
            "pool.kind": "local", "pool.workers": 1, "data.n_train": 1, "data.n_eval": 1, "teacher.sampling.n": 2,
            "teacher.sampling.max_tokens": 12, "student.train.epochs": 1, "student.train.max_new_tokens": 4,
            "restem.train.epochs": 1, "restem.keep_non_improving": True}
    flags = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    journal = tmp_path / "orphans" / JOURNAL

    log = (tmp_path / "seal-run.log").open("a")  # what the runs printed, for a failure's reader

    def seal_run(resume: bool) -> subprocess.Popen[str]:
        return subprocess.Popen([*SEAL, "run", "--name", "orphans", "--resume" if resume else "--no-resume",
                                 *flags], stdout=log, stderr=subprocess.STDOUT, text=True)

    moments = [
        ("during vLLM start-up", signal.SIGTERM, None),
        ("mid E-step, edits written", signal.SIGKILL, "edit"),
        ("mid student phase", signal.SIGTERM, "report"),
        ("mid M-step", signal.SIGKILL, "mstep_start"),
    ]
    for n, (moment, sig, kind) in enumerate(moments):
        proc = seal_run(resume=n > 0)
        if kind is None:
            wait_until(lambda proc=proc: starting_vllm(proc), proc, moment)
        else:
            before = records(journal, kind)
            wait_until(lambda kind=kind, before=before: records(journal, kind) > before, proc, moment)
        kill_and_check(proc, sig, moment)
    log.close()
    # Each resume went on from the journal (round 0 was evaluated once, whatever the kills); that a run killed
    # at any record resumes to the uninterrupted result is benchmarks/faults.py's and test_resume.py's part.
    assert [r["key"] for r in read_journal(journal) if r["type"] == "evaluation"] == ["r0"]


@pytest.mark.parametrize(("sig", "moment"), [(signal.SIGTERM, "during vLLM start-up"), (signal.SIGKILL, "ready")],
                         ids=["SIGTERM-starting", "SIGKILL-ready"])
def test_a_killed_teacher_serve_leaves_nothing(
    sig: signal.Signals, moment: str, smollm2_dir: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen([*SEAL, "teacher", "serve", "--model", smollm2_dir, "--log-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if moment == "ready":
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("Ctrl-C stops"):
                    break
            assert proc.poll() is None, "seal teacher serve ended before it was ready"
        else:
            wait_until(lambda: starting_vllm(proc), proc, moment)
        kill_and_check(proc, sig, moment)
    finally:
        proc.kill()  # no-op once it has ended
