"""Helpers shared by the systems: the handler-call counter and timing."""

from __future__ import annotations

import threading
import time


class Counter:
    """Counts handler calls; ``done`` is set when ``target`` is reached. Thread-safe."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.calls = 0
        self.job_calls = 0
        self.latencies: list[float] = []
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.calls += 1
            if self.calls >= self.target:
                self.done.set()

    def job(self) -> None:
        with self._lock:
            self.job_calls += 1

    def latency(self, enqueued_at: float) -> None:
        lat = time.monotonic() - enqueued_at
        with self._lock:
            self.latencies.append(lat)
        self.hit()


NOOP = "bench.noop"
BUNDLE = "bench.bundle"
WAIT_TIMEOUT = 3600.0
NO_BUNDLES = (
    "no bundle/group primitive; counting in handler code would be an extra round trip per job, "
    "not atomic with completion, and not the library's API"
)
