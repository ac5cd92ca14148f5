"""The journal: append, read back, survive a torn write; run directories are never overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.journal import (
    Journal,
    RunDirError,
    TeacherAdapter,
    create_run_dir,
    in_run,
    read_journal,
    relocated,
    stored,
    trained_adapter,
)


def test_records_read_back_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append("edit", "train/r1/c/e0", text="an edit", round=1)
        journal.append_many([("report", "job-a", {"score": 0.5}), ("report", "job-b", {"score": 1.0})])
    reopened = Journal(path)
    assert reopened.get("edit", "train/r1/c/e0")["text"] == "an edit"
    assert [r["score"] for r in reopened.of_type("report")] == [0.5, 1.0]
    assert reopened.get("report", "job-c") is None
    assert reopened.get("edit", "job-a") is None  # keys are per type
    reopened.close()


def test_the_last_record_of_a_key_wins(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append("mstep_start", "r1", attempt=1)
        journal.append("mstep_start", "r1", attempt=2)
        assert journal.get("mstep_start", "r1")["attempt"] == 2
    assert Journal(tmp_path / "j.jsonl").get("mstep_start", "r1")["attempt"] == 2


def test_append_many_writes_all_records_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append_many([("edit", f"e{i}", {"text": "x" * 1000}) for i in range(50)])
        journal.append_many([])
    lines = path.read_text().splitlines()
    assert len(lines) == 50 and all(json.loads(line)["text"] == "x" * 1000 for line in lines)


def test_a_torn_last_line_is_skipped_on_read_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append("report", "a", score=1.0)
    with path.open("a") as f:
        f.write('{"type": "report", "key": "b", "sco')  # a SIGKILL in the middle of a write
    assert [r["key"] for r in read_journal(path)] == ["a"]
    with Journal(path) as journal:
        assert [r["key"] for r in journal.records] == ["a"]
        journal.append("report", "b", score=0.0)
    assert [r["key"] for r in read_journal(path)] == ["a", "b"]


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"type": "report", "key": "a"}\nnot json\n{"type": "report", "key": "b"}\n')
    with pytest.raises(RunDirError, match=r"j.jsonl: line 2 is not JSON"):
        Journal(path)


def test_records_survive_a_sigkill_right_after_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    code = (
        "import os, signal, sys\n"
        "from orchestrator.journal import Journal\n"
        f"j = Journal(__import__('pathlib').Path({str(path)!r}))\n"
        "for i in range(20):\n"
        "    j.append('report', f'job-{i}', score=i)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL
    assert [r["score"] for r in read_journal(path)] == list(range(20))


def test_run_directories_are_never_overwritten(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path / "runs" / "a", "[run]\n")
    (run / "journal.jsonl").write_text("")
    with pytest.raises(RunDirError, match="exists: pass --resume to continue it, or --name NEW"):
        create_run_dir(run, "[run]\nname = 'other'\n")
    assert (run / "config.toml").read_text() == "[run]\n"
    assert sorted(os.listdir(run)) == ["config.toml", "journal.jsonl"]


def test_read_journal_of_a_missing_run_names_it(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="is .* a seal run directory"):
        read_journal(tmp_path / "nope" / "journal.jsonl")


def test_the_trained_adapter_is_the_last_m_step_that_trained_one() -> None:
    """A round whose M-step kept nothing leaves the teacher with the adapter before it; `through` stops at a
    round (the adapter a round starts with is the one through the round before)."""
    ends = [{"type": "mstep_end", "key": "r1", "round": 1, "adapter": "/a/round-1/teacher"},
            {"type": "evaluation", "key": "r1", "round": 1},
            {"type": "mstep_end", "key": "r2", "round": 2, "adapter": "/a/round-1/teacher", "skipped": True},
            {"type": "mstep_end", "key": "r3", "round": 3, "adapter": "/a/round-3/teacher"}]
    assert trained_adapter(ends[:2]) == TeacherAdapter(1, "/a/round-1/teacher")
    assert trained_adapter(ends[:3]) == TeacherAdapter(1, "/a/round-1/teacher")  # round 2 trained none
    assert trained_adapter(ends) == TeacherAdapter(3, "/a/round-3/teacher")
    assert trained_adapter(ends, through=2) == TeacherAdapter(1, "/a/round-1/teacher")
    assert trained_adapter(ends, through=0) is None and trained_adapter([]) is None


def test_relocated_moves_paths_inside_the_run_directory_and_nothing_else(tmp_path: Path) -> None:
    old, new = tmp_path / "runs" / "x-single-model", tmp_path / "runs" / "x-teacher-student"
    record = {"type": "mstep_end", "adapter": f"{old}/adapters/round-1/teacher", "round": 1,
              "report": {"adapter_dir": str(old), "paths": [f"{old}2/adapters", "x-single-model/y"]},
              "note": f"trained in {old}"}
    assert relocated(record, old, new) == {
        "type": "mstep_end", "adapter": f"{new}/adapters/round-1/teacher", "round": 1,
        # a run whose name starts with the old one's, a relative mention and free text are not this run's paths
        "report": {"adapter_dir": str(new), "paths": [f"{old}2/adapters", "x-single-model/y"]},
        "note": f"trained in {old}",
    }


def test_paths_are_stored_relative_to_the_run_and_found_wherever_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run moved, renamed or read from another folder finds its adapters: stored relative to the run
    directory; an older journal's path (relative to where the run started, or absolute) found at the same
    place inside the run directory, an absolute one that is still there as written."""
    monkeypatch.chdir(tmp_path)
    run = Path("runs") / "first"
    assert stored(run, str(run / "adapters" / "round-1" / "teacher")) == "adapters/round-1/teacher"
    assert stored(run, "/elsewhere/adapter") == "/elsewhere/adapter"  # not in the run: kept as given
    (run / "adapters" / "round-1" / "teacher").mkdir(parents=True)
    older = "runs/first/adapters/round-1/teacher"  # an older journal, read where the run started
    assert in_run(run, older) == older
    moved = tmp_path / "archive" / "renamed"
    (moved / "adapters" / "round-1" / "teacher").mkdir(parents=True)
    (tmp_path / "kept").mkdir()
    monkeypatch.chdir(tmp_path / "archive")
    here = str(moved / "adapters" / "round-1" / "teacher")
    assert in_run(moved, "adapters/round-1/teacher") == here
    assert in_run(moved, "runs/first/adapters/round-1/teacher") == here  # older journal, run since moved
    assert in_run(moved, str(tmp_path / "runs" / "gone" / "adapters" / "round-1" / "teacher")) == here
    assert in_run(moved, str(tmp_path / "kept")) == str(tmp_path / "kept")  # absolute and there: as written
    assert in_run(moved, "adapters/round-2/teacher") == str(moved / "adapters" / "round-2" / "teacher")
    (tmp_path / "archive" / "adapters" / "round-3" / "teacher").mkdir(parents=True)  # another run's, here
    assert in_run(moved, "adapters/round-3/teacher") == str(moved / "adapters" / "round-3" / "teacher")
    ends = [{"type": "mstep_end", "key": "r1", "round": 1, "adapter": "adapters/round-1/teacher"}]
    assert trained_adapter(ends, run_dir=moved) == TeacherAdapter(1, here)


def test_binary_bytes_in_a_journal_are_a_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"type": "a", "key": "1"}\n\xff\xfe\x00binary\n')
    with pytest.raises(RunDirError, match="line 2 is not JSON; the journal is damaged"):
        read_journal(path)


def test_a_write_the_disk_cannot_take_is_undone_and_names_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from orchestrator import journal as journal_module

    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append("edit", "a", text="kept")
    before = path.read_bytes()
    real_write = os.write

    def disk_full_half_way(fd: int, data: bytes) -> int:  # what a full disk does: takes part, then refuses
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(journal_module.os, "write", disk_full_half_way)
    with pytest.raises(OSError) as raised:
        journal.append("edit", "b", text="lost")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_bytes() == before and journal.get("edit", "b") is None
    monkeypatch.undo()
    journal.append("edit", "b", text="written once space is back")
    journal.close()
    assert [r["key"] for r in read_journal(path)] == ["a", "b"]
