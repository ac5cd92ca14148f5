"""`seal plan`: what a run will do, where each process runs, and about how much memory and time it takes,
from the config alone (nothing is loaded but config.json files).

Work per round follows loop.py: round 0 measures held-out τ; each later round samples N×M self-edits,
applies each `eval_times` times plus one baseline per context, runs one M-step, and measures held-out τ
again. Placement is orchestrator/placement.py's, as `seal run` will use it.

Time: per-unit costs measured on this repo's 2-core CPU with SmolLM2-135M-Instruct and the default inner
loop, read from benchmarks/results_knowledge.py (the figure its own estimate uses), in the setting of
configs/results-knowledge.toml. Other models scale them linearly by parameter count, the inner loop's
training part by epochs and the M-step by its examples × epochs. On GPUs every cost is divided by one
factor: an H100's speed over that CPU as implied by the paper's figure (a round of 750 Qwen2.5-7B inner
loops, 10 epochs, about 6 h on 2 H100s, one of them training). Phases run one after another and student
jobs split over the student GPUs (on the CPU, the local pool's measured speed-up). Everything other than
SmolLM2 on this CPU is an estimate, and the plan prints that.

Memory per process: bf16 weights; each LoRA in fp32 with AdamW's gradient and two moments; a vLLM
server's reserved share of its GPUs (weights, adapter slot, KV cache); training activations up to
batch_size × max_seq_len tokens, counted from the model's shape (a rough upper bound: real batches are
as long as their longest example).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import RenderableType
from rich.table import Table

from orchestrator.config import SealConfig, load_config
from orchestrator.domains import make_domain
from orchestrator.errors import DataError, read_user_text
from orchestrator.model_shape import ModelShape, read_shape
from orchestrator.models import SMOLLM2
from orchestrator.placement import Placement, place
from orchestrator.session import baseline_kind, selection_rule
from student.messages import LoRASpec, TrainSpec
from teacher.vllm_process import ServerOptions

ROOT = Path(__file__).resolve().parents[1]
UNIT_COSTS = ROOT / "benchmarks" / "results_knowledge.py"
UNIT_COSTS_CONFIG = ROOT / "configs" / "results-knowledge.toml"  # the setting they were measured in
# The paper's compute figure (SEAL App. B.5): one round, 50 passages × 5 edits
# × 3 seeds = 750 inner loops of Qwen2.5-7B (LoRA r=32 on q/v, 10 epochs), about 6 h on 2 H100s.
PAPER_MODEL, PAPER_EPOCHS, PAPER_INNER_LOOP_S = "Qwen/Qwen2.5-7B", 10, 6 * 3600 / 750
GIB = 2**30
BF16, FP32, ADAMW = 2, 4, 12  # bytes: a weight; a trainable parameter; its gradient and two moments


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit, SmolLM2-135M on this repo's CPU (benchmarks/results_knowledge.py)."""

    inner_loop: float  # one student job: LoRA SFT on passage + edit, then the passage's questions
    baseline: float  # one student job without training
    teacher_edit: float  # one self-edit from the HF teacher
    mstep: float  # one M-step of the benchmark's config
    pool_speedup: dict[int, float]  # local pool of k workers on the 2 cores, against one
    epochs: int  # the inner loop's epochs in the measurement
    mstep_examples: int  # the M-step's kept edits at most (N) and epochs in the measurement
    mstep_epochs: int


def read_unit_costs(path: Path = UNIT_COSTS, config: Path = UNIT_COSTS_CONFIG) -> UnitCosts:
    """The benchmark's constants, read from its source (not imported: it loads the whole pipeline)."""
    names = {"INNER_LOOP_S": "inner_loop", "BASELINE_S": "baseline", "TEACHER_EDIT_S": "teacher_edit",
             "MSTEP_S": "mstep", "POOL_SPEEDUP": "pool_speedup"}
    found = {names[target.id]: ast.literal_eval(node.value)
             for node in ast.parse(read_user_text(path, "unit costs file")).body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name) and target.id in names}
    if len(found) < len(names):
        missing = ", ".join(sorted(k for k, v in names.items() if v not in found))
        raise DataError(f"unit costs file {path} has no {missing}: seal plan reads its per-unit costs there")
    measured = load_config(config)
    return UnitCosts(**found, epochs=SealConfig().student.train.epochs, mstep_examples=measured.data.n_train,
                     mstep_epochs=measured.restem.train.epochs)


