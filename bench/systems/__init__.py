"""The systems under test. Each module exposes ``SYSTEM``, an object with this protocol.

Methods run in the driver process, except :meth:`System.work`, which runs in a
separate worker process (see :mod:`bench.worker`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

MODULES = {
    "pg-jobqueue": "bench.systems.pgjobqueue",
    "pg-jobqueue-tuned": "bench.systems.pgjobqueue_tuned",
    "pgqueuer": "bench.systems.pgqueuer_sys",
    "procrastinate": "bench.systems.procrastinate_sys",
    "floor": "bench.systems.floor",
    # a variant, measured when asked for (--systems ...,pg-jobqueue-unique): W1 and W2 with
    # a unique_key on every job
    "pg-jobqueue-unique": "bench.systems.pgjobqueue_unique",
    "floor-1stmt": "bench.systems.floor_1stmt",
}
#: What ``python -m bench`` runs without --systems: the peers, not the variants.
DEFAULT_SYSTEMS = ("pg-jobqueue", "pg-jobqueue-tuned", "pgqueuer", "procrastinate", "floor", "floor-1stmt")


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """What a worker process does: run handlers until ``target`` calls, then stop.

    kind "drain": no-op handler; "drain_async": the same as an ``async def`` (systems whose
    handlers are async anyway treat it as "drain"); "latency": the handler records monotonic() -
    payload t; "bundles": no-op handler plus a bundle-completion handler, ``target`` counts
    bundle handler calls; "wait": no-op handler, started before ready() (W7).
    """

    kind: str
    concurrency: int
    target: int


@dataclass(slots=True)
class WorkResult:
    """What a worker process reports back."""

    seconds: float  # from starting the worker to target reached and outcomes saved
    calls: int  # handler calls (bundle handler calls for "bundles")
    job_calls: int = 0
    latencies: list[float] = field(default_factory=list)  # "latency": seconds per job
    cpu_seconds: float = 0.0  # the worker process's CPU (all threads) from ready() to the result


class System(Protocol):
    name: str
    supports_bundles: bool
    why_no_bundles: str

    def install(self, url: str) -> None:
        """Install the system's schema into the fresh database ``url``."""

    def enqueue_each(self, url: str, n: int) -> None:
        """W1: ``n`` jobs, one call and one commit each."""

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        """W2: ``n`` jobs in batches of ``batch`` (the system's batch API)."""

    def preload(self, url: str, pending: int, finished: int) -> None:
        """Set-up (not timed): ``pending`` runnable no-op jobs, ``finished`` succeeded ones."""

    def preload_bundles(self, url: str, bundles: int, size: int) -> None:
        """Set-up for W6: ``bundles`` bundles of ``size`` no-op jobs."""

    def latency_producer(self, url: str, n: int, interval: float) -> None:
        """W4: enqueue ``n`` jobs ``interval`` s apart, each with payload t = monotonic()."""

    def count_succeeded(self, url: str) -> int:
        """Jobs that ended successfully, from the database."""

    def work(self, url: str, spec: WorkSpec, ready: object) -> WorkResult:
        """Worker process body; call ``ready()`` once idle and able to take jobs."""


def load(name: str) -> System:
    module = importlib.import_module(MODULES[name])
    system: System = module.SYSTEM
    return system
