"""Telling async callables apart, and running an awaitable from synchronous code.

Handlers, hooks and retry schedulers may be ``async def``. Async handlers run on
the pool's event loop; where an awaitable turns up on a synchronous path (an
async hook of a sync job, ``do_job`` of an async handler, a plain function that
returns a coroutine) :func:`run_awaitable` runs it to completion on a loop of
its own, in the caller's context, so ``current_job_context()`` still works.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for an ``async def`` function, a partial of one, or an object whose ``__call__`` is."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 -- we want the method itself, not callable()
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_awaitable(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from synchronous code and return its value (or raise its error).

    Runs it with ``asyncio.run`` on this thread; when this thread already runs an
    event loop (which cannot be re-entered), on a helper thread. Either way in a
    copy of the caller's context.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    context = contextvars.copy_context()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, context.run(asyncio.run, _await(awaitable))))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="jobworker-run-awaitable", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def resolve(value: Any) -> Any:
    """``value``, or what it awaits to when it is awaitable (see :func:`run_awaitable`)."""
    if inspect.isawaitable(value):
        return run_awaitable(value)
    return value