# --- work -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One phase of a round, in units."""

    phase: str
    contexts: int = 0
    edits: int = 0  # self-edits the teacher writes
    inner_loops: int = 0  # student jobs that train on an edit
    baselines: int = 0  # student jobs without training
    msteps: int = 0
    examples: int = 0  # the M-step's examples, at most


def round_work(cfg: SealConfig, k: int, rule: str, against_alone: bool = False) -> tuple[Work, ...]:
    """Round k's phases. Baselines, and students trained on a context alone (`against_alone`: counted as
    inner loops), are per context and student base: a single-model round's base is new."""
    d, n, m, e = cfg.data, cfg.data.n_train, cfg.teacher.sampling.n, cfg.eval
    fresh_base = k == 0 or cfg.run.mode == "single-model"
    alone = against_alone and fresh_base
    held_out = Work("held-out τ", contexts=d.n_eval, edits=d.n_eval * e.edits,
                    inner_loops=d.n_eval * (e.edits + alone) * e.repeats, baselines=d.n_eval if fresh_base else 0)
    if k == 0:
        return (held_out,)
    repeats = cfg.student.eval_times
    e_step = Work("E-step", contexts=n, edits=n * m, inner_loops=n * (m + alone) * repeats, baselines=n)
    m_step = Work("M-step", msteps=1, examples=n if rule == "best_of_m" else n * m)
    return e_step, m_step, held_out


@dataclass(frozen=True)
class Costs:
    """Seconds per unit for this config and placement, and how many student jobs run at once."""

    edit: float
    inner_loop: float
    baseline: float
    mstep_example: float  # the M-step, per example (at the config's epochs)
    parallel: float
    stream: bool = False  # the teacher writes while the students work (a streamed E-step)

    def seconds(self, w: Work) -> float:
        teacher = w.edits * self.edit
        students = (w.inner_loops * self.inner_loop + w.baselines * self.baseline) / self.parallel
        both = max(teacher, students) if self.stream else teacher + students
        return both + w.msteps * w.examples * self.mstep_example


def unit_costs(cfg: SealConfig, placement: Placement, units: UnitCosts, teacher: ModelShape, student: ModelShape,
               gpu_factor: float) -> Costs:
    base = read_shape(SMOLLM2).params
    s, t = student.params / base, teacher.params / base
    divide = gpu_factor if placement.on_gpu else 1.0
    return Costs(
        edit=units.teacher_edit * t / divide,
        inner_loop=inner_loop_seconds(units, cfg.student.train.epochs) * s / divide,
        baseline=units.baseline * s / divide,
        mstep_example=units.mstep * t * cfg.restem.train.epochs / (units.mstep_examples * units.mstep_epochs) / divide,
        parallel=_parallel(placement, units),
        stream=placement.stream,
    )


def inner_loop_seconds(units: UnitCosts, epochs: int) -> float:
    """SmolLM2 on this CPU: the questions, plus training scaled by epochs."""
    return units.baseline + (units.inner_loop - units.baseline) * epochs / units.epochs


def gpu_speed_factor(units: UnitCosts) -> float:
    """How much faster a GPU runs the inner loop than this CPU, from the paper's H100 figure."""
    paper = read_shape(PAPER_MODEL).params / read_shape(SMOLLM2).params
    return inner_loop_seconds(units, PAPER_EPOCHS) * paper / PAPER_INNER_LOOP_S


def _parallel(placement: Placement, units: UnitCosts) -> float:
    if placement.student_host == "orchestrator":
        return 1.0
    if placement.on_gpu:
        return float(placement.workers if placement.ray_cluster else len(set(placement.students)))
    return units.pool_speedup.get(placement.workers, max(units.pool_speedup.values()))


