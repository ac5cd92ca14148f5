"""The HTML report's plots, as inline SVG: means with 95% intervals as error bars, each point of a round a
link to the part of the page behind it. Text stays text (a third of the size of text as paths): the
browser draws it in a local sans-serif font, so the page fetches nothing."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from orchestrator.evaluation.tables import Estimate, RowSummary
from orchestrator.report import RoundRow

if TYPE_CHECKING:
    from orchestrator.report_html import TauRow


def reward_figure(rewards: Mapping[int, Estimate], rows: Sequence[RoundRow], prefix: str) -> Markup:
    """E-step reward per round (mean over training contexts, 95% CI) against the baseline; shares of edits
    better than their baseline and of parse failures."""
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(10, 3.4))
    trained = [r for r in rows if r.reward is not None]
    _interval(left, list(rewards.items()), "E-step reward", [f"#{prefix}train-r{k}" for k in rewards])
    left.plot([r.round for r in trained], [r.baseline for r in trained], linestyle=":", marker="o", label="baseline")
    alone = [r for r in trained if r.alone is not None]
    if alone:
        left.plot([r.round for r in alone], [r.alone for r in alone], linestyle="--", marker="o", label="context alone")
    _round_axes(left, "reward per round: mean over contexts (95% CI)", list(rewards))
    for field, label in (("improved", "better than its bar"), ("parse_failures", "parse failures")):
        right.plot([r.round for r in trained], [getattr(r, field) for r in trained], marker="o", label=label)
    right.set_ylim(-0.05, 1.05)
    _round_axes(right, "share of edits", [r.round for r in trained])
    return _svg(fig)


def tau_figure(rows: Sequence[TauRow], prefix: str, gain: bool) -> Markup:
    """One panel per metric: held-out τ and the unadapted student's, or the paired gain over round 0."""
    metrics = list(dict.fromkeys(r.metric for r in rows))
    fig, axes = _pyplot().subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 0.6, 3.3), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        mine = [r for r in rows if r.metric == metric]
        if gain:
            gains = [r for r in mine if r.gain is not None]
            _interval(ax, [(r.round, r.gain) for r in gains], "round k − round 0",  # type: ignore[misc]
                      [f"#{prefix}tau-r{r.round}" for r in gains])
            ax.axhline(0, color="grey", linewidth=0.8)
        else:
            _interval(ax, [(r.round, r.tau) for r in mine], "held-out τ", [f"#{prefix}tau-r{r.round}" for r in mine])
            baselines = [(r.round + 0.08, r.baseline) for r in mine if r.baseline is not None]
            _interval(ax, baselines, "no adaptation", linestyle=":")  # type: ignore[arg-type]
        _round_axes(ax, f"{'paired gain' if gain else 'held-out τ'}: {metric}", [r.round for r in mine])
    return _svg(fig)


def modes_figure(modes: Mapping[str, Sequence[TauRow]], metric: str) -> Markup:
    """Held-out τ per round of each mode, side by side (shifted a little so the intervals do not hide)."""
    fig, ax = _pyplot().subplots(figsize=(6, 3.6))
    for shift, (mode, rows) in enumerate(modes.items()):
        mine = [r for r in rows if r.metric == metric]
        _interval(ax, [(r.round + 0.08 * shift, r.tau) for r in mine], mode, [f"#tau-r{r.round}" for r in mine])
    _round_axes(ax, f"held-out τ ({metric}, 95% CI over contexts)", [r.round for rows in modes.values() for r in rows])
    return _svg(fig)


def table_figure(rows: Sequence[RowSummary], metrics: Sequence[str], title: str) -> Markup:
    """A table's rows as points with intervals, one panel per metric."""
    fig, axes = _pyplot().subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.5, 0.45 * len(rows) + 1.4),
                                   squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        es = [r.scores[metric] for r in rows]
        errors = [[e.mean - e.low for e in es], [e.high - e.mean for e in es]]
        ax.errorbar([e.mean for e in es], range(len(rows)), xerr=errors, fmt="o", capsize=3)
        ax.set_yticks(range(len(rows)), [r.name for r in rows] if ax is axes[0][0] else [""] * len(rows))
        ax.invert_yaxis()
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _svg(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> Markup:
    """The figure as inline SVG, without matplotlib's metadata (which names web addresses)."""
    plt = _pyplot()
    buffer = io.StringIO()
    fig.tight_layout()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buffer.getvalue()
    # matplotlib opens links in a new window; a point's link is an anchor of this page.
    return Markup(text[text.index("<svg"):].replace(' target="_blank"', ""))


def _interval(ax: Any, points: Sequence[tuple[float, Estimate]], label: str, links: Sequence[str] = (),
              **style: Any) -> None:
    """Means with 95% intervals as error bars; each point a link (SVG <a>) when `links` are given."""
    if not points:
        return
    xs, es = [x for x, _ in points], [e for _, e in points]
    means = [e.mean for e in es]
    bars = ax.errorbar(xs, means, yerr=[[e.mean - e.low for e in es], [e.high - e.mean for e in es]], capsize=3,
                       label=label, **style)
    dots = ax.scatter(xs, means, color=bars[0].get_color(), zorder=3, s=18)
    if links:
        dots.set_urls(list(links))


def _round_axes(ax: Any, title: str, rounds: Sequence[int]) -> None:
    """Title, a tick per round (never a fractional one, even for a single round), grid and legend."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("round (0 = before training)")
    if rounds:
        ax.set_xticks(sorted(set(rounds)))
        ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
