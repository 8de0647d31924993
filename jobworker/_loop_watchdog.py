"""The watchdog of an event loop: a warning naming the job whose handler blocks the loop.

Thread ``jobworker-<pool>-loop-watch`` sends the loop a ping every
:data:`SLOW_CALLBACK_SECONDS`; when it has not come back within that time the loop
is blocked (a handler called something blocking instead of awaiting it). The
warning names the job whose task is running (``action="loop-blocked"``, with the
job's id and type); once the loop is free again an INFO says for how long it was
blocked. One ping per interval costs nothing measurable; asyncio's own debug mode
(which reports slow callbacks too) slows every task down.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from jobqueue import Job
from jobworker._log import job_extra

logger = logging.getLogger(__name__)

#: A loop blocked at least this long (seconds) is reported with the job that blocks it.
SLOW_CALLBACK_SECONDS = 0.25
_STOP_SECONDS = 5.0


class LoopWatchdog:
    """Owns the thread ``jobworker-<pool>-loop-watch``: reports a loop blocked by a job."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        running_job: Callable[[], Job | None],
        name: str,
        threshold: float | None = None,
    ) -> None:
        self._loop = loop
        self._running_job = running_job
        self._threshold = SLOW_CALLBACK_SECONDS if threshold is None else threshold
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_STOP_SECONDS)

    def _watch(self) -> None:
        while not self._stopping.wait(self._threshold):
            pong = threading.Event()
            sent = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(pong.set)
            except RuntimeError:  # the loop closed
                return
            if pong.wait(self._threshold):
                continue
            job = self._running_job()
            if job is None:
                logger.warning(
                    "the event loop of the async jobs was blocked for over %.2f s (not by a job handler)",
                    self._threshold,
                    extra={"action": "loop-blocked"},
                )
            else:
                logger.warning(
                    "async handler of job %s (type %r) has blocked the event loop for over %.2f s: "
                    "other async jobs wait; await I/O, or move blocking work to asyncio.to_thread",
                    job.id,
                    job.type,
                    self._threshold,
                    extra=job_extra(job, "loop-blocked"),
                )
            while not pong.wait(self._threshold) and not self._stopping.is_set():
                pass
            if pong.is_set():
                logger.info(
                    "the event loop was blocked for %.2f s",
                    time.monotonic() - sent,
                    extra={"action": "loop-blocked"},
                )
