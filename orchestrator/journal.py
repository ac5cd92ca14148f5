"""Run directories and the append-only journal that makes a run resumable (docs/architecture.md §5).

`runs/<name>/` holds `config.toml` (resolved, with versions), `journal.jsonl`, `adapters/round-<k>/`,
`metrics.jsonl` and plots. Every result is appended to the journal, as one JSON line written with a
single `write` and `fsync`ed, before the loop acts on it; a restarted run reads the journal back and
computes only what is missing. Records carry a `type` and a `key` that is unique per type (an edit's
place, a job id, a round), so read-back is a dictionary lookup. A path inside the run directory (a teacher
adapter) is stored relative to it (`stored`) and found again with `in_run`, so a run works from any folder
and after it is moved or renamed.

A run directory is never overwritten: an existing one is an error unless the caller resumes it.
A SIGKILL can leave a torn last line; it is cut off on open (it was never acted on).
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG = "config.toml"
JOURNAL = "journal.jsonl"
METRICS = "metrics.jsonl"


class RunDirError(Exception):
    """A run directory that cannot be used as asked; one line naming it and what to do."""


def create_run_dir(path: Path, config_text: str) -> Path:
    """A new run directory holding the resolved config; never an existing one."""
    if path.exists():
        raise RunDirError(
            f"run directory {path} exists: pass --resume to continue it, or --name NEW for a new run"
        )
    try:
        path.mkdir(parents=True)
        (path / CONFIG).write_text(config_text)
    except OSError as e:  # read-only or immutable runs dir, a file where a folder must be, a full disk
        raise RunDirError(f"cannot create run directory {path}: {e.strerror}; choose another run.runs_dir "
                          "or --name") from None
    return path


def adapter_dir(run_dir: Path, round_: int) -> Path:
    return run_dir / "adapters" / f"round-{round_}" / "teacher"


@dataclass(frozen=True)
class TeacherAdapter:
    """The teacher adapter that round `round` trained, in its folder `path`: a value the loop passes
    from step to step (the untrained teacher is None), never recovered from the folder's name."""

    round: int
    path: str


def trained_adapter(records: Iterable[dict[str, Any]], through: int | None = None, run_dir: Path | None = None
                    ) -> TeacherAdapter | None:
    """The latest adapter a finished M-step trained in rounds ≤ `through` (any round: None), its path found
    in `run_dir` (None: as stored). An M-step that kept nothing trained none: the teacher kept the adapter
    before it."""
    ends = [r for r in records if r["type"] == "mstep_end" and not r.get("skipped")
            and (through is None or r["round"] <= through)]
    last = max(ends, key=lambda r: r["round"], default=None)
    if last is None:
        return None
    return TeacherAdapter(last["round"], in_run(run_dir, last["adapter"]) if run_dir else last["adapter"])


def stored(run_dir: Path, path: str) -> str:
    """A path as the journal stores it: relative to the run directory when inside it, so that the run
    works from any folder and after it is moved or renamed."""
    return str(relocated(path, run_dir, Path()))


def in_run(run_dir: Path, path: str) -> str:
    """A path the journal stored, to use now: relative to the run directory (how it is stored; an absolute
    one as it is), else the same place inside this run directory. Older journals stored paths relative to
    the folder the run started in, or absolute: `runs/old/adapters/round-1/teacher` is found as
    `adapters/round-1/teacher` in the run directory, wherever it is now (never relative to the current
    folder, which may be another run's)."""
    parts = Path(path).parts
    found = (run_dir.joinpath(*parts[i:]) for i in range(len(parts)))
    return str(next((p for p in found if p.exists()), run_dir / path))


def relocated(value: Any, old: Path, new: Path) -> Any:
    """A record (or any JSON value) with every path inside run directory `old` moved to `new`: strings that
    are `old` or a path under it, matched by whole path components, so a run named as a prefix of another
    is left alone. What a forked run's copied records need (the adapters they name are copied with them)."""
    if isinstance(value, dict):
        return {k: relocated(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [relocated(v, old, new) for v in value]
    if isinstance(value, str) and (value == str(old) or value.startswith(f"{old}{os.sep}")):
        return str(new / Path(value).relative_to(old))
    return value


class Journal:
    """Append-only JSONL with an index on (type, key); the last record of a (type, key) wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.records: list[dict[str, Any]] = _read_repaired(path)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only or immutable run directory being resumed
            raise RunDirError(f"cannot write the journal {path}: {e.strerror}") from None
        self._index = {(r["type"], r["key"]): r for r in self.records}

    def get(self, type_: str, key: str) -> dict[str, Any] | None:
        return self._index.get((type_, key))

    def of_type(self, type_: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r["type"] == type_)

    def append(self, type_: str, key: str, **fields: Any) -> dict[str, Any]:
        return self.append_many([(type_, key, fields)])[0]

    def append_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """All or nothing: one write of all lines, then fsync. A write the disk cannot take is undone (the
        journal ends at its last whole record) and raised as an OSError naming the journal."""
        if not items:
            return []
        now = time.time()
        records = [{"type": t, "key": k, "time": now, **fields} for t, k, fields in items]
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        size = os.fstat(self._fd).st_size
        try:
            if os.write(self._fd, data) != len(data):  # a full disk takes part of a write, then refuses
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(self._fd)
        except OSError as e:
            os.ftruncate(self._fd, size)
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        self.records += records
        self._index.update({(r["type"], r["key"]): r for r in records})
        return records

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The records of a journal, read-only (a torn last line is skipped, not repaired)."""
    if not path.exists():
        raise RunDirError(f"{path} not found: is {path.parent} a seal run directory?")
    return _parse(path.read_bytes(), path)


def _read_repaired(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        os.truncate(path, len(whole))
    return _parse(whole, path)


def _parse(data: bytes, path: Path) -> list[dict[str, Any]]:
    lines = data.split(b"\n")
    if not data.endswith(b"\n"):
        lines = lines[:-1]  # torn tail
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):  # a torn or overwritten line, binary bytes
            raise RunDirError(f"{path}: line {number} is not JSON; the journal is damaged") from None
        if not isinstance(record, dict) or "type" not in record or "key" not in record:
            raise RunDirError(f"{path}: line {number} is not a journal record")
        records.append(record)
    return records