# --- memory -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """One kind of process: `devices` holds each one's GPUs (one entry per process, () = the CPU)."""

    name: str
    launch: str  # what it is given: environment, arguments, torch device
    devices: tuple[tuple[int, ...], ...]
    weights: float = 0.0  # bytes, per process (per GPU for a tensor-parallel server)
    kv_cache: float = 0.0
    lora: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0  # training, up to batch_size × max_seq_len tokens
    batch: str = ""  # which SFT's batch the activations are for, and its tokens
    reserved: float | None = None  # a vLLM server's reservation per GPU, whatever it holds

    @property
    def fixed(self) -> float:
        return self.reserved if self.reserved is not None else self.weights + self.kv_cache + self.lora + self.optimizer

    @property
    def peak(self) -> float:
        return self.fixed + self.activations


def activation_bytes(shape: ModelShape, train: TrainSpec) -> float:
    """Saved for the backward pass, bf16, per token: each layer's norms' inputs and outputs, q, k, v, the
    attention output, the MLP's gate, up, activation and product; then the logits in bf16 and in fp32 (the
    loss upcasts them). Times batch_size × max_seq_len tokens."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = BF16 * (4 * shape.hidden + 2 * q + 2 * kv + 4 * shape.intermediate)
    per_token = shape.layers * per_layer + shape.vocab * (BF16 + FP32)
    return float(per_token * train.batch_size * train.max_seq_len)


def training_state(shape: ModelShape, lora: LoRASpec, train: TrainSpec, name: str) -> tuple[float, float, float, str]:
    """(LoRA bytes, optimiser bytes, activation bytes, what the batch is) of one SFT."""
    params = shape.lora_params(lora)
    batch = f"{name}: {train.batch_size} × {train.max_seq_len:,} tokens"
    return float(params * FP32), float(params * ADAMW), activation_bytes(shape, train), batch


def student_process(name: str, launch: str, devices: tuple[tuple[int, ...], ...], cfg: SealConfig,
                    shape: ModelShape, m_step: bool, stacked: bool = False) -> Process:
    """A student: its weights and the larger of its inner loop's and (if it runs it) the M-step's SFT;
    `stacked` (inline): the frozen teacher adapter in fp32 as well."""
    states = [training_state(shape, cfg.student.lora, cfg.student.train, "student.train")]
    if m_step:
        states.append(training_state(shape, cfg.restem.lora, cfg.restem.train, "restem.train"))
    lora, optimizer = max(s[0] for s in states), max(s[1] for s in states)
    _, _, activations, batch = max(states, key=lambda s: s[2])
    if stacked:
        lora += shape.lora_params(cfg.restem.lora) * FP32
    return Process(name, launch, devices, weights=float(shape.params * BF16), lora=lora, optimizer=optimizer,
                   activations=activations, batch=batch)


def vllm_process(cfg: SealConfig, placement: Placement, shape: ModelShape, gpu_bytes: float) -> Process:
    options = placement.server_options(ServerOptions(max_lora_rank=cfg.teacher.max_lora_rank))
    tp = options.tensor_parallel_size
    adapter = LoRASpec(r=cfg.teacher.max_lora_rank, target_modules=tuple(shape.linears()))
    weights, lora = shape.params * BF16 / tp, shape.lora_params(adapter) * BF16 / tp
    if not placement.on_gpu:
        return Process("vLLM teacher", "CPU, VLLM_CPU_KVCACHE_SPACE", ((),), weights=weights, lora=lora,
                       kv_cache=float(options.cpu_kv_cache_gib * GIB))
    reserved = options.gpu_memory_utilization * gpu_bytes
    launch = (f"CUDA_VISIBLE_DEVICES={options.cuda_visible_devices} --tensor-parallel-size {tp} "
              f"--gpu-memory-utilization {options.gpu_memory_utilization:g}")
    return Process("vLLM teacher", launch, (placement.teacher,), weights=weights, lora=lora,
                   kv_cache=reserved - weights - lora, reserved=reserved)


def processes(cfg: SealConfig, placement: Placement, teacher: ModelShape, student: ModelShape,
              gpu_bytes: float) -> list[Process]:
    """Every process a run starts, with what it is given and what it holds."""
    p = placement
    one_model = cfg.student_model == cfg.teacher.model  # else a separate trainer runs the M-step
    out = []
    if p.teacher_host == "server":
        out.append(vllm_process(cfg, p, teacher, gpu_bytes))
    if cfg.pool.kind == "inline":
        return [student_process("inline network (seal)", _torch(p.student_device()),
                                (tuple(d for d in p.students if d is not None),), cfg, student, True, stacked=True)]
    if p.teacher_host == "orchestrator":
        kv = cfg.teacher.sampling.n * cfg.teacher.max_model_len * teacher.kv_bytes_per_token()
        out.append(Process("hf teacher (seal)", _torch(p.teacher_device()), (p.teacher,),
                           weights=float(teacher.params * BF16), kv_cache=float(kv)))
    if p.student_host == "orchestrator":
        out.append(student_process("student (seal)", _torch(p.student_device()),
                                   (tuple(d for d in p.students if d is not None),), cfg, student, one_model))
    else:
        out.append(student_process(f"students ×{p.workers}", _student_launch(p),
                                   tuple((d,) if d is not None else () for d in p.students), cfg, student, one_model))
    if not one_model:
        first = p.students[0]
        beside = ((first,) if first is not None else (),)
        out.append(student_process("M-step trainer", "the teacher model, beside student 0", beside, cfg, teacher, True))
    return out


def _torch(device: str | None) -> str:
    return f"torch device {device}" if device else "CPU"


def _student_launch(p: Placement) -> str:
    if p.ray_cluster:
        return "Ray actors the cluster places, num_gpus=1 each where it has GPUs"
    if p.student_host == "ray":
        node = f"private Ray node with CUDA_VISIBLE_DEVICES={','.join(p.ray_node_gpus())}" if p.on_gpu else "CPU"
        return f"{node}; num_gpus={p.ray_gpus_per_actor() or 0:g} each"
    if not p.on_gpu:
        return "local processes sharing the CPU cores"
    return "local processes, CUDA_VISIBLE_DEVICES=" + " / ".join(p.student_gpus()) + " (one each)"


def memory_warnings(cfg: SealConfig, placement: Placement, procs: Sequence[Process], limit: float,
                    kv_per_token: float) -> list[str]:
    """Per GPU (or, on the CPU, for the machine): what will not fit, and what may not on the longest batches;
    GPUs with the same finding share a line."""
    warnings = []
    server = next((x for x in procs if x.reserved is not None), None)
    if server is not None and server_tokens(server, kv_per_token) < cfg.teacher.max_model_len:
        warnings.append(f"teacher: its share of memory leaves KV cache for {server_tokens(server, kv_per_token):,} "
                        f"tokens, under teacher.max_model_len = {cfg.teacher.max_model_len:,}, and vLLM will not "
                        "start: raise teacher.gpu_memory_utilization or give it more teacher.devices")
    findings: dict[str, list[str]] = {}
    for gpu in range(len(placement.visible)) if placement.on_gpu else [None]:
        # processes on this GPU (a tensor-parallel server's figures are per GPU); on the CPU, all of them
        on = [(x, n) for x in procs if (n := len(x.devices) if gpu is None else sum(gpu in d for d in x.devices))]
        if not on:
            continue
        fixed, peak = sum(x.fixed * n for x, n in on), sum(x.peak * n for x, n in on)
        batch = max((x for x, _ in on), key=lambda x: x.activations).batch
        if fixed > limit:
            finding = (f"about {fixed / GIB:.1f} GiB of weights, adapters, optimiser state and reserved memory, over "
                       f"{limit / GIB:.0f} GiB: this will not fit")
        elif peak > limit:
            finding = (f"up to {peak / GIB:.0f} GiB with the activations of a full training batch ({batch}), over "
                       f"{limit / GIB:.0f} GiB: batches that long would run out of memory (lower that batch_size "
                       "or max_seq_len)")
        else:
            continue
        findings.setdefault(finding, []).append("this machine" if gpu is None else str(gpu))
    warnings += [f"{'GPU ' if where[0].isdigit() else ''}{', '.join(where)}: {finding}"
                 for finding, where in findings.items()]
    return warnings


def server_tokens(server: Process, kv_per_token: float) -> int:
    """Tokens a vLLM server's KV cache holds."""
    return max(0, int(server.kv_cache / kv_per_token))


