"""The metrics sink: metrics.jsonl always; a missing tracker integration degrades to the null tracker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.metrics import MetricsSink, NullTracker, make_tracker


class Recorder:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log(self, step: int, values: dict[str, float]) -> None:
        self.logged.append((step, values))

    def close(self) -> None:
        pass


def test_every_log_goes_to_metrics_jsonl_and_the_tracker(tmp_path: Path) -> None:
    tracker = Recorder()
    sink = MetricsSink(tmp_path, tracker)
    sink.log(0, {"eval/tau": 0.25})
    sink.log(1, {"train/reward": 0.5, "eval/tau": 0.3})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(line["step"], line["eval/tau"]) for line in lines] == [(0, 0.25), (1, 0.3)]
    assert tracker.logged == [(0, {"eval/tau": 0.25}), (1, {"train/reward": 0.5, "eval/tau": 0.3})]


TRACKER_MODULES = [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")]


@pytest.mark.parametrize(("tracker", "module"), TRACKER_MODULES)
def test_an_uninstalled_tracker_warns_and_falls_back_to_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracker: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    warnings: list[str] = []
    cfg = load_config(None, {"metrics.tracker": tracker})
    assert isinstance(make_tracker(cfg, tmp_path, warnings.append), NullTracker)
    assert len(warnings) == 1 and f'metrics.tracker = "{tracker}"' in warnings[0]


def test_no_tracker_asked_is_the_null_tracker(tmp_path: Path) -> None:
    assert isinstance(make_tracker(load_config(), tmp_path, print), NullTracker)
