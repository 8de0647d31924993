"""The workloads W1..W6, each run against one system in a fresh database."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.db import fresh_database
from bench.systems import System, WorkResult, WorkSpec
from bench.worker import WorkerProcess

logger = logging.getLogger(__name__)

WORKLOADS = (
    "W1",
    "W2",
    "W3c1",
    "W3c16",
    "W3a16",
    "W3a100",
    "W4",
    "W5done",
    "W5backlog",
    "W4done",
    "W6",
    "W7wait",
)
#: Workloads measured as latencies (ms), not rates.
LATENCY_WORKLOADS = ("W4", "W4done", "W7wait")


@dataclass(frozen=True, slots=True)
class Sizes:
    enqueue_each: int = 10_000
    enqueue_batched: int = 100_000
    batch: int = 1_000
    drain: int = 50_000
    latency_jobs: int = 500
    latency_interval: float = 0.005
    scale: int = 1_000_000
    bundles: int = 1_000
    bundle_size: int = 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            enqueue_each=1_000,
            enqueue_batched=10_000,
            drain=5_000,
            latency_jobs=200,
            scale=100_000,
            bundles=100,
        )


@dataclass(slots=True)
class Result:
    """One (system, workload) measurement. ``rate`` is jobs (W6: bundles) per second."""

    system: str
    workload: str
    seconds: float | None = None
    rate: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_us_per_job: float | None = None  # the worker process's CPU per job (W3, W5, W6)
    checked: str = ""  # what the database said afterwards
    ok: bool = True
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _work(system: System, url: str, spec: WorkSpec) -> WorkResult:
    """Run ``spec`` in a worker process of ``system`` and return what it measured."""
    proc = WorkerProcess(system.name, url, spec)
    try:
        proc.start()
        return proc.result(timeout=3600)
    finally:
        proc.kill()


def _drain(system: System, url: str, spec: WorkSpec, res: Result, before: int) -> None:
    work = _work(system, url, spec)
    succeeded = system.count_succeeded(url) - before
    res.seconds, res.rate = work.seconds, spec.target / work.seconds
    res.cpu_us_per_job = 1e6 * work.cpu_seconds / spec.target
    res.checked = f"{work.calls} handler calls, {succeeded} succeeded in db"
    res.ok = work.calls >= spec.target and succeeded >= spec.target


def run(system: System, workload: str, admin_url: str, sizes: Sizes) -> Result:
    """Run ``workload`` against ``system`` in a fresh database; never raises."""
    res = Result(system.name, workload)
    if workload == "W6" and not system.supports_bundles:
        res.ok, res.note = True, "n/a: " + system.why_no_bundles
        return res
    if workload == "W7wait" and getattr(system, "wait_latency", None) is None:
        res.ok, res.note = True, "n/a: no API to wait for a job's result"
        return res
    dbname = f"bench_{system.name.replace('-', '_')}_{workload.lower()}"
    try:
        with fresh_database(admin_url, dbname) as url:
            system.install(url)
            _run(system, workload, url, sizes, res)
    except Exception as exc:
        logger.exception("%s %s failed", system.name, workload)
        res.ok, res.note = False, f"error: {type(exc).__name__}: {exc}"[:300]
    return res


def _run(system: System, workload: str, url: str, s: Sizes, res: Result) -> None:
    if workload == "W1":
        res.seconds = _timed(lambda: system.enqueue_each(url, s.enqueue_each))
        res.rate = s.enqueue_each / res.seconds
    elif workload == "W2":
        res.seconds = _timed(lambda: system.enqueue_batches(url, s.enqueue_batched, s.batch))
        res.rate = s.enqueue_batched / res.seconds
    elif workload in ("W3c1", "W3c16"):
        system.preload(url, s.drain, 0)
        _drain(system, url, WorkSpec("drain", 1 if workload == "W3c1" else 16, s.drain), res, 0)
    elif workload in ("W3a16", "W3a100"):  # async no-op handlers (pgqueuer's and procrastinate's are anyway)
        system.preload(url, s.drain, 0)
        _drain(system, url, WorkSpec("drain_async", int(workload[3:]), s.drain), res, 0)
    elif workload == "W5done":
        system.preload(url, s.drain, s.scale)
        before = system.count_succeeded(url)
        _drain(system, url, WorkSpec("drain", 16, s.drain), res, before)
    elif workload == "W5backlog":
        system.preload(url, s.scale, 0)
        _drain(system, url, WorkSpec("drain", 16, s.drain), res, 0)
    elif workload == "W4":
        _latency(system, url, s, res)
    elif workload == "W7wait":
        _wait_latency(system, url, s, res)
    elif workload == "W4done":
        system.preload(url, 0, s.scale)
        _latency(system, url, s, res)
    elif workload == "W6":
        system.preload_bundles(url, s.bundles, s.bundle_size)
        work = _work(system, url, WorkSpec("bundles", 16, s.bundles))
        res.seconds, res.rate = work.seconds, s.bundles / work.seconds
        res.checked = f"{work.calls} bundle handler calls after {work.job_calls} job calls"
        res.ok = work.calls >= s.bundles and work.job_calls >= s.bundles * s.bundle_size
    else:
        raise ValueError(f"unknown workload {workload}")


def _quantiles(seconds: list[float]) -> dict[str, float]:
    lat = sorted(x * 1000 for x in seconds)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": lat[-1]}


def _wait_latency(system: System, url: str, s: Sizes, res: Result) -> None:
    """W7: one producer adds a no-op job and waits for its result, ``latency_jobs`` times in a
    row (a worker process of 16 runs them): from the add returning to the wait returning."""
    proc = WorkerProcess(system.name, url, WorkSpec("wait", 16, s.latency_jobs + 1))  # + a warm-up
    try:
        proc.start()
        t0 = time.perf_counter()
        seconds = system.wait_latency(url, s.latency_jobs)  # type: ignore[attr-defined]
        res.seconds = time.perf_counter() - t0
        proc.result(timeout=120)
    finally:
        proc.kill()
    res.latency_ms = _quantiles(seconds)
    res.checked = f"{len(seconds)} waits returned"
    res.ok = len(seconds) >= s.latency_jobs


def _latency(system: System, url: str, s: Sizes, res: Result) -> None:
    proc = WorkerProcess(system.name, url, WorkSpec("latency", 16, s.latency_jobs))
    try:
        proc.start()
        res.seconds = _timed(lambda: system.latency_producer(url, s.latency_jobs, s.latency_interval))
        work = proc.result(timeout=120)
    finally:
        proc.kill()
    res.latency_ms = _quantiles(work.latencies)
    res.checked = f"{len(work.latencies)} handler starts"
    res.ok = len(work.latencies) >= s.latency_jobs