# --- the plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    title: str
    cfg: SealConfig
    placement: Placement
    processes: tuple[Process, ...]
    first_round: tuple[Work, ...]  # round 0
    later_round: tuple[Work, ...]  # each round after it
    costs: Costs
    memory_limit: float
    basis: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())
    server_tokens: int | None = None  # what a vLLM server's KV cache holds

    def seconds(self, work: Sequence[Work]) -> float:
        return sum(self.costs.seconds(w) for w in work)

    @property
    def total_seconds(self) -> float:
        return self.seconds(self.first_round) + self.cfg.run.rounds * self.seconds(self.later_round)


def make_plan(cfg: SealConfig, title: str, gpus: int | None = None, gpu_memory_gib: float = 80.0) -> Plan:
    """The plan for `gpus` visible GPUs (None: this machine's), each with `gpu_memory_gib`."""
    if gpus is None:
        from runtime.devices import visible_gpus

        visible = visible_gpus("auto")
    else:
        visible = [str(i) for i in range(gpus)]
    teacher, student = read_shape(cfg.teacher.model), read_shape(cfg.student_model)
    placement = place(cfg, visible, teacher.heads)
    units = read_unit_costs()
    factor = gpu_speed_factor(units)
    costs = unit_costs(cfg, placement, units, teacher, student, factor)
    limit = gpu_memory_gib * GIB if placement.on_gpu else machine_memory()
    procs = processes(cfg, placement, teacher, student, limit)
    domain = make_domain(cfg.data.domain, cfg.data.options)
    rule, alone = selection_rule(cfg, domain), baseline_kind(cfg, domain) == "context"
    kv_per_token = teacher.kv_bytes_per_token() / max(1, len(placement.teacher))  # per GPU, tensor parallel
    server = next((x for x in procs if x.reserved is not None), None)
    first, later = round_work(cfg, 0, rule, alone), round_work(cfg, 1, rule, alone)
    return Plan(
        title, cfg, placement, tuple(procs), first, later, costs, limit,
        _basis(cfg, placement, units, teacher, student, factor),
        tuple(memory_warnings(cfg, placement, procs, limit, kv_per_token)),
        server_tokens(server, kv_per_token) if server else None,
    )


