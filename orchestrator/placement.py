"""Which process sees which GPUs (docs/architecture.md §8): a pure function of the config and the visible GPUs.

`place(cfg, visible)` decides, before anything starts, where the teacher and each student run, and
`Placement` turns that into what each child process is given: the managed vLLM server its
CUDA_VISIBLE_DEVICES and `--tensor-parallel-size`, each local pool worker one GPU, the private Ray node
the student GPUs and each actor its `num_gpus`, the in-process roles a torch device. `seal run` and
`seal plan` use the same placement, so the plan shows what a run will do.

Device indices in `teacher.devices` and `pool.devices` count the GPUs this process sees (0..G-1, after
any CUDA_VISIBLE_DEVICES of its own); children get the names those indices stand for. Defaults: with G ≥ 2
GPUs the teacher takes GPU 0 and the students the rest, one process each; with one GPU they would share
it, which a vLLM teacher allows only with a memory split (`teacher.gpu_memory_utilization`), because the
server reserves that share of its GPUs' memory up front and anything else there would run out. On the
CPU the fields are checked by the config and reported as ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.config import ConfigError, SealConfig
from teacher.vllm_process import ServerOptions

TeacherHost = Literal["server", "orchestrator", "remote"]  # a managed vLLM child / this process / teacher.url
StudentHost = Literal["orchestrator", "local", "ray"]  # this process (inprocess, inline) / spawned / Ray actors


@dataclass(frozen=True)
class Placement:
    visible: tuple[str, ...]
    """This process's GPUs as CUDA_VISIBLE_DEVICES names them (index i → visible[i]); () on the CPU."""
    teacher_host: TeacherHost
    teacher: tuple[int, ...]
    """The teacher's GPUs: the vLLM server's (tensor parallel over all of them) or the one the in-process
    teacher uses; () on the CPU or for a teacher elsewhere."""
    student_host: StudentHost
    students: tuple[int | None, ...]
    """Each student worker's GPU; None on the CPU, or where a Ray cluster joined by address places it."""
    memory_share: float | None = None
    """The vLLM server's gpu_memory_utilization; None = ServerOptions' default."""
    ray_cluster: bool = False
    """The students are actors of a Ray cluster joined by pool.ray_address, which places them itself."""
    stream: bool = False
    """Stream the E-step (edits.sample_and_apply): the teacher and the students do not compete for devices."""
    notes: tuple[str, ...] = ()
    """What the user should know: fields ignored on the CPU, GPUs shared or left idle."""

    @property
    def on_gpu(self) -> bool:
        return bool(self.visible)

    @property
    def workers(self) -> int:
        return len(self.students)

    def names(self, devices: Iterable[int | None]) -> str:
        """Devices as a CUDA_VISIBLE_DEVICES value."""
        return ",".join(self.visible[d] for d in devices if d is not None)

    def server_options(self, options: ServerOptions) -> ServerOptions:
        """The managed vLLM server's options: exactly the teacher's GPUs visible, one tensor-parallel rank each."""
        if not self.teacher:
            return options
        share = self.memory_share if self.memory_share is not None else options.gpu_memory_utilization
        return dataclasses.replace(options, cuda_visible_devices=self.names(self.teacher),
                                   tensor_parallel_size=len(self.teacher), gpu_memory_utilization=share)

    def teacher_device(self) -> str | None:
        """The in-process teacher's torch device; None = its own default (the CPU here)."""
        return f"cuda:{self.teacher[0]}" if self.teacher else None

    def student_device(self) -> str | None:
        """The in-process student's torch device; None = its own default."""
        return f"cuda:{self.students[0]}" if self.students and self.students[0] is not None else None

    def student_gpus(self) -> tuple[str, ...]:
        """Each local worker's CUDA_VISIBLE_DEVICES, by slot; () on the CPU."""
        return tuple(self.visible[d] for d in self.students if d is not None)

    def ray_node_gpus(self) -> tuple[str, ...]:
        """The GPUs a private Ray node is started with (its actors can get no others); () otherwise."""
        if self.ray_cluster:
            return ()
        return tuple(self.visible[d] for d in sorted({d for d in self.students if d is not None}))

    def ray_gpus_per_actor(self) -> float | None:
        """num_gpus for each actor: 1, or a fraction when there are more actors than GPUs; None: the
        Ray pool's own choice (a cluster joined by address)."""
        if self.ray_cluster:
            return None
        gpus = len(self.ray_node_gpus())
        return min(1.0, gpus / self.workers) if gpus else 0.0


