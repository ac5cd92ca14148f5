"""Done-when test of issue 5: a real `seal run` (SmolLM2-135M, HF teacher, 1 tiny round) SIGKILLed in
the middle of a round and restarted with --resume ends with the journal of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.journal import JOURNAL, read_journal

SEAL = str(Path(sys.executable).parent / "seal")
Records = list[dict[str, Any]]


def config(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "tiny-rounds.toml"
    path.write_text(f"""
[run]
runs_dir = "{tmp_path / 'runs'}"
rounds = 1  # one round still crosses every phase: held-out, E-step (cut here), M-step, held-out
[data]
n_train = 2
n_eval = 1
[teacher]
model = "{model}"
backend = "hf"
[teacher.sampling]
n = 2
max_tokens = 48
[student.train]
epochs = 1
max_new_tokens = 12
[restem]
keep_non_improving = true  # so that the round trains the teacher, whatever the rewards
[restem.train]
epochs = 1
""")
    return path


def seal_run(cfg: Path, name: str, *extra: str) -> subprocess.Popen[bytes]:
    # One thread each: the two runs share the cores without OpenMP threads waiting on each other.
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen([SEAL, "run", str(cfg), "--name", name, *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Runs the test starts; any still going when it ends (a failure) are killed with their children."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=1700)
    assert proc.returncode == 0, err.decode()[-3000:]


def kill_when(proc: subprocess.Popen[bytes], journal: Path, ready: Callable[[Records], bool]) -> None:
    """SIGKILL the run (its whole process group) as soon as its journal satisfies `ready`."""
    while proc.poll() is None:
        if journal.exists() and ready(read_journal(journal)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.2)
    pytest.fail(f"the run ended (code {proc.returncode}) before it could be killed mid-round")


def outcome(records: Records, type_: str) -> dict[str, Any]:
    field = {"selection": "kept", "reward": "reward", "report": "score", "edit": "text", "evaluation": "tau"}
    keep = field[type_]
    return {r["key"]: r[keep] for r in records if r["type"] == type_}


def mid_round_1(records: Records) -> bool:
    """Round 1's students have started and not finished: some of its reports are in, none of its rewards."""
    reports = [r for r in records if r["type"] == "report" and r["key"].startswith("train/r1/")]
    return len(reports) >= 1 and not any(r["type"] == "reward" and r["key"].startswith("train/r1/")
                                         for r in records)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_run_killed_mid_round_resumes_to_the_uninterrupted_result(
    smollm2_dir: str, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    cfg = config(tmp_path, smollm2_dir)
    killed = tmp_path / "runs" / "killed"
    started += [seal_run(cfg, "whole"), seal_run(cfg, "killed")]  # side by side, same seeds
    kill_when(started[1], killed / JOURNAL, mid_round_1)
    before = read_journal(killed / JOURNAL)
    started.append(seal_run(cfg, "killed", "--resume"))
    finish(started[2])
    finish(started[0])

    whole, resumed = read_journal(tmp_path / "runs" / "whole" / JOURNAL), read_journal(killed / JOURNAL)
    assert resumed[: len(before)] == before  # the journal was only appended to
    assert Counter(r["type"] for r in resumed)["session"] == 2
    runs = Counter((r["type"], r["key"]) for r in resumed if r["type"] in ("edit", "report", "mstep_end"))
    assert max(runs.values()) == 1  # no edit sampled twice, no evaluation run twice
    for type_ in ("edit", "report", "reward", "selection", "evaluation"):
        assert outcome(resumed, type_) == outcome(whole, type_), type_  # nothing lost, nothing different
    assert [r["key"] for r in resumed if r["type"] == "selection"] == ["r1"]