def machine_memory() -> float:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _basis(cfg: SealConfig, placement: Placement, units: UnitCosts, teacher: ModelShape, student: ModelShape,
           factor: float) -> tuple[str, ...]:
    base = read_shape(SMOLLM2).params
    lines = [f"unit costs measured here (benchmarks/results_knowledge.py; SmolLM2-135M, 2 CPU cores, "
             f"{units.epochs}-epoch inner loop): inner loop {units.inner_loop:g} s, baseline {units.baseline:g} s, "
             f"teacher edit {units.teacher_edit:g} s, M-step {units.mstep:g} s ({units.mstep_examples} edits × "
             f"{units.mstep_epochs} epochs); they vary ±2× between runs"]
    if {teacher.params, student.params} != {base}:
        lines.append(f"estimate: scaled by parameter count (teacher {teacher.params / 1e9:.2f} B, student "
                     f"{student.params / 1e9:.2f} B, against {base / 1e9:.3f} B) and the inner loop by "
                     f"{cfg.student.train.epochs}/{units.epochs} epochs")
    if placement.on_gpu:
        lines.append(f"estimate: on GPUs every cost ÷ {factor:.0f}, an H100's speed over this CPU implied by the "
                     f"paper's ~6 h for 750 inner loops of {PAPER_MODEL} (10 epochs) on 2 H100s; small models "
                     "on GPUs are slower than this (fixed per-job costs), and our inner loop's speed-up over the "
                     "reference (20× on this CPU) is not assumed")
    if cfg.data.domain != "knowledge":
        lines.append(f"estimate: the unit costs are knowledge-incorporation jobs; a {cfg.data.domain} job trains on "
                     "other data for other step counts and costs differently")
    if cfg.teacher.backend == "vllm":
        lines.append("the teacher's cost is the HF teacher's per edit in a batched call; a vLLM server "
                     "batches more samples and is faster from ~64 samples a round "
                     "(docs/performance.md, Teacher adapters)")
    overlap = ("the teacher's and the students' work overlap (a streamed E-step), so a phase takes the longer"
               if placement.stream else "phases run one after another")
    lines.append(f"start-up (model loading, a vLLM start) is not counted; {overlap}")
    return tuple(lines)