def place(cfg: SealConfig, visible: Sequence[str], attention_heads: int | None = None) -> Placement:
    """Where each role runs. `visible`: this process's GPUs (CUDA_VISIBLE_DEVICES names); `attention_heads`:
    the teacher model's, when known, to check the tensor-parallel size. Raises ConfigError on devices that
    do not exist, a vLLM teacher sharing GPUs with students without a memory split, or a tensor-parallel
    size the model cannot be split into."""
    t, p = cfg.teacher, cfg.pool
    inline = p.kind == "inline"
    teacher_host: TeacherHost = "orchestrator" if inline or t.backend == "hf" else (
        "server" if t.backend == "vllm" else "remote")
    student_host: StudentHost = "orchestrator" if p.kind in ("inprocess", "inline") else p.kind  # type: ignore[assignment]
    ray_cluster = p.kind == "ray" and p.ray_address is not None
    in_process = student_host == "orchestrator"
    if not visible:
        students: tuple[int | None, ...] = (None,) * (1 if in_process else p.workers or 1)
        return Placement((), teacher_host, (), student_host, students, ray_cluster=ray_cluster,
                         stream=_stream(cfg, teacher_host, (), students, in_process, ray_cluster),
                         notes=_ignored_on_cpu(cfg))

    gpus = len(visible)
    _exist("teacher.devices", t.devices, gpus)
    _exist("pool.devices", p.devices, gpus)
    if inline:
        device = _inline_device(cfg)
        return Placement(tuple(visible), teacher_host, device, student_host, device, stream=bool(p.stream))
    teacher = _teacher_devices(cfg, teacher_host, gpus, attention_heads)
    if ray_cluster:
        if p.devices is not None:
            raise ConfigError("pool.devices: a Ray cluster joined by pool.ray_address places its actors itself; "
                              "leave pool.devices unset (or the address, for a private Ray on this machine)")
        students = (None,) * (p.workers or 1)
    else:
        students = _student_devices(cfg, teacher, gpus, in_process)
    _check_overlap(cfg, teacher_host, teacher, students)
    return Placement(tuple(visible), teacher_host, teacher, student_host, students, t.gpu_memory_utilization,
                     ray_cluster, _stream(cfg, teacher_host, teacher, students, in_process, ray_cluster),
                     _notes(teacher_host, teacher, students, gpus, ray_cluster))


def _stream(cfg: SealConfig, host: TeacherHost, teacher: tuple[int, ...], students: Sequence[int | None],
            in_process: bool, ray_cluster: bool) -> bool:
    """pool.stream, or by default: the students run in their own processes and share no device with the
    teacher: it runs elsewhere, or on other GPUs. On one machine's CPU cores they would slow each other."""
    if cfg.pool.stream is not None:
        return cfg.pool.stream
    apart = host == "remote" or ray_cluster or (bool(teacher) and not set(teacher) & set(students))
    return not in_process and apart


def _ignored_on_cpu(cfg: SealConfig) -> tuple[str, ...]:
    given = {"teacher.devices": cfg.teacher.devices, "pool.devices": cfg.pool.devices,
             "teacher.gpu_memory_utilization": cfg.teacher.gpu_memory_utilization}
    return tuple(f"{key} = {list(value) if isinstance(value, tuple) else value} ignored: no GPU is visible (a CPU run)"
                 for key, value in given.items() if value is not None)


def _exist(key: str, devices: tuple[int, ...] | None, gpus: int) -> None:
    missing = [d for d in devices or () if d >= gpus]
    if missing:
        raise ConfigError(f"{key}: GPU {missing[0]} does not exist; {gpus} GPU(s) are visible "
                          f"(0 to {gpus - 1}; CUDA_VISIBLE_DEVICES renumbers them)")


