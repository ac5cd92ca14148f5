"""Core sharing between seal processes: real marks of real processes, in a folder of the test's own."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from runtime import cores
from student import sft
from student.messages import Probe, StudentJob, TrainingExample, TrainSpec
from student.student import Student

# A second seal process: marks itself as computing, says so, and stays until its stdin closes.
OTHER = """
import sys
from pathlib import Path
from runtime import cores
cores.MARKS = Path(sys.argv[1])
with cores.computing():
    print("computing", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Own marks folder, 4 usable cores, and torch's thread count put back afterwards."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cores, "MARKS", tmp_path / "marks")
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(cores, "busy_elsewhere", lambda: 0.0)  # whatever else the machine runs meanwhile
    monkeypatch.delenv("SEAL_THREADS", raising=False)
    torch.set_num_threads(4)
    yield tmp_path / "marks"
    torch.set_num_threads(threads)


def start_other(marks: Path) -> subprocess.Popen[str]:
    other = subprocess.Popen([sys.executable, "-c", OTHER, str(marks)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    assert other.stdout is not None and other.stdout.readline().strip() == "computing"
    return other


def test_alone_a_process_keeps_its_threads_and_beside_others_takes_its_share(marks: Path) -> None:
    with cores.computing():
        assert torch.get_num_threads() == 4
        first = start_other(marks)
        cores.rebalance(now=True)
        assert torch.get_num_threads() == 2
        second = start_other(marks)
        cores.rebalance(now=True)
        assert torch.get_num_threads() == 1  # 4 // 3, never 0
        for other in (first, second):
            other.communicate("")  # its stdin closes: it leaves its block and exits
        cores.rebalance(now=True)
        assert torch.get_num_threads() == 4
    assert list(marks.iterdir()) == []  # ours is gone too


def test_beside_a_program_that_is_not_seal_a_process_takes_the_cores_it_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real CPU-bound programs on all cores but one, carrying no mark: within a look or two, one thread."""
    monkeypatch.setattr(cores, "MARKS", tmp_path / "marks")
    monkeypatch.delenv("SEAL_THREADS", raising=False)
    threads, usable = torch.get_num_threads(), cores.usable_cores()
    spin = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    others = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(usable - 1)]
    try:
        torch.set_num_threads(usable)
        with cores.computing():
            for _ in range(3):
                time.sleep(0.3)
                cores.rebalance(now=True)
            assert torch.get_num_threads() == 1
    finally:
        for other in others:
            other.kill()
            other.wait()
        torch.set_num_threads(threads)


def test_marks_of_dead_processes_and_reused_pids_are_removed(marks: Path) -> None:
    marks.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (marks / f"{dead.stdout.strip()}-1").touch()
    (marks / f"{cores._identity(1).split('-')[0]}-0").touch()  # pid 1 is alive, but did not start at tick 0
    (marks / "not-a-mark").touch()
    assert cores.computing_processes() == 0
    assert list(marks.iterdir()) == []


def test_seal_threads_fixes_the_count_and_marks_nothing(marks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAL_THREADS", "3")
    start_other(marks).communicate("")
    with cores.computing():
        assert torch.get_num_threads() == 3
        assert not marks.exists() or list(marks.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "two", ""])
def test_seal_threads_must_be_a_whole_number(value: str, marks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAL_THREADS", value)
    with pytest.raises(ValueError, match="SEAL_THREADS"), cores.computing():
        pass


def test_without_a_writable_marks_folder_a_job_still_computes(marks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marks.parent.joinpath("a-file").write_text("")
    monkeypatch.setattr(cores, "MARKS", marks.parent / "a-file" / "marks")
    with cores.computing():
        assert torch.get_num_threads() == 4


def test_not_on_the_cpu_nothing_changes(marks: Path) -> None:
    other = start_other(marks)
    with cores.computing(on_cpu=False):
        cores.rebalance(now=True)
        assert torch.get_num_threads() == 4
    other.communicate("")


def test_a_job_trains_and_answers_on_its_share(tiny_model_dir: str, marks: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training step and every decoding step rebalances: a job started beside another seal process
    runs on half the cores, and has all of them back when it ends."""
    seen: list[int] = []
    rebalance = cores.rebalance

    def rebalance_and_record(now: bool = False) -> None:
        rebalance(now=True)
        seen.append(torch.get_num_threads())

    monkeypatch.setattr(sft, "rebalance", rebalance_and_record)
    monkeypatch.setattr(cores, "rebalance", rebalance_and_record)  # RebalanceEachStep's, while generating
    student = Student(tiny_model_dir, device="cpu")
    other = start_other(marks)
    job = StudentJob("j", 0, (TrainingExample("Fact?", "Blue."),) * 4, (Probe("q", "Fact?", "Blue"),),
                     train=TrainSpec(epochs=2, batch_size=2, max_new_tokens=3), scoring="generate")
    student.run(job)
    other.communicate("")
    assert len(seen) >= 4 + 2 and set(seen) == {2}  # 4 training steps, at least 2 decoding steps
    assert torch.get_num_threads() == 4
