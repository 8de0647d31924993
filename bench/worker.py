"""Worker processes: each system's :meth:`~bench.systems.System.work` in a spawned process."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
import traceback
from typing import Any

from bench.systems import WorkResult, WorkSpec, load

_CTX = mp.get_context("spawn")
START_TIMEOUT = 120.0


def _main(system_name: str, url: str, spec: WorkSpec, out: Any) -> None:
    try:
        system = load(system_name)
        cpu_at_ready: list[float] = []

        def ready() -> None:
            out.put(("ready", None))
            cpu_at_ready.append(time.process_time())

        result = system.work(url, spec, ready)
        result.cpu_seconds = time.process_time() - cpu_at_ready[0]  # every thread of the process
        out.put(("result", result))
    except BaseException:
        out.put(("error", traceback.format_exc()))


class WorkerProcess:
    """One worker process running ``spec`` for ``system_name`` against ``url``."""

    def __init__(self, system_name: str, url: str, spec: WorkSpec) -> None:
        self._out: Any = _CTX.Queue()
        self._proc = _CTX.Process(target=_main, args=(system_name, url, spec, self._out), daemon=True)

    def start(self) -> None:
        """Start the process and wait until the worker says it is ready."""
        self._proc.start()
        kind, value = self._get(START_TIMEOUT)
        if kind != "ready":
            raise RuntimeError(f"worker failed to start: {value}")

    def result(self, timeout: float) -> WorkResult:
        kind, value = self._get(timeout)
        self._proc.join(10)
        if kind != "result":
            raise RuntimeError(f"worker failed: {value}")
        assert isinstance(value, WorkResult)
        return value

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def _get(self, timeout: float) -> tuple[str, Any]:
        try:
            item: tuple[str, Any] = self._out.get(timeout=timeout)
        except queue_mod.Empty:
            self.kill()
            raise RuntimeError(f"worker gave no answer within {timeout:.0f} s") from None
        return item
