"""Pools run real Students through real failures: a worker process that exits mid-job, a job that
never returns, a job that raises. The failures come from `ChaosStudent`, a Student whose job ids ask
for them, handed to the pools as their worker factory; every other job is the real Student's work.
The Ray tests start a real local Ray instance (no mocks)."""

from __future__ import annotations

import functools
import ipaddress
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from runtime.devices import visible_gpus
from student.messages import Job, LoRASpec, Probe, Report, StudentJob, StudentReport, TrainingExample, TrainSpec
from student.pool import ATTEMPTS, PoolError
from student.pools import make_pool
from student.pools.inprocess import InProcessPool
from student.pools.local import LocalPool
from student.pools.slots import Outcome, Ready, SlotPool
from student.student import Student

WORDS = ("amber", "basalt", "cobalt", "dahlia", "ember", "fennel", "garnet", "hazel")


class ChaosStudent(Student):
    """Job ids starting `crash` end the worker process, `hang` never return, `raise` raise; ids ending
    `-once` fail on their first attempt only (a marker file remembers it across processes). Top level,
    so that spawned processes can import it and Ray can pickle it."""

    def __init__(self, model: str, *, marker_dir: str, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        self.marker_dir = Path(marker_dir)

    def run(self, job: StudentJob) -> StudentReport:
        if self._fails(job.job_id):
            if job.job_id.startswith("crash"):
                os._exit(3)
            if job.job_id.startswith("hang"):
                time.sleep(3600)
            raise ValueError(f"{job.job_id} raised on purpose")
        return super().run(job)

    def _fails(self, job_id: str) -> bool:
        if not job_id.startswith(("crash", "hang", "raise")):
            return False
        marker = self.marker_dir / job_id
        if job_id.endswith("-once") and marker.exists():
            return False
        marker.touch()
        return True


class WhereStudent(Student):
    """Writes, one file per process, the GPU its process was given and where its weights are. Top level, so
    that spawned processes can import it."""

    def __init__(self, model: str, *, marker_dir: str, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        weights = next(self.model.parameters())
        where = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": str(weights.device),
                 "dtype": str(weights.dtype)}
        (Path(marker_dir) / str(os.getpid())).write_text(json.dumps(where))


class InstantPool(SlotPool):
    """A backend without processes: a job's report is ready at the next wait."""

    def __init__(self, size: int) -> None:
        super().__init__(size, None)
        self.events: list[Ready | Outcome] = [Ready(slot) for slot in range(size)]
        self._start()

    def _submit(self, slot: int, job: Job) -> str:
        self.events.append(Outcome(slot, StudentReport(job.job_id, ok=True)))
        return "instant"

    def _wait(self, timeout: float | None) -> list[Ready | Outcome]:
        events, self.events = self.events, []
        return events

    def _restart(self, slot: int) -> None:
        self.events.append(Ready(slot))

    def _shutdown(self) -> None:
        self.events.clear()


def chaos(tmp_path: Path) -> functools.partial[ChaosStudent]:
    return functools.partial(ChaosStudent, marker_dir=str(tmp_path))


def jobs(*ids: str) -> list[StudentJob]:
    """Tiny jobs, each on its own fact and seed: 2 examples, 1 epoch of 2 steps, 1 probe, 8 tokens."""
    out = []
    for i, job_id in enumerate(ids):
        word = WORDS[i % len(WORDS)]
        question = f"What is the password of vault {i}?"
        examples = (
            TrainingExample(question, f"The password of vault {i} is {word}."),
            TrainingExample(f"Which word opens vault {i}?", f"Vault {i} opens with the word {word}."),
        )
        out.append(StudentJob(
            job_id=job_id, seed=100 + i, examples=examples, probes=(Probe("p", question, word),),
            lora=LoRASpec(r=4, alpha=8), train=TrainSpec(epochs=1, batch_size=1, max_new_tokens=8),
        ))
    return out


def by_id(reports: Iterator[Report]) -> dict[str, Report]:
    return {r.job_id: r for r in reports}


def assert_processes_gone(pids: set[int]) -> None:
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive


def pid(report: Report) -> int:
    return int(report.worker.rsplit(":", 1)[1])


# Fast: the tiny random model.

def test_inprocess_pool_reports_jobs_in_order_and_retries_once(tiny_model_dir: str, tmp_path: Path) -> None:
    pool = InProcessPool(ChaosStudent(tiny_model_dir, marker_dir=str(tmp_path), device="cpu"))
    reports = list(pool.run(jobs("ok-0", "raise-once", "raise-always", "ok-1")))

    assert [r.job_id for r in reports] == ["ok-0", "raise-once", "raise-always", "ok-1"]
    assert [(r.ok, r.attempt) for r in reports] == [(True, 1), (True, 2), (False, ATTEMPTS), (True, 1)]
    assert reports[2].error == "ValueError: raise-always raised on purpose"
    assert reports[0].results and reports[0].epoch_losses


def test_local_pool_streams_reports_in_completion_order(tiny_model_dir: str, tmp_path: Path) -> None:
    pool = make_pool("local", tiny_model_dir, workers=2, worker_factory=chaos(tmp_path))
    with closing(pool):
        stream = pool.run(jobs("hang-always", "ok-1", "ok-2"))
        first, second = next(stream), next(stream)  # both arrive while the first job still hangs
        stream.close()  # stop early: the hanging worker is killed and replaced
        (after,) = pool.run(jobs("ok-3"))
    pids = {pid(first), pid(second), pid(after)}

    assert {first.job_id, second.job_id} == {"ok-1", "ok-2"}
    assert first.ok and second.ok and after.ok
    assert not multiprocessing.active_children()
    assert_processes_gone(pids)


ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_pool import chaos, jobs
from student.pools.local import LocalPool
pool = LocalPool({model!r}, 1, worker_factory=chaos(__import__("pathlib").Path({marker!r})))
print(pool._workers[0].process.pid, flush=True)
next(pool.run(jobs("hang-always")))
"""


def test_local_pool_workers_die_with_a_killed_parent_even_mid_job(tiny_model_dir: str, tmp_path: Path) -> None:
    """A SIGKILLed orchestrator runs no cleanup; the kernel's parent-death signal ends its workers."""
    import signal
    import subprocess

    script = ORPHAN_SCRIPT.format(tests=str(Path(__file__).parent), model=tiny_model_dir, marker=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    while not (tmp_path / "hang-always").exists():  # the worker is inside its job
        assert time.monotonic() < deadline and parent.poll() is None, "the job never started"
        time.sleep(0.2)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert_processes_gone({worker})


def test_local_pool_fails_fast_when_workers_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="could not load"):
        LocalPool(str(tmp_path / "no-such-model"), 1)
    assert not multiprocessing.active_children()


@pytest.mark.gpu
def test_local_pool_pins_one_gpu_per_worker(tiny_model_dir: str, tmp_path: Path) -> None:
    """Each worker sees only the GPU it is given (as its cuda:0) and loads the model there in bf16."""
    gpus = visible_gpus("cuda")
    where = functools.partial(WhereStudent, marker_dir=str(tmp_path))
    with LocalPool(tiny_model_dir, len(gpus), gpus=gpus, worker_factory=where) as pool:
        reports = by_id(pool.run(jobs(*(f"job-{i}" for i in range(2 * len(gpus))))))
    assert all(r.ok and r.results for r in reports.values()) and len(reports) == 2 * len(gpus)
    seen = [json.loads(marker.read_text()) for marker in tmp_path.iterdir()]
    assert sorted(s["visible"] for s in seen) == sorted(gpus)
    assert {(s["device"], s["dtype"]) for s in seen} == {("cuda:0", "torch.bfloat16")}


def test_a_pool_reads_a_job_generator_one_job_ahead_of_its_idle_workers() -> None:
    """A streamed E-step hands the pool a generator that writes jobs while earlier ones run."""
    asked = []

    def written() -> Iterator[StudentJob]:
        for i in range(6):
            asked.append(i)
            yield StudentJob(f"job-{i}", 0, (), ())

    stream = InstantPool(2).run(written())
    first = next(stream)
    assert asked == [0, 1, 2]  # two to start on the idle workers, one queued ahead
    assert sorted(r.job_id for r in [first, *stream]) == [f"job-{i}" for i in range(6)]


def test_make_pool_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown pool 'threads'"):
        make_pool("threads", "m")  # type: ignore[arg-type]


# Slow: the real SmolLM2, two workers, local processes and a real local Ray.

@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    from student.pools.ray_pool import connect_ray

    started = connect_ray(None, num_cpus=2)  # one CPU per worker, like the local pool's workers
    import ray

    # ChaosStudent lives in this test module, which Ray's workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    if started:
        ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def open_pool(request: pytest.FixtureRequest) -> functools.partial[SlotPool]:
    """Two workers with one thread each, locally or as Ray actors."""
    if request.param == "ray":
        from student.pools.ray_pool import RayPool

        request.getfixturevalue("ray_cluster")
        return functools.partial(RayPool, workers=2)
    return functools.partial(LocalPool, workers=2, threads_per_worker=1)


@pytest.mark.slow
def test_pool_reports_match_one_student(smollm2_dir: str, open_pool: functools.partial[SlotPool]) -> None:
    work = jobs(*(f"job-{i}" for i in range(6)))
    single = Student(smollm2_dir, device="cpu", threads=1)
    expected = {job.job_id: single.run(job) for job in work}
    del single

    with open_pool(smollm2_dir) as pool:
        reports = by_id(pool.run(work))

    assert reports.keys() == expected.keys()
    assert len({r.worker for r in reports.values()}) == 2
    for job_id, report in reports.items():
        want = expected[job_id]
        assert report.ok and report.attempt == 1
        assert report.results == want.results  # answers and their scores
        # One thread in every process, as in the single student, so the same kernels reduce in the
        # same order; the tolerance only guards against a kernel choosing a different split.
        assert report.epoch_losses == pytest.approx(want.epoch_losses, rel=1e-6)
        assert report.tokens_trained == want.tokens_trained


@pytest.mark.slow
def test_pool_survives_crashes_and_timeouts(
    smollm2_dir: str, open_pool: functools.partial[SlotPool], tmp_path: Path
) -> None:
    work = jobs("ok-0", "crash-once", "crash-always", "hang-always", "ok-1")
    with open_pool(smollm2_dir, job_timeout=30, worker_factory=chaos(tmp_path)) as pool:
        reports = by_id(pool.run(work))

    assert reports.keys() == {job.job_id for job in work}
    assert [(reports[i].ok, reports[i].attempt) for i in ("ok-0", "ok-1", "crash-once")] == [
        (True, 1), (True, 1), (True, 2)
    ]
    assert reports["crash-once"].results
    crashed, hung = reports["crash-always"], reports["hang-always"]
    assert (crashed.ok, crashed.attempt) == (False, ATTEMPTS) and "died" in (crashed.error or "")
    assert (hung.ok, hung.attempt) == (False, ATTEMPTS) and hung.error == "timed out after 30 s"


@pytest.mark.slow
def test_local_ray_listens_only_on_loopback(ray_cluster: None) -> None:
    """Ray's own servers (GCS, raylet, agents, workers) are children of the process that started it."""
    listening = set()
    for p in psutil.Process().children(recursive=True):
        try:
            connections = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue  # a short-lived Ray worker that exited since the listing listens on nothing
        listening |= {ipaddress.ip_address(c.laddr.ip) for c in connections if c.status == psutil.CONN_LISTEN}
    assert listening
    assert all((getattr(ip, "ipv4_mapped", None) or ip).is_loopback for ip in listening), listening
