"""The async lane of a pool: ``async def`` handlers as tasks on one event loop.

A pool with async job types runs them beside its threads, on an event loop it
owns (thread ``jobworker-<pool>-loop``) or, for :class:`jobworker.AsyncWorker`,
on the application's running loop. Claims, heartbeats, timeouts and outcome
writes stay on the pool's service threads (with the sync database calls), so a
handler that blocks the loop delays other async handlers but never the
heartbeat of any job.

- Concurrency: at most ``async_concurrency`` attempts run at once (the lane's
  places in :class:`~jobworker._slots.Slots`); the claimer claims for the lane
  only while it has free places.
- Timeout: the maintenance thread ends the attempt and cancels its task, so the
  handler sees ``asyncio.CancelledError`` and its ``finally`` blocks run; the
  place is free at once (the pool keeps its width) and whatever the handler does
  after the cancellation is discarded.
- ``current_job_context()`` works in the task (context variables follow tasks).
- A watchdog (:mod:`jobworker._loop_watchdog`) reports a loop blocked by a handler,
  naming its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobqueue import Job
from jobworker._loop_watchdog import LoopWatchdog
from jobworker._slots import Run

if TYPE_CHECKING:
    from jobworker._session import Session

logger = logging.getLogger(__name__)

#: Async attempts a pool runs at once when ``start_threads`` is not told otherwise.
DEFAULT_ASYNC_CONCURRENCY = 100
_STOP_SECONDS = 5.0  # how long stopping waits for cancelled tasks and the loop thread


class AsyncLane:
    """Runs a session's async runs on ``loop`` (None: a loop of its own, on its own thread).

    ``wake()`` and ``cancel()`` may be called from any thread; the tasks are only
    touched on the loop's thread.
    """

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop | None, name: str) -> None:
        self._session = session
        self._owns_loop = loop is None
        self._loop = loop if loop is not None else asyncio.new_event_loop()
        self._name = name
        self._tasks: dict[asyncio.Task[None], Run] = {}  # loop thread only
        self._lock = threading.Lock()
        self._pump_scheduled = False
        self._closed = False
        self._thread = (
            threading.Thread(target=self._run_loop, name=f"{name}-loop", daemon=True)
            if self._owns_loop
            else None
        )
        self._watchdog = LoopWatchdog(self._loop, self._running_job, f"{name}-loop-watch")

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the async handlers run on."""
        return self._loop

    def start(self) -> None:
        """Start the loop thread (if the lane owns its loop) and the watchdog."""
        if self._thread is not None:
            self._thread.start()
        self._watchdog.start()

    def wake(self) -> None:
        """Async runs are pending or a place freed: start what fits, on the loop."""
        with self._lock:
            if self._pump_scheduled or self._closed:
                return
            self._pump_scheduled = True
        self._call_soon(self._pump)

    def cancel(self, run: Run) -> None:
        """Cancel the task of ``run`` (its attempt has ended: timeout or hard stop)."""
        self._call_soon(self._cancel, run)

    def stop(self) -> None:
        """Cancel the tasks still running (strays past their timeout, or all of them after
        a hard stop), stop the watchdog and, for an own loop, the loop and its thread.
        Waits at most a few seconds; harmless when called twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._watchdog.stop()
        if self._thread is None:
            self._call_soon(self._cancel_all)
            return
        self._call_soon(self._loop.stop)
        self._thread.join(_STOP_SECONDS * 2)
        if self._thread.is_alive():
            logger.warning("the event loop of %s did not stop; an async handler blocks it", self._name)

    def _call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to run or cancel
            self._loop.call_soon_threadsafe(callback, *args)

    # -- on the loop's thread ----------------------------------------------------------------

    def _pump(self) -> None:
        with self._lock:
            self._pump_scheduled = False
        while (run := self._session.slots.take_async()) is not None:
            task = self._loop.create_task(
                self._session.execute_async(run), name=f"job {run.job.id} ({run.job.type})"
            )
            self._tasks[task] = run
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._pump()

    def _cancel(self, run: Run) -> None:
        for task, task_run in self._tasks.items():
            if task_run is run:
                task.cancel()
                return

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _running_job(self) -> Job | None:
        """The job whose task runs on the loop now (called from the watchdog thread)."""
        task = asyncio.current_task(self._loop)
        run = self._tasks.get(task) if task is not None else None
        return run.job if run is not None else None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            self._cancel_all()
            if self._tasks:
                self._loop.run_until_complete(asyncio.wait(list(self._tasks), timeout=_STOP_SECONDS))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()
