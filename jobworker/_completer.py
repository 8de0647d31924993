"""The outcome writer: buffers outcomes and saves them in batches (one transaction each).

Outcomes that arrive while a batch is being written, or within a few
milliseconds of the first one, share the next write. A failed write (database
down) is retried with capped backoff; an outcome is dropped only by a hard stop
or a finish that runs out of time, and then loudly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from uuid import UUID

from jobqueue import Job
from jobworker._database import Outcome, WorkerDatabase
from jobworker._errors import ErrorReporter
from jobworker._log import job_extra

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.003  # after the first outcome, wait this long for company
MAX_BATCH = 500
RETRY_BACKOFF_START = 0.05
RETRY_BACKOFF_MAX = 5.0
_WAIT_SLICE = 1.0

#: An outcome with the job it ends (for logging).
Entry = tuple[Outcome, Job]
#: Called after a successful write with the batch and the ids whose write applied.
SavedCallback = Callable[[list[Entry], set[UUID]], None]


class OutcomeWriter:
    """Owns the thread ``jobworker-outcomes``. Thread-safe."""

    def __init__(
        self,
        database: WorkerDatabase,
        report: ErrorReporter,
        on_saved: SavedCallback,
        name: str,
        on_written: Callable[[int, float], None] | None = None,
    ) -> None:
        self._database = database
        self._on_written = on_written
        self._report = report
        self._on_saved = on_saved
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._buffer: list[Entry] = []
        self._writing: list[Entry] = []
        self._finishing = False  # write everything, then exit
        self._hard = False  # one last attempt, then exit
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, outcome: Outcome, job: Job) -> None:
        """Queue ``outcome`` (of ``job``) for the next write."""
        with self._cond:
            if self._hard:
                logger.warning(
                    "pool stopped: outcome of job %s not saved; the reaper will requeue it",
                    job.id,
                    extra=job_extra(job, "not-saved"),
                )
                return
            self._buffer.append((outcome, job))
            # The writer waits for the first outcome, then COALESCE_SECONDS for company: wake it
            # for the first and for a full batch only, not once per job.
            if len(self._buffer) == 1 or len(self._buffer) >= MAX_BATCH:
                self._cond.notify_all()

    def unsaved(self) -> int:
        """How many outcomes wait to be saved (queued or being written)."""
        with self._lock:
            return len(self._buffer) + len(self._writing)

    def pending_claims(self) -> list[tuple[UUID, UUID]]:
        """Claims whose outcomes are not saved yet: they still need heartbeats."""
        with self._lock:
            return [(o.job_id, o.claim_token) for o, _ in [*self._writing, *self._buffer]]

    def finish(self, deadline: float | None) -> bool:
        """Write everything queued (retrying as needed), then stop. False when ``deadline``
        (monotonic) passed first; what was unsaved is then dropped with an error log."""
        with self._cond:
            self._finishing = True
            self._cond.notify_all()
        while self._thread.is_alive():
            remaining = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            self._thread.join(min(remaining, _WAIT_SLICE))
        if not self._thread.is_alive():
            return True
        self.stop(join_timeout=0.0)
        return False

    def stop(self, join_timeout: float) -> None:
        """Hard stop: try to write what is queued once, then exit (waits ``join_timeout``)."""
        with self._cond:
            self._hard = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(join_timeout)

    def _next_batch(self) -> list[Entry] | None:
        with self._cond:
            while not self._buffer:
                if self._finishing or self._hard:
                    return None
                self._cond.wait(_WAIT_SLICE)
            if not (self._finishing or self._hard):
                end = time.monotonic() + COALESCE_SECONDS
                while len(self._buffer) < MAX_BATCH and (left := end - time.monotonic()) > 0:
                    self._cond.wait(left)
            self._writing = self._buffer[:MAX_BATCH]
            del self._buffer[:MAX_BATCH]
            return self._writing

    def _loop(self) -> None:
        backoff = RETRY_BACKOFF_START
        while (batch := self._next_batch()) is not None:
            try:
                started = time.monotonic()
                applied = self._database.save_outcomes([outcome for outcome, _ in batch])
                if self._on_written is not None:
                    self._on_written(len(batch), time.monotonic() - started)
            except Exception as exc:
                self._report(
                    exc, f"saving {len(batch)} job outcomes (will retry in {backoff:.2f}s)", retrying=True
                )
                with self._cond:
                    self._buffer[0:0] = batch
                    self._writing = []
                    if self._hard:
                        self._drop_all()
                        return
                    self._cond.wait(backoff)
                    if self._hard:
                        self._drop_all()
                        return
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX)
                continue
            backoff = RETRY_BACKOFF_START
            with self._cond:
                self._writing = []
            try:
                self._on_saved(batch, applied)
            except Exception as exc:
                self._report(exc, "handling saved job outcomes")

    def _drop_all(self) -> None:
        for outcome, job in self._buffer:
            logger.error(
                "outcome of job %s (%s) could not be saved before the pool stopped; "
                "the job stays running until the reaper requeues it",
                job.id,
                outcome.kind.value,
                extra=job_extra(job, "not-saved"),
            )
        self._buffer.clear()
