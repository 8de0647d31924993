"""Running an asyncio system's worker until its handler-call target, from sync code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bench.systems._common import WAIT_TIMEOUT, Counter


async def run_until_target(
    start: Callable[[], Coroutine[Any, Any, None]],
    stop: Callable[[asyncio.Task[None]], Awaitable[None]],
    counter: Counter,
    ready: Any,
    prestart: bool,
) -> float:
    """Run ``start()`` as a task until ``counter`` is done, then ``stop(task)``; the seconds
    from start (or, with ``prestart``, from ``ready()`` after an idle warm-up) to stopped."""
    task: asyncio.Task[None]
    if prestart:
        task = asyncio.create_task(start())
        await asyncio.sleep(1.0)  # connected, listening, first empty fetch done
        ready()
        t0 = time.perf_counter()
    else:
        ready()
        t0 = time.perf_counter()
        task = asyncio.create_task(start())
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not counter.done.is_set():
        if task.done():
            task.result()
            raise RuntimeError(f"worker exited after {counter.calls} of {counter.target} calls")
        if time.monotonic() > deadline:
            raise TimeoutError("target not reached")
        await asyncio.sleep(0.001)
    await stop(task)
    return time.perf_counter() - t0