# --- rendering --------------------------------------------------------------------------------------------


def render(plan: Plan) -> list[RenderableType | str]:
    cfg, p = plan.cfg, plan.placement
    where = f"{len(p.visible)} GPU(s), {plan.memory_limit / GIB:.0f} GiB each" if p.on_gpu else "the CPU"
    head = (f"plan for {plan.title}: {cfg.run.mode}, {cfg.run.rounds} round(s) after round 0, on {where}; "
            f"teacher {cfg.teacher.model} ({cfg.teacher.backend}), student {cfg.student_model}, pool {cfg.pool.kind}")
    kv = ([f"note: the vLLM server's KV cache holds about {plan.server_tokens:,} tokens, "
           f"{plan.server_tokens // cfg.teacher.max_model_len} sequence(s) of teacher.max_model_len"]
          if plan.server_tokens else [])
    given = [f"  {x.name}: {x.launch}" for x in plan.processes]
    return [head, _work_table(plan), _process_table(plan), "each process is given:", *given, *kv,
            *[f"note: {n}" for n in p.notes],
            *[f"[yellow]warning:[/yellow] {w}" for w in plan.warnings], *[f"basis: {b}" for b in plan.basis]]


def _work_table(plan: Plan) -> Table:
    table = Table(title="work and time per round (estimated)", box=box.SIMPLE_HEAD,
                  caption="inner loops: student jobs that train on an edit; baselines: jobs without an edit; "
                          "M-step: its examples, at most")
    columns = ("round", "phase", "contexts", "edits", "inner loops", "baselines", "M-step", "time")
    for column in columns:
        table.add_column(column, justify="left" if column in ("round", "phase") else "right",
                         no_wrap=column in ("phase", "time"))
    rounds = [("0", plan.first_round)] + ([(f"1..{plan.cfg.run.rounds}", plan.later_round)] if plan.cfg.run.rounds
                                         else [])
    for label, work in rounds:
        for w in work:
            table.add_row(label, w.phase, *(str(x or "") for x in (w.contexts, w.edits, w.inner_loops, w.baselines)),
                          f"≤ {w.examples}" if w.msteps else "", _hm(plan.costs.seconds(w)))
        table.add_row(label, "[b]round[/b]", *[""] * 5, f"[b]{_hm(plan.seconds(work))}[/b]", end_section=True)
    table.add_row("all", "[b]run[/b]", *[""] * 5, f"[b]{_hm(plan.total_seconds)}[/b]")
    return table


def _process_table(plan: Plan) -> Table:
    table = Table(title="processes and memory per process, GiB (estimated)", box=box.SIMPLE_HEAD)
    for column in ("process", "GPUs", "weights", "KV cache", "LoRA", "optimiser", "activ. ≤", "total ≤"):
        table.add_column(column, justify="left" if column in ("process", "GPUs") else "right",
                         no_wrap=column in ("process", "GPUs"))
    for x in plan.processes:
        gpus = _ranges(sorted({d for devices in x.devices for d in devices})) or "CPU"
        table.add_row(x.name, gpus, *(f"{v / GIB:.2f}" for v in (x.weights, x.kv_cache, x.lora, x.optimizer,
                                                                  x.activations, x.peak)))
    return table


def _hm(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} m" if minutes >= 60 else f"{minutes} min"


def _ranges(devices: Sequence[int]) -> str:
    """[1, 2, 3, 5] → "1-3,5"."""
    runs: list[list[int]] = []
    for d in devices:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)
