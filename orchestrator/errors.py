"""User-facing errors the CLI prints as one line (`error: ...`) instead of a traceback, and the readers of
user files that raise them: a mistake in the input exits 2, a step that failed (RunError) exits 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Input data that cannot be used; the message names the file or item and what is wrong."""


class RunError(Exception):
    """A step that failed for a reason other than the user's input (a failed M-step, a phase whose student
    jobs failed); the journal keeps what was done, so `--resume` retries from there."""


def read_user_text(path: Path, what: str) -> str:
    """A file the user named, as UTF-8 text; every way it can be unreadable is one line naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise DataError(f"{what} {path} is a directory; give a file") from None
    except PermissionError:
        raise DataError(f"{what} {path} cannot be read: permission denied") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); "
                        "save it as UTF-8") from None
    except OSError as e:
        raise DataError(f"{what} {path} cannot be read: {e.strerror}") from None


def read_user_json(path: Path, what: str) -> Any:
    try:
        return json.loads(read_user_text(path, what))
    except json.JSONDecodeError as e:
        raise DataError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
