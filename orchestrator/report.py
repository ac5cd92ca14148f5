"""`seal report`: what a run did, read from its journal alone (a run still going can be reported too).

Per round: the E-step's mean reward against the baseline, the share of edits that improved on it and
that did not parse, how many edits were kept, the M-step's last loss, and held-out τ before (round 0)
and after each round, with its paired change since round 0 (a 95% bootstrap interval over contexts, so
a reader sees whether τ moved beyond sampling noise). Per held-out context (ARC: per task, 1 = solved):
τ by round. Under the rounds, a line for each round whose student jobs failed: a failed job scores 0, which
the means above would hide. Plots go to `<run>/plots/` as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from rich.table import Table

from orchestrator.evaluation.tables import Estimate, estimate
from orchestrator.journal import JOURNAL, read_journal


@dataclass(frozen=True)
class RoundRow:
    round: int
    reward: float | None = None  # E-step mean reward (none for round 0)
    baseline: float | None = None  # the unadapted student's τ
    alone: float | None = None  # the τ of the student trained on the context alone (restem.baseline = "context")
    improved: float | None = None  # share of edits that beat their bar (alone where measured, else baseline)
    parse_failures: float | None = None
    kept: int | None = None
    contexts: int | None = None  # the round's training contexts: at most one edit each is kept (best_of_m)
    mstep_loss: float | None = None
    tau: float | None = None  # held-out τ after this round
    baseline_tau: float | None = None
    alone_tau: float | None = None
    tau_gain: Estimate | None = None  # paired: τ − round 0's τ on the same contexts, 95% bootstrap interval


def round_rows(records: Sequence[dict[str, Any]]) -> list[RoundRow]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_type.setdefault(r["type"], []).append(r)
    evaluations = {r["round"]: r for r in by_type.get("evaluation", [])}
    selections = {r["round"]: r for r in by_type.get("selection", [])}
    msteps = {r["round"]: r for r in by_type.get("mstep_end", [])}
    rewards: dict[int, list[dict[str, Any]]] = {}
    for r in by_type.get("reward", []):
        if r["phase"] == "train":
            rewards.setdefault(r["round"], []).append(r)
    rounds = sorted(evaluations.keys() | selections.keys() | rewards.keys())
    gains = gains_over_round_0(per_context(records))
    return [_row(k, rewards.get(k, []), selections.get(k), msteps.get(k), evaluations.get(k), gains.get(k))
            for k in rounds]


@dataclass(frozen=True)
class FailedJobs:
    round: int
    failed: int
    jobs: int  # the student jobs the round ran
    first: str  # the first failed job's error


def failed_jobs(records: Sequence[dict[str, Any]]) -> list[FailedJobs]:
    """Per round with failed student jobs, how many of its jobs failed: the last record of each job, its report
    or, in a phase that stopped the run, its `failure` (orchestrator/edits.py). Jobs are counted where they
    name their round (journals from before issue #34 do not)."""
    last: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["type"] in ("report", "failure") and "round" in r:
            last[r["key"]] = r
    rounds: dict[int, list[dict[str, Any]]] = {}
    for r in last.values():
        rounds.setdefault(r["round"], []).append(r["report"])
    out = []
    for k, reports in sorted(rounds.items()):
        failed = [r for r in reports if not r["ok"]]
        if failed:
            first = next((line for line in (failed[0].get("error") or "").splitlines() if line.strip()), "")
            out.append(FailedJobs(k, len(failed), len(reports), first.strip()))
    return out


def gains_over_round_0(taus: dict[str, dict[int, float]]) -> dict[int, Estimate]:
    """Round k's held-out τ minus round 0's, paired on the contexts both evaluated: with a handful of
    contexts a round's τ moves by sampling noise alone, and this interval says whether it moved beyond it."""
    rounds = sorted({k for by_round in taus.values() for k in by_round} - {0})
    gains = {k: [t[k] - t[0] for t in taus.values() if 0 in t and k in t] for k in rounds}
    return {k: estimate(diffs) for k, diffs in gains.items() if diffs}


def _row(
    k: int, rewards: list[dict[str, Any]], selection: dict[str, Any] | None, mstep: dict[str, Any] | None,
    evaluation: dict[str, Any] | None, tau_gain: Estimate | None,
) -> RoundRow:
    losses = (mstep or {}).get("report", {}).get("epoch_losses") or [None]
    alone = [r["alone"] for r in rewards if r.get("alone") is not None]
    return RoundRow(
        round=k,
        reward=mean(r["reward"] for r in rewards) if rewards else None,
        baseline=mean(r["baseline"] for r in rewards) if rewards else None,
        alone=mean(alone) if alone else None,
        improved=mean(r["reward"] > _bar(r) for r in rewards) if rewards else None,
        parse_failures=mean(not r["parsed"] for r in rewards) if rewards else None,
        kept=len(selection["kept"]) if selection else None,
        contexts=selection.get("contexts") if selection else None,
        mstep_loss=losses[-1],
        tau=evaluation["tau"] if evaluation else None,
        baseline_tau=evaluation["baseline_tau"] if evaluation else None,
        alone_tau=evaluation.get("alone_tau") if evaluation else None,
        tau_gain=tau_gain,
    )


def _bar(reward: dict[str, Any]) -> float:
    """What the edit had to beat: the context alone where the run measured it, else no adaptation."""
    return reward["baseline"] if reward.get("alone") is None else reward["alone"]


def per_context(records: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Held-out context → round → τ."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        if r["type"] == "evaluation":
            for cid, tau in r["per_context"].items():
                out.setdefault(cid, {})[r["round"]] = tau
    return out


# --- rendering -------------------------------------------------------------------------------------------


def _fmt(value: float | int | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def rounds_table(rows: Sequence[RoundRow], title: str, failed: Sequence[FailedJobs] = ()) -> Table:
    lines = [f"round {f.round}: {f.failed} of {f.jobs} student jobs failed (first: {f.first})"
             for f in failed]
    table = Table(title=title, caption="\n".join(lines) or None, caption_justify="left", caption_style="red")
    # E-step: mean reward, the unadapted student's and the context-alone student's τ, share beating the bar,
    # share unparsed, kept of contexts; M-step loss; held-out τ against the same two.
    names = ("round", "reward", "base", "alone", "better", "unparsed", "kept", "loss", "τ", "τ base", "τ alone",
             "τ − r0 (95% CI)")
    for name in names:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r.round), _fmt(r.reward), _fmt(r.baseline), _fmt(r.alone), _fmt(r.improved, ".0%"),
            _fmt(r.parse_failures, ".0%"), kept_text(r), _fmt(r.mstep_loss), _fmt(r.tau),
            _fmt(r.baseline_tau), _fmt(r.alone_tau), _gain(r.tau_gain),
        )
    return table


def kept_text(r: RoundRow) -> str:
    """Kept edits of the round's contexts: "3/4"."""
    if r.kept is None:
        return "–"
    return f"{r.kept}/{r.contexts}" if r.contexts else str(r.kept)


def _gain(g: Estimate | None) -> str:
    return "–" if g is None else f"{g.mean:+.3f} ({g.low:+.3f} to {g.high:+.3f})"


def contexts_table(taus: dict[str, dict[int, float]], title: str) -> Table:
    rounds = sorted({k for by_round in taus.values() for k in by_round})
    table = Table(title=title)
    table.add_column("context")
    for k in rounds:
        table.add_column(f"τ r{k}", justify="right")
    for cid, by_round in taus.items():
        table.add_row(cid, *(_fmt(by_round.get(k)) for k in rounds))
    return table


def _figure(columns: int, size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=size)


def _save(fig: Any, axes: Sequence[Any], out: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set(xlabel="round (0 = before training)")
        ax.set_ylim(bottom=0)  # τ, rewards and shares are never negative; the top follows the data
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_rounds(rows: Sequence[RoundRow], out: Path) -> Path:
    fig, axes = _figure(3, (13, 3.6))
    trained = [r for r in rows if r.reward is not None]
    evaluated = [r for r in rows if r.tau is not None]
    _line(axes[0], trained, "reward", "E-step reward")
    _line(axes[0], trained, "baseline", "baseline")
    _line(axes[1], evaluated, "tau", "held-out τ")
    _line(axes[1], evaluated, "baseline_tau", "baseline τ")
    _line(axes[2], trained, "parse_failures", "parse failures")
    titles = ("reward per round", "held-out τ per round", "share of parse failures")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
    return _save(fig, axes, out)


def _line(ax: Any, rows: Sequence[RoundRow], field: str, label: str) -> None:
    ax.plot([r.round for r in rows], [getattr(r, field) for r in rows], marker="o", label=label)


def modes_table(rows: dict[str, list[RoundRow]], title: str) -> Table:
    table = Table(title=title)
    table.add_column("round", justify="right")
    for mode in rows:
        table.add_column(f"{mode} τ", justify="right")
        table.add_column("baseline", justify="right")
        table.add_column("reward", justify="right")
    by_round = {mode: {r.round: r for r in mode_rows} for mode, mode_rows in rows.items()}
    for k in sorted({r.round for mode_rows in rows.values() for r in mode_rows}):
        cells = []
        for mode in rows:
            r = by_round[mode].get(k, RoundRow(k))
            cells += [_fmt(r.tau), _fmt(r.baseline_tau), _fmt(r.reward)]
        table.add_row(str(k), *cells)
    return table


def plot_modes(rows: dict[str, list[RoundRow]], out: Path) -> Path:
    fig, ax = _figure(1, (6, 4))
    for mode, mode_rows in rows.items():
        done = [r for r in mode_rows if r.tau is not None]
        ax.plot([r.round for r in done], [r.tau for r in done], marker="o", label=f"{mode}: held-out τ")
        baselines = [r.baseline_tau for r in done]
        ax.plot([r.round for r in done], baselines, linestyle=":", label=f"{mode}: baseline")
    ax.set(title="held-out τ per round", ylabel="τ")
    return _save(fig, [ax], out)


def report(run_dir: Path, per_context_rows: int = 20) -> tuple[list[Table], Path]:
    """The tables to print and the plot written; per-context τ when there are few enough contexts."""
    records = read_journal(run_dir / JOURNAL)
    rows = round_rows(records)
    tables = [rounds_table(rows, f"{run_dir}: E-step reward, M-step loss, held-out τ", failed_jobs(records))]
    taus = per_context(records)
    if 0 < len(taus) <= per_context_rows:
        tables.append(contexts_table(taus, "held-out τ per context (ARC: 1 = task solved)"))
    return tables, plot_rounds(rows, run_dir / "plots" / "rounds.png")