def _inline_device(cfg: SealConfig) -> tuple[int, ...]:
    """The inline pool is one process on one GPU: the teacher's and the students' network."""
    t, p = cfg.teacher.devices, cfg.pool.devices
    if t is not None and p is not None and t != p:
        raise ConfigError(f"pool.devices = {list(p)} differs from teacher.devices = {list(t)}: the inline pool runs "
                          "students on the teacher's own network; set one of them")
    device = t or p or (0,)
    if len(device) != 1:
        raise ConfigError(f"{'teacher' if t else 'pool'}.devices: the inline pool runs on one GPU, got {list(device)}")
    return device


def _teacher_devices(cfg: SealConfig, host: TeacherHost, gpus: int, heads: int | None) -> tuple[int, ...]:
    devices = cfg.teacher.devices
    if host == "remote":
        if devices is not None:
            raise ConfigError("teacher.devices: a teacher at teacher.url runs elsewhere; leave teacher.devices unset")
        return ()
    devices = devices or (0,)
    if host == "orchestrator" and len(devices) > 1:
        raise ConfigError(f"teacher.devices = {list(devices)}: the hf teacher runs in this process on one GPU; "
                          "use teacher.backend = \"vllm\" to split a model over several")
    if heads is not None and heads % len(devices):
        fits = [n for n in range(1, gpus + 1) if heads % n == 0]
        raise ConfigError(f"teacher.devices: {len(devices)} GPUs means tensor-parallel size {len(devices)}, which does "
                          f"not divide the teacher model's {heads} attention heads; give it {_or(fits)} GPU(s)")
    return devices


def _student_devices(cfg: SealConfig, teacher: tuple[int, ...], gpus: int, in_process: bool) -> tuple[int, ...]:
    """One worker per student GPU (the GPUs the teacher leaves, else the teacher's), or pool.workers
    round-robin over them."""
    p = cfg.pool
    devices = p.devices or tuple(d for d in range(gpus) if d not in teacher) or teacher
    if in_process:
        if p.devices is not None and len(p.devices) > 1:
            raise ConfigError(f"pool.devices = {list(p.devices)}: the in-process pool runs one student; use "
                              "pool.kind = \"local\" for one per GPU")
        return devices[:1]
    workers = p.workers or len(devices)
    return tuple(devices[i % len(devices)] for i in range(workers))


def _check_overlap(
    cfg: SealConfig, host: TeacherHost, teacher: tuple[int, ...], students: Sequence[int | None]
) -> None:
    shared = sorted(set(teacher) & set(students)) if host == "server" else []
    if not shared or cfg.teacher.gpu_memory_utilization is not None:
        return
    gpu = f"GPU {_or(shared, 'and')}"
    if cfg.teacher.devices is None and cfg.pool.devices is None:  # the defaults, on one GPU
        raise ConfigError(f"teacher.gpu_memory_utilization: the vLLM teacher and the students would share {gpu}, and "
                          "the server reserves 90% of its GPUs' memory; set it (e.g. 0.4) to split the memory, or "
                          "use pool.kind = \"inline\" with teacher.backend = \"hf\"")
    raise ConfigError(f"teacher.devices and pool.devices share {gpu}: give them different GPUs, or set "
                      "teacher.gpu_memory_utilization (e.g. 0.4) to split the memory")


def _notes(host: TeacherHost, teacher: tuple[int, ...], students: Sequence[int | None], gpus: int,
           ray_cluster: bool) -> tuple[str, ...]:
    notes = []
    shared = sorted(set(teacher) & set(students))
    if shared:
        how = "the vLLM server's share of memory is the rest's limit" if host == "server" else "their memory adds up"
        notes.append(f"the teacher and students share GPU {_or(shared, 'and')}: {how}")
    if len(set(students)) < len(students):
        notes.append("several students share a GPU (pool.workers > student GPUs): their memory adds up")
    idle = [d for d in range(gpus) if d not in teacher and d not in students]
    if ray_cluster and host == "server":
        notes.append(f"the Ray cluster places the students; keep its actors off this node's GPU {_or(teacher, 'and')} "
                     "(start this node's Ray with CUDA_VISIBLE_DEVICES naming the others)")
    elif idle and not ray_cluster:
        notes.append(f"GPU {_or(idle, 'and')} idle")
    return tuple(notes)


def _or(items: Sequence[int], word: str = "or") -> str:
    return ", ".join(map(str, items[:-1])) + (f" {word} " if len(items) > 1 else "") + str(items[-1])
