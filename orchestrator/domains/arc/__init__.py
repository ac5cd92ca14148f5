"""Few-shot ARC: self-edits that configure test-time training (issue 7)."""

from orchestrator.domains.arc.data import load, select
from orchestrator.domains.arc.domain import ArcDomain
from orchestrator.domains.arc.grids import ArcTask

__all__ = ["ArcDomain", "ArcTask", "load", "select"]
